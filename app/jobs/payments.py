"""Running PSP work: attempts (authorize, capture, void) and refunds, each claimed with a lease and driven
at the PSP, plus the periodic sweeps of payments.

Every run owns its transactions (app/payments/processing.py never commits):

    claim the row (lease, commit) -> PSP call with no transaction and no connection held
    -> apply the outcome (payment row lock, Event, ledger; commit) -> wake the waiting request

A row lock is never held across the network call: a slow PSP would otherwise stall every request
touching the payment and pin a pool connection for seconds. Who runs it: the PSP dispatcher of every
worker process (app/jobs/dispatcher.py) claims due rows from the database, fairly across merchants and
within each connector's bulkhead, and runs them on its thread pool (``run_claimed_attempt``,
``run_claimed_refund``); ``run_attempt`` / ``run_refund`` claim one row by id (tests, or RQ by hand).
Retries and the circuit breaker live in the PSP router; an ambiguous answer (timeout) leaves the attempt
``unknown`` and due again after a backoff, and its next run asks the PSP by our idempotency key before it
would ever send again, and sends again only when every connector that could hold it answered that it has
none (a lookup that could not ask decides nothing). A run that dies (worker killed) leaves its lease,
after which the row is due again: that is the janitor.
"""
import logging
from dataclasses import replace

from flask import current_app
from sqlalchemy import update

from app.extensions import db
from app.jobs import job
from app.jobs.transactions import commit_or_rollback
from app.payments import processing, risk
from app.payments.deps import PaymentsDeps, deps_for
from app.payments.gateway import Gateway, gateway_for_app
from app.payments.models import AttemptOperation, AttemptStatus, PaymentAttempt
from app.payments.service import notify_outcome
from app.psp.interfaces import AuthorizeRequest, Lookup, LookupOutcome, PspResult

log = logging.getLogger(__name__)


def payments_deps() -> PaymentsDeps:
    """The current app's PaymentsDeps, built once per process."""
    return deps_for(current_app._get_current_object())


# -- attempts --------------------------------------------------------------------------------------------

@job
def run_attempt(attempt_id: str) -> str:
    """Carry out one attempt (authorize, capture or void) and whatever follows from it (auto capture)."""
    return _run_attempt(attempt_id, payments_deps(), gateway_for_app(current_app))


def _run_attempt(attempt_id: str, deps: PaymentsDeps, gateway: Gateway) -> str:
    """Claim the attempt and run it (``skipped`` when it is resolved or another runner holds it)."""
    return _drive([attempt_id], deps, gateway)


def run_claimed_attempt(claim: processing.AttemptClaim, deps: PaymentsDeps, gateway: Gateway) -> str:
    """Run an attempt the caller claimed already (the dispatcher), and whatever follows from it."""
    return _drive([claim], deps, gateway)


def _drive(pending: list, deps: PaymentsDeps, gateway: Gateway) -> str:
    """Run ``pending`` attempts (ids to claim, or claims leased to us) and the follow-ups they create."""
    session = db.session
    outcome = "skipped"
    while pending:
        current = pending.pop(0)
        if isinstance(current, processing.AttemptClaim):
            claim = current
        else:
            with commit_or_rollback(session):
                claim = processing.claim_attempt(session, current, deps)
            if claim is None:
                continue  # resolved already, or another runner holds the lease
        # No transaction is open here: the commit above returned the connection to the pool.
        if deps.risk_screening and risk.needs_screening(claim):
            claim = screen_claim(session, claim, deps, gateway)
            if claim is None:
                outcome = "blocked"
                continue
        elif deps.risk_screening and risk.was_screened(claim):
            with commit_or_rollback(session):
                claim = risk.earlier_screening(session, claim)
        result = call_attempt(gateway, claim, renew_lease=lease_renewer(session, claim, deps))
        if result is None:
            log.warning("attempt %s: lease lost before sending; the runner holding it goes on", claim.id)
            continue
        try:
            with commit_or_rollback(session):
                applied = processing.apply_attempt_result(session, claim.id, result, deps, lease_follow_ups=True,
                                                          payment_id=claim.payment_id, claim_tries=claim.tries,
                                                          risk_fields=claim.risk)
        except Exception:
            log.exception("could not apply the outcome of attempt %s; it is due again when its lease ends",
                          claim.id)
            raise
        notify_outcome(deps.redis, applied.notify, applied.snapshot)
        # Follow-ups (the automatic capture, a void) run right here, already leased to this run: no
        # queue hop and no claim transaction while the confirm request waits.
        pending.extend(applied.claims)
        outcome = result.outcome.value
    return outcome


def screen_claim(session, claim: processing.AttemptClaim, deps: PaymentsDeps, gateway: Gateway):
    """Risk before the first send of an authorization (app/payments/risk.py): the card's facts from the vault
    (no transaction open; a vault that could not be asked holds the payment for review), then the assessment
    and its outcome in one transaction. None: blocked, nothing to send (the waiters are woken). A failure here leaves the claim's lease to run out: the attempt is due again."""
    card, unavailable = None, False
    ask = getattr(gateway, "card_facts", None)
    if ask is not None and claim.token and claim.vault:
        try:
            card = ask(claim.vault, claim.token, merchant_id=claim.merchant_id, currency=claim.currency,
                       livemode=claim.livemode)
        except Exception:  # noqa: BLE001 - CardFactsUnavailable or worse: could not ask is not an answer
            log.warning("attempt %s: card facts unavailable from the vault; the payment is held for review",
                        claim.id, exc_info=True)
            unavailable = True
    with commit_or_rollback(session):
        screened = risk.screen(session, claim, card, deps, card_facts_unavailable=unavailable)
    if screened.notify:
        notify_outcome(deps.redis, screened.notify, screened.snapshot)
    if screened.claim is not None and screened.risk is not None:
        # Its outcome travels with the claim to the transaction applying the PSP's answer, which writes it.
        return replace(screened.claim, risk=screened.risk)
    return screened.claim


def lease_renewer(session, claim: processing.AttemptClaim, deps: PaymentsDeps):
    def renew() -> bool:
        with commit_or_rollback(session):
            return processing.renew_lease(session, claim, deps)

    return renew


def call_attempt(gateway: Gateway, claim: processing.AttemptClaim, *,
                 renew_lease=lambda: True) -> PspResult | None:
    """The PSP call for a claimed attempt. Retries of an attempt reuse its idempotency key.

    None when the claim's lease was lost while asking the PSP about earlier tries (nothing was sent).
    Every call about an authorization made earlier uses the credential it was made with (``credential``).
    """
    owner = {"merchant_id": claim.merchant_id, "livemode": claim.livemode, "credential": claim.credential}
    if claim.operation == AttemptOperation.AUTHORIZE:
        if claim.status == AttemptStatus.REQUIRES_ACTION:
            # 3-D Secure pending: poll its status at the connector that holds it.
            return processing.as_authorization_result(
                gateway.retrieve(claim.connector, psp_reference=claim.psp_reference, **owner))
        if claim.tries > 1 or claim.status == AttemptStatus.UNKNOWN:
            # An earlier try may have reached a PSP: ask before sending anything (never charge blindly).
            # Only "no connector of the vault has it" allows sending again, even elsewhere.
            lookup = find_authorization(gateway, claim)
            if lookup.outcome != LookupOutcome.ABSENT:
                return processing.as_authorization_result(lookup)
            if not renew_lease():
                return None
        # A new send: the route and the merchant's current credential decide (the result records it).
        return gateway.authorize(claim.vault, AuthorizeRequest(
            amount=claim.amount, currency=claim.currency, token=claim.token or "",
            idempotency_key=claim.idempotency_key, reference=claim.id, return_url=claim.return_url,
            capture=claim.sale, three_d_secure=claim.three_d_secure,
            merchant_id=claim.merchant_id, livemode=claim.livemode, psp_reference=claim.psp_reference,
            on_prepared=record_prepared(claim.id)))
    if claim.operation == AttemptOperation.CAPTURE:
        # Capture and void go to the connector holding the authorization (no failover), and re-sending
        # with the same key is safe while the PSP remembers the key; past its window a resend would be a
        # new capture, so the authorization is looked up first.
        if claim.tries > 1 and processing.past_idempotency_window(
                gateway.idempotency_window(claim.connector), claim.started_at, claim.claimed_at):
            found = processing.as_capture_result(
                gateway.retrieve(claim.connector, psp_reference=claim.psp_reference, **owner))
            if found is not None:
                return found
        return gateway.capture(claim.connector, claim.psp_reference, claim.amount, claim.currency,
                               claim.idempotency_key, **owner)
    return gateway.void(claim.connector, claim.psp_reference, claim.idempotency_key, **owner)


def first_connector(item: processing.DueItem, gateway: Gateway) -> str:
    """The connector a due item's run calls first (whose bulkhead the dispatcher enters before claiming it):
    what call_attempt and call_refund would do with it. "" when there is none (the run then fails without a
    call)."""
    if item.kind == "refund" or item.operation != AttemptOperation.AUTHORIZE:
        return item.connector or ""
    if item.status == AttemptStatus.REQUIRES_ACTION:
        return item.connector or ""
    if item.tries >= 1 or item.status == AttemptStatus.UNKNOWN:
        # Its claim makes tries > 1: it looks up first, at its connector or at every one of its vault.
        if item.connector:
            return item.connector
        names = gateway.connector_names(item.vault or "")
        return names[0] if names else ""
    route = gateway.route(item.vault or "", merchant_id=item.merchant_id, currency=item.currency,
                          livemode=item.livemode)
    return route[0] if route else ""


def record_prepared(attempt_id: str):
    """on_prepared for two-step PSPs: store the intent id at once, in a tiny transaction of its own
    (no lock outlives it), so that a crash before the confirmation leaves a reference to ask about."""

    def record(connector: str, psp_reference: str, credential: str | None = None) -> None:
        values = {"connector": connector, "psp_reference": psp_reference}
        if credential is not None:
            values["credential"] = credential  # the account holding the intent: ask it later, no other
        with db.engine.begin() as connection:
            connection.execute(update(PaymentAttempt).where(PaymentAttempt.id == attempt_id).values(**values))

    record.takes_credential = True  # the router tells it the credential (app/psp/router.py)
    return record


def find_authorization(gateway: Gateway, claim: processing.AttemptClaim) -> Lookup:
    """Look the attempt up at the PSP: by its reference at its connector if one is known, else by its
    idempotency key at every connector of its vault (a resend goes through the router, which may send it
    to any of them).

    FOUND: an authorization (the first found). ABSENT: every connector answered that it has none, so
    sending again cannot charge twice. UNKNOWN: some connector could not tell and none had it: ask again
    later, send nothing. Asked with the credential an earlier try recorded, if any.
    """
    owner = {"merchant_id": claim.merchant_id, "livemode": claim.livemode, "credential": claim.credential}
    if claim.psp_reference and claim.connector:
        lookup = gateway.retrieve(claim.connector, psp_reference=claim.psp_reference, **owner)
        if lookup.outcome == LookupOutcome.ABSENT:
            # A reference the PSP gave us that it does not know (other credentials?) proves nothing.
            return replace(lookup, outcome=LookupOutcome.UNKNOWN)
        return lookup
    names = list(dict.fromkeys([*([claim.connector] if claim.connector else []),
                                *gateway.connector_names(claim.vault)]))
    if not names:
        return Lookup.unknown(claim.connector or "", "no_route", f"no connector of vault {claim.vault!r} to ask")
    undecided: Lookup | None = None
    for name in names:
        lookup = gateway.retrieve(name, idempotency_key=claim.idempotency_key, **owner)
        if lookup.outcome == LookupOutcome.FOUND:
            return lookup
        if lookup.outcome == LookupOutcome.UNKNOWN and undecided is None:
            undecided = lookup  # another connector may still have it: ask them all
    return undecided or Lookup.absent(names[0], "no connector of the vault has this authorization")


# -- refunds ---------------------------------------------------------------------------------------------

@job
def run_refund(refund_id: str) -> str:
    """Send one refund to the PSP (again with the same key on retries) and book it if it succeeded."""
    return _run_refund(refund_id, payments_deps(), gateway_for_app(current_app))


def _run_refund(refund_id: str, deps: PaymentsDeps, gateway: Gateway) -> str:
    """Claim the refund and run it (``skipped`` when it is done or another runner holds it)."""
    with commit_or_rollback(db.session):
        claim = processing.claim_refund(db.session, refund_id, deps)
    if claim is None:
        return "skipped"
    return run_claimed_refund(claim, deps, gateway)


def run_claimed_refund(claim: processing.RefundClaim, deps: PaymentsDeps, gateway: Gateway) -> str:
    """Run a refund the caller claimed already."""
    session = db.session
    result = call_refund(gateway, claim)
    try:
        with commit_or_rollback(session):
            applied = processing.apply_refund_result(session, claim.id, result, deps)
    except Exception:
        log.exception("could not apply the outcome of refund %s; it is due again when its lease ends", claim.id)
        raise
    notify_outcome(deps.redis, applied.notify, applied.snapshot)
    return result.outcome.value


def call_refund(gateway: Gateway, claim: processing.RefundClaim) -> PspResult:
    """The PSP call for a claimed refund: its status if the PSP gave it an id, else the refund (again, with
    the same key). A refund retried past the PSP's idempotency window would be a second refund: it is
    looked up by key first and sent only if the PSP answers that it has none. Always with the credential
    the payment was made with."""
    owner = {"merchant_id": claim.merchant_id, "livemode": claim.livemode, "credential": claim.credential}
    if claim.refund_reference:
        # The PSP made it: absent or unknown, its outcome is still to be asked for.
        return gateway.retrieve_refund(claim.connector, claim.refund_reference, **owner).as_result()
    if claim.tries > 1 and processing.past_idempotency_window(
            gateway.idempotency_window(claim.connector), claim.created_at, claim.claimed_at):
        lookup = gateway.find_refund(claim.connector, claim.psp_reference, claim.idempotency_key, **owner)
        if lookup.outcome != LookupOutcome.ABSENT:
            return lookup.as_result()
    return gateway.refund(claim.connector, claim.psp_reference, claim.amount, claim.currency,
                          claim.idempotency_key, **owner)


# -- sweeps (app/jobs/schedule.py) -----------------------------------------------------------------------

@job
def expire_authorizations() -> list[str]:
    """Cancel (and void) authorizations not captured within the configured expiry (7 days by default)."""
    deps = payments_deps()
    session = db.session
    with commit_or_rollback(session):
        expired = processing.expire_authorizations(session, deps)
    return expired


@job
def complete_idempotency_keys() -> list[str]:
    """The completer: finish requests left between atomic phases by a web process that died."""
    from app.payments import idempotency

    return idempotency.complete_stuck(db.session, payments_deps())


@job
def reap_idempotency_keys() -> int:
    """Delete idempotency keys older than 24 hours."""
    from app.payments import idempotency

    return idempotency.reap(db.session)
