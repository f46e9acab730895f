"""The reconciliation kind of the operators' inbox: open breaks of every book, oldest first. An item leaves the inbox
when a late line closes its break or an operator resolves it. Worked on the admin break page
(app/admin/reconciliation_views.py)."""
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.inbox import InboxFilters, InboxItem, InboxPage, register_provider
from app.reconciliation.models import Break

KIND = "reconciliation_break"
TITLES = {
    "missing_in_kassa": "Reported by the PSP, unknown to Kassa",
    "missing_at_psp": "Booked, not reported by the PSP",
    "amount_mismatch": "Amount differs from the PSP's report",
    "currency_mismatch": "Currency differs from the PSP's report",
    "duplicate": "Reported twice by the PSP",
    "fee_mismatch": "Fee differs from the contract",
    "deposit_mismatch": "Deposit differs from its batch",
    "deposit_without_batch": "Deposit names no batch",
    "dispute_notice_missed": "Dispute reported, notice missed",
}


def item(row: Break) -> InboxItem:
    """One break as the inbox shows it."""
    return InboxItem(kind=KIND, id=row.id, merchant_id=row.merchant_id, livemode=row.livemode, since=row.opened_at,
                     amount=row.psp_amount if row.psp_amount is not None else row.kassa_amount, currency=row.currency,
                     title=f"Reconciliation: {TITLES.get(row.type, row.type)}",
                     detail=f"{row.psp} {row.reference or row.batch_id or ''} ({row.report_date})",
                     link=("admin.reconciliation_break", {"merchant_id": row.merchant_id, "break_id": row.id}))


def open_breaks(session: Session, filters: InboxFilters) -> InboxPage:
    """Open breaks across books, oldest first."""
    criteria = [Break.status == "open"]
    if filters.merchant_id:
        criteria.append(Break.merchant_id == filters.merchant_id)
    if filters.since_before:
        criteria.append(Break.opened_at < filters.since_before)
    count = session.scalar(select(func.count()).select_from(Break).where(*criteria)) or 0
    rows = session.scalars(select(Break).where(*criteria).order_by(Break.opened_at, Break.id)
                           .limit(filters.limit)).all() if filters.limit else []
    return InboxPage([item(row) for row in rows], count)


register_provider(KIND, "Reconciliation break", open_breaks)
