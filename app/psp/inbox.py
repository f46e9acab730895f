"""The PSP layer's kinds of the operators' inbox: callbacks that failed or were rejected, and disputes
awaiting a response (as the PSP callbacks record them; the disputes issue replaces this provider).

A callback leaves the inbox when it is processed again successfully or dismissed with a note; a dispute
when the PSP reports it answered or closed. Worked on the admin callback page and the payment page.
"""
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from app.inbox import InboxFilters, InboxItem, InboxPage, register_provider
from app.psp.models import Dispute, PspCallback

CALLBACK_KIND = "psp_callback"
DISPUTE_KIND = "dispute"
# Dispute statuses that wait for the merchant's (or platform's) response: Stripe's and the sandbox's words.
AWAITING_RESPONSE = ("needs_response", "warning_needs_response")


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


def dispute_items(session: Session, filters: InboxFilters) -> InboxPage:
    """Disputes awaiting a response, oldest first."""
    criteria = [Dispute.status.in_(AWAITING_RESPONSE)]
    if filters.merchant_id:
        criteria.append(Dispute.merchant_id == filters.merchant_id)
    if filters.since_before:
        criteria.append(Dispute.created_at <= filters.since_before)

    def item(row: Dispute) -> InboxItem:
        link = ("admin.payment", {"payment_id": row.payment_id}) if row.payment_id else \
            ("admin.merchant", {"merchant_id": row.merchant_id})
        return InboxItem(
            kind=DISPUTE_KIND, id=row.id, merchant_id=row.merchant_id, livemode=row.livemode, since=row.created_at,
            title=f"Dispute awaiting a response{f' ({row.reason})' if row.reason else ''}", amount=row.amount,
            currency=row.currency, detail=f"{row.psp} dispute {row.psp_reference}", link=link)

    return _page(session, Dispute, criteria, Dispute.created_at, filters, item)


register_provider(CALLBACK_KIND, "PSP callback", callback_items)
register_provider(DISPUTE_KIND, "Dispute", dispute_items)
