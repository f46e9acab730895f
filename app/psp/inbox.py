"""The PSP layer's kind of the operators' inbox: callbacks that failed or were rejected (disputes have their
own kind, app/disputes/inbox.py).

A callback leaves the inbox when it is processed again successfully or dismissed with a note. Worked on the
admin callback page.
"""
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from app.inbox import InboxFilters, InboxItem, InboxPage, register_provider
from app.psp.models import PspCallback

CALLBACK_KIND = "psp_callback"


def _page(session: Session, model, criteria: list, order, filters: InboxFilters, to_item) -> InboxPage:
    count = session.scalar(select(func.count()).select_from(model).where(*criteria))
    rows = session.scalars(select(model).where(*criteria).order_by(order).limit(filters.limit)) if filters.limit else []
    return InboxPage([to_item(row) for row in rows], count)


def callback_items(session: Session, filters: InboxFilters) -> InboxPage:
    """Callbacks that failed to apply or were rejected, not dismissed, oldest first."""
    criteria = [PspCallback.result.in_(("failed", "rejected")), PspCallback.dismissed_at.is_(None)]
    if filters.merchant_id:
        criteria.append(or_(PspCallback.merchant_id == filters.merchant_id,
                            PspCallback.scope_merchant_id == filters.merchant_id))
    if filters.since_before:
        criteria.append(PspCallback.received_at <= filters.since_before)

    def item(row: PspCallback) -> InboxItem:
        failed = row.result == "failed"
        return InboxItem(
            kind=CALLBACK_KIND, id=row.id, merchant_id=row.merchant_id or row.scope_merchant_id,
            livemode=row.livemode, since=row.received_at,
            title=f"{row.psp} callback {row.type} {'failed to apply' if failed else 'rejected (outside its scope)'}",
            detail=row.last_error, link=("admin.callback", {"callback_id": row.id}))

    return _page(session, PspCallback, criteria, PspCallback.received_at, filters, item)


register_provider(CALLBACK_KIND, "PSP callback", callback_items)
