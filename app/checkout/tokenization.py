"""Where the checkout page turns a card into a token: the sandbox vault's token endpoint, or Stripe.js.

The page tokenizes at the vault the payments service routes the session's mode to
(``PaymentsDeps.vault_for``), so a token is always made where its payment goes. Live mode never uses
the sandbox. In Stripe mode the browser loads Stripe.js (``STRIPE_JS_URL``) with the publishable key of
the Stripe account that will charge the card, mounts a card Element (Stripe's own frame: the card never
touches Kassa's page) and sends Kassa only the PaymentMethod id. What the page sends back must have the
format of that vault's tokens (``PaymentsDeps.is_token``, declared by the vault's connectors).

No Flask here: the views pass in their database session and config.
"""
import logging
from dataclasses import dataclass
from typing import Any, Mapping
from urllib.parse import urlsplit

from sqlalchemy.orm import Session

from app.psp.credentials import current_credential
from app.psp.stripe_keys import platform_stripe
from app.psp.registry import config_value
from app.scoping import Scope

log = logging.getLogger(__name__)

SANDBOX = "sandbox"
STRIPE = "stripe"
DEFAULT_STRIPE_JS_URL = "https://js.stripe.com/v3/"
# What Stripe.js calls from the page itself (Stripe's CSP guidance: connect-src https://api.stripe.com).
DEFAULT_STRIPE_JS_API_URL = "https://api.stripe.com"


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


@dataclass(frozen=True)
class Tokenizer:
    """How one page tokenizes: the vault, the URL the browser uses, and what the CSP must allow for it."""

    vault: str
    url: str                              # the sandbox vault's base URL, or Stripe.js's script URL
    publishable_key: str | None = None    # Stripe mode
    api_url: str | None = None            # Stripe mode: the API Stripe.js calls from the page

    @property
    def stripe(self) -> bool:
        return self.vault == STRIPE

    @property
    def script_origins(self) -> list[str]:
        return [origin(self.url)] if self.stripe else []

    @property
    def frame_origins(self) -> list[str]:
        # Stripe's card Element is a frame served by Stripe.js's origin.
        return [origin(self.url)] if self.stripe else []

    @property
    def connect_origins(self) -> list[str]:
        return [origin(self.api_url or DEFAULT_STRIPE_JS_API_URL)] if self.stripe else [origin(self.url)]


def tokenizer_for(session: Session, scope: Scope, vault: str, config: Mapping[str, Any]) -> Tokenizer | None:
    """The page's tokenizer for a session in ``scope`` whose payments go to ``vault``; None when the page
    cannot take a card (live mode on the sandbox, Stripe without a usable publishable key, another vault)."""
    if vault == SANDBOX:
        if scope.livemode:
            return None
        return Tokenizer(SANDBOX, config_value(config, "SANDBOX_PSP_URL").rstrip("/"))
    if vault == STRIPE:
        key = stripe_publishable_key(session, scope, config)
        if key is None:
            return None
        return Tokenizer(STRIPE, config_value(config, "STRIPE_JS_URL", DEFAULT_STRIPE_JS_URL), publishable_key=key,
                         api_url=config_value(config, "STRIPE_JS_API_URL", DEFAULT_STRIPE_JS_API_URL))
    return None


def stripe_publishable_key(session: Session, scope: Scope, config: Mapping[str, Any]) -> str | None:
    """The publishable key of the Stripe account the connector charges for ``scope``, if it is usable.

    The connector uses the merchant's own current credentials when it has any, else the platform's in this
    mode (``STRIPE_API_KEY_TEST`` / ``STRIPE_API_KEY_LIVE``); the key must belong to the same account, or the
    PaymentMethod Stripe.js creates would not exist for the secret key that confirms it. So a merchant with
    credentials but no publishable key gets no card form, not the platform's key. The key's mode must be the
    session's.
    """
    row = current_credential(session, scope, STRIPE)
    platform = platform_stripe(config, scope.livemode)
    if row is not None:
        key = row.publishable_key
    elif platform.api_key:
        key = platform.publishable_key
    else:
        key = None
    if not key:
        return None
    prefix = "pk_live_" if scope.livemode else "pk_test_"
    if not key.startswith(prefix):
        log.warning("checkout: the Stripe publishable key for merchant %s is not a %s key; no card form",
                    scope.merchant_id, prefix.rstrip("_"))
        return None
    return key
