"""Daily settlement reports: what the acquirer pays out for one sandbox-clock day.

One CSV per acquirer and UTC day, integer minor units only, ``net = gross - fee`` on
every line. ``reference`` is the sandbox's id of what the line is about.

| type    | reference | gross            | fee                | when                  |
|---------|-----------|------------------|--------------------|-----------------------|
| charge  | auth_...  | captured amount  | 2.9 % + 30         | day of the capture    |
| refund  | rf_...    | -refund amount   | 0                  | day of the refund     |
| refund_failure | rf_... | +refund amount | 0                  | day a refund failed after it succeeded |
| dispute | dp_...    | -disputed amount | 0                  | day a chargeback took the funds (its opening, or an inquiry's escalation) |
| fee     | dp_...    | 0                | dispute fee (1500) | that same day         |
| dispute | dp_...    | +disputed amount | 0                  | day a chargeback is won (or withdrawn by the issuer) |

Inquiries move no money and have no lines until they become chargebacks.
"""
import csv
import datetime as dt
import io

from .clock import day_bounds, utc_date

HEADER = ("reference", "type", "gross", "fee", "net", "currency")
# Refunds that moved money on their day: succeeded, or succeeded and failed later.
REFUNDED = "(status = 'succeeded' OR failed_at IS NOT NULL)"


def charge_fee(gross: int) -> int:
    """The acquirer's fee on a charge: 2.9 % + 30 minor units, rounded half up.

    Integer arithmetic only: 2.9 % is 29/1000, and adding 500 before the floor
    division by 1000 rounds half up for non-negative amounts.
    """
    return (gross * 29 + 500) // 1000 + 30


def settlement_lines(conn, acquirer: str, day: dt.date) -> list[tuple]:
    """The lines of one day's report, ordered by time then reference."""
    start, end = day_bounds(day)
    lines = []  # (time, reference, type, gross, fee, currency)
    for row in conn.execute(
        "SELECT id, captured_amount, currency, captured_at FROM authorizations "
        "WHERE acquirer = ? AND captured_at >= ? AND captured_at < ?",
        (acquirer, start, end),
    ):
        gross = row["captured_amount"]
        lines.append((row["captured_at"], row["id"], "charge", gross, charge_fee(gross), row["currency"]))
    # A refund that failed later was paid out on its day all the same; its failure comes back on its own day.
    for row in conn.execute(
        "SELECT id, amount, currency, created FROM refunds "
        f"WHERE acquirer = ? AND {REFUNDED} AND created >= ? AND created < ?",
        (acquirer, start, end),
    ):
        lines.append((row["created"], row["id"], "refund", -row["amount"], 0, row["currency"]))
    for row in conn.execute(
        "SELECT id, amount, currency, failed_at FROM refunds WHERE acquirer = ? AND failed_at >= ? AND failed_at < ?",
        (acquirer, start, end),
    ):
        lines.append((row["failed_at"], row["id"], "refund_failure", row["amount"], 0, row["currency"]))
    for row in conn.execute(
        "SELECT id, amount, currency, withdrawn_at, fee FROM disputes "
        "WHERE acquirer = ? AND withdrawn_at >= ? AND withdrawn_at < ?",
        (acquirer, start, end),
    ):
        lines.append((row["withdrawn_at"], row["id"], "dispute", -row["amount"], 0, row["currency"]))
        lines.append((row["withdrawn_at"], row["id"], "fee", 0, row["fee"], row["currency"]))
    for row in conn.execute(
        "SELECT id, amount, currency, reinstated_at FROM disputes "
        "WHERE acquirer = ? AND reinstated_at >= ? AND reinstated_at < ?",
        (acquirer, start, end),
    ):
        lines.append((row["reinstated_at"], row["id"], "dispute", row["amount"], 0, row["currency"]))
    # Stable order: by time, then reference; a dispute's own line comes before its fee.
    type_order = {"charge": 0, "refund": 1, "refund_failure": 2, "dispute": 3, "fee": 4}
    lines.sort(key=lambda line: (line[0], line[1], type_order[line[2]]))
    return [(ref, type_, gross, fee, gross - fee, currency) for _, ref, type_, gross, fee, currency in lines]


def settlement_csv(conn, acquirer: str, day: dt.date) -> str:
    """One day's report as CSV text (header line first, ``\\n`` line ends)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HEADER)
    writer.writerows(settlement_lines(conn, acquirer, day))
    return out.getvalue()


def settlement_days(conn, acquirer: str) -> list[str]:
    """The UTC dates (ISO) on which this acquirer has settlement lines, oldest first."""
    timestamps = set()
    queries = (
        "SELECT captured_at FROM authorizations WHERE acquirer = ? AND captured_at IS NOT NULL",
        f"SELECT created FROM refunds WHERE acquirer = ? AND {REFUNDED}",
        "SELECT failed_at FROM refunds WHERE acquirer = ? AND failed_at IS NOT NULL",
        "SELECT withdrawn_at FROM disputes WHERE acquirer = ? AND withdrawn_at IS NOT NULL",
        "SELECT reinstated_at FROM disputes WHERE acquirer = ? AND reinstated_at IS NOT NULL",
    )
    for sql in queries:
        timestamps.update(row[0] for row in conn.execute(sql, (acquirer,)))
    return sorted({utc_date(ts).isoformat() for ts in timestamps})
