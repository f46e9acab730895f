"""Applying PSP outcomes to payments, and the sweeps that find owed work (no Flask, never commits).

The jobs in app/jobs/payments.py own the transactions around these functions:

    claim (commit) -> PSP call, no transaction open -> apply outcome (commit) -> notify waiters

``claim_*`` takes a lease on an attempt or refund with a conditional UPDATE, so two runners (a job and
the janitor, or a duplicate enqueue) never drive the same row at once; the PSP's idempotency key makes
even an overlap after a lease expiry harmless. ``apply_*`` locks the payment row, then the attempt or
refund (the payments lock order), and does nothing when the outcome was already applied: outcomes
arrive at least once (job, janitor, late PSP callback), so applying is idempotent and writes events
only for real changes.
"""
import logging
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import String, bindparam, func, literal, or_, select, union_all, update
from sqlalchemy.orm import Session

from app.events import record_event
from app.payments import attention, booking, risk, state
from app.payments.deps import PaymentsDeps
from app.payments.errors import InvalidTransition
from app.payments.idempotency import relaxed_commit
from app.payments.models import (
    AttemptOperation,
    AttemptStatus,
    CaptureMethod,
    Payment,
    PaymentAttempt,
    PaymentOrder,
    PaymentStatus,
    Refund,
    RefundStatus,
)
from app.payments.serializers import refund_object
from app.psp.interfaces import CREDENTIAL_MISSING, Lookup, LookupOutcome, Outcome, PspResult
from app.scoping import Scope

log = logging.getLogger(__name__)

# Ambiguous answers are asked about again with exponential backoff: 1 s, 2 s, 4 s ... capped at 5 min,
# quick enough that a timed-out authorization resolves within seconds, gentle on a PSP that is down.
UNKNOWN_BACKOFF_BASE_SECONDS = 1.0
UNKNOWN_BACKOFF_CAP_SECONDS = 300.0
# A pending 3-D Secure challenge is polled in case its callback is lost; shoppers take a minute or so.
REQUIRES_ACTION_POLL_SECONDS = 60.0
# ...for a day at most: a shopper who has not answered by then has left; the payment stays
# requires_action until the merchant cancels it (which voids it at the PSP).
REQUIRES_ACTION_POLL_FOR = timedelta(hours=24)
# A refund the PSP surely did not process (503 after the router's own retries) is tried again later,
# this many times, before it is marked failed.
REFUND_MAX_TRIES = 8
# Likewise a capture the PSP surely did not process (circuit open, 503): the authorization is good, so
# giving up at once would leave an automatic-capture payment uncollected until someone captures it.
CAPTURE_MAX_TRIES = 8
# Expiry sweep batch: enough to drain a backlog quickly, small enough to keep each transaction short.
SWEEP_BATCH = 100

OPEN_FOR_CLAIM = (AttemptStatus.PROCESSING, AttemptStatus.UNKNOWN, AttemptStatus.REQUIRES_ACTION)


@dataclass(frozen=True)
class AttemptClaim:
    """A snapshot of a claimed attempt: everything the job needs for its PSP call, no ORM rows."""

    id: str
    payment_id: str
    operation: str
    status: str              # before this claim
    tries: int               # including this one
    amount: int
    currency: str
    vault: str | None
    token: str | None
    connector: str | None
    psp_reference: str | None
    idempotency_key: str
    return_url: str | None
    merchant_id: str
    livemode: bool
    capture_method: str = CaptureMethod.AUTOMATIC
    credential: str | None = None        # the credential it (or its authorization) was made with
    started_at: datetime | None = None   # the first try: when the PSP may first have seen the key
    claimed_at: datetime | None = None   # this claim
    three_d_secure: bool = False         # a risk rule asked for 3-D Secure (app/payments/risk.py)
    # The screening's risk fields (app/payments/risk.py, ``Screened.risk``): written with the PSP's answer.
    risk: dict[str, Any] | None = field(default=None, compare=False, repr=False)

    @property
    def sale(self) -> bool:
        """An authorization of an automatically captured payment: the PSP may capture in the same call."""
        return self.operation == AttemptOperation.AUTHORIZE and self.capture_method == CaptureMethod.AUTOMATIC


@dataclass(frozen=True)
class RefundClaim:
    id: str
    payment_id: str
    merchant_id: str
    livemode: bool
    amount: int
    currency: str
    connector: str | None
    psp_reference: str | None   # the authorization being refunded
    refund_reference: str | None
    idempotency_key: str
    tries: int
    created_at: datetime | None = None   # the first try was sent right after
    claimed_at: datetime | None = None
    credential: str | None = None        # the payment's credential: the refund goes through it


@dataclass
class Applied:
    """What applying an outcome did: whether anything changed, attempts to run next, waiters to wake."""

    changed: bool = False
    lease: bool = False
    follow_ups: list[str] = field(default_factory=list)
    notify: list[str] = field(default_factory=list)
    # With lease_follow_ups: the follow-ups, already leased to the caller, who runs them at once.
    claims: list[AttemptClaim] = field(default_factory=list)
    # The payment object as this apply leaves it (its last event's), when it moved the payment: sent to
    # the waiters with the wake-up, so that the confirm answers without reading the payment back.
    snapshot: dict[str, Any] | None = None


def unknown_backoff(tries: int) -> timedelta:
    return timedelta(seconds=min(UNKNOWN_BACKOFF_BASE_SECONDS * 2 ** max(tries - 1, 0), UNKNOWN_BACKOFF_CAP_SECONDS))


# PSP status words that say an authorization was also captured (the sandbox's, Stripe's "succeeded").
CAPTURED_STATUSES = frozenset({"captured", "partially_captured", "succeeded"})
# PSP status words and what they mean for an authorization attempt.
_AUTHORIZATION_STATUS = {
    "authorized": Outcome.SUCCEEDED, "captured": Outcome.SUCCEEDED, "partially_captured": Outcome.SUCCEEDED,
    "voided": Outcome.SUCCEEDED, "requires_capture": Outcome.SUCCEEDED, "succeeded": Outcome.SUCCEEDED,
    "declined": Outcome.DECLINED, "requires_action": Outcome.REQUIRES_ACTION,
}


def as_authorization_result(lookup: Lookup) -> PspResult:
    """A status query's answer read as the outcome of the authorization it looked up.

    Only a found authorization decides anything; a lookup that found nothing definite is UNKNOWN: the
    attempt stays open and is asked about again (never failed or declined on an answer that could not tell).
    """
    result = lookup.as_result()
    outcome = _AUTHORIZATION_STATUS.get(result.status or "")
    if lookup.outcome != LookupOutcome.FOUND or outcome is None or result.outcome in (
            Outcome.UNKNOWN, Outcome.NOT_PROCESSED):
        return result
    return PspResult(outcome=outcome, connector=result.connector, psp_reference=result.psp_reference,
                     decline_code=result.decline_code, message=result.message, action_url=result.action_url,
                     amount=result.amount, status=result.status, raw=result.raw, latency_ms=result.latency_ms)


# Authorization statuses in which a capture has not happened yet and still can.
CAPTURABLE_STATUSES = frozenset({"authorized", "requires_capture"})


def as_capture_result(lookup: Lookup) -> PspResult | None:
    """The authorization a capture is about, looked up before the capture is sent again past the PSP's
    idempotency window: its outcome if it tells (captured: succeeded; voided, canceled...: declined),
    None when it is still only authorized (the capture did not happen: send it), UNKNOWN otherwise."""
    result = lookup.as_result()
    if lookup.outcome != LookupOutcome.FOUND or result.outcome == Outcome.UNKNOWN:
        return result
    if result.status in CAPTURED_STATUSES:
        return replace(result, outcome=Outcome.SUCCEEDED)
    if result.status in CAPTURABLE_STATUSES:
        return None
    return replace(result, outcome=Outcome.DECLINED, decline_code=result.status or "not_capturable",
                   message=f"the authorization is {result.status} at the PSP: nothing to capture")


def past_idempotency_window(window: timedelta | None, first_sent: datetime | None, now: datetime | None) -> bool:
    """Whether a retry now may come after the PSP forgot the key of a request first sent at ``first_sent``
    (a window of None: the PSP never forgets). Unknown times count as past: then one looks first."""
    if window is None:
        return False
    if first_sent is None or now is None:
        return True
    return now - first_sent >= window


def authorization_result(data: dict[str, Any], connector: str | None) -> PspResult:
    """A PSP's authorization object (e.g. a callback's data) read as an authorization outcome."""
    status = data.get("status")
    outcome = _AUTHORIZATION_STATUS.get(status or "", Outcome.UNKNOWN)
    return PspResult(outcome=outcome, connector=connector or data.get("acquirer") or "",
                     psp_reference=data.get("id"), status=status, raw=data,
                     decline_code=data.get("decline_code") if outcome == Outcome.DECLINED else None,
                     action_url=data.get("action_url") if outcome == Outcome.REQUIRES_ACTION else None)


# PSP refund status words and what they mean (the sandbox's succeeded/failed, Stripe's five).
_REFUND_STATUS = {"succeeded": Outcome.SUCCEEDED, "pending": Outcome.PENDING, "requires_action": Outcome.PENDING,
                  "failed": Outcome.DECLINED, "canceled": Outcome.DECLINED}
# The refund status words that undo a refund the PSP reported succeeded before.
REFUND_UNDONE_STATUSES = frozenset({"failed", "canceled"})


def refund_result(data: dict[str, Any], connector: str | None) -> PspResult:
    """A PSP's refund object (e.g. a callback's data) read as the refund's outcome."""
    status = data.get("status")
    outcome = _REFUND_STATUS.get(status or "", Outcome.UNKNOWN)
    # Stripe says why in failure_reason, the sandbox in failure_code.
    code = (data.get("failure_reason") or data.get("failure_code") or status) if outcome == Outcome.DECLINED else None
    return PspResult(outcome=outcome, connector=connector or data.get("acquirer") or "", psp_reference=data.get("id"),
                     decline_code=code, amount=data.get("amount"), status=status, raw=data,
                     message=f"The payment processor reports the refund {status} ({code})." if code else None)


# -- claims ----------------------------------------------------------------------------------------------

_ATTEMPTS = PaymentAttempt.__table__
_PAYMENTS = Payment.__table__
_REFUNDS = Refund.__table__
# Built once (a claim runs for every attempt): a Core statement of the table with bound parameters.
_CLAIM_ATTEMPT = (
    update(_ATTEMPTS)
    .where(_ATTEMPTS.c.id == bindparam("attempt_id"), _PAYMENTS.c.id == _ATTEMPTS.c.payment_id,
           _ATTEMPTS.c.status.in_(OPEN_FOR_CLAIM),
           or_(_ATTEMPTS.c.lease_until.is_(None), _ATTEMPTS.c.lease_until < bindparam("now")))
    .values(lease_until=bindparam("lease"), next_attempt_at=bindparam("lease"), tries=_ATTEMPTS.c.tries + 1,
            started_at=func.coalesce(_ATTEMPTS.c.started_at, bindparam("now")), updated_at=bindparam("now"))
    .returning(_ATTEMPTS.c.id, _ATTEMPTS.c.payment_id, _ATTEMPTS.c.operation, _ATTEMPTS.c.status,
               _ATTEMPTS.c.tries, _ATTEMPTS.c.amount, _ATTEMPTS.c.currency, _ATTEMPTS.c.vault,
               _ATTEMPTS.c.payment_method_token, _ATTEMPTS.c.connector, _ATTEMPTS.c.psp_reference,
               _ATTEMPTS.c.idempotency_key, _ATTEMPTS.c.merchant_id, _ATTEMPTS.c.livemode,
               _ATTEMPTS.c.started_at, _ATTEMPTS.c.credential, _PAYMENTS.c.return_url, _PAYMENTS.c.capture_method))


def claim_attempt(session: Session, attempt_id: str, deps: PaymentsDeps) -> AttemptClaim | None:
    """Lease an open attempt for one run; None when it is resolved or another runner holds it.

    One conditional UPDATE ... RETURNING (the claim does not change the status, so the status it
    returns is the one the attempt had): the row lock lasts only for this statement's transaction.
    The new ``tries`` is the claim's token: results and lease renewals count only for the current one.
    The commit is durable: a claim lost in a database crash would let the next runner take the attempt
    for a first try, which sends without asking the PSP first, and a router failing over could then
    authorize at a second acquirer while the first still holds the original request.
    """
    now = deps.now()
    row = session.execute(_CLAIM_ATTEMPT, {"attempt_id": attempt_id, "now": now,
                                           "lease": now + deps.attempt_stuck_after}).one_or_none()
    if row is None:
        return None
    return AttemptClaim(
        id=row.id, payment_id=row.payment_id, operation=row.operation, status=row.status, tries=row.tries,
        amount=row.amount, currency=row.currency, vault=row.vault, token=row.payment_method_token,
        connector=row.connector, psp_reference=row.psp_reference, idempotency_key=row.idempotency_key,
        return_url=row.return_url, merchant_id=row.merchant_id, livemode=row.livemode,
        capture_method=row.capture_method, started_at=row.started_at, claimed_at=now, credential=row.credential)


def renew_lease(session: Session, claim: AttemptClaim, deps: PaymentsDeps) -> bool:
    """Extend the lease of a claim that is still current, right before a send; False if it was lost.

    The lease is sized for one send (every timeout, try and failover). A runner that first asked the
    PSP about earlier tries has used part of it, so it renews before sending: another runner can then
    never take the attempt while this one's request may still be on its way to an acquirer.
    """
    now = deps.now()
    lease = now + deps.attempt_stuck_after
    renewed = session.execute(
        update(PaymentAttempt)
        .where(PaymentAttempt.id == claim.id, PaymentAttempt.tries == claim.tries,
               PaymentAttempt.status.in_(OPEN_FOR_CLAIM))
        .values(lease_until=lease, next_attempt_at=lease, updated_at=now)
        .returning(PaymentAttempt.id)).one_or_none()
    return renewed is not None


def claim_refund(session: Session, refund_id: str, deps: PaymentsDeps) -> RefundClaim | None:
    """Lease a pending refund for one run; None when it is done or another runner holds it."""
    now = deps.now()
    lease = now + deps.attempt_stuck_after
    # A refund never fails over (it goes to the connector holding the payment), so a claim lost in a
    # crash only means the same request sent there again under the same key: no WAL flush needed.
    relaxed_commit(session)
    row = session.execute(
        update(Refund)
        .where(Refund.id == refund_id, Refund.status == RefundStatus.PENDING,
               or_(Refund.lease_until.is_(None), Refund.lease_until < now))
        .values(lease_until=lease, next_attempt_at=lease, tries=Refund.tries + 1, updated_at=now)
        .returning(Refund.id, Refund.payment_id, Refund.amount, Refund.currency, Refund.connector,
                   Refund.psp_reference, Refund.idempotency_key, Refund.tries, Refund.merchant_id, Refund.livemode,
                   Refund.created_at, Refund.credential)
    ).one_or_none()
    if row is None:
        return None
    authorization, credential = session.execute(
        select(Payment.psp_reference, Payment.credential).where(Payment.id == row.payment_id)).one()
    return RefundClaim(id=row.id, payment_id=row.payment_id, merchant_id=row.merchant_id, livemode=row.livemode,
                       amount=row.amount, currency=row.currency,
                       connector=row.connector, psp_reference=authorization, refund_reference=row.psp_reference,
                       idempotency_key=row.idempotency_key, tries=row.tries, created_at=row.created_at,
                       claimed_at=now, credential=row.credential or credential)


# -- applying outcomes -----------------------------------------------------------------------------------

def _locked_with_attempts(session: Session, payment_id: str) -> tuple[Payment, list[PaymentAttempt]]:
    """The payment row and all its attempts (oldest first), locked, current, in one statement.

    The transitions' events show the attempts, so reading them all here spares a query per event;
    each row locks the payment first (the payments lock order). Every apply creates its new attempts
    after its transition, so this list is complete for the events it writes.
    """
    rows = session.execute(_LOCKED_WITH_ATTEMPTS, {"payment_id": payment_id}).all()
    return rows[0][0], [row[1] for row in rows]


# Built once, as the claim is: every outcome runs them.
_LOCKED_WITH_ATTEMPTS = (
    select(Payment, PaymentAttempt).join(PaymentAttempt, PaymentAttempt.payment_id == Payment.id)
    .where(Payment.id == bindparam("payment_id")).order_by(PaymentAttempt.id)
    .with_for_update().execution_options(populate_existing=True))
_LOCKED_ORDERS = (
    select(PaymentOrder).where(PaymentOrder.payment_id == bindparam("payment_id"))
    .order_by(PaymentOrder.position).with_for_update())


def _locked(session: Session, model, row_id: str):
    return session.scalars(select(model).where(model.id == row_id).with_for_update()
                           .execution_options(populate_existing=True)).one()


def _latency(result: PspResult) -> int | None:
    return int(result.latency_ms) if result.latency_ms is not None else None


def _card_facts(payment: Payment, raw: dict[str, Any]) -> None:
    card = raw.get("card") if isinstance(raw, dict) else None
    if not isinstance(card, dict):
        return
    payment.card_brand = card.get("brand") or payment.card_brand
    payment.card_last4 = card.get("last4") or payment.card_last4
    payment.card_exp_month = card.get("exp_month") or payment.card_exp_month
    payment.card_exp_year = card.get("exp_year") or payment.card_exp_year
    payment.card_fingerprint = card.get("fingerprint") or payment.card_fingerprint


def _error(result: PspResult, declined: bool) -> dict[str, Any]:
    if declined:
        return {"type": "card_error", "code": "card_declined", "decline_code": result.decline_code,
                "message": result.message or f"The card was declined ({result.decline_code})."}
    return {"type": "api_error", "code": result.decline_code or "processing_error", "decline_code": None,
            "message": result.message or "The payment processor could not process this payment."}


def _schedule_unknown(attempt: PaymentAttempt, result: PspResult, now: datetime, deps: PaymentsDeps) -> None:
    """No definite answer: ask again later (capped backoff), and mark the attempt once it waited too long."""
    attempt.status = AttemptStatus.UNKNOWN
    attempt.connector = result.connector or attempt.connector
    attempt.credential = attempt.credential or result.credential
    attempt.psp_reference = result.psp_reference or attempt.psp_reference
    attempt.error_message = (result.message or "ambiguous answer from the PSP")[:1000]
    attempt.next_attempt_at = now + unknown_backoff(attempt.tries)
    attention.note_undecided(attempt, attempt.operation, result, attempt.started_at or attempt.created_at, now,
                             deps)


def apply_attempt_result(session: Session, attempt_id: str, result: PspResult, deps: PaymentsDeps, *,
                         request_id: str | None = None, lease_follow_ups: bool = False,
                         payment_id: str | None = None, claim_tries: int | None = None,
                         risk_fields: dict[str, Any] | None = None) -> Applied:
    """Apply one PSP answer to an attempt and its payment, once; a repeat changes nothing.

    ``lease_follow_ups``: the caller (a job) runs the follow-ups itself right after the commit, so
    they are created already leased to it (``Applied.claims``), saving a claim transaction each.
    ``claim_tries``: the caller's claim (a job's); None for answers that hold no claim (callbacks).
    A claim overtaken by a newer one (its runner stalled past its lease) may still report a definite
    outcome, which is a fact; an ambiguous answer of its is left to the current runner.
    ``risk_fields``: the screening's outcome for the payment (the job that screened the claim has it); the
    first definite answer of a screened authorization writes it, read from its assessment when not given.
    """
    if payment_id is None:
        payment_id = session.scalar(select(PaymentAttempt.payment_id).where(PaymentAttempt.id == attempt_id))
    payment, attempts = _locked_with_attempts(session, payment_id)
    attempt = next(a for a in attempts if a.id == attempt_id)
    applied = Applied(lease=lease_follow_ups)
    if attempt.status not in OPEN_FOR_CLAIM:
        # Already resolved: the outcome arrived before (job, janitor or callback). An authorization
        # other than the one recorded (overlapping runners, a failover) holds shopper funds: void it.
        _void_orphan_authorization(session, payment, attempt, result, deps, applied)
        session.flush()
        return applied
    current = claim_tries is None or attempt.tries == claim_tries
    if not current and result.outcome in (Outcome.UNKNOWN, Outcome.PENDING, Outcome.NOT_PROCESSED):
        return applied
    now = deps.now()
    if result.error == CREDENTIAL_MISSING:
        # The account that made the payment is gone: nothing was sent, nothing is sent elsewhere. The
        # attempt stays open, marked for a person at once, and is tried again (should it come back).
        attempt.lease_until = None
        attempt.next_attempt_at = now + timedelta(seconds=UNKNOWN_BACKOFF_CAP_SECONDS)
        attention.note_credential_missing(attempt, attempt.operation, result, now)
        session.flush()
        return applied
    attempt.lease_until = None
    attempt.latency_ms = _latency(result) or attempt.latency_ms
    attempt.psp_status = (result.status or attempt.psp_status)
    scope = Scope(payment.merchant_id, payment.livemode)
    handler = {AttemptOperation.AUTHORIZE: _apply_authorize, AttemptOperation.CAPTURE: _apply_capture,
               AttemptOperation.VOID: _apply_void}[AttemptOperation(attempt.operation)]
    before = (attempt.status, payment.status)
    if (attempt.operation == AttemptOperation.AUTHORIZE and result.outcome not in (Outcome.UNKNOWN, Outcome.PENDING)
            and risk.unwritten(payment, attempt)):
        # The screening wrote only its assessment: its outcome goes on the payment now, in the UPDATE this
        # answer gives it anyway, before anything reads it (the hold for review, the events, the decline).
        if risk_fields is None and deps.risk_screening:
            risk_fields = risk.fields_from_assessment(session, payment, attempt)
        if risk_fields is not None:
            risk.apply_fields(payment, risk_fields)
    handler(session, scope, payment, attempt, result, deps, applied, now, request_id, attempts)
    if attempt.status != AttemptStatus.UNKNOWN:
        attention.clear(attempt)  # a definite answer (even "3-D Secure pending") ends the doubt
    if attempt.status not in OPEN_FOR_CLAIM:
        if not (attempt.operation == AttemptOperation.AUTHORIZE and applied.follow_ups):
            # With an automatic capture to follow, the confirm wait goes on until the capture's outcome
            # (which wakes the authorization's waiter too): its answer is then the final status.
            applied.notify.append(attempt.id)
        if attempt.operation == AttemptOperation.CAPTURE and payment.latest_attempt_id:
            applied.notify.append(payment.latest_attempt_id)  # confirm waits on the authorization
    elif result.outcome in (Outcome.UNKNOWN, Outcome.PENDING) and attempt.operation == AttemptOperation.AUTHORIZE:
        applied.notify.append(attempt.id)  # stop the confirm wait early: it answers `processing`
    applied.changed = (attempt.status, payment.status) != before or applied.changed
    session.flush()
    return applied


def _move(applied: Applied, session: Session, payment: Payment, to_status: str, **kwargs) -> None:
    """state.transition, keeping the payment object its event shows for the waiters (``Applied.snapshot``).

    Every handler moves the payment last, after its changes to the payment and its attempts, so that
    object is the payment as the commit leaves it; a follow-up attempt created afterwards drops it.
    """
    event = state.transition(session, payment, to_status, **kwargs)
    if event is not None:
        applied.snapshot = event.data


def _apply_authorize(session, scope, payment, attempt, result, deps, applied, now, request_id, attempts) -> None:
    outcome = result.outcome
    attempt.connector = result.connector or attempt.connector
    # The account that answered: every later call about this authorization goes through it.
    attempt.credential = result.credential or attempt.credential
    if outcome == Outcome.SUCCEEDED:
        attempt.status = AttemptStatus.SUCCEEDED
        attempt.finished_at, attempt.next_attempt_at = now, None
        attempt.psp_reference = result.psp_reference or attempt.psp_reference
        attempt.action_url = None
        payment.connector, payment.psp_reference = attempt.connector, attempt.psp_reference
        payment.credential = attempt.credential
        _card_facts(payment, result.raw)
        if payment.status == PaymentStatus.CANCELED:
            # Authorized after the payment was canceled (3-D Secure approved late, or a poll reading the
            # void as authorized): release the hold; a canceled payment has nothing to capture.
            _ensure_void(session, payment, deps, applied)
            return
        if payment.status == PaymentStatus.REQUIRES_ACTION and payment.risk_outcome is not None:
            # 3-D Secure succeeded: the whole rule chain runs again with its result (app/payments/risk.py).
            if risk.after_challenge(session, payment, attempt, deps) == "block":
                payment.last_error = {"type": "card_error", "code": "blocked", "decline_code": None,
                                      "message": risk.BLOCKED_MESSAGE}
                payment.next_action_url = None
                _ensure_void(session, payment, deps, applied)
                _move(applied, session, payment, PaymentStatus.REQUIRES_PAYMENT_METHOD, request_id=request_id,
                      attempts=attempts)
                applied.notify.append(attempt.id)
                return
        payment.amount_capturable = payment.amount
        payment.authorized_at = now
        payment.next_action_url = None
        payment.last_error = None
        sold = result.status in CAPTURED_STATUSES  # a sale (AuthorizeRequest.capture): captured as well
        held = not sold and risk.held_for_review(payment)
        if not sold and (payment.capture_method == CaptureMethod.MANUAL or held):
            # Manual capture, or held for a risk review (even with automatic capture): requires_capture.
            if held:
                risk.open_review(session, payment, deps)
            _move(applied, session, payment, PaymentStatus.REQUIRES_CAPTURE, request_id=request_id, attempts=attempts)
            return
        if payment.status == PaymentStatus.REQUIRES_ACTION:
            _move(applied, session, payment, PaymentStatus.PROCESSING, request_id=request_id, attempts=attempts)
        if sold:
            # The capture is recorded as an attempt carried out by the same call, and booked at once.
            captured = min(result.amount or payment.amount, payment.amount)
            capture = _new_attempt(session, payment, AttemptOperation.CAPTURE, captured, deps, stage=False,
                                   done=(now, result.status))
            _book_capture(session, payment, captured, deps, now, request_id, [*attempts, capture], applied)
        else:
            _new_follow_up(session, payment, AttemptOperation.CAPTURE, payment.amount, deps, applied)
    elif outcome == Outcome.REQUIRES_ACTION:
        first_time = attempt.status != AttemptStatus.REQUIRES_ACTION
        attempt.status = AttemptStatus.REQUIRES_ACTION
        attempt.psp_reference = result.psp_reference or attempt.psp_reference
        attempt.action_url = result.action_url or attempt.action_url
        attempt.next_attempt_at = now + timedelta(seconds=REQUIRES_ACTION_POLL_SECONDS)
        if attempt.created_at is not None and attempt.created_at < now - REQUIRES_ACTION_POLL_FOR:
            attempt.next_attempt_at = None
        payment.connector, payment.psp_reference = attempt.connector, attempt.psp_reference
        payment.credential = attempt.credential
        _card_facts(payment, result.raw)
        if payment.status == PaymentStatus.CANCELED:
            _ensure_void(session, payment, deps, applied)
            return
        payment.next_action_url = attempt.action_url
        _move(applied, session, payment, PaymentStatus.REQUIRES_ACTION, request_id=request_id, attempts=attempts)
        if first_time:
            applied.notify.append(attempt.id)  # the confirm wait answers requires_action now
    elif outcome in (Outcome.DECLINED, Outcome.NOT_PROCESSED):
        declined = outcome == Outcome.DECLINED
        attempt.status = AttemptStatus.DECLINED if declined else AttemptStatus.FAILED
        attempt.finished_at, attempt.next_attempt_at = now, None
        attempt.psp_reference = result.psp_reference or attempt.psp_reference
        attempt.decline_code = result.decline_code
        attempt.error_message = (result.message or None) and result.message[:1000]
        _card_facts(payment, result.raw)
        if payment.status == PaymentStatus.CANCELED:
            return
        if declined:
            risk.note_declined(session, payment, attempt, deps)
        payment.last_error = _error(result, declined)
        payment.next_action_url = None
        payment.connector = payment.psp_reference = payment.credential = None
        _move(applied, session, payment, PaymentStatus.REQUIRES_PAYMENT_METHOD, request_id=request_id,
                         attempts=attempts)
    elif attempt.status == AttemptStatus.REQUIRES_ACTION:
        # A status poll of a pending challenge that could not be answered: still pending, ask later.
        attempt.next_attempt_at = now + timedelta(seconds=REQUIRES_ACTION_POLL_SECONDS)
    else:  # UNKNOWN, PENDING: ask again later (janitor), never guess
        _schedule_unknown(attempt, result, now, deps)


def _apply_capture(session, scope, payment, attempt, result, deps, applied, now, request_id, attempts) -> None:
    outcome = result.outcome
    if outcome == Outcome.SUCCEEDED:
        attempt.status = AttemptStatus.SUCCEEDED
        attempt.finished_at, attempt.next_attempt_at = now, None
        _book_capture(session, payment, attempt.amount, deps, now, request_id, attempts, applied)
    elif outcome == Outcome.NOT_PROCESSED and attempt.tries < CAPTURE_MAX_TRIES:
        # Nothing happened at the PSP: send the same capture again later with the same key.
        _schedule_unknown(attempt, result, now, deps)
    elif outcome in (Outcome.DECLINED, Outcome.NOT_PROCESSED):
        attempt.status = AttemptStatus.DECLINED if outcome == Outcome.DECLINED else AttemptStatus.FAILED
        attempt.finished_at, attempt.next_attempt_at = now, None
        attempt.decline_code = result.decline_code
        attempt.error_message = (result.message or None) and result.message[:1000]
        payment.last_error = _error(result, outcome == Outcome.DECLINED)
        if payment.status == PaymentStatus.PROCESSING:
            # Automatic capture failed for good after a good authorization: hold it for a manual capture
            # or cancel, and say so loudly, since the shopper was told the payment went through.
            log.error("automatic capture of payment %s failed for good (%s); it awaits a manual capture",
                      payment.id, result.decline_code or result.error or outcome.value)
            _move(applied, session, payment, PaymentStatus.REQUIRES_CAPTURE, request_id=request_id, attempts=attempts)
    else:
        _schedule_unknown(attempt, result, now, deps)


def _book_capture(session, payment: Payment, captured: int, deps: PaymentsDeps, now: datetime,
                  request_id: str | None, attempts: list[PaymentAttempt], applied: Applied) -> None:
    """A succeeded capture of ``captured``: the orders' shares, the payment's totals, its event, the posting."""
    with session.no_autoflush:  # the changes so far go with the transition's flush: one UPDATE per row
        orders = list(session.scalars(_LOCKED_ORDERS, {"payment_id": payment.id}))
    parts = booking.capture_parts(payment, orders, captured)
    payment.capture_count += 1
    payment.amount_received += captured
    payment.amount_capturable = 0  # one capture per authorization: a partial capture releases the rest
    payment.captured_at = now
    for part in parts:
        part.order.amount_captured += part.amount
        part.order.fee_captured += part.fee
    # The orders are locked and current (just read FOR UPDATE): the event need not read them again.
    _move(applied, session, payment, PaymentStatus.SUCCEEDED, request_id=request_id, orders=orders,
          attempts=attempts)
    # The posting comes last: it locks ledger accounts (the platform's revenue account is hot) and
    # holds them until our commit, which follows right after without any network call.
    booking.book_capture(session, payment, parts, captured, hmac_key=deps.ledger_hmac_key,
                         capture_number=payment.capture_count)


def _apply_void(session, scope, payment, attempt, result, deps, applied, now, request_id, attempts) -> None:
    outcome = result.outcome
    if outcome == Outcome.SUCCEEDED or (outcome == Outcome.DECLINED and result.status == "voided"):
        attempt.status = AttemptStatus.SUCCEEDED
        attempt.finished_at, attempt.next_attempt_at = now, None
        if attempt.psp_reference == payment.psp_reference:  # not the void of an orphan authorization
            payment.amount_capturable = 0
    elif outcome in (Outcome.DECLINED, Outcome.NOT_PROCESSED):
        attempt.status = AttemptStatus.FAILED
        attempt.finished_at, attempt.next_attempt_at = now, None
        attempt.decline_code = result.decline_code
        attempt.error_message = (result.message or None) and result.message[:1000]
        log.warning("void of payment %s failed: %s %s", payment.id, result.decline_code, result.message)
    else:
        _schedule_unknown(attempt, result, now, deps)


def _new_attempt(*args, **kwargs) -> PaymentAttempt:
    from app.payments.service import new_attempt  # the service imports this module

    return new_attempt(*args, **kwargs)


def _new_follow_up(session, payment: Payment, operation: str, amount: int, deps: PaymentsDeps,
                   applied: Applied, *, connector: str | None = None,
                   psp_reference: str | None = None, credential: str | None = None) -> PaymentAttempt:
    """An attempt the caller runs next (inline in a job, or enqueued after commit by a callback).

    ``connector``/``psp_reference``/``credential``: the authorization it acts on, when not the payment's own.
    """
    applied.snapshot = None  # the payment has one more attempt than its last event shows
    leased = bool(getattr(applied, "lease", False))
    attempt = _new_attempt(session, payment, operation, amount, deps, stage=False, leased=leased)
    if psp_reference is not None:
        attempt.connector, attempt.psp_reference, attempt.credential = connector, psp_reference, credential
    applied.follow_ups.append(attempt.id)
    if leased:
        applied.claims.append(AttemptClaim(
            id=attempt.id, payment_id=payment.id, operation=operation, status=attempt.status, tries=1,
            amount=amount, currency=attempt.currency, vault=attempt.vault, token=attempt.payment_method_token,
            connector=attempt.connector, psp_reference=attempt.psp_reference,
            idempotency_key=attempt.idempotency_key, return_url=payment.return_url,
            merchant_id=payment.merchant_id, livemode=payment.livemode, capture_method=payment.capture_method,
            credential=attempt.credential))
    return attempt


def _ensure_void(session, payment: Payment, deps: PaymentsDeps, applied: Applied, *,
                 connector: str | None = None, psp_reference: str | None = None,
                 credential: str | None = None) -> bool:
    """Void an authorization (the payment's own unless named) unless a void of it runs or succeeded.

    True when a void was added.
    """
    reference = psp_reference if psp_reference is not None else payment.psp_reference
    exists = session.scalar(select(func.count()).select_from(PaymentAttempt).where(
        PaymentAttempt.payment_id == payment.id, PaymentAttempt.operation == AttemptOperation.VOID,
        PaymentAttempt.psp_reference.is_not_distinct_from(reference),
        PaymentAttempt.status.in_((AttemptStatus.PROCESSING, AttemptStatus.UNKNOWN, AttemptStatus.SUCCEEDED))))
    if exists:
        return False
    _new_follow_up(session, payment, AttemptOperation.VOID, payment.amount, deps, applied,
                   connector=connector, psp_reference=psp_reference, credential=credential)
    return True


def _void_orphan_authorization(session, payment: Payment, attempt: PaymentAttempt, result: PspResult,
                               deps: PaymentsDeps, applied: Applied) -> None:
    """Void an authorization this attempt reported that is not the payment's own (once per reference).

    Either a second one (overlapping runners, a failover), or the attempt's own, completed by the PSP after
    the attempt was recorded failed or declined (a status query that read a two-step PSP's intent before
    its confirmation finished; an operator's "did not happen"): either way a hold no payment will capture.
    """
    if (attempt.operation != AttemptOperation.AUTHORIZE or result.outcome != Outcome.SUCCEEDED
            or not result.psp_reference or result.psp_reference == payment.psp_reference
            or result.status == "voided"):  # released already: nothing is held
        return
    if _ensure_void(session, payment, deps, applied, connector=result.connector,
                    psp_reference=result.psp_reference, credential=result.credential):
        log.error("attempt %s of payment %s was also authorized as %s at %s; voiding that authorization",
                  attempt.id, payment.id, result.psp_reference, result.connector)


def apply_refund_result(session: Session, refund_id: str, result: PspResult, deps: PaymentsDeps, *,
                        request_id: str | None = None) -> Applied:
    """Book a succeeded refund, record a failed one, or schedule another try; un-book a succeeded refund
    the PSP now reports failed or canceled. Once: a repeated answer changes nothing."""
    payment_id = session.scalar(select(Refund.payment_id).where(Refund.id == refund_id))
    payment = _locked(session, Payment, payment_id)
    refund = _locked(session, Refund, refund_id)
    applied = Applied()
    if (refund.status == RefundStatus.SUCCEEDED and result.outcome == Outcome.DECLINED
            and result.status in REFUND_UNDONE_STATUSES):
        _reverse_refund(session, payment, refund, result, deps, applied, request_id)
        return applied
    if refund.status != RefundStatus.PENDING:
        return applied
    now = deps.now()
    scope = Scope(payment.merchant_id, payment.livemode)
    if result.error == CREDENTIAL_MISSING:
        # As for attempts: refused, nothing sent elsewhere; open, marked for a person now.
        refund.lease_until = None
        refund.next_attempt_at = now + timedelta(seconds=UNKNOWN_BACKOFF_CAP_SECONDS)
        attention.note_credential_missing(refund, "refund", result, now)
        session.flush()
        return applied
    refund.lease_until = None
    refund.credential = refund.credential or result.credential
    refund.latency_ms = _latency(result) or refund.latency_ms
    refund.psp_reference = result.psp_reference or refund.psp_reference
    refund.connector = result.connector or refund.connector
    outcome = result.outcome
    if outcome == Outcome.SUCCEEDED:
        orders = list(session.scalars(_LOCKED_ORDERS, {"payment_id": payment.id}))
        parts = booking.refund_parts(orders, refund)
        for part in parts:
            part.order.amount_refunded += part.amount
            part.order.fee_refunded += part.fee
        fees = {part.order.id: part.fee for part in parts}
        refund.allocations = [{**a, "fee": fees.get(a["order"], 0)} for a in refund.allocations]
        payment.amount_refunded += refund.amount
        refund.status = RefundStatus.SUCCEEDED
        event = "refund.succeeded"
    elif outcome == Outcome.DECLINED or (outcome == Outcome.NOT_PROCESSED and refund.tries >= REFUND_MAX_TRIES):
        refund.status = RefundStatus.FAILED
        refund.failure_code = result.decline_code or "processing_error"
        refund.failure_message = (result.message or "The refund failed at the payment processor.")[:1000]
        event = "refund.failed"
    else:  # UNKNOWN / PENDING / NOT_PROCESSED with tries left: again later, with the same key
        refund.next_attempt_at = now + unknown_backoff(refund.tries)
        attention.note_undecided(refund, "refund", result, refund.created_at, now, deps)
        session.flush()
        return applied
    attention.clear(refund)
    refund.finished_at = now
    refund.next_attempt_at = None
    refund.updated_at = now
    session.flush()
    record_event(session, scope, event, "refund", refund.id, refund_object(refund), request_id=request_id)
    if refund.status == RefundStatus.SUCCEEDED:
        # Last in the transaction (ledger account locks are held until the commit that follows).
        booking.book_refund(session, payment, refund, parts, hmac_key=deps.ledger_hmac_key)
    applied.changed = True
    applied.notify.append(refund.id)
    return applied


def _reverse_refund(session: Session, payment: Payment, refund: Refund, result: PspResult, deps: PaymentsDeps,
                    applied: Applied, request_id: str | None) -> None:
    """A booked refund the PSP reports failed after all: failed, its amount refundable again, un-booked.

    The payment keeps its status (a refund is no move of the state machine); its and its orders'
    refunded totals drop by what the refund added, so the amount can be refunded again.
    """
    now = deps.now()
    orders = list(session.scalars(_LOCKED_ORDERS, {"payment_id": payment.id}))
    parts = booking.booked_refund_parts(orders, refund)
    for part in parts:
        part.order.amount_refunded -= part.amount
        part.order.fee_refunded -= part.fee
    payment.amount_refunded -= refund.amount
    refund.status = RefundStatus.FAILED
    refund.failure_code = result.decline_code or result.status
    refund.failure_message = (result.message or "The payment processor reports the refund failed.")[:1000]
    refund.updated_at = now
    session.flush()
    log.warning("refund %s of payment %s was reported %s after it succeeded (%s); un-booked",
                refund.id, payment.id, result.status, refund.failure_code)
    record_event(session, Scope(payment.merchant_id, payment.livemode), "refund.failed", "refund", refund.id,
                 refund_object(refund), request_id=request_id)
    # Last in the transaction (ledger account locks are held until the commit that follows).
    booking.book_refund_reversal(session, payment, refund, parts, hmac_key=deps.ledger_hmac_key)
    applied.changed = True


# -- due work (the PSP dispatcher, app/jobs/dispatcher.py) -------------------------------------------------

@dataclass(frozen=True)
class DueItem:
    """An open attempt or pending refund that is due and not leased: what the dispatcher needs to pick
    it fairly and to know which connector its run calls first (its bulkhead), before claiming it."""

    kind: str                  # "attempt" | "refund"
    id: str
    merchant_id: str
    livemode: bool
    operation: str             # the attempt's operation, or "refund"
    status: str
    tries: int                 # before its next claim
    vault: str | None
    connector: str | None
    psp_reference: str | None
    currency: str
    credential: str | None = None   # recorded: its run calls with this credential (its bulkhead's)


def _due_rows(now: datetime):
    """Attempts and refunds owed to a PSP now: open, due, not leased (a new row is due at once; a claimed
    one when its lease runs out; an ambiguous one when its backoff ends). One select over both tables."""
    attempts = (
        select(literal("attempt").label("kind"), _ATTEMPTS.c.id, _ATTEMPTS.c.merchant_id, _ATTEMPTS.c.livemode,
               _ATTEMPTS.c.operation, _ATTEMPTS.c.status, _ATTEMPTS.c.tries, _ATTEMPTS.c.vault,
               _ATTEMPTS.c.connector, _ATTEMPTS.c.psp_reference, _ATTEMPTS.c.currency, _ATTEMPTS.c.next_attempt_at,
               _ATTEMPTS.c.credential)
        .where(_ATTEMPTS.c.status.in_(OPEN_FOR_CLAIM), _ATTEMPTS.c.next_attempt_at <= now,
               or_(_ATTEMPTS.c.lease_until.is_(None), _ATTEMPTS.c.lease_until < now)))
    refunds = (
        select(literal("refund"), _REFUNDS.c.id, _REFUNDS.c.merchant_id, _REFUNDS.c.livemode, literal("refund"),
               _REFUNDS.c.status, _REFUNDS.c.tries, literal(None, String), _REFUNDS.c.connector,
               _REFUNDS.c.psp_reference, _REFUNDS.c.currency, _REFUNDS.c.next_attempt_at, _REFUNDS.c.credential)
        .where(_REFUNDS.c.status == RefundStatus.PENDING, _REFUNDS.c.next_attempt_at <= now,
               or_(_REFUNDS.c.lease_until.is_(None), _REFUNDS.c.lease_until < now)))
    return union_all(attempts, refunds).subquery("due")


def pick_due(session: Session, now: datetime, *, limit: int) -> list[DueItem]:
    """Up to ``limit`` due items, fairly across merchants: every merchant's oldest due item first (by due
    time), then every merchant's second, and so on; so one merchant's burst of thousands waits behind the
    single payment of another, never in front of it. Nothing is locked: the caller claims each item with
    its conditional UPDATE (claim_attempt, claim_refund), which two dispatchers never both win."""
    due = _due_rows(now)
    turn = func.row_number().over(partition_by=due.c.merchant_id, order_by=(due.c.next_attempt_at, due.c.id))
    ranked = select(due, turn.label("turn")).subquery("ranked")
    rows = session.execute(select(ranked).order_by(ranked.c.turn, ranked.c.next_attempt_at, ranked.c.id)
                           .limit(limit)).all()
    return [DueItem(kind=row.kind, id=row.id, merchant_id=row.merchant_id, livemode=row.livemode,
                    operation=row.operation, status=row.status, tries=row.tries, vault=row.vault,
                    connector=row.connector, psp_reference=row.psp_reference, currency=row.currency,
                    credential=row.credential)
            for row in rows]


def due_backlog(session: Session, now: datetime) -> tuple[int, datetime | None]:
    """How many items are due and unclaimed, and the due time of the oldest (saturation metrics)."""
    due = _due_rows(now)
    count, oldest = session.execute(select(func.count(), func.min(due.c.next_attempt_at)).select_from(due)).one()
    return count, oldest


def expire_authorizations(session: Session, deps: PaymentsDeps, *, batch: int = SWEEP_BATCH) -> list[str]:
    """Cancel payments authorized longer ago than the configured expiry; their void jobs are staged."""
    from app.payments.service import cancel_payment

    cutoff = deps.now() - deps.authorization_expiry
    payments = session.scalars(
        select(Payment).where(Payment.status == PaymentStatus.REQUIRES_CAPTURE, Payment.authorized_at < cutoff)
        .order_by(Payment.authorized_at).limit(batch).with_for_update(skip_locked=True)).all()
    expired = []
    for payment in payments:
        if state.has_open_attempt(session, payment.id):
            continue  # a capture is running; its outcome decides
        try:
            with session.begin_nested():
                cancel_payment(session, Scope(payment.merchant_id, payment.livemode), payment.id, deps,
                               reason="expired", payment=payment, by_merchant=False)
            expired.append(payment.id)
        except InvalidTransition:
            log.warning("could not expire payment %s", payment.id, exc_info=True)
    return expired
