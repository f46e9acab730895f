"""The webhooks kind of the operators' inbox: endpoints Kassa disabled, or failing for more than a day.

An endpoint the merchant disabled itself is its own choice and not listed. An item leaves the inbox when
the endpoint works again (a success clears its failure run), is enabled again, or is deleted. Worked on
the admin endpoint page (the fix is the merchant's; the page says what is wrong and whom to tell).
"""
from datetime import timedelta

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from app.inbox import InboxFilters, InboxItem, InboxPage, register_provider
from app.models_base import utcnow
from app.webhooks.models import DisabledReason, EndpointStatus, WebhookEndpoint

KIND = "webhook_endpoint"
# A day of failures: past a deploy or an outage of a few hours (retries ride those out unseen), yet two
# days before the endpoint would be disabled (WebhookSettings.disable_after), time to warn the merchant.
FAILING_FOR = timedelta(days=1)


def troubled_endpoint_items(session: Session, filters: InboxFilters) -> InboxPage:
    """Endpoints disabled by Kassa, or enabled but failing for more than FAILING_FOR, longest first."""
    since = func.coalesce(WebhookEndpoint.disabled_at, WebhookEndpoint.failing_since)
    criteria = [WebhookEndpoint.deleted_at.is_(None), or_(
        and_(WebhookEndpoint.status == EndpointStatus.DISABLED,
             WebhookEndpoint.disabled_reason != DisabledReason.MANUAL),
        and_(WebhookEndpoint.status == EndpointStatus.ENABLED,
             WebhookEndpoint.failing_since <= utcnow() - FAILING_FOR))]
    if filters.merchant_id:
        criteria.append(WebhookEndpoint.merchant_id == filters.merchant_id)
    if filters.since_before:
        criteria.append(since <= filters.since_before)
    count = session.scalar(select(func.count()).select_from(WebhookEndpoint).where(*criteria))
    items = []
    if filters.limit:
        for row in session.scalars(select(WebhookEndpoint).where(*criteria).order_by(since).limit(filters.limit)):
            disabled = row.status == EndpointStatus.DISABLED
            items.append(InboxItem(
                kind=KIND, id=row.id, merchant_id=row.merchant_id, livemode=row.livemode,
                since=row.disabled_at if disabled else row.failing_since,
                title=f"Webhook endpoint {'disabled' if disabled else 'failing'}: {row.url}"[:300],
                detail=row.disabled_detail, link=("admin.webhook_endpoint", {"endpoint_id": row.id})))
    return InboxPage(items, count)


register_provider(KIND, "Webhook endpoint", troubled_endpoint_items)
