"""The payouts kinds of the operators' inbox (ARCHITECTURE.md, "The operator console"): payouts that failed and
whose money has not gone out again since (an item leaves when a later payout of the same seller and currency is
on its way or paid), and payouts held by a bank account's cooling period (an item leaves when the period ends).
Worked on the merchant's admin page."""
from sqlalchemy import and_, exists, func, select
from sqlalchemy.orm import Session, aliased

from app.inbox import InboxFilters, InboxItem, InboxPage, register_provider
from app.models_base import utcnow
from app.payouts.models import Payout

FAILED_KIND = "payout_failed"
HELD_KIND = "payout_held"


def _page(session: Session, filters: InboxFilters, criteria: list, since, kind: str, title) -> InboxPage:
    if filters.merchant_id:
        criteria.append(Payout.merchant_id == filters.merchant_id)
    if filters.since_before:
        criteria.append(since < filters.since_before)
    count = session.scalar(select(func.count()).select_from(Payout).where(*criteria)) or 0
    rows = session.scalars(select(Payout).where(*criteria).order_by(since, Payout.id)
                           .limit(filters.limit)).all() if filters.limit else []
    items = [InboxItem(kind=kind, id=row.id, merchant_id=row.merchant_id, livemode=row.livemode,
                       since=row.failed_at if kind == FAILED_KIND else row.created_at, amount=row.amount,
                       currency=row.currency, title=title(row),
                       detail=f"{'seller ' + row.seller_id if row.seller_id else 'the merchant itself'}, bank account "
                              f"ending {row.bank_account_last4 or '?'}",
                       due_at=row.held_until if kind == HELD_KIND else None,
                       link=("admin.merchant", {"merchant_id": row.merchant_id})) for row in rows]
    return InboxPage(items, count)


def failed_payouts(session: Session, filters: InboxFilters) -> InboxPage:
    """Failed payouts with no later payout of the same subject and currency under way or paid, oldest first."""
    later = aliased(Payout)
    criteria = [Payout.status == "failed", ~exists().where(and_(
        later.merchant_id == Payout.merchant_id, later.livemode == Payout.livemode,
        later.seller_id.is_not_distinct_from(Payout.seller_id), later.currency == Payout.currency,
        later.created_at > Payout.failed_at, later.status.in_(("pending", "in_transit", "paid"))))]
    return _page(session, filters, criteria, Payout.failed_at, FAILED_KIND,
                 lambda row: f"Payout failed: {row.failure_code or 'unknown reason'}")


def held_payouts(session: Session, filters: InboxFilters) -> InboxPage:
    """Pending payouts held by a new or changed bank account's cooling period, soonest release first."""
    criteria = [Payout.status == "pending", Payout.held_until > utcnow()]
    return _page(session, filters, criteria, Payout.created_at, HELD_KIND,
                 lambda row: "Payout held: new bank account cooling period")


register_provider(FAILED_KIND, "Payout failed", failed_payouts)
register_provider(HELD_KIND, "Payout held", held_payouts)
