"""What other areas read of reconciliation: a book's daily settlement (the merchant's dashboard)."""
from dataclasses import dataclass
from datetime import date

from sqlalchemy import text
from sqlalchemy.orm import Session

from app.scoping import Scope

# Days a settlement page shows at most (newest first).
SETTLEMENT_DAYS = 90


@dataclass(frozen=True)
class SettlementDay:
    """What settled for one book on one day, per PSP and currency (minor units; refunds and disputes negative)."""

    day: date
    psp: str
    currency: str
    gross: int
    fees: int
    refunds: int
    disputes: int
    net: int
    lines: int


# Lines carried in this book's postings, of each report's latest version only (a superseded version's lines were
# reversed by the version that replaced them): summed per file when the importer wrote them
# (reconciliation_book_days, a row per file, book, PSP and currency; no index per line).
_DAILY = text("""
SELECT report_date, psp, currency, sum(gross)::bigint AS gross, sum(fees)::bigint AS fees,
       sum(refunds)::bigint AS refunds, sum(disputes)::bigint AS disputes, sum(net)::bigint AS net,
       sum(lines)::bigint AS lines
  FROM reconciliation_book_days
 WHERE merchant_id = :merchant_id AND livemode = :livemode
   AND file_id NOT IN (SELECT supersedes_id FROM reconciliation_files WHERE supersedes_id IS NOT NULL)
   AND report_date IN (SELECT DISTINCT report_date FROM reconciliation_book_days
                        WHERE merchant_id = :merchant_id AND livemode = :livemode
                          AND file_id NOT IN (SELECT supersedes_id FROM reconciliation_files
                                               WHERE supersedes_id IS NOT NULL)
                        ORDER BY report_date DESC LIMIT :limit)
 GROUP BY report_date, psp, currency
 ORDER BY report_date DESC, psp, currency
""")


def daily_settlement(session: Session, scope: Scope, limit: int = SETTLEMENT_DAYS) -> list[SettlementDay]:
    """A book's settlement per day, PSP and currency, newest first: the last ``limit`` days (each with all its rows)."""
    return [SettlementDay(row.report_date, row.psp, row.currency, row.gross, row.fees, row.refunds, row.disputes,
                          row.net, row.lines)
            for row in session.execute(_DAILY, {"merchant_id": scope.merchant_id, "livemode": scope.livemode,
                                                "limit": limit})]


def payment_settlement(session: Session, scope: Scope, payment_id: str) -> list[dict]:
    """The settlement lines that carried one payment (its charge line and fee), for its detail page."""
    # A line is matched to a payment by its PSP and reference (service._CANDIDATES): found through the reference
    # index, not an index per book.
    rows = session.execute(text("""
        SELECT l.report_date, l.psp, l.type, l.gross, l.fee, l.net, l.currency, l.batch_id, l.status, l.transaction_id
          FROM payments p
          JOIN reconciliation_lines l ON l.psp = p.connector AND l.livemode = p.livemode
               AND l.reference = p.psp_reference AND l.type = 'charge'
         WHERE p.merchant_id = :m AND p.livemode = :l AND p.id = :p
           AND l.merchant_id = :m AND l.object_type = 'payment' AND l.object_id = :p
           AND l.status IN ('matched', 'mismatch', 'unchanged')
         ORDER BY l.report_date, l.file_id, l.line_no"""), {"m": scope.merchant_id, "l": scope.livemode,
                                                            "p": payment_id})
    return [dict(row._mapping) for row in rows]


def break_sources(session: Session, rows) -> dict[str, str]:
    """The report source (PSP account: ``stripe`` for the platform's, ``stripe:<credential>`` for a merchant's own,
    a sandbox acquirer's name) each break comes from, by break id: its report line's file; else the settlement
    report carrying its batch (a deposit break); else the credential of the payment, refund or dispute it names;
    else its PSP. Breaks keep only their PSP (the ledger's subject), so a page per account asks here."""
    from sqlalchemy import select

    from app.disputes.models import Dispute
    from app.payments.models import Payment, Refund
    from app.reconciliation.models import ReportFile, ReportLine
    from app.reconciliation.stripe_lines import source_of

    rows = list(rows)
    files = {ref["file"] for row in rows for ref in row.lines or [] if "line" in ref}
    by_file = dict(session.execute(select(ReportFile.id, ReportFile.source).where(ReportFile.id.in_(files)))
                   .all()) if files else {}
    batches = {row.batch_id for row in rows if row.batch_id}
    by_batch = {}
    if batches:
        for batch, livemode, source in session.execute(
                select(ReportLine.batch_id, ReportLine.livemode, ReportFile.source)
                .join(ReportFile, ReportFile.id == ReportLine.file_id)
                .where(ReportLine.batch_id.in_(batches), ReportFile.kind == "settlement").distinct()):
            by_batch[(batch, livemode)] = source
    credentials: dict[tuple, str] = {}
    for model, kind in ((Payment, "payment"), (Refund, "refund"), (Dispute, "dispute")):
        wanted = [row for row in rows if row.object_type == kind and row.object_id]
        for row in wanted:
            scope = Scope(row.merchant_id, row.livemode)
            found = scope.get(session, model, row.object_id)
            if found is None:
                continue
            credential = getattr(found, "credential", None)
            payment_id = getattr(found, "payment_id", None)
            if credential is None and payment_id:
                payment = scope.get(session, Payment, payment_id)
                credential = payment.credential if payment is not None else None
            credentials[(row.merchant_id, row.id)] = credential or "platform"
    out = {}
    for row in rows:
        file_source = next((by_file[ref["file"]] for ref in row.lines or [] if ref.get("file") in by_file), None)
        source = file_source or by_batch.get((row.batch_id, row.livemode))
        if source is None and (row.merchant_id, row.id) in credentials and row.psp == "stripe":
            source = source_of(credentials[(row.merchant_id, row.id)])
        out[row.id] = source or row.psp
    return out
