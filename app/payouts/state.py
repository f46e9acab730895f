"""The payout state machine (Stripe's states): one table of allowed moves, each writing its Event in the same
transaction. Moving to the status a payout already has changes nothing and writes no event; a move the table does
not list is InvalidPayoutTransition, never a silent no-op."""
from sqlalchemy.orm import Session

from app.events import Event, record_event
from app.models_base import utcnow
from app.payments.errors import PaymentError
from app.payouts.models import Payout
from app.payouts.models import PayoutStatus as S
from app.scoping import Scope

TRANSITIONS: dict[tuple[S, S], str] = {
    (S.PENDING, S.IN_TRANSIT): "payout.updated",    # the rail accepted it
    (S.PENDING, S.CANCELED): "payout.canceled",     # cancel is allowed only while pending
    (S.PENDING, S.FAILED): "payout.failed",         # the rail refused it outright
    (S.IN_TRANSIT, S.PAID): "payout.paid",
    (S.IN_TRANSIT, S.FAILED): "payout.failed",
    (S.PAID, S.FAILED): "payout.failed",            # returned by the bank after it was paid
}


class InvalidPayoutTransition(PaymentError):
    """A move the payout state table does not list (400 payout_unexpected_state)."""

    code = "payout_unexpected_state"


def transition(session: Session, payout: Payout, to_status: str) -> Event | None:
    """Move a payout (its row locked by the caller) and record its event; None when it is already there."""
    from app.payouts.serializers import payout_object

    current, target = S(payout.status), S(to_status)
    if current == target:
        return None
    event_type = TRANSITIONS.get((current, target))
    if event_type is None:
        raise InvalidPayoutTransition(f"This payout's status is {current}; it cannot become {target}.")
    now = utcnow()
    payout.status = target
    if target == S.PAID:
        payout.paid_at = now
    elif target == S.FAILED:
        payout.failed_at = now
    elif target == S.CANCELED:
        payout.canceled_at = now
    session.flush()
    return record_event(session, Scope(payout.merchant_id, payout.livemode), event_type, "payout", payout.id,
                        payout_object(payout))
