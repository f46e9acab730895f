"""Today for payouts: the sandbox clock's date in test mode (so that tests and demos move schedules, delays and
reserves by moving the sandbox clock, never by sleeping), the real UTC date in live mode. No Flask: takes the config.
"""
import logging
from datetime import date

import httpx

from app.models_base import utcnow

# The clock is a local sandbox call: 1 s to connect and to read, as for PSP calls; on any failure the real date is
# used (the sandbox clock only ever runs ahead in tests, where the sandbox is up).
TIMEOUT = httpx.Timeout(1.0, connect=1.0)

log = logging.getLogger(__name__)


def payout_today(config, livemode: bool) -> date:
    """The date schedules and balances use: the sandbox's in test mode, else (or if it cannot be read) UTC's."""
    if livemode or not config.get("SANDBOX_PSP_URL"):
        return utcnow().date()
    try:
        response = httpx.get(f"{config['SANDBOX_PSP_URL'].rstrip('/')}/_admin/clock", timeout=TIMEOUT)
        response.raise_for_status()
        return date.fromisoformat(response.json()["date"])
    except (httpx.HTTPError, KeyError, ValueError) as error:
        fallback = utcnow().date()
        log.warning("payouts: the sandbox clock could not be read (%s); using UTC's date %s", error, fallback)
        return fallback
