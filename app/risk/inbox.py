"""The reviews kind of the operators' inbox (app/inbox): open reviews the platform decides, oldest first. An item
leaves the inbox when the review is decided, times out or its payment is canceled. Merchant-owned reviews are
the merchant's (its dashboard), not the operators'.
"""
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.inbox import InboxFilters, InboxItem, InboxPage, register_provider
from app.payments.models import Payment
from app.risk.models import Review

KIND = "review"


def open_platform_reviews(session: Session, filters: InboxFilters) -> InboxPage:
    criteria = [Review.status == "open", Review.owner == "platform"]
    if filters.merchant_id:
        criteria.append(Review.merchant_id == filters.merchant_id)
    if filters.since_before is not None:
        criteria.append(Review.created_at < filters.since_before)
    count = session.scalar(select(func.count()).select_from(Review).where(*criteria)) or 0
    if not filters.limit:
        return InboxPage([], count)
    rows = session.execute(
        select(Review, Payment.amount, Payment.currency, Payment.risk_score)
        .join(Payment, (Payment.id == Review.payment_id) & (Payment.merchant_id == Review.merchant_id))
        .where(*criteria).order_by(Review.created_at).limit(filters.limit)).all()
    items = [InboxItem(kind=KIND, id=review.id, merchant_id=review.merchant_id, livemode=review.livemode,
                       since=review.created_at, due_at=review.expires_at, amount=amount, currency=currency,
                       title=f"Payment held for review (risk score {score})",
                       detail=f"payment {review.payment_id}, rule {review.rule_id or 'manual'}",
                       link=("admin.risk_review", {"review_id": review.id}))
             for review, amount, currency, score in rows]
    return InboxPage(items, count)


register_provider(KIND, "Review", open_platform_reviews)
