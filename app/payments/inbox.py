"""The payments kind of the operators' inbox: attempts and refunds marked as needing attention, because the
PSP gave no definite answer about them for longer than PSP_UNKNOWN_ATTENTION_AFTER (app/payments/attention.py
sets and clears the marks). An item leaves the inbox with the first definite outcome: a job, the janitor, a
PSP callback, or an operator who checked with the PSP. Worked on the admin payment page (ask the PSP again,
or record the outcome found).
"""
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.inbox import InboxFilters, InboxItem, InboxPage, register_provider
from app.payments.models import PaymentAttempt, Refund

KIND = "payment_outcome"
_TITLES = {"authorize": "Authorization", "capture": "Capture", "void": "Void", "refund": "Refund"}


def outcome_unknown_items(session: Session, filters: InboxFilters) -> InboxPage:
    """Marked attempts and refunds of every merchant, longest marked first (on the partial attention indexes)."""
    page = InboxPage()
    for model in (PaymentAttempt, Refund):
        criteria = [model.attention_since.is_not(None)]
        if filters.merchant_id:
            criteria.append(model.merchant_id == filters.merchant_id)
        if filters.since_before:
            criteria.append(model.attention_since <= filters.since_before)
        page.count += session.scalar(select(func.count()).select_from(model).where(*criteria))
        if not filters.limit:
            continue
        for row in session.scalars(select(model).where(*criteria).order_by(model.attention_since)
                                   .limit(filters.limit)):
            operation = "refund" if model is Refund else row.operation
            page.items.append(InboxItem(
                kind=KIND, id=row.id, merchant_id=row.merchant_id, livemode=row.livemode,
                title=f"{_TITLES[operation]} outcome unknown at the PSP", since=row.attention_since,
                amount=row.amount, currency=row.currency, detail=row.attention_reason,
                link=("admin.payment", {"payment_id": row.payment_id})))
    return page


register_provider(KIND, "Outcome unknown", outcome_unknown_items)
