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

Every line names the acquirer's payout batch that pays it (``batch_id``, last column): one batch per acquirer,
day and currency, ``po_<acquirer>_<YYYYMMDD>_<CUR>``. The bank statement (camt.053, ``bank_statement_xml``) of
the next day shows each batch's deposit: the sum of its lines' net (a negative total is a debit).

Reconciliation faults (``POST /_admin/settlement_faults``, in memory, cleared by a reset) change what the
reports and the statement say, so that each kind of reconciliation break can be produced on purpose:

| fault       | effect |
|-------------|--------|
| drop        | the line of ``reference`` (and ``type``) is never reported |
| duplicate   | it is reported twice |
| alter       | its ``gross`` (and net) changes by ``amount``, or its ``fee`` by ``fee``, or its ``currency`` becomes ``currency`` |
| delay       | it is reported one day later, in that day's batch |
| unknown     | a charge of ``amount`` for a reference no one knows is added to the report of ``date`` |
| short       | the deposit of the batch ``batch_id`` is ``amount`` less than its total |
| no_batch    | a deposit of ``amount`` with remittance ``batch_id`` that no report names is added on ``date`` |
| missed_dispute | a chargeback on the authorization ``reference`` (if it has no dispute yet) whose notice is never sent: only its dispute and fee lines in the report tell (``disputes.open_unannounced``) |
"""
import csv
import datetime as dt
import io
from xml.sax.saxutils import escape

from .clock import day_bounds, utc_date

HEADER = ("reference", "type", "gross", "fee", "net", "currency", "batch_id")
FAULT_ACTIONS = ("drop", "duplicate", "alter", "delay", "unknown", "short", "no_batch", "missed_dispute")
# Minor-unit exponents of the currencies the sandbox may see with other than 2 decimals (camt.053 amounts are decimals).
EXPONENTS = {"JPY": 0, "KRW": 0, "VND": 0, "CLP": 0, "ISK": 0, "BHD": 3, "KWD": 3, "JOD": 3, "OMR": 3, "TND": 3}
# Refunds that moved money on their day: succeeded, or succeeded and failed later.
REFUNDED = "(status = 'succeeded' OR failed_at IS NOT NULL)"


def charge_fee(gross: int) -> int:
    """The acquirer's fee on a charge: 2.9 % + 30 minor units, rounded half up.

    Integer arithmetic only: 2.9 % is 29/1000, and adding 500 before the floor
    division by 1000 rounds half up for non-negative amounts.
    """
    return (gross * 29 + 500) // 1000 + 30


def batch_id(acquirer: str, day: dt.date, currency: str) -> str:
    """The acquirer's payout batch of one day and currency."""
    return f"po_{acquirer}_{day:%Y%m%d}_{currency}"


def _raw_lines(conn, acquirer: str, day: dt.date) -> list[tuple]:
    """The lines of one day's report as booked, without faults: (reference, type, gross, fee, net, currency)."""
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


def _matches(fault: dict, line: tuple) -> bool:
    return fault.get("reference") == line[0] and fault.get("type", line[1]) == line[1]


def _altered(fault: dict, line: tuple) -> tuple:
    ref, type_, gross, fee, _, currency = line
    gross += int(fault.get("amount") or 0)
    fee += int(fault.get("fee") or 0)
    return (ref, type_, gross, fee, gross - fee, fault.get("currency") or currency)


def settlement_lines(conn, acquirer: str, day: dt.date, faults: list[dict] = ()) -> list[tuple]:
    """The lines of one day's report, ordered by time then reference, with the reconciliation faults applied;
    each line ends with its batch id."""
    lines = []
    for line in _raw_lines(conn, acquirer, day):
        line_faults = [f for f in faults if _matches(f, line)]
        if any(f["action"] in ("drop", "delay") for f in line_faults):
            continue
        for fault in line_faults:
            if fault["action"] == "alter":
                line = _altered(fault, line)
        lines.append(line)
        if any(f["action"] == "duplicate" for f in line_faults):
            lines.append(line)
    # Lines delayed from the day before arrive today, in today's batch.
    for line in _raw_lines(conn, acquirer, day - dt.timedelta(days=1)):
        if any(f["action"] == "delay" and _matches(f, line) for f in faults):
            lines.append(line)
    for fault in faults:
        if fault["action"] == "unknown" and fault.get("date") == day.isoformat():
            amount = int(fault.get("amount") or 1000)
            fee = charge_fee(amount)
            lines.append((fault.get("reference") or f"auth_unknown_{day:%Y%m%d}", "charge", amount, fee,
                          amount - fee, fault.get("currency") or "USD"))
    return [(*line, batch_id(acquirer, day, line[5])) for line in lines]


def settlement_csv(conn, acquirer: str, day: dt.date, faults: list[dict] = ()) -> str:
    """One day's report as CSV text (header line first, ``\\n`` line ends)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HEADER)
    writer.writerows(settlement_lines(conn, acquirer, day, faults))
    return out.getvalue()


def batch_totals(conn, acquirer: str, day: dt.date, faults: list[dict] = ()) -> dict[str, tuple[int, str]]:
    """Each batch of one day's report: (sum of net, currency)."""
    totals: dict[str, tuple[int, str]] = {}
    for line in settlement_lines(conn, acquirer, day, faults):
        total, _ = totals.get(line[6], (0, line[5]))
        totals[line[6]] = (total + line[4], line[5])
    return totals


def _decimal(amount: int, currency: str) -> str:
    exponent = EXPONENTS.get(currency, 2)
    value = abs(amount)
    if not exponent:
        return str(value)
    return f"{value // 10 ** exponent}.{value % 10 ** exponent:0{exponent}d}"


def bank_statement_xml(conn, acquirers, day: dt.date, faults_by_acquirer: dict[str, list[dict]]) -> str:
    """The platform's bank statement of ``day`` as ISO 20022 camt.053.001.02: each acquirer's batches of the day
    before, deposited (credit, or debit for a negative total), one entry per batch, the batch id as remittance."""
    entries = []
    for acquirer in acquirers:
        faults = faults_by_acquirer.get(acquirer, [])
        for batch, (total, currency) in sorted(batch_totals(conn, acquirer, day - dt.timedelta(days=1), faults).items()):
            total -= sum(int(f.get("amount") or 0) for f in faults if f["action"] == "short" and f.get("batch_id") == batch)
            if total:
                entries.append((batch, total, currency))
        for fault in faults:
            if fault["action"] == "no_batch" and fault.get("date") == day.isoformat():
                entries.append((fault.get("batch_id") or f"po_{acquirer}_unknown", int(fault.get("amount") or 1000),
                                fault.get("currency") or "USD"))
    # Kassa's payouts that left the bank this day: debits with the payout id as remittance (sandbox_psp/transfers.py).
    from .transfers import paid_between

    start, end = day_bounds(day)
    entries = [(*entry, "PSP_PAYOUT") for entry in entries]
    entries += [(payout, -amount, currency, "TRANSFER") for payout, amount, currency in paid_between(conn, start, end)]
    ntry = []
    for number, (batch, total, currency, code) in enumerate(entries, 1):
        ntry.append(
            f"<Ntry><NtryRef>{number}</NtryRef><Amt Ccy=\"{escape(currency)}\">{_decimal(total, currency)}</Amt>"
            f"<CdtDbtInd>{'CRDT' if total > 0 else 'DBIT'}</CdtDbtInd><Sts>BOOK</Sts>"
            f"<BookgDt><Dt>{day.isoformat()}</Dt></BookgDt><ValDt><Dt>{day.isoformat()}</Dt></ValDt>"
            f"<AcctSvcrRef>SBXBANK{day:%Y%m%d}{number:05d}</AcctSvcrRef>"
            f"<BkTxCd><Prtry><Cd>{code}</Cd></Prtry></BkTxCd>"
            f"<NtryDtls><TxDtls><RmtInf><Ustrd>{escape(batch)}</Ustrd></RmtInf></TxDtls></NtryDtls></Ntry>")
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            '<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.02"><BkToCstmrStmt>'
            f"<GrpHdr><MsgId>SBXSTMT{day:%Y%m%d}</MsgId><CreDtTm>{day.isoformat()}T23:59:59Z</CreDtTm></GrpHdr>"
            f"<Stmt><Id>SBXSTMT{day:%Y%m%d}</Id><CreDtTm>{day.isoformat()}T23:59:59Z</CreDtTm>"
            "<Acct><Id><IBAN>DE89370400440532013000</IBAN></Id></Acct>"
            + "".join(ntry) + "</Stmt></BkToCstmrStmt></Document>\n")


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
