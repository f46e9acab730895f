"""Stripe: the balance transactions of an automatic payout mapped onto Kassa's settlement line shape.

Fetched per Stripe account (the platform's per mode, each merchant's own credential) and day by the scheduled job
(app/jobs/reconciliation.py): the day's automatic payouts (``Payout.list(created=...)``) and each one's
``BalanceTransaction.list(payout=<po_...>, expand=["data.source"])`` (app/psp/stripe_connector.py
``settlement_payouts``); the document received is stored unchanged as the day's report file (``report_document``)
and staged through ``parse_stripe_report``. Amounts are read with Stripe's currency rules (app/psp/wire.py: ISK
is written with two decimals). Kassa knows a Stripe payment by its
PaymentIntent id, a refund by its ``re_`` id and a dispute by its ``du``/``dp_`` id, so a charge line takes the
expanded source's ``payment_intent``.

| Stripe type (reporting_category)        | line | gross | fee |
|-----------------------------------------|------|-------|-----|
| charge, payment                         | charge | amount | fee |
| refund, payment_refund                  | refund | amount (negative) | fee |
| refund_failure, payment_failure_refund  | refund_failure | amount | fee |
| adjustment (dispute)                    | dispute + fee | amount (negative) / 0 | 0 / fee |
| adjustment (dispute_reversal)           | dispute + fee | amount / 0 | 0 / fee (negative: returned) |
| payout                                  | (the batch itself: no line) | | |
| payout_failure (payout_reversal)        | (no line: an earlier failed payout's money paid again in this one; ``returned_payouts``, app/reconciliation/payout_events.py) | | |

A balance transaction in another currency than its source (``exchange_rate`` set) is refused until FX exists.
"""
import json

from app.psp.wire import STRIPE
from app.reconciliation.parsing import ReportFormatError, SettlementLine

# A report file's source per Stripe account: the platform's own account is "stripe" (the connector, as a sandbox
# acquirer's report is its connector's name), a merchant's own credential "stripe:<psp_credentials id>" (its files
# are its own versions, its failures its own). Every line's ``psp`` is the connector all the same.
PSP = "stripe"
PLATFORM_CREDENTIAL = "platform"
DOCUMENT_OBJECT = "kassa.stripe_settlement"


def source_of(credential: str) -> str:
    """The report source of a Stripe account: ``platform`` or a psp_credentials id."""
    return PSP if credential == PLATFORM_CREDENTIAL else f"{PSP}:{credential}"


def credential_of(source: str) -> str | None:
    """The credential a Stripe report source names (None: not a Stripe source)."""
    if source == PSP:
        return PLATFORM_CREDENTIAL
    if source.startswith(f"{PSP}:"):
        return source.split(":", 1)[1]
    return None


def psp_of(source: str) -> str:
    """The connector of a report source (what its lines, accounts and breaks name)."""
    return PSP if credential_of(source) is not None else source


def report_document(credential: str, livemode: bool, created: tuple[int, int], payouts: list[dict],
                    transactions: dict[str, list[dict]]) -> bytes:
    """The day's report as stored: the payouts and their balance transactions as Stripe answered, in one JSON
    document with sorted keys, so that the same answers are the same bytes (a re-fetch changes nothing)."""
    document = {"object": DOCUMENT_OBJECT, "credential": credential, "livemode": livemode,
                "created": {"gte": created[0], "lt": created[1]}, "payouts": payouts,
                "balance_transactions": transactions}
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def parse_stripe_report(content: bytes):
    """The settlement lines of a stored report document, payout by payout (ReportFormatError if it is none)."""
    try:
        document = json.loads(content)
    except ValueError as exc:
        raise ReportFormatError(f"not a Stripe settlement document: {exc}") from None
    if not isinstance(document, dict) or document.get("object") != DOCUMENT_OBJECT:
        raise ReportFormatError(f"not a Stripe settlement document (object {DOCUMENT_OBJECT} expected)")
    transactions = document.get("balance_transactions") or {}
    for payout in document.get("payouts") or []:
        try:
            yield from map_balance_transactions(transactions.get(payout["id"]) or [], payout["id"])
        except ValueError as exc:  # UnsupportedBalanceTransaction, or an amount Stripe's rules cannot read
            raise ReportFormatError(str(exc)) from None


class UnsupportedBalanceTransaction(ValueError):
    """A balance transaction Kassa cannot reconcile yet; the message says why."""


def _source_id(transaction: dict, key: str | None = None) -> str:
    source = transaction.get("source")
    if isinstance(source, dict):
        return (source.get(key) if key else None) or source.get("id") or ""
    return source or ""


def map_balance_transactions(transactions, payout_id: str) -> list[SettlementLine]:
    """Kassa's settlement lines of one Stripe payout's balance transactions."""
    lines = []
    for bt in transactions:
        kind = bt.get("type")
        category = bt.get("reporting_category") or kind
        if kind in ("payout", "payout_failure"):
            continue
        if bt.get("exchange_rate") is not None:
            raise UnsupportedBalanceTransaction(
                f"{bt.get('id')}: settled in another currency than charged (exchange rate {bt['exchange_rate']}); "
                "Kassa refuses such connectors until FX exists")
        currency = (bt.get("currency") or "").upper()
        amount, fee, net = (STRIPE.from_wire(int(bt[name] or 0), currency) for name in ("amount", "fee", "net"))
        if kind in ("charge", "payment"):
            lines.append(SettlementLine(_source_id(bt, "payment_intent"), "charge", amount, fee, net, currency, payout_id))
        elif kind in ("refund", "payment_refund"):
            lines.append(SettlementLine(_source_id(bt), "refund", amount, fee, net, currency, payout_id))
        elif kind in ("refund_failure", "payment_failure_refund"):
            lines.append(SettlementLine(_source_id(bt), "refund_failure", amount, fee, net, currency, payout_id))
        elif kind == "adjustment" and category in ("dispute", "dispute_reversal"):
            reference = _source_id(bt)
            lines.append(SettlementLine(reference, "dispute", amount, 0, amount, currency, payout_id))
            if fee:
                lines.append(SettlementLine(reference, "fee", 0, fee, -fee, currency, payout_id))
        else:
            raise UnsupportedBalanceTransaction(f"{bt.get('id')}: balance transactions of type {kind} "
                                                f"({category}) are not reconciled yet")
    return lines


def lines_csv(lines: list[SettlementLine]) -> bytes:
    """The lines as a settlement CSV, so that a Stripe payout is imported and stored like any report."""
    import csv
    import io

    from app.reconciliation.parsing import SETTLEMENT_COLUMNS

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(SETTLEMENT_COLUMNS)
    for line in lines:
        writer.writerow((line.reference, line.type, line.gross, line.fee, line.net, line.currency, line.batch_id))
    return out.getvalue().encode()


def returned_payouts(content: bytes, payout_id: str) -> list[tuple[str, int, str]]:
    """The failed payouts whose money a payout pays again, from a stored report document: (failed payout id,
    amount, currency) of each of its ``payout_failure`` balance transactions (Stripe returns a failed payout's money
    to the balance, and the next payout carries it)."""
    try:
        document = json.loads(content)
    except ValueError:
        return []
    found = []
    for bt in (document.get("balance_transactions") or {}).get(payout_id) or []:
        if bt.get("type") != "payout_failure":
            continue
        currency = (bt.get("currency") or "").upper()
        found.append((_source_id(bt), STRIPE.from_wire(int(bt.get("amount") or 0), currency), currency))
    return found
