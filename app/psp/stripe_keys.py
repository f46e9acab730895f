"""Stripe keys and the mode they belong to: the platform's account per mode, and the prefix rule.

A Stripe secret key says its mode in its prefix (``sk_test_``/``rk_test_``, ``sk_live_``/``rk_live_``), a
publishable key likewise (``pk_test_``, ``pk_live_``). A test-mode payment must never reach a live key,
nor the other way round, so every key is checked against the mode it is configured or stored for: the
platform's at start-up (``check_platform_keys``), a merchant's when it is saved (app/psp/credentials.py).

The platform's own account has one key per mode: ``STRIPE_API_KEY_TEST`` and ``STRIPE_API_KEY_LIVE``
(``STRIPE_API_KEY``, the single setting of earlier versions, is still read as the *test* key), and
likewise ``STRIPE_WEBHOOK_SECRET_TEST``/``_LIVE`` (``STRIPE_WEBHOOK_SECRET``: test) and
``STRIPE_PUBLISHABLE_KEY_TEST``/``_LIVE`` (``STRIPE_PUBLISHABLE_KEY``: test). Webhook secrets
(``whsec_``) do not say their mode: a secret configured for one mode only vouches for events of that mode
(app/hooks/sandbox.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from app.psp.registry import config_value

SECRET_PREFIXES = {False: ("sk_test_", "rk_test_"), True: ("sk_live_", "rk_live_")}
PUBLISHABLE_PREFIX = {False: "pk_test_", True: "pk_live_"}


class KeyModeError(ValueError):
    """A Stripe key that does not belong to the mode it is given for; ``param`` names the field."""

    def __init__(self, message: str, param: str):
        super().__init__(message)
        self.message = message
        self.param = param


def _mode(livemode: bool) -> str:
    return "live" if livemode else "test"


def check_secret_key(key: str | None, livemode: bool, *, param: str = "secret_key") -> None:
    """Refuse a secret (or restricted) key of the other mode, or one that is no Stripe secret key."""
    if not key:
        return
    if not key.startswith(SECRET_PREFIXES[livemode]):
        other = SECRET_PREFIXES[not livemode]
        why = (f"it is a {_mode(not livemode)}-mode key" if key.startswith(other)
               else "it is not a Stripe secret or restricted key")
        raise KeyModeError(f"A {_mode(livemode)}-mode Stripe key starts with "
                           f"{' or '.join(SECRET_PREFIXES[livemode])}; {why}.", param)


def check_publishable_key(key: str | None, livemode: bool, *, param: str = "publishable_key") -> None:
    """Refuse a publishable key of the other mode, or one that is no Stripe publishable key."""
    if not key:
        return
    if not key.startswith(PUBLISHABLE_PREFIX[livemode]):
        why = (f"it is a {_mode(not livemode)}-mode key" if key.startswith(PUBLISHABLE_PREFIX[not livemode])
               else "it is not a Stripe publishable key")
        raise KeyModeError(f"A {_mode(livemode)}-mode Stripe publishable key starts with "
                           f"{PUBLISHABLE_PREFIX[livemode]}; {why}.", param)


@dataclass(frozen=True)
class PlatformStripe:
    """The platform's own Stripe account in one mode (any of them may be unset)."""

    livemode: bool
    api_key: str | None
    webhook_secret: str | None
    publishable_key: str | None
    # How this account's payouts are confirmed as deposited (app/psp/credentials.py DEPOSIT_CONFIRMATIONS):
    # STRIPE_DEPOSIT_CONFIRMATION_TEST/_LIVE, by default the platform's bank statement.
    deposit_confirmation: str = "bank_statement"


def _setting(config: Mapping[str, Any], name: str, livemode: bool) -> str | None:
    value = config_value(config, f"{name}_{_mode(livemode).upper()}")
    if value is None and not livemode:
        value = config_value(config, name)  # the single, mode-less setting of earlier versions: test only
    return value or None


def platform_stripe(config: Mapping[str, Any], livemode: bool) -> PlatformStripe:
    """The platform's Stripe keys for ``livemode`` (the app config, else the environment)."""
    return PlatformStripe(livemode=livemode,
                          api_key=_setting(config, "STRIPE_API_KEY", livemode),
                          webhook_secret=_setting(config, "STRIPE_WEBHOOK_SECRET", livemode),
                          publishable_key=_setting(config, "STRIPE_PUBLISHABLE_KEY", livemode),
                          deposit_confirmation=_setting(config, "STRIPE_DEPOSIT_CONFIRMATION", livemode)
                          or "bank_statement")


def _source(config: Mapping[str, Any], name: str, livemode: bool) -> str:
    """Which setting a platform key of this mode was read from (for messages)."""
    suffixed = f"{name}_{_mode(livemode).upper()}"
    if livemode or config_value(config, suffixed) is not None:
        return suffixed
    return f"{name} (read as the test-mode key; a live key goes in {name}_LIVE)"


def check_platform_keys(config: Mapping[str, Any]) -> None:
    """At start-up: every configured platform key belongs to the mode it is configured for (RuntimeError)."""
    for livemode in (False, True):
        keys = platform_stripe(config, livemode)
        try:
            check_secret_key(keys.api_key, livemode, param="STRIPE_API_KEY")
            check_publishable_key(keys.publishable_key, livemode, param="STRIPE_PUBLISHABLE_KEY")
        except KeyModeError as error:
            raise RuntimeError(f"{_source(config, error.param, livemode)}: {error.message}") from None
        if keys.deposit_confirmation not in ("bank_statement", "payout_events"):
            raise RuntimeError(f"{_source(config, 'STRIPE_DEPOSIT_CONFIRMATION', livemode)}: must be bank_statement "
                               f"or payout_events, not {keys.deposit_confirmation!r}")
