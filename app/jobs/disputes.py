"""RQ entry points of disputes: tell the PSP what the merchant decided (submit evidence, accept), and the sweep
(actions due again, reminders before deadlines).

Like the payments jobs: claim (lease, commit) -> the PSP call with no transaction open -> apply the answer
(commit) -> wake the waiting request. A retry of an action the PSP may have carried out first asks the PSP how
the dispute stands (found done: applied as such; found not done: sent again with the same idempotency key;
could not ask: later).
"""
import functools
import logging

from flask import current_app

from app.disputes import files as dispute_files
from app.disputes import service
from app.disputes.evidence import FILE_FIELDS
from app.disputes.notifications import send_due_reminders
from app.extensions import db
from app.jobs import job
from app.jobs.transactions import commit_or_rollback
from app.payments.deps import PaymentsDeps, deps_for
from app.psp.interfaces import LookupOutcome, Outcome, PspResult
from app.psp.router import router_for_app
from app.scoping import Scope

log = logging.getLogger(__name__)


def _base_url() -> str:
    return current_app.config.get("PUBLIC_BASE_URL") or ""


@job
def send_action(merchant_id: str, livemode: bool, dispute_id: str) -> str:
    """Carry one dispute's pending action (submit or close) to its PSP and apply the answer."""
    return run_action(Scope(merchant_id, livemode), dispute_id, deps_for(current_app._get_current_object()),
                      router_for_app(current_app))


def run_action(scope: Scope, dispute_id: str, deps: PaymentsDeps, router) -> str:
    """``send_action`` with its collaborators (tests hand in their own)."""
    session = db.session
    read_file = functools.partial(dispute_files.read_content, directory=current_app.config.get("FILES_DIRECTORY"))
    with commit_or_rollback(session):
        claim = service.claim_action(session, scope, dispute_id, deps, read_file)
    if claim is None:
        return "skipped"
    result = call_action(router, claim)
    with commit_or_rollback(session):
        snapshot = service.apply_action_result(session, claim, result, deps, base_url=_base_url())
    service.notify_settled(deps, dispute_id, snapshot)
    return result.outcome.value


def call_action(router, claim: service.ActionClaim) -> PspResult:
    """The PSP call of a claimed action; a retry looks the dispute up first (no transaction is open here)."""
    owner = {"merchant_id": claim.merchant_id, "livemode": claim.livemode, "credential": claim.credential}
    if claim.tries > 1:
        lookup = router.retrieve_dispute(claim.connector, claim.psp_reference, **owner)
        if lookup.outcome == LookupOutcome.FOUND and service.action_done(claim, lookup.found.raw):
            return lookup.found
        if lookup.outcome != LookupOutcome.FOUND:
            # Could not ask (or the PSP knows no such dispute, which proves nothing about a write we sent):
            # never send again on a guess.
            return PspResult(outcome=Outcome.UNKNOWN, connector=lookup.connector, error=lookup.error,
                             message=lookup.message)
    if claim.action == "submit":
        text = {name: value for name, value in claim.evidence.items() if name not in FILE_FIELDS}
        return router.submit_dispute_evidence(claim.connector, claim.psp_reference, text, list(claim.files),
                                              claim.idempotency_key, **owner)
    return router.close_dispute(claim.connector, claim.psp_reference, claim.idempotency_key, **owner)


@job
def sweep_disputes() -> dict:
    """Actions due again (their job was lost, or the PSP could not be asked) and deadline reminders."""
    session = db.session
    deps = deps_for(current_app._get_current_object())
    with commit_or_rollback(session):
        due = service.due_actions(session, deps)
    router = router_for_app(current_app) if due else None
    for merchant_id, livemode, dispute_id in due:
        try:
            run_action(Scope(merchant_id, livemode), dispute_id, deps, router)
        except Exception:  # noqa: BLE001 - one dispute's trouble must not stop the others; it stays due
            session.rollback()
            log.exception("dispute %s: sending the action failed; the sweep retries it", dispute_id)
    with commit_or_rollback(session):
        reminded = send_due_reminders(session, now=deps.now(), base_url=_base_url())
    return {"actions": len(due), "reminders": len(reminded)}
