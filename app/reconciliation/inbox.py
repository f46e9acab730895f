"""The reconciliation kinds of the operators' inbox: open breaks of every book, oldest first (an item leaves the inbox
when a late line closes its break or an operator resolves it; worked on the admin break page), and reports or
statements whose fetch has kept failing past RECONCILIATION_FETCH_RAISE_HOURS (an item leaves when a file of that
day is imported, fetched or uploaded; worked on the console's reconciliation page of the day).
app/admin/reconciliation_views.py."""
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.inbox import InboxFilters, InboxItem, InboxPage, register_provider
from app.models_base import utcnow
from app.reconciliation import failures
from app.reconciliation.models import Break, FetchFailure

KIND = "reconciliation_break"
FETCH_KIND = "reconciliation_fetch"
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


def fetch_item(row: FetchFailure) -> InboxItem:
    """A fetch that keeps failing, as the inbox shows it (about no merchant: a report covers them all)."""
    what = "bank statement" if row.kind == "bank_statement" else f"{row.source} settlement report"
    mode = "live" if row.livemode else "test"
    return InboxItem(kind=FETCH_KIND, id=f"{row.source}:{row.kind}:{mode}:{row.report_date}",
                     merchant_id=None, livemode=row.livemode, since=row.first_failed_at,
                     title=f"Reconciliation: {what} of {row.report_date} not fetched",
                     detail=f"{row.attempts} failed fetches since {row.first_failed_at:%Y-%m-%d %H:%M} UTC; "
                            f"last: {row.last_error}",
                     link=("admin.reconciliation", {"date": row.report_date.isoformat(),
                                                    "psp": row.source if row.kind == "settlement" else None,
                                                    "mode": "live" if row.livemode else None}))


def failing_fetches(session: Session, filters: InboxFilters) -> InboxPage:
    """Fetches failing for longer than their raise time, oldest first; none when narrowed to a merchant."""
    if filters.merchant_id:
        return InboxPage([], 0)
    rows = failures.raised(session, utcnow(), since_before=filters.since_before)
    return InboxPage([fetch_item(row) for row in rows[:filters.limit]], len(rows))


register_provider(FETCH_KIND, "Reconciliation fetch failing", failing_fetches)
