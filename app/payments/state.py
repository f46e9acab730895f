"""The payment state machine: one table of allowed moves, each writing its Event in the same transaction.

Outcomes arrive at least once (the job, the janitor, a late PSP callback). Moving a payment to the
status it already has changes nothing and writes no event; a move the table does not list is an
InvalidTransition error, never a silent no-op (ARCHITECTURE.md, "Payment state machine").
"""
from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from app.events import Event, record_event
from app.models_base import utcnow
from app.payments.errors import InvalidTransition
from app.payments.models import OPEN_ATTEMPT_STATUSES, Payment, PaymentAttempt
from app.payments.models import PaymentStatus as S
from app.scoping import Scope

# (from, to) -> the event type written when the move happens.
TRANSITIONS: dict[tuple[S, S], str] = {
    # A payment method is attached without confirming.
    (S.REQUIRES_PAYMENT_METHOD, S.REQUIRES_CONFIRMATION): "payment.updated",
    # Confirmation creates an authorization attempt.
    (S.REQUIRES_PAYMENT_METHOD, S.PROCESSING): "payment.processing",
    (S.REQUIRES_CONFIRMATION, S.PROCESSING): "payment.processing",
    # The authorization's outcome.
    (S.PROCESSING, S.REQUIRES_ACTION): "payment.requires_action",
    (S.PROCESSING, S.REQUIRES_CAPTURE): "payment.requires_capture",   # manual capture, or auto capture failed
    (S.PROCESSING, S.SUCCEEDED): "payment.succeeded",                 # automatic capture booked
    (S.PROCESSING, S.REQUIRES_PAYMENT_METHOD): "payment.failed",      # declined: confirm again with another card
    # 3-D Secure answered.
    (S.REQUIRES_ACTION, S.PROCESSING): "payment.processing",          # approved, automatic capture runs
    (S.REQUIRES_ACTION, S.REQUIRES_CAPTURE): "payment.requires_capture",
    (S.REQUIRES_ACTION, S.REQUIRES_PAYMENT_METHOD): "payment.failed",
    # Manual capture.
    (S.REQUIRES_CAPTURE, S.SUCCEEDED): "payment.succeeded",
    # Cancellation (voids an authorization if there is one); never while an attempt is processing.
    (S.REQUIRES_PAYMENT_METHOD, S.CANCELED): "payment.canceled",
    (S.REQUIRES_CONFIRMATION, S.CANCELED): "payment.canceled",
    (S.REQUIRES_ACTION, S.CANCELED): "payment.canceled",
    (S.REQUIRES_CAPTURE, S.CANCELED): "payment.canceled",
}

TERMINAL = frozenset({S.SUCCEEDED, S.CANCELED})


def allowed(from_status: str, to_status: str) -> bool:
    """True when the table lists the move."""
    return (S(from_status), S(to_status)) in TRANSITIONS


def has_open_attempt(session: Session, payment_id: str) -> bool:
    """True while an attempt of the payment is processing or unknown (its outcome is still owed)."""
    return session.scalar(select(exists().where(
        PaymentAttempt.payment_id == payment_id, PaymentAttempt.status.in_(OPEN_ATTEMPT_STATUSES),
    )))


def transition(session: Session, payment: Payment, to_status: str, event_type: str | None = None, *,
               request_id: str | None = None, orders: list | None = None,
               attempts: list | None = None) -> Event | None:
    """Move ``payment`` to ``to_status`` and record its event; None (and no event) if it is already there.

    The caller holds the payment row lock (SELECT ... FOR UPDATE), so the check and the move are one
    step. InvalidTransition when the table forbids the move, or when canceling while an attempt is open.
    ``orders``/``attempts``: all of the payment's orders (by position) / attempts (oldest first), when
    the caller has them current in this transaction (spares reading them for the event).
    """
    from app.payments.serializers import payment_object

    current, target = S(payment.status), S(to_status)
    if current == target:
        return None
    table_event = TRANSITIONS.get((current, target))
    if table_event is None:
        raise InvalidTransition(
            f"This payment's status is {current}; it cannot become {target}.", param=None)
    if target == S.CANCELED and has_open_attempt(session, payment.id):
        raise InvalidTransition(
            "This payment cannot be canceled while an attempt is processing; retry once it has an outcome.")
    payment.status = target
    payment.updated_at = utcnow()
    if target == S.CANCELED:
        payment.canceled_at = payment.updated_at
    session.flush()
    scope = Scope(payment.merchant_id, payment.livemode)
    return record_event(session, scope, event_type or table_event, "payment", payment.id,
                        payment_object(session, payment, orders=orders, attempts=attempts),
                        request_id=request_id)
