"""The payments kind of the operators' inbox: attempts and refunds whose PSP outcome stays unknown.

Which rows count is app/payments/undecided.py's one definition; an item leaves the inbox as soon as a
definite outcome arrives (a job, the janitor, a PSP callback, or an operator who checked with the PSP).
Worked on the admin payment page (ask the PSP again, or record the outcome found).
"""
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.inbox import InboxFilters, InboxItem, InboxPage, register_provider
from app.models_base import utcnow
from app.payments import undecided
from app.payments.models import PaymentAttempt, Refund

KIND = "payment_outcome"
_TITLES = {"authorize": "Authorization", "capture": "Capture", "void": "Void", "refund": "Refund"}


def outcome_unknown_items(session: Session, filters: InboxFilters) -> InboxPage:
    """Attempts and refunds needing a person, oldest first, across merchants."""
    now = utcnow()
    page = InboxPage()
    for model in (PaymentAttempt, Refund):
        since = undecided.attention_since(model)
        criteria = [undecided.needs_attention(model, now)]
        if filters.merchant_id:
            criteria.append(model.merchant_id == filters.merchant_id)
        if filters.since_before:
            criteria.append(since <= filters.since_before)
        page.count += session.scalar(select(func.count()).select_from(model).where(*criteria))
        if not filters.limit:
            continue
        for row in session.scalars(select(model).where(*criteria).order_by(since).limit(filters.limit)):
            operation = "refund" if model is Refund else row.operation
            marked_since, reason = undecided.attention_of(row)
            page.items.append(InboxItem(
                kind=KIND, id=row.id, merchant_id=row.merchant_id, livemode=row.livemode,
                title=f"{_TITLES[operation]} outcome unknown at the PSP", since=marked_since,
                amount=row.amount, currency=row.currency, detail=reason,
                link=("admin.payment", {"payment_id": row.payment_id})))
    return page


register_provider(KIND, "Outcome unknown", outcome_unknown_items)
