"""Reconciliation: import a file as received, stage its lines with COPY, match them in SQL, post per batch and book,
file every mismatch as a break. No Flask; services flush and never commit (the job, CLI or view owns the
transaction).

Posting table (ARCHITECTURE.md, "Money flows in the ledger"; signs in each account's normal direction):

| line (book)                                   | debit                                    | credit |
|-----------------------------------------------|------------------------------------------|--------|
| charge, matched (merchant book)               | ``psp_clearing`` net, ``psp_fees`` fee   | ``psp_receivable`` gross |
| refund / refund_failure / dispute (merchant)  | ``psp_receivable`` or ``psp_clearing``, moved by the line's net (booked when it happened) | |
| fee (a dispute fee, booked by the disputes issue) | ``psp_receivable`` fee               | ``psp_clearing`` fee (expensed nothing twice) |
| unmatched, duplicate, refused (platform book) | ``psp_clearing`` net                     | ``suspense`` net |
| deposit of a batch (each book its share)      | ``cash``                                 | ``psp_clearing`` |
| deposit with no batch / differing from it (platform book) | ``cash`` deposited           | ``suspense`` |

A dispute line that matches nothing is looked up at the PSP and, found, applied as the dispute's missed notice
(``_missed_disputes``) before posting, so it posts as a matched dispute line in the merchant's book.

Fees go to whoever bears the book's fees (app/payouts/fees.py): the platform's ``psp_fees``, or, when sellers
bear them, each line's fee split over its payment's sellers and debited from their ``seller_payable``. One journal transaction per batch, book and import (business key
``settle:<batch>:<book>:<seq>``, ``deposit:<batch>:<book>:<seq>``), so a late line or a corrected version posts
its own difference; each line keeps the id of the transaction that carries it.
"""
import hashlib
import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Callable

import psycopg
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from app import pan
from app.ids import new_id
from app.ledger import accounts
from app.ledger.service import CREDIT, DEBIT, Leg, post_transaction
from app.models_base import lock_until_commit, utcnow
from app.reconciliation import failures
from app.reconciliation.models import PLATFORM_MERCHANT_ID, BankEntry, Break, ReportFile, ReportLine
from app.reconciliation.parsing import LINE_TYPES, SETTLEMENT_COLUMNS, ReportFormatError, check_settlement_row, \
    currency_code, parse_camt053, plain_identifier
from app.reconciliation.stripe_lines import credential_of, parse_stripe_report, psp_of
from app.scoping import Scope

BANK_SOURCE = "bank"
# What each connector charges per its contract: fee = (gross * per_mille + 500) // 1000 + fixed (the sandbox's
# rule, sandbox_psp/settlement.py). A reported fee further than FEE_TOLERANCE from it is a fee_mismatch break.
CONTRACTED_PRICING = {"sandbox": (29, 30), "sandbox_b": (29, 30)}
# One minor unit: the PSP's own rounding may differ from ours by that much; more is a pricing error.
FEE_TOLERANCE = 1
# Days after a capture until its connector reports it: the sandbox reports a capture on its own day, Stripe's
# balance transactions become available after two days.
SETTLEMENT_DELAY_DAYS = {"sandbox": 0, "sandbox_b": 0, "stripe": 2}
# Days a missing line may be late before it is a missing_at_psp break (RECONCILIATION_GRACE_DAYS): 0 files the
# break the day the line was due, and the late line closes it the day it arrives.
DEFAULT_GRACE_DAYS = 0
# Captures older than this are not looked for any more (the janitor of old breaks is an operator).
MISSING_LOOKBACK_DAYS = 30

# Lines a posting carries, and in which book.
_MERCHANT_STATUSES = ("matched", "mismatch")
_PLATFORM_STATUSES = ("unmatched", "duplicate", "refused")


@dataclass(frozen=True)
class DisputeNotices:
    """What a run needs to create a dispute Kassa missed the notice of (a dispute line that matches nothing):
    ``lookup(connector, dispute reference, livemode, credential)`` asks the PSP for the dispute (with the credential
    of the Stripe account whose report it is; None for other PSPs) (a ``Lookup``: found, surely
    absent or unknown; the router's ``retrieve_dispute`` in the jobs), ``deps`` the payments' collaborators the
    disputes service books with. Without it such a line stays a ``missing_in_kassa`` break."""

    lookup: Callable[[str, str, bool, str | None], Any]
    deps: Any
    base_url: str = ""


class ReconciliationError(ValueError):
    """A refusal with a message for the operator (a connector that settles in another currency, a bad file)."""


@dataclass
class RunResult:
    """What one reconciliation run did: counts per line status, breaks opened and closed, postings made."""

    file_id: str
    created: bool
    statuses: dict[str, int] = field(default_factory=dict)
    breaks_opened: list[str] = field(default_factory=list)
    breaks_closed: list[str] = field(default_factory=list)
    transactions: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"file": self.file_id, "created": self.created, "lines": self.statuses,
                "breaks_opened": len(self.breaks_opened), "breaks_closed": len(self.breaks_closed),
                "transactions": len(self.transactions)}


def platform_scope(livemode: bool) -> Scope:
    """The platform book of a mode: suspense and what belongs to no merchant."""
    return Scope(PLATFORM_MERCHANT_ID, livemode)


def _book(scope: Scope) -> str:
    return f"{scope.merchant_id}.{scope.mode}"


# ---------------------------------------------------------------------------------------------- files


# Thirteen digits or more, possibly grouped by spaces or dashes: a file without such a run holds no card number
# (a C-speed scan of the bytes; only a file with one is decoded and searched by app/pan.py's rules).
_LONG_DIGIT_RUN = re.compile(rb"\d(?:[ -]?\d){12}")


def refuse_card_numbers(content: bytes) -> None:
    """ReportFormatError naming the line when a file holds what looks like a card number: no card number enters
    Kassa, not even inside a PSP's report or a bank statement (nothing of such a file is stored)."""
    if _LONG_DIGIT_RUN.search(content) is None:
        return
    decoded = content.decode("utf-8", errors="replace")
    match = pan.find_card_number(decoded)
    if match is not None:
        line = decoded.count("\n", 0, match.start) + 1
        raise ReportFormatError(f"line {line} contains what looks like a {match.brand} card number; card numbers "
                                "must never be sent to Kassa. Nothing of this file was stored: ask the sender for "
                                "a report without it.")


def store_file(session: Session, *, source: str, kind: str, livemode: bool, report_date: date, content: bytes,
               filename: str | None = None, uploaded_by: str | None = None) -> tuple[ReportFile, bool]:
    """Keep a file exactly as received: the same bytes again for the same day return the stored file (created
    False); other bytes for the same source, kind and day become its next version. A file holding a card number
    is refused (``refuse_card_numbers``)."""
    refuse_card_numbers(content)
    checksum = hashlib.sha256(content).hexdigest()
    # One import of a day at a time (a transaction-scoped lock on the day): two imports at once must neither both
    # store the same bytes nor both take version 2; the second waits, then (READ COMMITTED: a new statement sees
    # the first one's commit) finds the file or numbers its version after it.
    lock_until_commit(session, f"reconciliation:{source}:{kind}:{livemode}:{report_date}")
    existing = session.scalars(select(ReportFile).where(
        ReportFile.source == source, ReportFile.kind == kind, ReportFile.livemode == livemode,
        ReportFile.report_date == report_date, ReportFile.checksum == checksum)).one_or_none()
    if existing is not None:
        return existing, False
    latest = session.scalars(select(ReportFile).where(
        ReportFile.source == source, ReportFile.kind == kind, ReportFile.livemode == livemode,
        ReportFile.report_date == report_date).order_by(ReportFile.version.desc()).limit(1)).one_or_none()
    row = ReportFile(id=new_id("rfile"), source=source, kind=kind, livemode=livemode, report_date=report_date,
                     version=(latest.version + 1) if latest else 1, checksum=checksum, content=content,
                     filename=filename, supersedes_id=latest.id if latest else None, uploaded_by=uploaded_by)
    session.add(row)
    session.flush()
    return row, True


# The importer's hot path (bench/RESULTS.md, "Reconciliation"): the file's bytes are COPY'd as they are into a
# temporary staging table (no WAL, no index, no Python per line), then checked, matched and posted by set-based
# statements; each line is written once into reconciliation_lines, already carrying its status, book and posting.
_STAGING_COLUMNS = "reference, type, gross, fee, net, currency, batch_id"


def _integer_sql(column: str) -> str:
    """The column as bigint when it is an integer in its plain form, else NULL (never an error)."""
    return (f"CASE WHEN pg_input_is_valid({column}, 'bigint') THEN "
            f"CASE WHEN {column}::bigint::text = {column} THEN {column}::bigint END END")
_COPY_CHUNK = 1 << 20
# The import's work_mem (its own transaction): a million lines' sorts and hash joins fit in it (at 128MB the
# matching statement's sorts spilled to disk and took 2 to 3 times as long: bench/RESULTS.md). The import runs
# without parallel workers, so that a statement's hashes use this much once (a parallel plan multiplies work_mem
# by its workers, on a server shared with the payments).
IMPORT_WORK_MEM = "512MB"


def _create_staging(session: Session):
    """(Re)create the session's temporary ``reconciliation_staging`` (text columns, dropped at commit); the raw
    psycopg connection to COPY into it."""
    session.execute(text("DROP TABLE IF EXISTS pg_temp.reconciliation_staging"))
    session.execute(text("CREATE TEMPORARY TABLE reconciliation_staging (line_no bigint GENERATED ALWAYS AS IDENTITY, "
                         "reference text, type text, gross text, fee text, net text, currency text, batch_id text) "
                         "ON COMMIT DROP"))
    return session.connection().connection.driver_connection


def _stage_file(session: Session, report: ReportFile) -> int:
    """Stage the report's lines into ``reconciliation_staging``: a CSV's bytes as they are (``_stage_raw``), a
    Stripe account's report (a JSON document of its payouts, app/reconciliation/stripe_lines.py) through its parser.
    The number of lines."""
    if credential_of(report.source) is not None:
        return _stage_parsed(session, parse_stripe_report(report.content))
    return _stage_raw(session, report)


def _stage_parsed(session: Session, lines) -> int:
    """COPY parsed lines into ``reconciliation_staging``, streamed (memory stays flat); checked afterwards by the
    same statements as a CSV's."""
    raw = _create_staging(session)
    count = 0
    with session.begin_nested(), raw.cursor() as cursor:
        with cursor.copy(f"COPY reconciliation_staging ({_STAGING_COLUMNS}) FROM STDIN") as copy:
            for count, line in enumerate(lines, start=1):
                copy.write_row((line.reference, line.type, str(line.gross), str(line.fee), str(line.net),
                                line.currency, line.batch_id))
    return count


def _stage_raw(session: Session, report: ReportFile) -> int:
    """COPY the report's bytes, unparsed, into the session's temporary ``reconciliation_staging`` (dropped at
    commit); its rows numbered in file order (1 = the first line after the header). The number of lines."""
    content = memoryview(report.content)
    newline = report.content.find(b"\n", 0, 4096)
    first_line = report.content[:newline if newline >= 0 else 4096]
    if first_line.rstrip(b"\r").decode("utf-8", "replace") != ",".join(SETTLEMENT_COLUMNS):
        raise ReportFormatError(f"the header must be {','.join(SETTLEMENT_COLUMNS)}")
    body = len(content)
    while body and content[body - 1:body] in (b"\n", b"\r"):  # blank lines at the end: nothing to import
        body -= 1
    raw = _create_staging(session)
    try:
        with session.begin_nested(), raw.cursor() as cursor:
            with cursor.copy(f"COPY reconciliation_staging ({_STAGING_COLUMNS}) FROM STDIN "
                             "(FORMAT csv, HEADER true)") as copy:
                for offset in range(0, body, _COPY_CHUNK):
                    copy.write(content[offset:min(offset + _COPY_CHUNK, body)])
            return max(cursor.rowcount, 0)
    except psycopg.errors.DataError as exc:
        # Postgres names the file's line (header = 1) in the COPY's context.
        where = re.search(r"line (\d+)", exc.diag.context or "")
        prefix = f"line {where.group(1)}: " if where else ""
        if isinstance(exc, psycopg.errors.CharacterNotInRepertoire):
            raise ReportFormatError(f"{prefix}the report is not UTF-8 text") from None
        raise ReportFormatError(f"{prefix}expected {len(SETTLEMENT_COLUMNS)} columns "
                                f"({exc.diag.message_primary})") from None


# The staged text, typed and checked as parsing.check_settlement_row does (stricter on integers: only their plain
# form, "-12" and not "+12", "012", "1_2" or "0x1f"). Per line only what costs little: the integers (cast once,
# printed back) and the type; ``ok`` false refuses the file. ``text_ok`` (patterns: Postgres's regular expressions
# cost microseconds per line) is the reference, batch id and currency: the first version checks the batch ids and
# currencies per batch and book (a handful) and the references of the lines that matched nothing Kassa booked (a
# matched reference is one Kassa stored); a corrected version, which is small, checks every line.
_IDENTIFIER = "'^[A-Za-z0-9_.:-]+$'"  # (no {1,255}: the regex engine makes a state per count)
_PARSED = f"""
    SELECT line_no, reference, type, currency, batch_id, gross, fee, net,
           coalesce(type IN ({", ".join(f"'{t}'" for t in LINE_TYPES)}) AND length(reference) <= 255
                    AND length(batch_id) <= 255 AND gross IS NOT NULL AND fee IS NOT NULL AND net IS NOT NULL
                    AND net = gross - fee, false) AS ok,
           coalesce(reference ~ {_IDENTIFIER} AND batch_id ~ {_IDENTIFIER} AND currency ~ '^[A-Z][A-Z][A-Z]$',
                    false) AS text_ok
      FROM (SELECT line_no, reference, type, currency, batch_id,
                   {_integer_sql("gross")} AS gross, {_integer_sql("fee")} AS fee, {_integer_sql("net")} AS net
              FROM reconciliation_staging) typed
"""


def _refuse_bad_line(session: Session, line_no: int | None) -> None:
    """ReportFormatError for the first line the SQL check refused, in the parser's words."""
    if line_no is None:
        return
    row = session.execute(text(f"SELECT {_STAGING_COLUMNS} FROM reconciliation_staging WHERE line_no = :n"),
                          {"n": line_no}).one()
    check_settlement_row(list(row), line_no + 1)
    raise ReportFormatError(f"line {line_no + 1}: amounts must be integers of minor units in their plain form "
                            "(no sign but '-', no leading zero)")


def _stage_lines(session: Session, report: ReportFile) -> int:
    """Stage the report's lines into reconciliation_lines as 'staged' (a corrected version: its lines are paired
    with the previous version's by the statements below)."""
    count = _stage_file(session, report)
    _refuse_bad_line(session, session.scalar(text(f"SELECT min(line_no) FROM ({_PARSED}) p "
                                                  "WHERE NOT (ok AND text_ok)")))
    session.execute(text(f"""
        INSERT INTO reconciliation_lines (file_id, line_no, psp, livemode, report_date, batch_id, reference, type,
                                          gross, fee, net, currency, status)
        SELECT :f, line_no, :psp, :livemode, :day, batch_id, reference, type, gross, fee, net, currency, 'staged'
          FROM ({_PARSED}) p"""), {"f": report.id, "psp": psp_of(report.source), "livemode": report.livemode,
                                   "day": report.report_date})
    return count


# ---------------------------------------------------------------------------------------------- matching

# A corrected version: lines equal to one of the version it supersedes change nothing ('unchanged'); lines of the
# old version left without an equal are 'superseded' (their posting is reversed by the new one).
_PAIR_UNCHANGED = text("""
WITH new AS (
    SELECT line_no, reference, type, gross, fee, currency, batch_id,
           row_number() OVER (PARTITION BY reference, type, gross, fee, currency, batch_id ORDER BY line_no) AS n
      FROM reconciliation_lines WHERE file_id = :file_id),
old AS (
    SELECT line_no, reference, type, gross, fee, currency, batch_id, merchant_id, object_type, object_id,
           expected_amount, expected_currency, transaction_id, status,
           row_number() OVER (PARTITION BY reference, type, gross, fee, currency, batch_id ORDER BY line_no) AS n
      FROM reconciliation_lines WHERE file_id = :old_id AND status <> 'superseded'),
pairs AS (
    SELECT new.line_no AS new_no, old.* FROM new JOIN old USING (reference, type, gross, fee, currency, batch_id, n))
UPDATE reconciliation_lines l SET status = 'unchanged',
       -- the book that carries it: a merchant's for matched lines, none (the platform's) for the others
       merchant_id = CASE WHEN p.status IN ('matched', 'mismatch', 'unchanged') THEN p.merchant_id END,
       object_type = p.object_type,
       object_id = p.object_id, expected_amount = p.expected_amount, expected_currency = p.expected_currency,
       transaction_id = p.transaction_id
  FROM pairs p WHERE l.file_id = :file_id AND l.line_no = p.new_no
""")
_SUPERSEDE_OLD = text("""
UPDATE reconciliation_lines o SET status = 'superseded'
 WHERE o.file_id = :old_id AND o.status NOT IN ('superseded')
   AND NOT EXISTS (SELECT 1 FROM reconciliation_lines n
                    WHERE n.file_id = :file_id AND n.status = 'unchanged' AND n.reference = o.reference
                      AND n.type = o.type AND n.gross = o.gross AND n.fee = o.fee AND n.currency = o.currency
                      AND n.batch_id = o.batch_id AND n.transaction_id IS NOT DISTINCT FROM o.transaction_id)
RETURNING o.line_no
""")

# The PSP references of payments an operator matched a line in suspense to by hand (app/reconciliation/resolution.py
# ``_move_line_to_payment``: that line settled the payment): the payment's own charge line reported afterwards would
# take its receivable down a second time, so it is a duplicate (in suspense, a break) like a line reported twice.
_SETTLED_BY_HAND = """
    SELECT p.psp_reference AS reference FROM reconciliation_matches h
      JOIN payments p ON p.id = h.object_id AND p.merchant_id = h.merchant_id
     WHERE h.object_type = 'payment' AND h.livemode = :livemode AND p.livemode = :livemode AND p.connector = :psp
       AND p.psp_reference IS NOT NULL
       -- (a corrected version that dropped the line reversed that settlement: the payment is not settled any more)
       AND NOT EXISTS (SELECT 1 FROM reconciliation_lines x WHERE x.file_id = h.file_id AND x.line_no = h.line_no
                          AND x.status = 'superseded')
"""
# The second and later line of the same movement (reference, type and direction) in this file, or a movement an
# earlier report already carried (not a superseded version's line), or a payment settled by hand: a duplicate.
_DUPLICATES = text(f"""
WITH ranked AS (
    SELECT line_no, row_number() OVER (PARTITION BY reference, type, sign(gross) ORDER BY line_no) AS n
      FROM reconciliation_lines WHERE file_id = :file_id AND status = 'staged')
UPDATE reconciliation_lines l SET status = 'duplicate'
  FROM ranked r
 WHERE l.file_id = :file_id AND l.line_no = r.line_no
   AND (r.n > 1 OR EXISTS (
        SELECT 1 FROM reconciliation_lines e
         WHERE e.psp = l.psp AND e.livemode = l.livemode AND e.reference = l.reference AND e.type = l.type
           AND sign(e.gross) = sign(l.gross) AND e.file_id <> l.file_id
           AND e.status IN ('matched', 'mismatch', 'unchanged', 'refused')
           -- a version corrected since is not a report that carried it: its kept lines live on in the correction
           AND e.file_id NOT IN (SELECT supersedes_id FROM reconciliation_files WHERE supersedes_id IS NOT NULL))
        OR (l.type = 'charge' AND l.gross > 0
            AND l.reference IN (SELECT h.reference FROM ({_SETTLED_BY_HAND}) h)))
""")

# What Kassa booked for each kind of line: the object, its book, the amount it booked (in the line's sign) and
# the business key of the posting that booked it (a line whose posting is missing matches nothing); and the id whose
# orders a line's fee is split over (app/payouts/fees.py): a refund's payment, else the object's own id.
_CANDIDATES = """
    SELECT 'payment' AS object_type, p.id AS object_id, p.merchant_id, p.amount_received AS expected,
           p.currency AS expected_currency, p.psp_reference AS reference, 'charge' AS type, 1 AS direction,
           'capture:' || p.id AS business_key, p.id AS fee_payment_id
      FROM payments p WHERE p.connector = :psp AND p.livemode = :livemode AND p.psp_reference IS NOT NULL
    UNION ALL
    SELECT 'refund', r.id, r.merchant_id, -r.amount, r.currency, r.psp_reference, 'refund', -1, 'refund:' || r.id,
           r.payment_id
      FROM refunds r JOIN payments p ON p.id = r.payment_id AND p.merchant_id = r.merchant_id
     WHERE coalesce(r.connector, p.connector) = :psp AND r.livemode = :livemode AND r.psp_reference IS NOT NULL
    UNION ALL
    SELECT 'refund', r.id, r.merchant_id, r.amount, r.currency, r.psp_reference, 'refund_failure', 1,
           'refund_reversal:' || r.id, r.payment_id
      FROM refunds r JOIN payments p ON p.id = r.payment_id AND p.merchant_id = r.merchant_id
     WHERE coalesce(r.connector, p.connector) = :psp AND r.livemode = :livemode AND r.psp_reference IS NOT NULL
    UNION ALL
    SELECT 'dispute', d.id, d.merchant_id, -d.amount, d.currency, d.psp_reference, 'dispute', -1, 'dispute:' || d.id,
           d.id
      FROM disputes d WHERE coalesce(d.connector, d.psp) = :psp AND d.livemode = :livemode
    UNION ALL
    SELECT 'dispute', d.id, d.merchant_id, d.amount, d.currency, d.psp_reference, 'dispute', 1,
           'dispute_reinstated:' || d.id, d.id
      FROM disputes d WHERE coalesce(d.connector, d.psp) = :psp AND d.livemode = :livemode
    UNION ALL
    SELECT 'dispute', d.id, d.merchant_id, -coalesce(d.fee, 0), coalesce(d.fee_currency, d.currency),
           d.psp_reference, 'fee', -1, 'dispute_fee:' || d.id, d.id
      FROM disputes d WHERE coalesce(d.connector, d.psp) = :psp AND d.livemode = :livemode
"""
# Set-based: one statement matches every staged line of the file. A charge compares its gross, a fee line its
# fee (as a negative net), other lines their gross; the currency must be the one booked ('refused' otherwise:
# connectors that settle in another currency wait for FX).
_MATCH = text(f"""
WITH candidates AS ({_CANDIDATES})
UPDATE reconciliation_lines l
   SET merchant_id = c.merchant_id, object_type = c.object_type, object_id = c.object_id,
       expected_amount = c.expected, expected_currency = c.expected_currency,
       status = CASE WHEN c.expected_currency <> l.currency THEN 'refused'
                     WHEN c.expected = CASE WHEN l.type = 'fee' THEN l.net ELSE l.gross END THEN 'matched'
                     ELSE 'mismatch' END
  FROM candidates c
 WHERE l.file_id = :file_id AND l.status = 'staged' AND c.reference = l.reference AND c.type = l.type
   AND c.direction = CASE WHEN l.type = 'fee' THEN -1 WHEN l.gross < 0 THEN -1 ELSE 1 END
   AND EXISTS (SELECT 1 FROM ledger_transactions t WHERE t.merchant_id = c.merchant_id
                  AND t.livemode = :livemode AND t.business_key = c.business_key)
""")
_UNMATCHED = text("UPDATE reconciliation_lines SET status = 'unmatched' WHERE file_id = :file_id AND status = 'staged'")


def _match(session: Session, report: ReportFile) -> None:
    params = {"file_id": report.id, "psp": psp_of(report.source), "livemode": report.livemode}
    if report.supersedes_id:
        session.execute(_PAIR_UNCHANGED, {"file_id": report.id, "old_id": report.supersedes_id})
        session.execute(_SUPERSEDE_OLD, {"file_id": report.id, "old_id": report.supersedes_id})
    session.execute(_DUPLICATES, params)
    session.execute(_MATCH, params)
    session.execute(_UNMATCHED, {"file_id": report.id})


# A first version, in one pass over the staged lines: checked, ranked for duplicates (the second and later line of
# the same movement in the file, or one an earlier report carried: as _DUPLICATES), matched (as _MATCH) into a
# temporary table. A line with more than one candidate keeps one of them, as the UPDATE of _MATCH does.
_MATCH_STAGED = text(f"""
CREATE TEMPORARY TABLE reconciliation_matched ON COMMIT DROP AS
WITH parsed AS (
    SELECT line_no, reference, type, currency, batch_id, gross, fee, net, ok,
           row_number() OVER (PARTITION BY reference, type, sign(gross) ORDER BY line_no) AS n
      FROM ({_PARSED}) p),
candidates AS ({_CANDIDATES}),
booked AS (
    SELECT c.* FROM candidates c
     WHERE EXISTS (SELECT 1 FROM ledger_transactions t WHERE t.merchant_id = c.merchant_id
                      AND t.livemode = :livemode AND t.business_key = c.business_key)),
-- what an earlier report carried (not a superseded version's line), and the charges of payments an operator
-- matched another line to by hand (_SETTLED_BY_HAND)
earlier AS (
    SELECT e.reference, e.type, sign(e.gross) AS direction FROM reconciliation_lines e
     WHERE e.psp = :psp AND e.livemode = :livemode AND e.file_id <> :file_id
       AND e.status IN ('matched', 'mismatch', 'unchanged', 'refused')
       AND e.file_id NOT IN (SELECT supersedes_id FROM reconciliation_files WHERE supersedes_id IS NOT NULL)
    UNION
    SELECT h.reference, 'charge', 1 FROM ({_SETTLED_BY_HAND}) h)
SELECT l.line_no, l.ok AND (c.object_id IS NOT NULL OR l.reference ~ {_IDENTIFIER}) AS ok, l.reference, l.type, l.gross, l.fee, l.net, l.currency, l.batch_id, d.duplicate,
       CASE WHEN NOT d.duplicate THEN c.merchant_id END AS merchant_id,
       CASE WHEN NOT d.duplicate THEN c.object_type END AS object_type,
       CASE WHEN NOT d.duplicate THEN c.object_id END AS object_id,
       CASE WHEN NOT d.duplicate THEN c.fee_payment_id END AS fee_payment_id,
       CASE WHEN NOT d.duplicate THEN c.expected END AS expected_amount,
       CASE WHEN NOT d.duplicate THEN c.expected_currency END AS expected_currency,
       CASE WHEN d.duplicate THEN 'duplicate'
            WHEN c.object_id IS NULL THEN 'unmatched'
            WHEN c.expected_currency <> l.currency THEN 'refused'
            WHEN c.expected = CASE WHEN l.type = 'fee' THEN l.net ELSE l.gross END THEN 'matched'
            ELSE 'mismatch' END AS status,
       -- the book whose posting carries it: the platform's for what is no merchant's
       CASE WHEN d.duplicate OR c.object_id IS NULL OR c.expected_currency <> l.currency THEN :platform
            ELSE c.merchant_id END AS book
  FROM parsed l
  LEFT JOIN booked c ON c.reference = l.reference AND c.type = l.type
        AND c.direction = CASE WHEN l.type = 'fee' THEN -1 WHEN l.gross < 0 THEN -1 ELSE 1 END
  LEFT JOIN earlier e ON e.reference = l.reference AND e.type = l.type AND e.direction = sign(l.gross)
  CROSS JOIN LATERAL (SELECT l.n > 1 OR e.reference IS NOT NULL AS duplicate) d
""")
# A line that met two candidates (the same PSP reference booked twice): one row kept.
_ONE_ROW_PER_LINE = text("DELETE FROM reconciliation_matched a USING reconciliation_matched b "
                         "WHERE a.line_no = b.line_no AND a.ctid > b.ctid")
# The matched lines written once into reconciliation_lines, each with the posting of its batch and book.
_INSERT_MATCHED = text("""
INSERT INTO reconciliation_lines (file_id, line_no, psp, livemode, report_date, batch_id, reference, type, gross, fee,
                                  net, currency, status, merchant_id, object_type, object_id, expected_amount,
                                  expected_currency, transaction_id)
SELECT :f, m.line_no, :psp, :livemode, :day, m.batch_id, m.reference, m.type, m.gross, m.fee, m.net, m.currency,
       m.status, m.merchant_id, m.object_type, m.object_id, m.expected_amount, m.expected_currency, p.transaction_id
  FROM reconciliation_matched m
  LEFT JOIN unnest(CAST(:batches AS text[]), CAST(:books AS text[]), CAST(:transactions AS text[]))
       AS p(batch_id, book, transaction_id)
    ON p.batch_id = m.batch_id AND p.book = m.book
""")
# What this file's lines settled in each merchant's book, per PSP and currency (reconciliation_book_days: the
# merchant's daily settlement page, app/reconciliation/queries.py): a first version's from its sums
# (``_BOOK_DAYS_FROM_SUMS``), a corrected version's (its unchanged lines too) from reconciliation_lines.
_BOOK_DAY_SUMS = """
SELECT merchant_id, CAST(:livemode AS boolean), CAST(:f AS text), CAST(:psp AS text), currency, CAST(:day AS date),
       coalesce(sum(gross) FILTER (WHERE type = 'charge'), 0), coalesce(sum(fee), 0),
       coalesce(sum(gross) FILTER (WHERE type IN ('refund', 'refund_failure')), 0),
       coalesce(sum(gross) FILTER (WHERE type = 'dispute'), 0), sum(net), count(*)
  FROM {lines} WHERE status IN ('matched', 'mismatch', 'unchanged') AND merchant_id IS NOT NULL {more}
 GROUP BY merchant_id, currency
"""
_BOOK_DAYS_INSERT = ("INSERT INTO reconciliation_book_days (merchant_id, livemode, file_id, psp, currency, report_date, "
                     "gross, fees, refunds, disputes, net, lines) ")
_BOOK_DAYS = text(_BOOK_DAYS_INSERT + _BOOK_DAY_SUMS.format(lines="reconciliation_lines", more="AND file_id = :f"))


# Sums per batch, book, currency and status of the matched lines (as _SETTLEMENT_SUMS), and the first line refused.
_MATCHED_SUMS = text("""
SELECT batch_id, book, currency, status, count(*) AS lines,
       coalesce(sum(net), 0)::bigint AS net,
       coalesce(sum(fee) FILTER (WHERE type <> 'fee'), 0)::bigint AS fee,
       coalesce(sum(gross) FILTER (WHERE type <> 'fee'), 0)::bigint AS gross,
       coalesce(sum(net) FILTER (WHERE type = 'fee'), 0)::bigint AS fee_lines_net,
       min(line_no) FILTER (WHERE NOT ok) AS first_bad,
       -- for reconciliation_book_days (``_BOOK_DAY_SUMS``'s columns, from the same pass)
       coalesce(sum(gross) FILTER (WHERE type = 'charge'), 0)::bigint AS charges,
       coalesce(sum(fee), 0)::bigint AS fees,  -- every line's fee (a refund's, a dispute's)
       coalesce(sum(gross) FILTER (WHERE type IN ('refund', 'refund_failure')), 0)::bigint AS refunds,
       coalesce(sum(gross) FILTER (WHERE type = 'dispute'), 0)::bigint AS disputes
  FROM reconciliation_matched GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
""")
# A first version's reconciliation_book_days from its sums (a matched or mismatched line's book is its merchant's).
_BOOK_DAYS_FROM_SUMS = text(_BOOK_DAYS_INSERT + """
SELECT merchant_id, CAST(:livemode AS boolean), CAST(:f AS text), CAST(:psp AS text), currency, CAST(:day AS date),
       sum(charges), sum(fees), sum(refunds), sum(disputes), sum(net), sum(lines)
  FROM unnest(CAST(:books AS text[]), CAST(:currencies AS text[]), CAST(:charges AS bigint[]),
              CAST(:fees AS bigint[]), CAST(:refunds AS bigint[]), CAST(:disputes AS bigint[]), CAST(:nets AS bigint[]),
              CAST(:lines AS bigint[])) AS s(merchant_id, currency, charges, fees, refunds, disputes, net, lines)
 GROUP BY merchant_id, currency
""")


def _match_staged(session: Session, params: dict, count: int) -> list:
    """(Re)build ``reconciliation_matched`` from the staged lines; its sums (``_MATCHED_SUMS``)."""
    session.execute(text("DROP TABLE IF EXISTS pg_temp.reconciliation_matched"))
    matched = session.execute(_MATCH_STAGED, params).rowcount
    if matched != count:
        session.execute(_ONE_ROW_PER_LINE)
    return session.execute(_MATCHED_SUMS).all()


def _import_first_version(session: Session, report: ReportFile, hmac_key: bytes, result: RunResult,
                          dispute_notices: "DisputeNotices | None" = None, now: datetime | None = None) -> int:
    """Stage, check, match and post a first version: the number of lines. Each line is written once into
    reconciliation_lines, after the postings, linked to the one of its batch and book. A dispute line that matched
    nothing is looked up at the PSP first (``dispute_notices``): found, its notice is applied and the lines matched
    again before posting; its ``dispute_notice_missed`` break is opened once the lines are written."""
    count = _stage_file(session, report)
    params = {"file_id": report.id, "psp": psp_of(report.source), "livemode": report.livemode,
              "platform": PLATFORM_MERCHANT_ID}
    # Sorts and hashes of a million lines in memory rather than in temporary files (this transaction only), and the
    # staged table's real size for the planner (unanalysed, it guessed 400,000 rows and sorted where it could hash).
    session.execute(text("SELECT set_config('work_mem', :mem, true), "
                         "set_config('max_parallel_workers_per_gather', '0', true)"), {"mem": IMPORT_WORK_MEM})
    session.execute(text("ANALYZE reconciliation_staging"))
    sums = _match_staged(session, params, count)
    bad = [row.first_bad for row in sums if row.first_bad is not None]
    for row in sums:  # batch ids and currencies: checked once per batch, book and currency
        if not (plain_identifier(row.batch_id) and currency_code(row.currency)):
            bad.append(session.scalar(text("SELECT min(line_no) FROM reconciliation_matched WHERE batch_id = :b "
                                           "AND currency = :c"), {"b": row.batch_id, "c": row.currency}))
    _refuse_bad_line(session, min(bad, default=None))
    created = []
    if dispute_notices is not None:
        references = session.execute(text(
            "SELECT DISTINCT reference FROM reconciliation_matched WHERE status = 'unmatched' AND type = 'dispute' "
            "AND gross < 0 ORDER BY reference")).scalars().all()
        created = _apply_missed_disputes(session, report, dispute_notices, references) if references else []
        if created:  # the disputes are booked now: their lines match
            sums = _match_staged(session, params, count)
    links = _post_sums(session, report, sums, hmac_key, result, staged=True)
    for row in sums:
        result.statuses[row.status] = result.statuses.get(row.status, 0) + row.lines
    written = {"f": report.id, "psp": psp_of(report.source), "livemode": report.livemode, "day": report.report_date}
    session.execute(_INSERT_MATCHED, {**written, **links})
    booked = [row for row in sums if row.status in ("matched", "mismatch")]
    if booked:
        session.execute(_BOOK_DAYS_FROM_SUMS, {**written, **{
            key: [getattr(row, column) for row in booked] for key, column in (
                ("books", "book"), ("currencies", "currency"), ("charges", "charges"), ("fees", "fees"),
                ("refunds", "refunds"), ("disputes", "disputes"), ("nets", "net"), ("lines", "lines"))}})
    _missed_dispute_breaks(session, report, created, result, now or utcnow())
    return count


# The hook a connector's dispute notices come through (Dispute.psp): the sandbox's acquirers share one.
def _notice_hook(connector: str) -> str:
    return "stripe" if connector.startswith("stripe") else "sandbox"


def _missed_disputes(session: Session, report: ReportFile, notices: "DisputeNotices", result: RunResult,
                     now: datetime) -> None:
    """A corrected version's dispute lines (in reconciliation_lines) that matched nothing: ``_apply_missed_disputes``,
    their lines matched again, then ``_missed_dispute_breaks``."""
    references = session.execute(text(
        "SELECT DISTINCT reference FROM reconciliation_lines WHERE file_id = :f AND status = 'unmatched' "
        "AND type = 'dispute' AND gross < 0 ORDER BY reference"), {"f": report.id}).scalars().all()
    created = _apply_missed_disputes(session, report, notices, references)
    if not created:
        return
    session.execute(text("UPDATE reconciliation_lines SET status = 'staged' WHERE file_id = :f "
                         "AND status = 'unmatched' AND reference = ANY(CAST(:refs AS text[]))"),
                    {"f": report.id, "refs": [reference for reference, *_ in created]})
    session.execute(_MATCH, {"file_id": report.id, "psp": psp_of(report.source), "livemode": report.livemode})
    session.execute(_UNMATCHED, {"file_id": report.id})
    _missed_dispute_breaks(session, report, created, result, now)


def _apply_missed_disputes(session: Session, report: ReportFile, notices: "DisputeNotices",
                           references: list[str]) -> list:
    """A dispute line (funds taken) that matches nothing: Kassa missed the dispute's notice. The PSP is asked for
    the dispute; found, it is applied through the disputes service as if its notice had arrived (the dispute is
    created, its withdrawal and fee booked, the merchant told), its lines are matched again, and a
    ``dispute_notice_missed`` break shows an operator that the notice was missed. Surely absent or unknown, or
    about a payment Kassa does not know: the line stays unmatched (a ``missing_in_kassa`` break)."""
    from app.disputes.models import Dispute
    from app.disputes.service import Owner, apply_notice
    from app.payments.models import Payment
    from app.psp.interfaces import CallbackEvent, LookupOutcome

    created = []
    psp = psp_of(report.source)
    credential = credential_of(report.source)  # a Stripe account's report: its disputes are asked of that account
    for reference in references:
        # A PSP call inside the import's transaction (the connector's timeouts bound it): missed notices are rare,
        # and the dispute must be booked before this file's lines are posted.
        lookup = notices.lookup(psp, reference, report.livemode, credential)
        if lookup.outcome != LookupOutcome.FOUND or lookup.found is None:
            continue
        data = dict(lookup.found.raw or {})
        charge = data.get("authorization") or data.get("payment_intent") or data.get("charge")
        if data.get("id") != reference or not isinstance(charge, str):
            continue
        # Across merchants on purpose, like a callback's owner: the charge's reference names its book.
        payment = session.scalars(select(Payment).where(
            Payment.connector == psp, Payment.livemode == report.livemode,
            Payment.psp_reference == charge)).one_or_none()
        if payment is None or payment.amount_received <= 0:
            continue
        scope = Scope(payment.merchant_id, report.livemode)
        hook = _notice_hook(psp)
        event = CallbackEvent(id=f"reconciliation:{report.id}:{reference}", type="dispute.created",
                              psp_reference=charge, data=data, created=data.get("created"), connector=psp,
                              livemode=report.livemode, psp=hook)
        apply_notice(session, hook, event, Owner(scope, payment.id, payment.connector), notices.deps,
                     base_url=notices.base_url)
        dispute = session.scalars(scope.select(Dispute, Dispute.psp == hook, Dispute.psp_reference == reference)
                                  ).one()
        created.append((reference, scope, dispute, payment))
    return created


def _missed_dispute_breaks(session: Session, report: ReportFile, created: list, result: RunResult,
                           now: datetime) -> None:
    """A ``dispute_notice_missed`` break per dispute ``_apply_missed_disputes`` created, naming the file's lines
    of it (once they are in reconciliation_lines)."""
    psp = psp_of(report.source)
    for reference, scope, dispute, payment in created:
        line_nos = session.execute(select(ReportLine.line_no).where(
            ReportLine.file_id == report.id, ReportLine.reference == reference).order_by(ReportLine.line_no)
        ).scalars().all()
        opened = open_break(session, scope, type_="dispute_notice_missed", psp=psp,
                            dedupe_key=f"dispute_notice_missed:{psp}:{reference}",
                            report_date=report.report_date, currency=dispute.currency, kassa_amount=None,
                            psp_amount=-dispute.amount, reference=reference, object_type="dispute",
                            object_id=dispute.id, lines=[{"file": report.id, "line": n} for n in line_nos],
                            detail=f"The report carries dispute {reference} of payment {payment.id}, whose notice "
                                   "Kassa never received: the dispute was created from the PSP's record (its "
                                   "withdrawal and fee booked) and the merchant told. Check the PSP's callbacks.",
                            now=now)
        if opened is not None:
            result.breaks_opened.append(opened.id)


def _differences(session: Session, report: ReportFile) -> dict:
    """What a corrected version changed: lines added, and lines of the previous version no longer there."""
    if not report.supersedes_id:
        return {}
    shape = "reference, type, gross, fee, net, currency, batch_id"
    added = session.execute(text(f"SELECT {shape} FROM reconciliation_lines WHERE file_id = :f AND status <> 'unchanged' "
                                 "ORDER BY line_no"), {"f": report.id}).all()
    removed = session.execute(text(f"SELECT {shape} FROM reconciliation_lines WHERE file_id = :f AND status = 'superseded' "
                                   "ORDER BY line_no"), {"f": report.supersedes_id}).all()
    return {"previous_version": report.version - 1,
            "added": [list(row) for row in added], "removed": [list(row) for row in removed]}


# ---------------------------------------------------------------------------------------------- posting


def _line_changes(line_type: str, gross: int, fee: int, net: int, psp: str, currency: str, platform: bool):
    """Signed changes per account (in each account's normal direction) that one line's settlement makes."""
    if platform:
        return {accounts.psp_clearing(psp, currency): net, accounts.suspense(psp, currency): net}
    if line_type == "fee":
        # The dispute fee was expensed when booked: receivable back up by it, clearing down by it.
        return {accounts.psp_clearing(psp, currency): net, accounts.psp_receivable(psp, currency): -net}
    return {accounts.psp_clearing(psp, currency): net, accounts.psp_fees(currency): fee,
            accounts.psp_receivable(psp, currency): -gross}


# Liabilities grow with credits; the assets and expenses used here with debits.
_CREDIT_NORMAL = ("suspense", "seller_payable", "merchant_revenue", "payouts_in_transit")


def legs_from_changes(changes: dict[str, int], currency_of) -> list[Leg]:
    """Legs that make each account's balance change by its signed amount (zero changes dropped)."""
    legs = []
    for code, change in sorted(changes.items()):
        if not change:
            continue
        normal = CREDIT if code.split(":")[0] in _CREDIT_NORMAL else DEBIT
        other = DEBIT if normal == CREDIT else CREDIT
        legs.append(Leg(code, normal if change > 0 else other, abs(change), currency_of(code)))
    return legs


def _currency(code: str) -> str:
    return code.rsplit(":", 1)[1]


# Sums per batch, book and currency of what this file's lines settle (and, for a corrected version, minus what the
# lines it superseded had settled, in the books that carried them). Aggregated in SQL: memory stays flat however
# long the file; Python sees one row per batch, book and currency.
_SETTLEMENT_SUMS = text("""
WITH moved AS (
    SELECT batch_id, currency, type, gross, fee, net, 1 AS sign,
           CASE WHEN status IN ('unmatched', 'duplicate', 'refused') THEN :platform ELSE merchant_id END AS book
      FROM reconciliation_lines
     WHERE file_id = :f AND status IN ('matched', 'mismatch', 'unmatched', 'duplicate', 'refused')
    UNION ALL
    SELECT l.batch_id, l.currency, l.type, l.gross, l.fee, l.net, -1, coalesce(h.merchant_id, t.merchant_id)
      FROM reconciliation_lines l JOIN ledger_transactions t ON t.id = l.transaction_id
      -- a line in suspense an operator moved to a payment's book (resolution.py): reversed in that book, where its
      -- settlement now is (its fee was the book's psp_fees: it has no object whose sellers would bear it)
      LEFT JOIN LATERAL (SELECT h.merchant_id FROM reconciliation_matches h
                          WHERE h.file_id = l.file_id AND h.line_no = l.line_no AND h.livemode = l.livemode
                            AND h.matched_by = 'operator' LIMIT 1) h ON true
     WHERE l.file_id = :old AND l.status = 'superseded')
SELECT batch_id, book, currency,
       coalesce(sum(sign * net), 0)::bigint AS net,
       coalesce(sum(sign * fee) FILTER (WHERE type <> 'fee'), 0)::bigint AS fee,
       coalesce(sum(sign * gross) FILTER (WHERE type <> 'fee'), 0)::bigint AS gross,
       coalesce(sum(sign * net) FILTER (WHERE type = 'fee'), 0)::bigint AS fee_lines_net
  FROM moved GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
""")
_LINK_LINES = text("""
UPDATE reconciliation_lines l SET transaction_id = m.transaction_id
  FROM unnest(CAST(:batches AS text[]), CAST(:books AS text[]), CAST(:transactions AS text[]))
       AS m(batch_id, book, transaction_id)
 WHERE l.file_id = :f AND l.status IN ('matched', 'mismatch', 'unmatched', 'duplicate', 'refused')
   AND l.batch_id = m.batch_id
   AND m.book = CASE WHEN l.status IN ('unmatched', 'duplicate', 'refused') THEN :platform ELSE l.merchant_id END
""")


# The fee of each payment per group of the sums being posted (batch, book and currency: ``g``, numbered ``grp``) of
# this file (refund lines through their refund's payment), minus what superseded lines of the previous version had
# charged: the ``fees`` of ``fee_parts_sql`` (app/payouts/fees.py), read only for books whose sellers bear fees.
_GROUPS = ("unnest(CAST(:g_books AS text[]), CAST(:g_batches AS text[]), CAST(:g_currencies AS text[]), "
           "CAST(:g_statuses AS text[])) WITH ORDINALITY AS g(book, batch_id, currency, status, grp)")
_FEES_BY_PAYMENT = f"""
WITH moved AS (
    SELECT g.grp, l.merchant_id AS book, l.object_type, l.object_id, l.fee, 1 AS sign
      FROM reconciliation_lines l JOIN {_GROUPS}
        ON g.book = l.merchant_id AND g.batch_id = l.batch_id AND g.currency = l.currency
     WHERE l.file_id = :f AND l.status IN ('matched', 'mismatch') AND l.type <> 'fee' AND l.fee <> 0
    UNION ALL
    SELECT g.grp, t.merchant_id, l.object_type, l.object_id, l.fee, -1
      FROM reconciliation_lines l JOIN ledger_transactions t ON t.id = l.transaction_id
      JOIN {_GROUPS} ON g.book = t.merchant_id AND g.batch_id = l.batch_id AND g.currency = l.currency
     WHERE l.file_id = :old AND l.status = 'superseded' AND l.type <> 'fee' AND l.fee <> 0)
SELECT m.grp, m.book AS merchant_id, coalesce(r.payment_id, m.object_id) AS payment_id,
       sum(m.sign * m.fee)::bigint AS fee
  FROM moved m LEFT JOIN refunds r ON m.object_type = 'refund' AND r.id = m.object_id AND r.merchant_id = m.book
 GROUP BY 1, 2, 3
"""


# The same for a first version (``_import_first_version``), whose lines are not yet in reconciliation_lines when it
# posts: read from its temporary ``reconciliation_matched``, per status too (its sums are per batch, book, currency
# and status), with the payment each line's fee is split over found as it matched (``fee_payment_id``). One pass
# over the staged lines for every book and batch; only payments with orders are summed.
_FEES_BY_PAYMENT_STAGED = f"""
SELECT g.grp, m.book AS merchant_id, m.fee_payment_id AS payment_id, sum(m.fee)::bigint AS fee
  FROM reconciliation_matched m
  JOIN {_GROUPS} ON g.book = m.book AND g.batch_id = m.batch_id AND g.currency = m.currency AND g.status = m.status
 WHERE m.type <> 'fee' AND m.fee <> 0
   AND EXISTS (SELECT 1 FROM payment_orders o WHERE o.merchant_id = m.book AND o.payment_id = m.fee_payment_id)
 GROUP BY 1, 2, 3
"""


def _fee_changes(session: Session, report: ReportFile, sums, staged: bool) -> dict[int, dict]:
    """Where each sums row's fees go (signed, normal direction), by the row's index: ``psp_fees`` when the platform
    bears the book's fees, else each payment's fee split over its sellers' payables (a fee left on no seller stays
    in ``psp_fees``). The splits of every such row in one statement (``seller_fee_totals``); ``staged``: a first
    version's lines, read from ``reconciliation_matched`` per status."""
    from app.payouts.fees import SELLER, fee_bearer, seller_fee_totals

    bearers: dict[str, str] = {}
    changes: dict[int, dict] = {}
    split = {"g_books": [], "g_batches": [], "g_currencies": [], "g_statuses": []}
    rows = {}
    for index, row in enumerate(sums):
        if row.book == PLATFORM_MERCHANT_ID or not row.fee:
            continue
        if row.book not in bearers:
            bearers[row.book] = fee_bearer(session, Scope(row.book, report.livemode))
        if bearers[row.book] != SELLER:
            changes[index] = {accounts.psp_fees(row.currency): row.fee}
            continue
        rows[len(split["g_books"]) + 1] = index  # its grp (WITH ORDINALITY counts from 1)
        for key, value in (("g_books", row.book), ("g_batches", row.batch_id), ("g_currencies", row.currency),
                           ("g_statuses", row.status if staged else "")):
            split[key].append(value)
    if rows:
        if staged:
            totals = seller_fee_totals(session, _FEES_BY_PAYMENT_STAGED, split)
        else:
            totals = seller_fee_totals(session, _FEES_BY_PAYMENT, {"f": report.id, "old": report.supersedes_id or "",
                                                                   **split})
        for grp, index in rows.items():
            currency = sums[index].currency
            own: dict[str, int] = defaultdict(int)
            left = sums[index].fee
            for seller, part in totals.get(grp, {}).items():
                own[accounts.seller_payable(seller, currency)] -= part
                left -= part
            if left:
                own[accounts.psp_fees(currency)] += left
            changes[index] = own
    return changes


def _post_sums(session: Session, report: ReportFile, sums, hmac_key: bytes, result: RunResult, *,
               staged: bool = False) -> dict:
    """Post one transaction per batch and book from the sums per batch, book and currency (``staged``: a first
    version's, per status too, from ``reconciliation_matched``); the links {batches, books, transactions} of each
    posting to its lines."""
    groups: dict[tuple[str, str], dict] = defaultdict(lambda: defaultdict(int))
    psp = psp_of(report.source)
    fees = _fee_changes(session, report, sums, staged)
    for index, row in enumerate(sums):
        changes = groups[(row.batch_id, row.book)]
        clearing = accounts.psp_clearing(psp, row.currency)
        if row.book == PLATFORM_MERCHANT_ID:
            changes[clearing] += row.net
            changes[accounts.suspense(psp, row.currency)] += row.net
            continue
        # Charges, refunds, disputes (see _line_changes): clearing by net, fees by fee, receivable by -gross; a
        # dispute-fee line: clearing by its net, receivable back up by as much.
        changes[clearing] += row.net
        for code, change in fees.get(index, {}).items():
            changes[code] += change
        changes[accounts.psp_receivable(psp, row.currency)] += -row.gross - row.fee_lines_net
    seq = f"{report.report_date:%Y%m%d}v{report.version}"
    links = {"batches": [], "books": [], "transactions": []}
    for (batch, merchant_id), changes in sorted(groups.items()):
        scope = Scope(merchant_id, report.livemode)
        legs = legs_from_changes(changes, _currency)
        if not legs:
            continue
        posted = post_transaction(
            session, scope, f"settle:{batch}:{_book(scope)}:{seq}", "settlement", legs, hmac_key=hmac_key,
            description=f"Settlement of {report.source} batch {batch}, report of {report.report_date} "
                        f"v{report.version}", reference=batch)
        result.transactions.append(posted.id)
        for key, value in (("batches", batch), ("books", merchant_id), ("transactions", posted.id)):
            links[key].append(value)
    return links


def _post_settlement(session: Session, report: ReportFile, hmac_key: bytes, result: RunResult) -> None:
    """One transaction per batch and book for this file's lines (and the reversal of superseded ones)."""
    sums = session.execute(_SETTLEMENT_SUMS, {"f": report.id, "old": report.supersedes_id or "",
                                              "platform": PLATFORM_MERCHANT_ID}).all()  # (no status column)
    links = _post_sums(session, report, sums, hmac_key, result)
    if links["batches"]:
        session.execute(_LINK_LINES, {"f": report.id, "platform": PLATFORM_MERCHANT_ID, **links})
    # An automatic match is the line itself (its book, object and transaction): a row per line in
    # reconciliation_matches would double the writes of a million-line file (bench/RESULTS.md); that table holds the
    # operators' matches by hand (app/reconciliation/resolution.py).


# ---------------------------------------------------------------------------------------------- breaks


def open_break(session: Session, scope: Scope, *, type_: str, psp: str, dedupe_key: str, report_date: date,
               currency: str, kassa_amount: int | None, psp_amount: int | None, reference: str | None = None,
               batch_id: str | None = None, object_type: str | None = None, object_id: str | None = None,
               lines: list[dict] | None = None, detail: str = "", now: datetime | None = None) -> Break | None:
    """File a break once per cause (its dedupe key in its book); None when it is already filed."""
    existing = session.scalars(scope.select(Break, Break.dedupe_key == dedupe_key)).one_or_none()
    if existing is not None:
        return None
    row = scope.new(Break, id=new_id("brk"), type=type_, psp=psp, dedupe_key=dedupe_key, status="open",
                    report_date=report_date, currency=currency, kassa_amount=kassa_amount, psp_amount=psp_amount,
                    reference=reference, batch_id=batch_id, object_type=object_type, object_id=object_id,
                    lines=lines or [], detail=detail, opened_at=now or utcnow())
    session.add(row)
    session.flush()
    from app.events import record_event

    record_event(session, platform_scope(scope.livemode), "reconciliation.break_opened", "reconciliation_break",
                 row.id, break_object(row))
    return row


def break_object(row: Break) -> dict:
    """A break as JSON (CLI, events, console)."""
    return {"id": row.id, "object": "reconciliation_break", "type": row.type, "status": row.status,
            "merchant": row.merchant_id, "livemode": row.livemode, "psp": row.psp,
            "report_date": row.report_date.isoformat(), "reference": row.reference, "batch": row.batch_id,
            "currency": row.currency, "kassa_amount": row.kassa_amount, "psp_amount": row.psp_amount,
            "object_type": row.object_type, "object_id": row.object_id, "lines": row.lines, "detail": row.detail,
            "assigned_to": row.assigned_to, "opened_at": row.opened_at.isoformat() if row.opened_at else None,
            "closed_at": row.closed_at.isoformat() if row.closed_at else None, "resolution": row.resolution,
            "resolution_note": row.resolution_note, "resolved_by": row.resolved_by,
            "resolution_transaction": row.resolution_transaction_id}


# A first version's lines that can open a break, read from its temporary reconciliation_matched (what was just
# written to reconciliation_lines, without an index scan of a million lines there).
_SUSPICIOUS_STAGED = """
SELECT line_no, reference, type, gross, fee, net, currency, batch_id, status, merchant_id, object_type, object_id,
       expected_amount, expected_currency
  FROM reconciliation_matched
 WHERE status IN ('mismatch', 'unmatched', 'duplicate', 'refused') {fees}
 ORDER BY line_no
"""


def _line_breaks(session: Session, report: ReportFile, result: RunResult, now: datetime,
                 staged: bool = False) -> None:
    psp = psp_of(report.source)
    pricing = CONTRACTED_PRICING.get(psp)
    # Only lines that can open a break are read (a clean file of a million lines reads none): the fee check is SQL.
    suspicious = ReportLine.status.in_(("mismatch", "unmatched", "duplicate", "refused"))
    if pricing:
        per_mille, fixed = pricing
        contracted = (ReportLine.gross * per_mille + 500) // 1000 + fixed  # as sandbox_psp/settlement.py: half up
        suspicious = suspicious | ((ReportLine.status == "matched") & (ReportLine.type == "charge")
                                   & (func.abs(ReportLine.fee - contracted) > FEE_TOLERANCE))
    if staged:  # (the same filter: SQL's integer division as the expression above renders it)
        fees = ("OR (status = 'matched' AND type = 'charge' AND abs(fee - ((gross * :per_mille + 500) / 1000 + :fixed))"
                " > :tolerance)") if pricing else ""
        rows = session.execute(text(_SUSPICIOUS_STAGED.format(fees=fees)), {
            "per_mille": pricing[0], "fixed": pricing[1], "tolerance": FEE_TOLERANCE} if pricing else {}).all()
    else:
        rows = session.execute(select(ReportLine).where(ReportLine.file_id == report.id, suspicious)
                               .order_by(ReportLine.line_no)).scalars().all()
    for line in rows:
        where = [{"file": report.id, "line": line.line_no}]
        common = dict(psp=psp, report_date=report.report_date, reference=line.reference,
                      batch_id=line.batch_id, lines=where, now=now)
        opened = None
        sign = "+" if line.gross >= 0 else "-"
        if line.status == "unmatched":
            opened = open_break(session, platform_scope(report.livemode), type_="missing_in_kassa",
                                dedupe_key=f"missing_in_kassa:{psp}:{line.reference}:{line.type}:{sign}",
                                currency=line.currency, kassa_amount=None, psp_amount=line.net,
                                detail=f"The {line.type} line of {line.reference} matches nothing Kassa booked; its "
                                       "net is in suspense.", **common)
        elif line.status == "duplicate":
            opened = open_break(session, platform_scope(report.livemode), type_="duplicate",
                                dedupe_key=f"duplicate:{report.id}:{line.line_no}", currency=line.currency,
                                kassa_amount=None, psp_amount=line.net,
                                detail=f"The {line.type} line of {line.reference} was reported before; its net is "
                                       "in suspense.", **common)
        elif line.status == "refused":
            opened = open_break(session, Scope(line.merchant_id, report.livemode), type_="currency_mismatch",
                                dedupe_key=f"currency_mismatch:{psp}:{line.reference}:{line.type}:{sign}",
                                currency=line.currency, kassa_amount=line.expected_amount, psp_amount=line.gross,
                                object_type=line.object_type, object_id=line.object_id,
                                detail=f"Reported in {line.currency}, booked in {line.expected_currency}: settling "
                                       "in another currency waits for FX; the line is in the platform's suspense.",
                                **common)
        elif line.status == "mismatch":
            opened = open_break(session, Scope(line.merchant_id, report.livemode), type_="amount_mismatch",
                                dedupe_key=f"amount_mismatch:{psp}:{line.reference}:{line.type}:{sign}",
                                currency=line.currency, kassa_amount=line.expected_amount,
                                psp_amount=line.net if line.type == "fee" else line.gross,
                                object_type=line.object_type, object_id=line.object_id,
                                detail="Posted as reported; the difference stays in psp_receivable.", **common)
        elif line.type == "charge" and pricing:
            per_mille, fixed = pricing
            contracted = (line.gross * per_mille + 500) // 1000 + fixed
            if abs(line.fee - contracted) > FEE_TOLERANCE:
                opened = open_break(session, Scope(line.merchant_id, report.livemode), type_="fee_mismatch",
                                    dedupe_key=f"fee_mismatch:{psp}:{line.reference}",
                                    currency=line.currency, kassa_amount=contracted, psp_amount=line.fee,
                                    object_type=line.object_type, object_id=line.object_id,
                                    detail=f"Fee {line.fee} where the contract says {contracted}; posted as reported.",
                                    **common)
        if opened is not None:
            result.breaks_opened.append(opened.id)


# What Kassa booked that a report must carry once due: captures (on their capture day) and succeeded refunds (on
# the day they were booked), each with the report line type that carries it.
_DUE = """
    SELECT 'payment' AS object_type, p.merchant_id, p.id, p.psp_reference, p.amount_received AS amount, p.currency,
           p.captured_at AS booked_at, 'charge' AS type, 'Captured' AS verb
      FROM payments p
     WHERE p.connector = :psp AND p.livemode = :livemode AND p.amount_received > 0 AND p.psp_reference IS NOT NULL
       AND (CAST(:credential AS text) IS NULL OR coalesce(p.credential, 'platform') = :credential)
       AND p.captured_at >= CAST(:since AS date) AND p.captured_at < CAST(:cutoff AS date) + 1
    UNION ALL
    SELECT 'refund', r.merchant_id, r.id, r.psp_reference, r.amount, r.currency, r.finished_at, 'refund', 'Refunded'
      FROM refunds r JOIN payments p ON p.id = r.payment_id AND p.merchant_id = r.merchant_id
     WHERE coalesce(r.connector, p.connector) = :psp AND r.livemode = :livemode AND r.status = 'succeeded'
       AND r.psp_reference IS NOT NULL
       AND (CAST(:credential AS text) IS NULL OR coalesce(r.credential, p.credential, 'platform') = :credential)
       AND r.finished_at >= CAST(:since AS date) AND r.finished_at < CAST(:cutoff AS date) + 1
"""


def _missing_at_psp(session: Session, report: ReportFile, grace_days: int, result: RunResult, now: datetime) -> None:
    """Captures and refunds due in a report by now (settlement delay + grace) that no report carried:
    missing_at_psp. A Stripe account's report answers only for what was made with that account's credential."""
    psp = psp_of(report.source)
    cutoff = report.report_date - timedelta(days=SETTLEMENT_DELAY_DAYS.get(psp, 0) + grace_days)
    rows = session.execute(text(f"""
        SELECT d.* FROM ({_DUE}) d
         WHERE NOT EXISTS (SELECT 1 FROM reconciliation_lines l
                            WHERE l.psp = :psp AND l.livemode = :livemode AND l.reference = d.psp_reference
                              AND l.type = d.type AND l.status IN ('matched', 'mismatch', 'unchanged', 'refused'))
           -- a payment an operator matched a line to by hand is settled by that line
           AND NOT (d.type = 'charge' AND d.psp_reference IN (SELECT h.reference FROM ({_SETTLED_BY_HAND}) h))
         ORDER BY d.booked_at, d.id"""), {"psp": psp, "livemode": report.livemode, "cutoff": cutoff,
                                          "credential": credential_of(report.source),
                                          "since": cutoff - timedelta(days=MISSING_LOOKBACK_DAYS)}).all()
    for row in rows:
        opened = open_break(session, Scope(row.merchant_id, report.livemode), type_="missing_at_psp", psp=psp,
                            dedupe_key=f"missing_at_psp:{psp}:{row.psp_reference}:{row.type}",
                            report_date=report.report_date, currency=row.currency, kassa_amount=row.amount,
                            psp_amount=None, reference=row.psp_reference, object_type=row.object_type,
                            object_id=row.id,
                            detail=f"{row.verb} on {row.booked_at:%Y-%m-%d}; no report of {psp} carries it.",
                            now=now)
        if opened is not None:
            result.breaks_opened.append(opened.id)


def _close_late(session: Session, report: ReportFile, result: RunResult, now: datetime) -> None:
    """A line that arrived late closes the missing_at_psp break of what it carries."""
    closed = session.execute(text("""
        UPDATE reconciliation_breaks b SET status = 'closed', closed_at = :now
          FROM reconciliation_lines l
         WHERE l.file_id = :f AND l.status IN ('matched', 'mismatch') AND b.merchant_id = l.merchant_id
           AND b.livemode = l.livemode AND b.status = 'open' AND b.type = 'missing_at_psp' AND b.psp = l.psp
           AND b.reference = l.reference
           AND b.dedupe_key = 'missing_at_psp:' || l.psp || ':' || l.reference || ':' || l.type
        RETURNING b.id"""), {"f": report.id, "now": now}).scalars().all()
    result.breaks_closed.extend(closed)


def _close_superseded(session: Session, report: ReportFile, result: RunResult, now: datetime) -> None:
    """A corrected version drops or changes a line an earlier version of the day carried: that line's posting is
    reversed by this version's, so the breaks filed about it are closed (their key freed, so that this version's
    own line files its break again if it is still wrong)."""
    if not report.supersedes_id:
        return
    closed = session.execute(text("""
        UPDATE reconciliation_breaks b
           SET status = 'closed', closed_at = :now, dedupe_key = left(b.dedupe_key, 200) || ':superseded:' || :f
         WHERE b.status = 'open' AND b.livemode = :livemode AND b.psp = :psp_name
           AND b.reference IN (SELECT reference FROM reconciliation_lines WHERE file_id = :old AND status = 'superseded')
           AND EXISTS (SELECT 1 FROM jsonb_array_elements(b.lines) e
                        WHERE e->>'file' IN (SELECT id FROM reconciliation_files
                                              WHERE source = :source AND kind = 'settlement' AND livemode = :livemode
                                                AND report_date = :day AND id <> :f))
        RETURNING b.id"""), {"now": now, "f": report.id, "old": report.supersedes_id, "livemode": report.livemode,
                             # A break names the PSP (``stripe``), a file its source (``stripe:<credential>``).
                             "psp_name": psp_of(report.source), "source": report.source,
                             "day": report.report_date}).scalars().all()
    result.breaks_closed.extend(closed)


# ---------------------------------------------------------------------------------------------- runs


def _lock_psp_lines(session: Session, psp: str, livemode: bool) -> None:
    """Wait for any other import of this PSP's lines in this mode (a transaction-scoped advisory lock)."""
    lock_until_commit(session, f"reconciliation-lines:{psp}:{livemode}")


def reconcile_settlement(session: Session, *, psp: str, livemode: bool, report_date: date, content: bytes,
                         hmac_key: bytes, grace_days: int = DEFAULT_GRACE_DAYS, filename: str | None = None,
                         uploaded_by: str | None = None, now: datetime | None = None,
                         dispute_notices: DisputeNotices | None = None) -> RunResult:
    """Import one settlement report and reconcile it: stage, match, post, file breaks. The same bytes again
    change nothing; a corrected version posts only its difference."""
    now = now or utcnow()
    # One import of a PSP's lines at a time, whatever their day (store_file's lock serialises only the versions of
    # one day): a line is a duplicate when an earlier report carried it, so an import of another day running at
    # once must be waited for and seen (READ COMMITTED: the statements below see its commit). Taken before the
    # day's lock, always in that order (a transaction importing several days holds it already).
    _lock_psp_lines(session, psp_of(psp), livemode)
    report, created = store_file(session, source=psp, kind="settlement", livemode=livemode, report_date=report_date,
                                 content=content, filename=filename, uploaded_by=uploaded_by)
    failures.clear_failure(session, source=psp, kind="settlement", livemode=livemode, report_date=report_date)
    result = RunResult(report.id, created)
    if created and report.supersedes_id is None:
        report.line_count = _import_first_version(session, report, hmac_key, result, dispute_notices, now)
    elif created:
        # A corrected version pairs its lines with the previous version's (few lines, rarely): staged, then
        # matched and posted by the statements on reconciliation_lines.
        report.line_count = _stage_lines(session, report)
        _match(session, report)
        if dispute_notices is not None:
            _missed_disputes(session, report, dispute_notices, result, now)
        report.differences = _differences(session, report)
        _close_superseded(session, report, result, now)
        _post_settlement(session, report, hmac_key, result)
        session.execute(_BOOK_DAYS, {"f": report.id, "psp": psp_of(report.source), "livemode": report.livemode,
                                     "day": report.report_date})
    if created:
        _line_breaks(session, report, result, now, staged=report.supersedes_id is None)
        _close_late(session, report, result, now)
        _missing_at_psp(session, report, grace_days, result, now)
        session.flush()
        from app.events import record_event

        record_event(session, platform_scope(livemode), "reconciliation.completed", "reconciliation_file", report.id,
                     {"id": report.id, "object": "reconciliation_file", "source": psp, "kind": "settlement",
                      "report_date": report_date.isoformat(), "version": report.version, **result.as_dict()})
    if not (created and report.supersedes_id is None):  # (a first version counted its lines as it matched them)
        result.statuses = dict(session.execute(select(ReportLine.status, func.count()).where(
            ReportLine.file_id == report.id).group_by(ReportLine.status)).all())
    return result


def reconcile_statement(session: Session, *, livemode: bool, report_date: date, content: bytes, hmac_key: bytes,
                        filename: str | None = None, uploaded_by: str | None = None,
                        now: datetime | None = None) -> RunResult:
    """Import a camt.053 bank statement: each deposit against its batch (three-way), each book's share of a batch
    paid in full moved from psp_clearing to cash; a deposit that differs from its batch or names none is a break
    and its money waits in the platform's suspense."""
    now = now or utcnow()
    statement, created = store_file(session, source=BANK_SOURCE, kind="bank_statement", livemode=livemode,
                                    report_date=report_date, content=content, filename=filename,
                                    uploaded_by=uploaded_by)
    failures.clear_failure(session, source=BANK_SOURCE, kind="bank_statement", livemode=livemode,
                           report_date=report_date)
    result = RunResult(statement.id, created)
    if not created:
        result.statuses = dict(session.execute(select(BankEntry.status, func.count()).where(
            BankEntry.file_id == statement.id).group_by(BankEntry.status)).all())
        return result
    entries = list(parse_camt053(statement.content))
    statement.line_count = len(entries)
    seq = f"{report_date:%Y%m%d}v{statement.version}"
    paired: set[int] = set()
    for number, entry in enumerate(entries, start=1):
        row = BankEntry(file_id=statement.id, entry_no=number, livemode=livemode, booking_date=entry.booking_date,
                        amount=entry.amount, currency=entry.currency, batch_id=entry.batch_id,
                        bank_reference=entry.bank_reference, status="staged")
        session.add(row)
        session.flush()
        repeated = _repeated_entry(session, statement, row, paired)
        if repeated is not None:
            # A corrected version repeats the entry its previous version posted: nothing moves again.
            paired.add(repeated.entry_no)
            row.status = repeated.status
            continue
        row.status = _deposit(session, statement, row, seq, hmac_key, result, now)
    session.flush()
    from app.events import record_event

    result.statuses = dict(session.execute(select(BankEntry.status, func.count()).where(
        BankEntry.file_id == statement.id).group_by(BankEntry.status)).all())
    record_event(session, platform_scope(livemode), "reconciliation.completed", "reconciliation_file", statement.id,
                 {"id": statement.id, "object": "reconciliation_file", "source": BANK_SOURCE, "kind": "bank_statement",
                  "report_date": report_date.isoformat(), "version": statement.version, **result.as_dict()})
    return result


def _repeated_entry(session: Session, statement: ReportFile, entry: BankEntry, paired: set[int]) -> BankEntry | None:
    """The equal entry (not yet paired) of the statement version this one corrects, if any."""
    if not statement.supersedes_id:
        return None
    return session.scalars(select(BankEntry).where(
        BankEntry.file_id == statement.supersedes_id, BankEntry.entry_no.not_in(paired) if paired else True,
        BankEntry.booking_date == entry.booking_date, BankEntry.amount == entry.amount,
        BankEntry.currency == entry.currency, BankEntry.batch_id.is_not_distinct_from(entry.batch_id),
        BankEntry.bank_reference.is_not_distinct_from(entry.bank_reference))
        .order_by(BankEntry.entry_no).limit(1)).one_or_none()


def batch_shares(session: Session, livemode: bool, batch_id: str, *, source: str | None = None) -> list:
    """Each book's share of a batch (rows: book, psp, currency, total): its lines of the latest version of each report
    (superseded ones excluded), the platform's for lines that wait in suspense; only the files of ``source`` if
    given (a Stripe account's payouts are its own)."""
    return session.execute(text("""
        SELECT CASE WHEN status IN ('matched', 'mismatch', 'unchanged') AND merchant_id IS NOT NULL
                    THEN merchant_id ELSE :platform END AS book,
               psp, currency, sum(net)::bigint AS total
          FROM reconciliation_lines
         WHERE livemode = :livemode AND batch_id = :batch AND status NOT IN ('superseded', 'staged')
           AND file_id NOT IN (SELECT supersedes_id FROM reconciliation_files WHERE supersedes_id IS NOT NULL)
           AND (CAST(:source AS text) IS NULL
                OR file_id IN (SELECT id FROM reconciliation_files WHERE source = :source AND livemode = :livemode))
         GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"""), {"livemode": livemode, "batch": batch_id, "source": source,
                                "platform": PLATFORM_MERCHANT_ID}).all()


def _deposited_before(session: Session, statement: ReportFile, entry: BankEntry) -> bool:
    """Whether another statement, or an earlier entry of this one, already deposited this batch (its shares
    moved from clearing to cash)."""
    session.flush()  # the earlier entries' statuses
    return entry.batch_id is not None and session.scalar(select(func.count()).select_from(BankEntry).where(
        BankEntry.livemode == statement.livemode, BankEntry.batch_id == entry.batch_id,
        BankEntry.status == "matched",
        (BankEntry.file_id != statement.id) | (BankEntry.entry_no < entry.entry_no))) > 0


def _outgoing_payout(session: Session, statement: ReportFile, entry: BankEntry, hmac_key: bytes, result: RunResult,
                     now: datetime) -> str | None:
    """An entry naming a payout (its id as remittance): an outgoing transfer, whose money left ``cash`` when the payout
    was booked paid (app/payouts/service.py). Matched when it is that payout's amount; a break otherwise (nothing is
    posted: an operator looks). A payout exported in a SEPA file becomes paid (a debit) or failed (a credit: the bank
    returned it) only here, from the statement (app/payouts/sepa.py). None when it names no payout."""
    from app.payouts.models import Payout
    from app.payouts.sepa import settle_from_statement

    payout = session.scalars(select(Payout).where(Payout.id == entry.batch_id, Payout.livemode == statement.livemode)
                             .with_for_update()).one_or_none()
    if payout is None:
        return None
    if payout.rail == "sepa" and settle_from_statement(session, payout, amount=entry.amount, currency=entry.currency,
                                                       hmac_key=hmac_key) is not None:
        return "matched"
    if entry.amount > 0:
        return None  # a credit naming a payout of another rail: judged as any deposit
    if -entry.amount == payout.amount and entry.currency == payout.currency and payout.status in ("paid", "failed"):
        return "matched"
    opened = open_break(session, Scope(payout.merchant_id, statement.livemode), type_="deposit_mismatch",
                        psp=BANK_SOURCE, dedupe_key=f"payout_transfer:{payout.id}:{statement.id}:{entry.entry_no}",
                        report_date=statement.report_date, currency=entry.currency, kassa_amount=-payout.amount,
                        psp_amount=entry.amount, batch_id=payout.id, object_type="payout", object_id=payout.id,
                        lines=[{"file": statement.id, "entry": entry.entry_no}], now=now,
                        detail=f"The bank's transfer for payout {payout.id} ({payout.status}) differs from it.")
    if opened is not None:
        result.breaks_opened.append(opened.id)
    return "mismatch"


def _deposit(session: Session, statement: ReportFile, entry: BankEntry, seq: str, hmac_key: bytes,
             result: RunResult, now: datetime) -> str:
    """Match one bank entry to its batch and post it; the entry's status."""
    if entry.batch_id:
        outgoing = _outgoing_payout(session, statement, entry, hmac_key, result, now)
        if outgoing is not None:
            return outgoing
    shares = batch_shares(session, statement.livemode, entry.batch_id or "")
    entry_ref = [{"file": statement.id, "entry": entry.entry_no}]
    platform = platform_scope(statement.livemode)
    psp = shares[0].psp if shares else BANK_SOURCE
    total = sum(share.total for share in shares)
    currencies = {share.currency for share in shares}
    if shares and _deposited_before(session, statement, entry):
        # The batch was paid in before: this money is not the merchants' clearing a second time; it waits in the
        # platform's suspense as a duplicate until an operator resolves it.
        opened = open_break(session, platform, type_="duplicate", psp=psp,
                            dedupe_key=f"duplicate_deposit:{statement.id}:{entry.entry_no}",
                            report_date=statement.report_date, currency=entry.currency, kassa_amount=total,
                            psp_amount=entry.amount, batch_id=entry.batch_id, lines=entry_ref, now=now,
                            detail=f"Batch {entry.batch_id} was deposited before; this deposit is in suspense.")
        if opened is not None:
            result.breaks_opened.append(opened.id)
        if entry.amount:
            legs = legs_from_changes({accounts.cash(entry.currency): entry.amount,
                                      accounts.suspense(psp, entry.currency): entry.amount}, _currency)
            posted = post_transaction(session, platform, f"deposit:{entry.batch_id}:{_book(platform)}:{seq}:dup"
                                      f"{entry.entry_no}", "deposit", legs, hmac_key=hmac_key,
                                      reference=entry.batch_id,
                                      description=f"Bank deposit {entry.bank_reference}: batch deposited before")
            result.transactions.append(posted.id)
        return "mismatch"
    if not shares or currencies != {entry.currency} or total != entry.amount:
        kind = "deposit_without_batch" if not shares else "deposit_mismatch"
        # Per entry: a batch paid in two parts (or again by a corrected statement's other entry) files each part's
        # break and posts each part's money, rather than the second colliding with the first's key.
        opened = open_break(session, platform, type_=kind, psp=psp,
                            dedupe_key=f"{kind}:{entry.batch_id or entry.bank_reference}:{entry.currency}:"
                                       f"{statement.id}:{entry.entry_no}",
                            report_date=statement.report_date, currency=entry.currency,
                            kassa_amount=total if shares else None, psp_amount=entry.amount,
                            batch_id=entry.batch_id, lines=entry_ref, now=now,
                            detail="The deposit names no batch Kassa knows; it is in suspense." if not shares else
                            f"Batch total {total} {'/'.join(sorted(currencies))}, deposited {entry.amount} "
                            f"{entry.currency}; the deposit is in suspense until resolved.")
        if opened is not None:
            result.breaks_opened.append(opened.id)
        if entry.amount:
            legs = legs_from_changes({accounts.cash(entry.currency): entry.amount,
                                      accounts.suspense(psp, entry.currency): entry.amount}, _currency)
            posted = post_transaction(session, platform,
                                      f"deposit:{entry.batch_id or entry.bank_reference}:{_book(platform)}:{seq}"
                                      f":e{entry.entry_no}",
                                      "deposit", legs, hmac_key=hmac_key, reference=entry.batch_id,
                                      description=f"Bank deposit {entry.bank_reference} not matched to its batch")
            result.transactions.append(posted.id)
        return "unmatched" if not shares else "mismatch"
    for share in shares:
        if not share.total:
            continue
        scope = Scope(share.book, statement.livemode)
        posted = deposit_share(session, scope, share, f"deposit:{entry.batch_id}:{_book(scope)}:{seq}",
                               hmac_key=hmac_key, reference=entry.batch_id,
                               description=f"Deposit of batch {entry.batch_id} ({entry.bank_reference})")
        if posted is not None:
            result.transactions.append(posted.id)
            continue
        opened = share_not_deposited(session, scope, share, entry.batch_id, dedupe=f"{statement.id}:{entry.entry_no}",
                                     report_date=statement.report_date, lines=entry_ref, now=now)
        if opened is not None:
            result.breaks_opened.append(opened.id)
    return "matched"


def deposit_share(session: Session, scope: Scope, share, business_key: str, *, hmac_key: bytes, reference: str,
                  description: str):
    """Move one book's share of a deposited batch from ``psp_clearing`` to ``cash``; None when the book's cash
    cannot give a negative share (its refunds, or lines waiting in suspense, exceed what the batch took in for it,
    and cash never goes negative): nothing is written then (app/ledger/service.py) and the caller files the
    share for an operator (``share_not_deposited``) instead of refusing the whole deposit."""
    from app.ledger.errors import InsufficientBalance

    legs = legs_from_changes({accounts.cash(share.currency): share.total,
                              accounts.psp_clearing(share.psp, share.currency): -share.total}, _currency)
    try:
        return post_transaction(session, scope, business_key, "deposit", legs, hmac_key=hmac_key,
                                reference=reference, description=description)
    except InsufficientBalance:
        if share.total >= 0:
            raise
        return None


def share_not_deposited(session: Session, scope: Scope, share, batch_id: str, *, dedupe: str, report_date: date,
                        lines: list[dict] | None = None, now: datetime | None = None) -> Break | None:
    """The platform's ``deposit_mismatch`` break for a book's negative share that its cash could not give: the share
    stays in that book's ``psp_clearing`` (the other books' shares are deposited) until an operator moves it. No
    amounts on the break (nothing for an acceptance to post: the money is not in suspense); the detail says them."""
    return open_break(
        session, platform_scope(scope.livemode), type_="deposit_mismatch", psp=share.psp,
        dedupe_key=f"deposit_share:{batch_id}:{scope.merchant_id}:{dedupe}", report_date=report_date,
        currency=share.currency, kassa_amount=None, psp_amount=None, batch_id=batch_id, lines=lines, now=now,
        detail=f"Batch {batch_id} was deposited, but the cash of {scope.merchant_id} ({scope.mode}) cannot give its "
               f"share {share.total} {share.currency} (its refunds or lines in suspense exceed what the batch took in "
               "for it; cash never goes negative): that share stays in its psp_clearing. Move it by hand.")
