"""Stripe: the balance transactions of an automatic payout mapped onto Kassa's settlement line shape.

Fetched with ``stripe.BalanceTransaction.list(payout=<po_...>, expand=["data.source"])`` (the fetch itself belongs
with the Stripe connector's credentials; not wired to a job yet). Kassa knows a Stripe payment by its
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

A balance transaction in another currency than its source (``exchange_rate`` set) is refused until FX exists.
"""
from app.reconciliation.parsing import SettlementLine


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
        if kind == "payout":
            continue
        if bt.get("exchange_rate") is not None:
            raise UnsupportedBalanceTransaction(
                f"{bt.get('id')}: settled in another currency than charged (exchange rate {bt['exchange_rate']}); "
                "Kassa refuses such connectors until FX exists")
        currency = (bt.get("currency") or "").upper()
        amount, fee, net = int(bt["amount"]), int(bt.get("fee") or 0), int(bt["net"])
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
