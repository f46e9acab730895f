"""The shopper's side of a checkout session, on top of the payments service (no Flask).

A session owns one Payment, created with app.payments.service.create_payment when the shopper first
pays and confirmed through the idempotent ``payment.confirm`` operation exactly like the API does, with
the key ``checkout:<session id>:<attempt number>``. The attempt number rises only once the payment is
back to ``requires_payment_method`` after a definite outcome (a decline, or a not-processed error), so
a double click, a reload or a resubmission with the same attempt number replays the first
confirmation instead of paying twice.

In Stripe mode the browser knows no card fingerprint (Stripe.js gives it none), so ``confirm`` asks the
PSP for the card behind the PaymentMethod before checking the limits (``psp_card``): a card that has
reached its decline limit is refused before it is sent to Stripe again, from any session or address.

``refresh`` brings a session up to date with its payment whenever the page, the status poll, the API or
the sweep looks at it: completes it once the payment is authorized, bumps the attempt number after a
decline (counting the decline against the card-testing limits) and expires it when it is past due.

Lock order: checkout session row, then the payment row (taken inside the payments service).
"""
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable

from sqlalchemy import event, func, select, update
from sqlalchemy.orm import Session, scoped_session

from app.checkout.limits import CardTestingGuard, Subject
from app.checkout.models import CheckoutSession, SessionStatus
from app.checkout.page import decline_message
from app.checkout.service import (
    CheckoutError,
    SessionStateError,
    mark_complete,
    mark_expired,
    scope_of,
)
from app.merchants.lifecycle import MerchantSuspended
from app.models_base import utcnow
from app.payments import idempotency
from app.payments.deps import PaymentsDeps
from app.payments.errors import IdempotencyInFlight, IdempotencyMismatch, PaymentError
from app.payments.models import AttemptOperation, AttemptStatus, Payment, PaymentAttempt, PaymentStatus
from app.payments.service import cancel_payment, create_payment
from app.psp.interfaces import CardToken
from app.psp.router import Router
from app.psp.wire import AMOUNT_NOT_REPRESENTABLE, CURRENCY_NOT_SUPPORTED

log = logging.getLogger(__name__)

__all__ = ["CheckoutError", "PageState", "SessionStateError", "confirm", "expire", "refresh", "sweep"]

# Page states.
FORM = "form"
PROCESSING = "processing"
REQUIRES_ACTION = "requires_action"
COMPLETE = "complete"
EXPIRED = "expired"

AUTHORIZED = (PaymentStatus.SUCCEEDED, PaymentStatus.REQUIRES_CAPTURE)
# Outcomes after which the shopper may try again with a new attempt number: the PSP said no, or
# surely did nothing. An ``unknown`` attempt is never one of them: it is resolved, not retried.
DEFINITE_FAILURES = (AttemptStatus.DECLINED, AttemptStatus.FAILED)
# The sweep's batch: small transactions, few row locks held at once.
SWEEP_BATCH = 100
# Open sessions whose payment finished while nobody watched the page are completed by the sweep; it
# looks back this far (older ones were completed by earlier sweeps).
SWEEP_COMPLETE_LOOKBACK = timedelta(days=2)


@dataclass(frozen=True)
class PageState:
    """What the page should show for a session right now."""

    state: str
    message: str | None = None
    action_url: str | None = None
    card_brand: str | None = None
    card_last4: str | None = None


@dataclass(frozen=True)
class ConfirmResult:
    """Where the shopper's browser goes after a confirmation, or why it was refused."""

    action_url: str | None = None
    error: str | None = None
    param: str | None = None
    status: int | None = None
    refused: bool = False


def payment_of(session: Session, cs: CheckoutSession) -> Payment | None:
    if cs.payment_id is None:
        return None
    return session.get(Payment, cs.payment_id, populate_existing=True)


def _failed_attempts(session: Session, payment_id: str) -> int:
    return session.scalar(select(func.count()).select_from(PaymentAttempt).where(
        PaymentAttempt.payment_id == payment_id, PaymentAttempt.operation == AttemptOperation.AUTHORIZE,
        PaymentAttempt.status.in_(DEFINITE_FAILURES)))


def _declines_between(session: Session, payment_id: str, skip: int) -> int:
    """Declines (not not-processed errors) among the payment's definite failures after the first ``skip``."""
    statuses = session.scalars(select(PaymentAttempt.status).where(
        PaymentAttempt.payment_id == payment_id, PaymentAttempt.operation == AttemptOperation.AUTHORIZE,
        PaymentAttempt.status.in_(DEFINITE_FAILURES)).order_by(PaymentAttempt.id).offset(skip)).all()
    return sum(1 for status in statuses if status == AttemptStatus.DECLINED)


def _latest_attempt(session: Session, payment: Payment) -> PaymentAttempt | None:
    if payment.latest_attempt_id is None:
        return None
    return session.get(PaymentAttempt, payment.latest_attempt_id, populate_existing=True)


def _failure_message(session: Session, payment: Payment) -> str | None:
    """The last decline in plain words, plus what to do about it."""
    attempt = _latest_attempt(session, payment)
    if attempt is None or attempt.status not in DEFINITE_FAILURES:
        return None
    if attempt.status == AttemptStatus.FAILED:
        return "We could not reach the card processor, so no money was taken. Please try again."
    code = attempt.decline_code or (payment.last_error or {}).get("decline_code")
    return f"{decline_message(code)} Please try another card."


def _card(payment: Payment | None) -> dict:
    if payment is None:
        return {}
    return {"card_brand": payment.card_brand, "card_last4": payment.card_last4}


def refresh(session: Session, cs: CheckoutSession, guard: CardTestingGuard | None, *, deps: PaymentsDeps,
            now: float | None = None, returned: bool = False, request_id: str | None = None) -> PageState:
    """Bring ``cs`` up to date with its payment and say what the page shows. Commits nothing.

    ``returned``: the shopper just came back from 3-D Secure, so a payment still waiting for the
    challenge's result is shown as processing (the PSP's callback is on its way) rather than as a
    challenge to open again.
    """
    moment = datetime.fromtimestamp(now, tz=utcnow().tzinfo) if now is not None else utcnow()
    if cs.status == SessionStatus.COMPLETE:
        return PageState(COMPLETE, **_card(payment_of(session, cs)))
    if cs.status == SessionStatus.EXPIRED:
        return PageState(EXPIRED)

    payment = payment_of(session, cs)
    status = payment.status if payment else None
    if status in AUTHORIZED or status == PaymentStatus.CANCELED or (status != PaymentStatus.PROCESSING
                                                                     and moment >= cs.expires_at):
        cs = _lock(session, cs)
        if cs.status == SessionStatus.OPEN:
            payment = payment_of(session, cs)
            if payment is not None and payment.status in AUTHORIZED:
                mark_complete(session, cs, moment, request_id=request_id)
            elif payment is None or payment.status != PaymentStatus.PROCESSING:
                _expire_locked(session, cs, payment, deps, moment, request_id)
        return refresh(session, cs, guard, deps=deps, now=now, returned=returned, request_id=request_id)

    if status == PaymentStatus.PROCESSING:
        return PageState(PROCESSING)
    if status == PaymentStatus.REQUIRES_ACTION:
        if returned:
            return PageState(PROCESSING)
        return PageState(REQUIRES_ACTION, action_url=payment.next_action_url)
    if payment is not None and status == PaymentStatus.REQUIRES_PAYMENT_METHOD:
        failures = _failed_attempts(session, payment.id)
        # Only the shopper's side (which has a guard) moves the attempt on, so that each decline is
        # counted against the card-testing limits exactly when the attempt number rises.
        if guard is not None and failures >= cs.attempt_number:
            _bump_attempt(session, cs, payment, failures, guard, now)
        return PageState(FORM, message=_failure_message(session, payment))
    return PageState(FORM)


def _lock(session: Session, cs: CheckoutSession) -> CheckoutSession:
    """Re-read the session FOR UPDATE (its state may have moved since it was read without a lock)."""
    session.refresh(cs, with_for_update=True)
    return cs


def _bump_attempt(session: Session, cs: CheckoutSession, payment: Payment, failures: int,
                  guard: CardTestingGuard, now: float | None) -> None:
    """Move to attempt ``failures + 1`` and count the new declines against whoever made them."""
    cs = _lock(session, cs)
    previous = cs.attempt_number
    if failures < previous:
        return  # someone else bumped it meanwhile
    cs.attempt_number = failures + 1
    session.flush()
    declines = _declines_between(session, payment.id, previous - 1)
    fingerprint = payment.card_fingerprint  # what the PSP reported for the declined card
    stamp = now if now is not None else utcnow().timestamp()

    def count(_session) -> None:
        claimed = guard.attempt_subject(cs.id, previous)
        guard.count_declines(Subject(cs.id, claimed.ip, fingerprint or claimed.fingerprint), stamp, declines)
        if fingerprint and claimed.fingerprint and claimed.fingerprint != fingerprint:
            log.warning("checkout: the browser's card fingerprint differs from the PSP's",
                        extra={"checkout_session": cs.id})
            guard.flag_liar(claimed, stamp)

    # Counted once the new attempt number is committed (nothing goes to Redis inside the transaction):
    # if it rolls back, the next look at the session bumps and counts again. Listen on this thread's
    # Session itself: a listener on a scoped_session would fire on any thread's commit.
    target = session() if isinstance(session, scoped_session) else session
    event.listen(target, "after_commit", count, once=True)
    event.listen(target, "after_rollback",
                 lambda _s: event.contains(target, "after_commit", count)
                 and event.remove(target, "after_commit", count), once=True)


def _expire_locked(session: Session, cs: CheckoutSession, payment: Payment | None, deps: PaymentsDeps,
                   moment: datetime, request_id: str | None) -> None:
    """Expire a locked open session, canceling its unfinished payment (which voids a pending 3-D Secure)."""
    if payment is not None and payment.status not in (PaymentStatus.CANCELED, *AUTHORIZED):
        cancel_payment(session, scope_of(cs), payment.id, deps, reason="abandoned", request_id=request_id)
    mark_expired(session, cs, moment, request_id=request_id)


def expire(session: Session, cs: CheckoutSession, *, deps: PaymentsDeps, request_id: str | None = None,
           now: datetime | None = None) -> CheckoutSession:
    """The merchant closes an open session now. SessionStateError if it is complete or its payment is
    in flight (it may yet succeed: expire it once it has an outcome)."""
    moment = now or utcnow()
    cs = _lock(session, cs)
    if cs.status == SessionStatus.EXPIRED:
        return cs
    if cs.status == SessionStatus.COMPLETE:
        raise SessionStateError("This checkout session is complete; only open sessions can be expired.",
                                None, "checkout_session_complete")
    payment = payment_of(session, cs)
    if payment is not None and payment.status in AUTHORIZED:
        mark_complete(session, cs, moment, request_id=request_id)
        raise SessionStateError("This checkout session has just been paid; it is complete now.", None,
                                "checkout_session_complete")
    if payment is not None and payment.status == PaymentStatus.PROCESSING:
        raise SessionStateError("The shopper's payment is being processed; expire the session once it has an "
                                "outcome.", None, "checkout_session_payment_processing")
    _expire_locked(session, cs, payment, deps, moment, request_id)
    return cs


def validate_split(session: Session, scope, cs: CheckoutSession) -> None:
    """Check the split against the payments service's rules now, so that the merchant hears of a bad
    seller when creating the session, not the shopper when paying. Raises CheckoutError."""
    if cs.split is None:
        return
    from app.payments.service import _split

    try:
        with session.begin_nested():
            _split(session, scope, cs.amount_total, cs.split)
    except PaymentError as error:
        raise CheckoutError(error.message, error.param, error.code) from None


def validate_amount(cs: CheckoutSession, deps: PaymentsDeps) -> None:
    """Check that the PSP of the session's mode can take its total exactly (Stripe takes no BHD amount
    whose last digit is not 0, ...), so that the merchant hears of it when creating the session, not the
    shopper when paying. Raises CheckoutError naming ``amount`` (or ``line_items``, when they make the total)."""
    from app.payments.service import check_wire_amount

    try:
        check_wire_amount(deps, deps.vault_for(cs.livemode), cs.amount_total, cs.currency,
                          param="line_items" if cs.line_items else "amount")
    except PaymentError as error:
        raise CheckoutError(error.message, error.param, error.code) from None


def _ensure_payment(session: Session, cs: CheckoutSession, deps: PaymentsDeps,
                    request_id: str | None) -> str:
    """The session's payment, created (once, under the session's row lock) on the first confirmation."""
    if cs.payment_id is not None:
        return cs.payment_id
    cs = _lock(session, cs)
    if cs.payment_id is None:
        metadata = dict(cs.metadata_ or {})
        metadata["checkout_session"] = cs.id
        if cs.client_reference_id and len(metadata) < 50:
            metadata.setdefault("client_reference_id", cs.client_reference_id[:500])
        payment = create_payment(session, scope_of(cs), {
            "amount": cs.amount_total, "currency": cs.currency, "split": cs.split,
            "customer_email": cs.customer_email, "description": cs.description,
            "metadata": dict(list(metadata.items())[:50]),
        }, deps, request_id=request_id)
        cs.payment_id = payment.id
        session.flush()
    payment_id = cs.payment_id
    session.commit()
    return payment_id


def psp_card(router: Router, cs: CheckoutSession, vault: str, token: str) -> CardToken | None:
    """The card behind ``token`` as the PSP that will charge it knows it (Stripe: the PaymentMethod, read
    with the merchant's secret key), or None when its connector cannot tell or could not be asked.

    The connector is the first of the session's route, built with the merchant's credentials by the
    router's own provider, as the authorization's will be.
    """
    try:
        names = router.route(vault, merchant_id=cs.merchant_id, currency=cs.currency, livemode=cs.livemode)
        if not names:
            return None
        connector = router.connector(names[0], merchant_id=cs.merchant_id, livemode=cs.livemode)
        card_of = getattr(connector, "card_of", None)
        return card_of(token) if card_of is not None else None
    except Exception:  # noqa: BLE001 - a lookup that cannot be made is one that failed: the caller goes on
        log.warning("checkout: could not ask the PSP for the card", exc_info=True,
                    extra={"checkout_session": cs.id})
        return None


def confirm(session: Session, cs: CheckoutSession, guard: CardTestingGuard, *, deps: PaymentsDeps,
            token: str, fingerprint: str | None, ip: str | None, return_url: str,
            request_id: str | None = None, now: float | None = None,
            lookup_card: Callable[[str], CardToken | None] | None = None) -> ConfirmResult:
    """Pay the session with a vault token: check the limits, then confirm through the payments service.

    ``fingerprint`` is the card's as the browser relays it from the vault. With ``lookup_card`` (Stripe
    mode) it is ignored: the card is asked of the PSP instead, and when that fails the confirmation goes
    on without a fingerprint (limited per session and address; the decline, if any, still counts against
    the card's fingerprint afterwards, from the PSP's answer).

    Owns its transactions (the idempotent confirmation commits phase by phase).
    """
    view = refresh(session, cs, guard, deps=deps, now=now, request_id=request_id)
    session.commit()
    if view.state == REQUIRES_ACTION:
        return ConfirmResult(action_url=view.action_url)
    if view.state != FORM:
        # Already paying, paid or expired: a second submission only shows the page as it is.
        return ConfirmResult()
    if lookup_card is not None:
        # Asked after the commit above: no transaction (nor row lock) is open across the PSP call.
        # Not finding out does not refuse the shopper: a lookup fails when the PSP is slow or down (its
        # connector's timeouts bound the wait), not because of anything a card tester controls, and a
        # PaymentMethod the PSP cannot read is not charged either.
        card = lookup_card(token)
        fingerprint = card.fingerprint if card is not None else None
        if fingerprint is None:
            log.warning("checkout: card unknown to the PSP's lookup; limiting this confirmation per session "
                        "and address only", extra={"checkout_session": cs.id})
    stamp = now if now is not None else utcnow().timestamp()
    subject = Subject(cs.id, ip, fingerprint)
    if guard.refused(subject, stamp):
        log.info("checkout confirmation refused by card-testing limits", extra={"checkout_session": cs.id})
        return ConfirmResult(refused=True, status=429)

    try:
        payment_id = _ensure_payment(session, cs, deps, request_id)
    except PaymentError as error:
        # The order no longer passes the payments service's rules (e.g. a seller of the split is gone):
        # nothing the shopper can fix; the merchant sees it in the logs.
        session.rollback()
        log.warning("checkout session %s cannot create its payment: %s", cs.id, error.message)
        return ConfirmResult(error="This order cannot be paid at the moment. Please contact the shop.", status=409)
    attempt_number = cs.attempt_number
    guard.count_confirmation(subject, stamp)
    guard.remember_attempt(cs.id, attempt_number, subject)
    try:
        response = idempotency.execute(
            session, scope_of(cs), "payment.confirm",
            # The shopper's address for the risk rules: this request's (ProxyFix with TRUSTED_PROXIES), never a
            # raw X-Forwarded-For.
            {"payment": payment_id, "payment_method": token, "return_url": return_url, "customer_ip": ip},
            key=f"checkout:{cs.id}:{attempt_number}", deps=deps, method="POST",
            path=f"/c/{cs.id}/confirm", request_id=request_id,
        )
    except (IdempotencyInFlight, IdempotencyMismatch):
        # Another submission of this attempt (a double click, a second tab) is on its way or done:
        # the page shows its progress and result.
        session.rollback()
        return ConfirmResult()
    except PaymentError as error:
        session.rollback()
        log.info("checkout confirmation refused: %s", error.code, extra={"checkout_session": cs.id})
        if error.code == "payment_unexpected_state":
            return ConfirmResult()
        if error.code in (AMOUNT_NOT_REPRESENTABLE, CURRENCY_NOT_SUPPORTED, MerchantSuspended.code):
            # The order, not the card: the PSP cannot take this amount (validate_amount refused it when the
            # session was made, so the merchant's PSP settings changed since), or the shop is suspended.
            return ConfirmResult(error="This order cannot be paid at the moment. Please contact the shop.",
                                 status=409)
        return ConfirmResult(error="This card could not be used. Please check it or try another card.",
                             param="card", status=400)
    body: dict[str, Any] = response.body or {}
    next_action = body.get("next_action") or {}
    if body.get("status") == PaymentStatus.REQUIRES_ACTION and next_action.get("redirect_to_url"):
        return ConfirmResult(action_url=next_action["redirect_to_url"].get("url"))
    return ConfirmResult()


def sweep(session: Session, *, deps: PaymentsDeps, now: datetime | None = None,
          batch: int = SWEEP_BATCH) -> dict[str, int]:
    """The periodic sweep: complete open sessions whose payment is authorized, expire those past due.

    Each session is handled in its own short transaction, claimed with FOR UPDATE SKIP LOCKED, so that
    a shopper's request holding a session is never waited for (the next sweep gets it).
    """
    moment = now or utcnow()
    counts = {"completed": 0, "expired": 0}
    paid = select(CheckoutSession.id).join(Payment, Payment.id == CheckoutSession.payment_id).where(
        CheckoutSession.status == SessionStatus.OPEN, Payment.status.in_(AUTHORIZED),
        CheckoutSession.created_at >= moment - SWEEP_COMPLETE_LOOKBACK).limit(batch)
    due = select(CheckoutSession.id).where(
        CheckoutSession.status == SessionStatus.OPEN, CheckoutSession.expires_at <= moment,
    ).order_by(CheckoutSession.expires_at).limit(batch)
    ids = list(dict.fromkeys([*session.scalars(paid), *session.scalars(due)]))
    session.commit()
    for session_id in ids:
        try:
            cs = session.scalars(select(CheckoutSession).where(CheckoutSession.id == session_id)
                                 .with_for_update(skip_locked=True)).one_or_none()
            if cs is None or cs.status != SessionStatus.OPEN:
                session.rollback()
                continue
            payment = payment_of(session, cs)
            if payment is not None and payment.status in AUTHORIZED:
                mark_complete(session, cs, moment)
                counts["completed"] += 1
            elif cs.expires_at <= moment and (payment is None or payment.status != PaymentStatus.PROCESSING):
                _expire_locked(session, cs, payment, deps, moment, None)
                counts["expired"] += 1
            session.commit()
        except Exception:  # noqa: BLE001 - one broken session must not stop the sweep; the next run retries
            session.rollback()
            log.exception("checkout sweep could not handle %s", session_id)
    return counts


def after_challenge(session: Session, cs: CheckoutSession, *, deps: PaymentsDeps) -> None:
    """The shopper is back from 3-D Secure: ask the PSP for the challenge's result now.

    The PSP's callback brings the result too, and the janitor would poll eventually; a status query
    run by the payments worker (the same job that runs every attempt) makes the page not wait for
    either. Throttled per attempt, so that reloading the return URL cannot hammer the PSP.
    """
    payment = payment_of(session, cs)
    if payment is None or payment.status != PaymentStatus.REQUIRES_ACTION or not payment.latest_attempt_id:
        return
    if deps.redis is not None:
        try:
            # 5 s: longer than a status query takes, short enough that a real retry is not blocked for long.
            if not deps.redis.set(f"kassa:checkout:challenge-query:{payment.latest_attempt_id}", "1",
                                  nx=True, ex=5):
                return
        except Exception:  # noqa: BLE001 - without the throttle the query still runs; the callback is the backstop
            log.warning("could not throttle the 3-D Secure status query", exc_info=True)
    if deps.enqueue is not None:
        # Due now (its next poll was a minute away): the PSP dispatcher claims due rows.
        session.execute(update(PaymentAttempt).where(
            PaymentAttempt.id == payment.latest_attempt_id, PaymentAttempt.status == AttemptStatus.REQUIRES_ACTION)
            .values(next_attempt_at=deps.now()))
        deps.enqueue(session, "app.jobs.payments.run_attempt", payment.latest_attempt_id)
