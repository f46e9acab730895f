"""A merchant's lifecycle: the go-live checklist, live mode enabled by an operator, suspension, reinstatement.

The checklist is a list of items, each computed by a function from the merchant's current data
(``CHECKLIST``), so a later feature adds its own item (payouts: a seller bank account, once payouts
exist) by appending a function. The merchant completes it in the dashboard (Settings › Go live); a
platform operator enables live mode only once every item is done.

A suspended merchant takes no new payments (and, later, no payouts): ``refuse_if_suspended`` is asked by
the payments service when a payment is created or confirmed, and by whatever else starts moving money to
the merchant, so that the API, the hosted checkout and the dashboard are covered by one check. Reads,
refunds, captures and cancellations go on: the shoppers' money must still be able to go back.

Every operator action takes a reason (ReasonRequired without one), is audited on the merchant (its owners
and admins see it in the dashboard's audit log) and mailed to its owners. Never imports Flask; the caller
commits.
"""
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from app.accounts.audit import audit, operator_reason
from app.accounts.mail import queue_mail
from app.accounts.models import Membership, Merchant, User
from app.accounts.permissions import Role
from app.accounts.service import Meta
from app.models_base import utcnow
from app.payments.errors import PaymentError
from app.webhooks.models import EndpointStatus, WebhookEndpoint

BUSINESS_FIELDS = ("legal_name", "address_line1", "address_line2", "postal_code", "city", "country",
                   "support_email", "support_url")
# What "business details" must contain to count as given (the second address line and the URL are optional).
REQUIRED_BUSINESS_FIELDS = ("legal_name", "address_line1", "postal_code", "city", "country", "support_email")


@dataclass(frozen=True)
class ChecklistItem:
    """One thing a merchant must have done before live mode can be enabled."""

    key: str
    label: str
    done: bool
    hint: str   # what to do about it, for the merchant (and the operator who reads the list)


# Functions (session, merchant) -> ChecklistItem, or None when the item does not apply to this merchant.
CHECKLIST: list[Callable[[Session, Merchant], ChecklistItem | None]] = []


def business_details_item(_session: Session, merchant: Merchant) -> ChecklistItem:
    """Legal name, address, country and a support email."""
    done = all(getattr(merchant, name) for name in REQUIRED_BUSINESS_FIELDS)
    return ChecklistItem("business_details", "Business details", done,
                         "Give your legal name, address, country and a support email address.")


def webhooks_item(session: Session, merchant: Merchant) -> ChecklistItem:
    """A live-mode webhook endpoint that is enabled, or the merchant's word that it needs none."""
    has_endpoint = merchant.webhooks_not_needed or session.scalar(
        select(WebhookEndpoint.id).where(
            WebhookEndpoint.merchant_id == merchant.id, WebhookEndpoint.livemode.is_(True),
            WebhookEndpoint.status == EndpointStatus.ENABLED, WebhookEndpoint.deleted_at.is_(None)).limit(1)
    ) is not None
    return ChecklistItem("webhooks", "Webhooks", has_endpoint,
                         "Add a live-mode webhook endpoint (Developers › Webhooks, in live mode), "
                         "or confirm that your integration needs none.")


CHECKLIST.extend([business_details_item, webhooks_item])


def live_checklist(session: Session, merchant: Merchant) -> list[ChecklistItem]:
    """The checklist's items that apply to this merchant, in order."""
    return [item for item in (check(session, merchant) for check in CHECKLIST) if item is not None]


class LifecycleError(Exception):
    """An operator action that cannot be done (the merchant is already in that state, ...)."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class ChecklistIncomplete(LifecycleError):
    """Live mode cannot be enabled yet: ``missing`` lists the items still to do."""

    def __init__(self, missing: list[ChecklistItem]):
        super().__init__("Live mode can be enabled once the merchant has completed its checklist. Missing: "
                         + "; ".join(item.label for item in missing) + ".")
        self.missing = missing


class MerchantSuspended(PaymentError):
    """The merchant is suspended: new payments are refused (403 account_suspended); nothing was changed."""

    status = 403
    type = "permission_error"
    code = "account_suspended"


_SUSPENDED_AT = select(Merchant.suspended_at).where(Merchant.id == bindparam("merchant_id"))


def refuse_if_suspended(session: Session, merchant_id: str) -> None:
    """Raise MerchantSuspended when the merchant may not take new payments (or, later, payouts)."""
    if session.scalar(_SUSPENDED_AT, {"merchant_id": merchant_id}) is not None:
        raise MerchantSuspended(
            "This account is suspended by the platform: it cannot take new payments. Refunds, captures, "
            "cancellations and reads still work. Contact the platform operator to have it reinstated.")


def may_create_live_keys(merchant: Merchant) -> bool:
    """Live API keys are handed out once a platform operator enabled live mode (the gate of live payments)."""
    return merchant.live_enabled


# -- the merchant's side -----------------------------------------------------------------------------------

def update_business_details(session: Session, merchant: Merchant, values: dict[str, str | None], *,
                            actor: User, meta: Meta) -> dict[str, dict]:
    """Store the business details (already validated by the form); audits and returns what changed."""
    changed = {}
    for name in BUSINESS_FIELDS:
        value = (values.get(name) or "").strip() or None
        if getattr(merchant, name) != value:
            changed[name] = {"from": getattr(merchant, name), "to": value}
            setattr(merchant, name, value)
    if changed:
        audit(session, "merchant.business_details_updated", merchant_id=merchant.id, actor_user_id=actor.id,
              actor_label=actor.email, target=merchant.id, details=changed, **meta.as_kwargs())
    return changed


def set_webhooks_not_needed(session: Session, merchant: Merchant, not_needed: bool, *, actor: User,
                            meta: Meta) -> bool:
    """Record whether the merchant says it needs no webhook endpoint; audited. True when it changed."""
    if merchant.webhooks_not_needed == not_needed:
        return False
    merchant.webhooks_not_needed = not_needed
    audit(session, "merchant.webhooks_not_needed" if not_needed else "merchant.webhooks_needed",
          merchant_id=merchant.id, actor_user_id=actor.id, actor_label=actor.email, target=merchant.id,
          **meta.as_kwargs())
    return True


# -- the operator's actions --------------------------------------------------------------------------------

def _locked_merchant(session: Session, merchant_id: str) -> Merchant:
    merchant = session.scalars(select(Merchant).where(Merchant.id == merchant_id).with_for_update()
                               .execution_options(populate_existing=True)).one_or_none()
    if merchant is None:
        raise LifecycleError(f"No such merchant: {merchant_id}.")
    return merchant


def owner_emails(session: Session, merchant_id: str) -> list[str]:
    """The addresses of the merchant's owners."""
    return list(session.scalars(
        select(User.email).join(Membership, Membership.user_id == User.id)
        .where(Membership.merchant_id == merchant_id, Membership.role == Role.OWNER).order_by(User.email)))


def _record(session: Session, merchant: Merchant, action: str, reason: str, operator: User, meta: Meta,
            subject: str, body: str) -> None:
    """Audit an operator's action on the merchant and tell its owners by mail."""
    audit(session, action, merchant_id=merchant.id, actor_user_id=operator.id, actor_label=operator.email,
          target=merchant.id, details={"reason": reason}, **meta.as_kwargs())
    name = merchant.display_name or merchant.name
    for address in owner_emails(session, merchant.id):
        queue_mail(session, kind=action.replace(".", "_"), to=address, subject=f"{subject}: {name}",
                   body=f"{body}\n\nReason given by the platform operator:\n\n    {reason}\n",
                   merchant_id=merchant.id)


def enable_live(session: Session, merchant_id: str, *, operator: User, reason: str | None,
                meta: Meta) -> Merchant:
    """Enable live mode, once every checklist item is done (ChecklistIncomplete otherwise)."""
    reason = operator_reason(reason)
    merchant = _locked_merchant(session, merchant_id)
    if merchant.live_enabled:
        raise LifecycleError("Live mode is already enabled for this merchant.")
    missing = [item for item in live_checklist(session, merchant) if not item.done]
    if missing:
        raise ChecklistIncomplete(missing)
    merchant.live_enabled = True
    _record(session, merchant, "merchant.live_enabled", reason, operator, meta, "Live mode enabled",
            "A platform operator enabled live mode for your Kassa account. You can now create live API keys "
            "(Developers › API keys, in live mode) and take real payments.")
    return merchant


def suspend(session: Session, merchant_id: str, *, operator: User, reason: str | None, meta: Meta,
            now: datetime | None = None) -> Merchant:
    """Suspend: new payments refused from now on; data, reads and refunds kept."""
    reason = operator_reason(reason)
    merchant = _locked_merchant(session, merchant_id)
    if merchant.suspended_at is not None:
        raise LifecycleError("This merchant is already suspended.")
    merchant.suspended_at = now or utcnow()
    merchant.suspension_reason = reason
    _record(session, merchant, "merchant.suspended", reason, operator, meta, "Account suspended",
            "A platform operator suspended your Kassa account. New payments are refused until it is "
            "reinstated; your data stays readable, and refunds, captures and cancellations still work.")
    return merchant


def reinstate(session: Session, merchant_id: str, *, operator: User, reason: str | None, meta: Meta) -> Merchant:
    """Lift a suspension: payments are accepted again."""
    reason = operator_reason(reason)
    merchant = _locked_merchant(session, merchant_id)
    if merchant.suspended_at is None:
        raise LifecycleError("This merchant is not suspended.")
    merchant.suspended_at = None
    merchant.suspension_reason = None
    _record(session, merchant, "merchant.reinstated", reason, operator, meta, "Account reinstated",
            "A platform operator reinstated your Kassa account: it takes payments again.")
    return merchant
