"""What other areas ask about disputes (payments' refunds and payment object, the dashboard's counts), with
only the dispute model imported, so that payments can ask without importing the disputes service."""
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.disputes.models import AWAITING_RESPONSE, Dispute
from app.scoping import Scope

# Operators look at disputes due within three days that nobody answered (the inbox, the admin page): within the
# last stretch of a seven-day deadline, while an operator can still reach the merchant, whose own reminder went
# out 48 hours before the deadline.
INBOX_WINDOW = timedelta(hours=72)


def payment_disputes(session: Session, scope: Scope, payment_id: str) -> list[Dispute]:
    """The disputes of one payment, oldest first."""
    return list(session.scalars(scope.select(Dispute, Dispute.payment_id == payment_id)
                                .order_by(Dispute.created_at, Dispute.id)))


def withdrawn_by_order(session: Session, scope: Scope, payment_id: str, *,
                       excluding: str | None = None) -> dict[str, tuple[int, int]]:
    """Per order id: (amount, platform fee) that disputes of the payment took back and did not give back.

    ``excluding``: a dispute id left out (the one being booked).
    """
    taken: dict[str, tuple[int, int]] = {}
    statement = scope.select(Dispute, Dispute.payment_id == payment_id, Dispute.funds_withdrawn_at.is_not(None),
                             Dispute.funds_reinstated_at.is_(None))
    if excluding:
        statement = statement.where(Dispute.id != excluding)
    for dispute in session.scalars(statement):
        for share in dispute.allocations:
            amount, fee = taken.get(share["order"], (0, 0))
            taken[share["order"]] = (amount + share["amount"], fee + share["fee"])
    return taken


def awaiting_response(scope: Scope):
    """SELECT of the book's disputes waiting for the merchant: no submission or acceptance under way."""
    return scope.select(Dispute, Dispute.status.in_(AWAITING_RESPONSE), Dispute.pending_action.is_(None),
                        Dispute.submitted_at.is_(None))


def due_without_evidence(session: Session, before: datetime, *, merchant_id: str | None = None,
                         since_before: datetime | None = None, limit: int | None = None) -> tuple[list[Dispute], int]:
    """Disputes of every merchant whose deadline is before ``before`` and that nobody answered yet (the operators'
    view): soonest deadline first, and how many there are. Cross-merchant on purpose: an admin report."""
    criteria = [Dispute.status.in_(AWAITING_RESPONSE), Dispute.evidence_due_by.is_not(None),
                Dispute.evidence_due_by < before, Dispute.pending_action.is_(None), Dispute.submitted_at.is_(None)]
    if merchant_id:
        criteria.append(Dispute.merchant_id == merchant_id)
    if since_before:
        criteria.append(Dispute.created_at <= since_before)
    count = session.scalar(select(func.count()).select_from(Dispute).where(*criteria)) or 0
    rows = [] if limit == 0 else list(session.scalars(
        select(Dispute).where(*criteria).order_by(Dispute.evidence_due_by, Dispute.id).limit(limit)))
    return rows, count
