"""A merchant's security settings (Settings › Security, owners only): whether every member must have a second
factor, and up to which refund amount the dashboard asks for no re-authentication. Never imports Flask; the
caller commits.
"""
from sqlalchemy.orm import Session

from app.accounts.audit import audit
from app.accounts.models import Membership, Merchant
from app.accounts.permissions import Action, can
from app.accounts.second_factor import confirmed_factor
from app.accounts.service import NO_META, Meta
from app.money import Money


class SecuritySettingsError(Exception):
    """A change of the security settings that is not allowed; ``field`` names the form field to blame."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field


def refund_needs_reauth(merchant: Merchant, amount: int, currency: str) -> bool:
    """Every refund needs a recent re-authentication, unless the merchant set a threshold in the refund's
    currency and the refund is within it (Kassa has no exchange rates to compare other currencies)."""
    if merchant.refund_reauth_threshold is None:
        return True
    return currency.upper() != merchant.refund_reauth_currency or amount > merchant.refund_reauth_threshold


def refund_threshold(merchant: Merchant) -> Money | None:
    """The merchant's refund re-authentication threshold, None when every refund needs it (the default)."""
    if merchant.refund_reauth_threshold is None:
        return None
    return Money(merchant.refund_reauth_threshold, merchant.refund_reauth_currency)


def update_security_settings(session: Session, actor: Membership, *, require_second_factor: bool,
                             threshold: Money | None, meta: Meta = NO_META) -> dict:
    """Change the settings of the actor's merchant (owners only); audited. Returns what changed."""
    if not can(actor.role, Action.MANAGE_SECURITY):
        raise SecuritySettingsError("Only an owner can change the security settings.")
    merchant = session.get(Merchant, actor.merchant_id)
    if require_second_factor and not merchant.require_second_factor \
            and confirmed_factor(session, actor.user_id) is None:
        # Otherwise the owner's own next click would land on the set-up page, a surprise.
        raise SecuritySettingsError("Set up two-step sign-in for your own account first (Account security).",
                                    field="require_second_factor")
    before = {"require_second_factor": merchant.require_second_factor, "refund_reauth_threshold": _label(
        refund_threshold(merchant))}
    merchant.require_second_factor = require_second_factor
    merchant.refund_reauth_threshold = threshold.amount if threshold else None
    merchant.refund_reauth_currency = threshold.currency if threshold else None
    after = {"require_second_factor": require_second_factor, "refund_reauth_threshold": _label(threshold)}
    changed = {key: {"from": before[key], "to": after[key]} for key in after if before[key] != after[key]}
    if changed:
        audit(session, "merchant.security_updated", merchant_id=merchant.id, actor_user_id=actor.user_id,
              actor_label=actor.user.email, target=merchant.id, details=changed, **meta.as_kwargs())
    return changed


def _label(threshold: Money | None) -> str | None:
    """"5000 EUR" (minor units and currency) for the audit log; None for "every refund"."""
    return f"{threshold.amount} {threshold.currency}" if threshold else None
