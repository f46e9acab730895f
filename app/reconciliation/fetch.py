"""Fetching reports and statements: from the sandbox PSP (httpx, short timeouts), and from Stripe per account (the
official library through the Stripe connector: its timeouts, no hidden retries). No Flask: takes the config mapping.

A fetch that could not ask (connection refused, timeout, 5xx) raises FetchFailed: nothing is known, the day stays
due and the scheduled job asks again; it never counts as an empty report.
"""
import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import httpx
import stripe
from sqlalchemy import or_, select, text
from sqlalchemy.orm import Session

from app.psp.sandbox import parse_acquirer_urls
from app.reconciliation import stripe_lines

log = logging.getLogger(__name__)

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


@dataclass(frozen=True)
class StripeAccount:
    """One Stripe account whose payouts are reconciled: the platform's in one mode, or a merchant's credential."""

    credential: str                  # "platform" or the psp_credentials id
    livemode: bool
    merchant_id: str | None          # None: the platform's account
    api_key: str
    deposit_confirmation: str        # bank_statement | payout_events (app/psp/credentials.py)

    @property
    def source(self) -> str:
        return stripe_lines.source_of(self.credential)


@dataclass(frozen=True)
class RetiredPending:
    """A retired Stripe credential whose reports are not complete: what it made that no report has carried yet."""

    credential: str
    merchant_id: str
    livemode: bool
    retired_at: datetime
    payments: int                    # captures with no charge line
    refunds: int                     # succeeded refunds with no refund line
    oldest: datetime | None          # the oldest of them


# What a credential made (captures, succeeded refunds) that no report line carries and no resolved missing_at_psp
# break explains: while there is any, a retired credential's reports are not complete and it is still fetched.
_RETIRED_PENDING = text("""
WITH due AS (
    SELECT p.merchant_id, p.livemode, p.credential, p.psp_reference, 'charge' AS type, p.captured_at AS booked_at
      FROM payments p
     WHERE p.connector = :psp AND p.amount_received > 0 AND p.psp_reference IS NOT NULL AND p.captured_at IS NOT NULL
       AND p.credential IN (SELECT id FROM psp_credentials WHERE psp = :psp AND retired_at IS NOT NULL)
    UNION ALL
    SELECT r.merchant_id, r.livemode, coalesce(r.credential, p.credential), r.psp_reference, 'refund', r.finished_at
      FROM refunds r JOIN payments p ON p.id = r.payment_id AND p.merchant_id = r.merchant_id
     WHERE coalesce(r.connector, p.connector) = :psp AND r.status = 'succeeded' AND r.psp_reference IS NOT NULL
       AND coalesce(r.credential, p.credential) IN (SELECT id FROM psp_credentials
                                                     WHERE psp = :psp AND retired_at IS NOT NULL)
)
SELECT c.id AS credential, c.merchant_id, c.livemode, c.retired_at,
       count(*) FILTER (WHERE d.type = 'charge') AS payments, count(*) FILTER (WHERE d.type = 'refund') AS refunds,
       min(d.booked_at) AS oldest
  FROM due d JOIN psp_credentials c ON c.id = d.credential AND c.merchant_id = d.merchant_id
                                   AND c.livemode = d.livemode
 WHERE NOT EXISTS (SELECT 1 FROM reconciliation_lines l
                    WHERE l.psp = :psp AND l.livemode = d.livemode AND l.reference = d.psp_reference
                      AND l.type = d.type AND l.status IN ('matched', 'mismatch', 'unchanged', 'refused'))
   AND NOT EXISTS (SELECT 1 FROM reconciliation_breaks b
                    WHERE b.merchant_id = d.merchant_id AND b.livemode = d.livemode
                      AND b.dedupe_key = 'missing_at_psp:' || :psp || ':' || d.psp_reference || ':' || d.type
                      AND b.status = 'resolved')
 GROUP BY c.id, c.merchant_id, c.livemode, c.retired_at
 ORDER BY c.livemode, c.merchant_id, c.retired_at
""")


def retired_pending(session: Session) -> list[RetiredPending]:
    """The retired Stripe credentials whose reports are not complete yet (across merchants: the scheduled job's and
    the console's view), with what is missing."""
    return [RetiredPending(row.credential, row.merchant_id, row.livemode, row.retired_at, row.payments, row.refunds,
                           row.oldest)
            for row in session.execute(_RETIRED_PENDING, {"psp": stripe_lines.PSP})]


def stripe_accounts(session: Session, config, box) -> list[StripeAccount]:
    """The platform's Stripe account in each mode that has a secret key, then every merchant's current Stripe
    credential, then each retired one until its reports are complete (``retired_pending``: a key replaced or
    removed still has payouts to come for the payments made with it)."""
    from app.psp.credentials import load_credential
    from app.psp.models import PspCredential
    from app.psp.stripe_keys import platform_stripe
    from app.scoping import Scope

    found = []
    for livemode in (False, True):
        platform = platform_stripe(config, livemode)
        if platform.api_key:
            found.append(StripeAccount(stripe_lines.PLATFORM_CREDENTIAL, livemode, None, platform.api_key,
                                       platform.deposit_confirmation))
    pending = {row.credential for row in retired_pending(session)}
    # Across merchants on purpose: the scheduled job reconciles every account; each is read in its own scope.
    rows = session.execute(select(PspCredential.id, PspCredential.merchant_id, PspCredential.livemode,
                                  PspCredential.deposit_confirmation)
                           .where(PspCredential.psp == stripe_lines.PSP,
                                  or_(PspCredential.retired_at.is_(None), PspCredential.id.in_(pending)))
                           .order_by(PspCredential.retired_at.is_not(None), PspCredential.livemode,
                                     PspCredential.merchant_id)).all()
    for row in rows:
        try:
            credentials = load_credential(session, Scope(row.merchant_id, row.livemode), box, stripe_lines.PSP, row.id)
        except Exception:  # noqa: BLE001 - a credential that cannot be opened must not stop the others' fetches
            log.error("reconciliation: the Stripe credential %s cannot be decrypted; its payouts are not fetched",
                      row.id)
            continue
        if credentials and credentials.get("secret_key"):
            found.append(StripeAccount(row.id, row.livemode, row.merchant_id, credentials["secret_key"],
                                       row.deposit_confirmation))
    return found


def fetch_stripe_settlement(config, account: StripeAccount, day: date) -> bytes:
    """The day's report of a Stripe account: its automatic payouts created that day (UTC) and their balance
    transactions, as the JSON document stored unchanged (app/reconciliation/stripe_lines.py)."""
    from app.psp.stripe_connector import StripeConnector

    start = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())
    end = int((datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)).timestamp())
    connector = StripeConnector.from_config(stripe_lines.PSP, config, {"livemode": account.livemode},
                                            {"secret_key": account.api_key})
    try:
        payouts, transactions = connector.settlement_payouts(start, end)
    except stripe.StripeError as exc:
        status = f"HTTP {exc.http_status}" if exc.http_status else exc.__class__.__name__
        raise FetchFailed(f"{account.source}: Stripe answered {status}") from None
    finally:
        connector.close()
    return stripe_lines.report_document(account.credential, account.livemode, (start, end), payouts, transactions)
