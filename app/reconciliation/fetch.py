"""Fetching reports and statements from the sandbox PSP (httpx, short timeouts). No Flask: takes the config mapping.

A fetch that could not ask (connection refused, timeout, 5xx) raises FetchFailed: nothing is known, the day stays
due and the scheduled job asks again; it never counts as an empty report.
"""
from datetime import date

import httpx

from app.psp.sandbox import parse_acquirer_urls

# A report is a few hundred KB per day in the sandbox; connect 1 s as for PSP calls, read 30 s because a day's
# file is generated on request.
CONNECT_TIMEOUT = 1.0
READ_TIMEOUT = 30.0


class FetchFailed(RuntimeError):
    """The report could not be fetched (an unknown outcome: ask again later)."""


def _get(url: str, secret: str) -> bytes:
    try:
        response = httpx.get(url, headers={"Authorization": f"Bearer {secret}"},
                             timeout=httpx.Timeout(READ_TIMEOUT, connect=CONNECT_TIMEOUT))
    except httpx.HTTPError as exc:
        raise FetchFailed(f"{url}: {exc.__class__.__name__}") from None
    if response.status_code != 200:
        raise FetchFailed(f"{url}: HTTP {response.status_code}")
    return response.content


def sandbox_connectors(config) -> list[str]:
    """The sandbox acquirers Kassa is configured with (each sends its own settlement report)."""
    return list(parse_acquirer_urls(config.get("SANDBOX_ACQUIRER_URLS", "")))


def fetch_settlement(config, psp: str, day: date) -> bytes:
    """One day's settlement CSV of a sandbox acquirer."""
    urls = parse_acquirer_urls(config.get("SANDBOX_ACQUIRER_URLS", ""))
    if psp not in urls:
        raise FetchFailed(f"{psp} is not a configured sandbox acquirer (SANDBOX_ACQUIRER_URLS); Stripe reports are "
                          "mapped from balance transactions (app/reconciliation/stripe_lines.py)")
    return _get(f"{urls[psp]}/v1/settlements/{day.isoformat()}.csv", config.get("SANDBOX_PSP_SECRET", ""))


def fetch_statement(config, day: date) -> bytes:
    """The platform bank account's camt.053 statement of one day (the sandbox plays the bank)."""
    base = (config.get("SANDBOX_PSP_URL") or "").rstrip("/")
    return _get(f"{base}/v1/bank_statements/{day.isoformat()}.xml", config.get("SANDBOX_PSP_SECRET", ""))
