"""The disputes kind of the operators' inbox (app/inbox, the console): disputes of every merchant due within
INBOX_WINDOW that nobody answered yet, soonest deadline first. It replaces the PSP layer's provisional
"dispute" provider (same kind). An item leaves the inbox when the merchant submits evidence or accepts, or the
PSP closes the dispute. Worked on the admin dispute page (app/admin/disputes_views.py).
"""
from sqlalchemy.orm import Session

from app.disputes.models import Dispute
from app.disputes.queries import INBOX_WINDOW, due_without_evidence
from app.inbox import InboxFilters, InboxItem, InboxPage, register_provider
from app.models_base import utcnow

KIND = "dispute"


def item(row: Dispute) -> InboxItem:
    """One dispute as the inbox shows it."""
    what = "Inquiry" if row.status.startswith("warning_") else "Dispute"
    return InboxItem(kind=KIND, id=row.id, merchant_id=row.merchant_id, livemode=row.livemode, since=row.created_at,
                     due_at=row.evidence_due_by, amount=row.amount, currency=row.currency,
                     title=f"{what} due without evidence ({(row.reason or 'general').replace('_', ' ')})",
                     detail=f"{row.psp} dispute {row.psp_reference}",
                     link=("admin.dispute", {"merchant_id": row.merchant_id, "dispute_id": row.id}))


def due_disputes(session: Session, filters: InboxFilters) -> InboxPage:
    """Disputes due within INBOX_WINDOW without a response, across merchants."""
    rows, count = due_without_evidence(session, utcnow() + INBOX_WINDOW, merchant_id=filters.merchant_id,
                                       since_before=filters.since_before, limit=filters.limit)
    return InboxPage([item(row) for row in rows], count)


register_provider(KIND, "Dispute due", due_disputes)
