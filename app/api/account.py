"""GET /v1/account: the merchant the API key belongs to, in the key's mode."""
from flask import g, jsonify

from app.accounts.models import Merchant
from app.api import bp
from app.api.auth import api_view
from app.api.params import Params
from app.extensions import db


def account_payload(merchant: Merchant, livemode: bool) -> dict:
    """The account object: identity, the key's mode, whether it may take payments now, and the display settings
    the checkout page uses."""
    suspended = merchant.suspended_at is not None
    return {
        "object": "account",
        "id": merchant.id,
        "name": merchant.name,
        "livemode": livemode,
        "live_enabled": merchant.live_enabled,
        "suspended": suspended,
        "charges_enabled": not suspended and (merchant.live_enabled or not livemode),
        "created": int(merchant.created_at.timestamp()),
        "settings": {
            "display_name": merchant.display_name or merchant.name,
            "accent_color": merchant.accent_color,
            "logo_url": merchant.logo_url,
            "timezone": merchant.timezone,
        },
    }


@bp.get("/account")
@api_view
def get_account():
    """The authenticated merchant (the key decides which; there is no id to guess)."""
    Params.from_request(allowed=())  # no parameters: a stray one is a client bug worth naming
    merchant = db.session.get(Merchant, g.scope.merchant_id)
    payload = account_payload(merchant, g.scope.livemode)
    db.session.commit()  # ends the read-only transaction the key lookup opened
    return jsonify(payload)
