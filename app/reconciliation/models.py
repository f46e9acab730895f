"""Reconciliation tables (migration 0022_reconciliation): files as received, their staged lines, bank statement
entries, matches and breaks.

Files, lines and bank entries are the platform's (a PSP's report covers every merchant it settles): platform-wide
tables, keyed by their own ids, the lines by (file, line number). What belongs to a book is merchant-owned and
sharded by merchant (ARCHITECTURE.md, "Growing past one machine"): a match and a break carry ``merchant_id``
first in their primary key. What belongs to no merchant (a line that matches nothing, a deposit that differs
from its batch) is a break of the platform book (``PLATFORM_MERCHANT_ID``, one book per mode).
"""
from datetime import date, datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, ForeignKeyConstraint, Index, Integer, LargeBinary, \
    PrimaryKeyConstraint, String, Text, UniqueConstraint, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.models_base import Base, utcnow

# The platform book: a reserved merchants row (migration 0022) so that the ledger's book rules (every
# account and transaction in one book, merchant_id NOT NULL) hold for suspense too; one book per mode.
PLATFORM_MERCHANT_ID = "mer_platform"

FILE_KINDS = ("settlement", "bank_statement")
LINE_TYPES = ("charge", "refund", "refund_failure", "dispute", "fee", "payout")
LINE_STATUSES = ("staged", "matched", "mismatch", "unmatched", "duplicate", "unchanged", "refused", "superseded")
BREAK_TYPES = ("missing_in_kassa", "missing_at_psp", "amount_mismatch", "currency_mismatch", "duplicate",
               "fee_mismatch", "deposit_mismatch", "deposit_without_batch", "dispute_notice_missed")
BREAK_STATUSES = ("open", "closed", "resolved")
RESOLUTIONS = ("matched_by_hand", "accepted", "psp_asked", "written_off")
BANK_ENTRY_STATUSES = ("staged", "matched", "mismatch", "unmatched")


def _in(values) -> str:
    return ", ".join(f"'{v}'" for v in values)


class ReportFile(Base):
    """A file as received (settlement report or bank statement), unchanged, with its checksum and version.

    The same bytes again are the same file (unique checksum per source, kind and mode); other bytes for the same
    day are the next version, which names the one it supersedes.
    """

    __tablename__ = "reconciliation_files"
    __table_args__ = (
        # The same bytes for the same day are the same file (an empty report is the same bytes every day).
        UniqueConstraint("source", "kind", "livemode", "report_date", "checksum", name="uq_reconciliation_files_checksum"),
        UniqueConstraint("source", "kind", "livemode", "report_date", "version",
                         name="uq_reconciliation_files_version"),
        CheckConstraint(f"kind IN ({_in(FILE_KINDS)})", name="kind"),
        CheckConstraint("version >= 1", name="version"),
    )

    id: Mapped[str] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(64))          # the PSP (connector) or the bank
    kind: Mapped[str] = mapped_column(String(20))
    livemode: Mapped[bool] = mapped_column(server_default=text("false"))
    report_date: Mapped[date]
    version: Mapped[int] = mapped_column(Integer)
    checksum: Mapped[str] = mapped_column(String(64))        # SHA-256 of content, hex
    # Stored uncompressed (STORAGE EXTERNAL, migration 0031_recon_import_storage): written once, read rarely, and
    # compressing a large report took three times as long as writing it.
    content: Mapped[bytes] = mapped_column(LargeBinary)
    filename: Mapped[str | None] = mapped_column(String(255))
    supersedes_id: Mapped[str | None] = mapped_column(String)
    line_count: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    # What this version changed against the one it supersedes: {"added": [...], "removed": [...], "changed": [...]}.
    differences: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    uploaded_by: Mapped[str | None] = mapped_column(String(320))
    received_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=text("now()"))


class ReportLine(Base):
    """One line of a settlement report: COPY'd raw into a temporary staging table, checked and matched in SQL, then
    written here once with its status, book and posting (service._import_first_version)."""

    __tablename__ = "reconciliation_lines"
    __table_args__ = (
        # No foreign key to reconciliation_files (a trigger per line; migration 0035_recon_lines_lean): the importer
        # writes a file's lines in the transaction that stores the file, and files are never deleted.
        PrimaryKeyConstraint("file_id", "line_no", name="pk_reconciliation_lines"),
        CheckConstraint(f"type IN ({_in(LINE_TYPES)})", name="type"),
        CheckConstraint(f"status IN ({_in(LINE_STATUSES)})", name="status"),
        CheckConstraint("currency ~ '^[A-Z]{3}$'", name="currency"),
        Index("ix_reconciliation_lines_reference", "psp", "livemode", "reference", "type"),
        Index("ix_reconciliation_lines_batch", "psp", "livemode", "batch_id"),
        # No index per book (0035): a book's daily settlement is read from reconciliation_book_days, a payment's
        # lines through the reference index.
        # Written once, with its posting's id (migration 0031_recon_import_storage: the default fillfactor again).
        {"postgresql_with": {"fillfactor": 100}},
    )

    file_id: Mapped[str] = mapped_column(String)
    line_no: Mapped[int] = mapped_column(Integer)
    psp: Mapped[str] = mapped_column(String(64))
    livemode: Mapped[bool] = mapped_column(server_default=text("false"))
    report_date: Mapped[date]
    batch_id: Mapped[str] = mapped_column(String(100))
    reference: Mapped[str] = mapped_column(String(255))
    type: Mapped[str] = mapped_column(String(20))
    gross: Mapped[int]
    fee: Mapped[int]
    net: Mapped[int]
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(16), server_default=text("'staged'"))
    # Once matched: the book, what Kassa knows (object and the amount it booked) and the posting carrying it.
    merchant_id: Mapped[str | None] = mapped_column(String)
    object_type: Mapped[str | None] = mapped_column(String(20))
    object_id: Mapped[str | None] = mapped_column(String)
    expected_amount: Mapped[int | None]
    expected_currency: Mapped[str | None] = mapped_column(String(3))
    transaction_id: Mapped[str | None] = mapped_column(String)


class BookDay(Base):
    """What one file's lines settled in one book, per PSP and currency (the merchant's daily settlement page): written
    by the importer with the lines, so that the page reads a row per file and not an index entry per line."""

    __tablename__ = "reconciliation_book_days"
    __table_args__ = (
        PrimaryKeyConstraint("merchant_id", "livemode", "file_id", "psp", "currency",
                             name="pk_reconciliation_book_days"),
        ForeignKeyConstraint(["merchant_id"], ["merchants.id"], name="fk_reconciliation_book_days_merchant"),
        ForeignKeyConstraint(["file_id"], ["reconciliation_files.id"], name="fk_reconciliation_book_days_file"),
        Index("ix_reconciliation_book_days_day", "merchant_id", "livemode", "report_date"),
    )

    merchant_id: Mapped[str] = mapped_column(String)
    livemode: Mapped[bool] = mapped_column(server_default=text("false"))
    file_id: Mapped[str] = mapped_column(String)
    psp: Mapped[str] = mapped_column(String(64))
    currency: Mapped[str] = mapped_column(String(3))
    report_date: Mapped[date]
    gross: Mapped[int]
    fees: Mapped[int]
    refunds: Mapped[int]
    disputes: Mapped[int]
    net: Mapped[int]
    lines: Mapped[int]


class BankEntry(Base):
    """A credit (or debit) on the platform's bank account from a camt.053 statement, per PSP payout batch."""

    __tablename__ = "reconciliation_bank_entries"
    __table_args__ = (
        PrimaryKeyConstraint("file_id", "entry_no", name="pk_reconciliation_bank_entries"),
        ForeignKeyConstraint(["file_id"], ["reconciliation_files.id"], name="fk_reconciliation_bank_entries_file"),
        CheckConstraint(f"status IN ({_in(BANK_ENTRY_STATUSES)})", name="status"),
        CheckConstraint("currency ~ '^[A-Z]{3}$'", name="currency"),
        Index("ix_reconciliation_bank_entries_batch", "livemode", "batch_id"),
    )

    file_id: Mapped[str] = mapped_column(String)
    entry_no: Mapped[int] = mapped_column(Integer)
    livemode: Mapped[bool] = mapped_column(server_default=text("false"))
    booking_date: Mapped[date]
    amount: Mapped[int]                                      # signed: credits positive
    currency: Mapped[str] = mapped_column(String(3))
    batch_id: Mapped[str | None] = mapped_column(String(100))  # the PSP's payout id, from the remittance info
    bank_reference: Mapped[str | None] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(16), server_default=text("'staged'"))


class Match(Base):
    """A line matched by an operator to what a book knows, with the posting that moved it there. (An automatic
    match is kept on the line itself: its book, object and transaction.)"""

    __tablename__ = "reconciliation_matches"
    __table_args__ = (
        PrimaryKeyConstraint("merchant_id", "id", name="pk_reconciliation_matches"),
        CheckConstraint("matched_by IN ('auto', 'operator')", name="matched_by"),
        Index("ix_reconciliation_matches_line", "merchant_id", "file_id", "line_no"),
        Index("ix_reconciliation_matches_scope_object", "merchant_id", "livemode", "object_id"),
    )

    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"))
    livemode: Mapped[bool] = mapped_column(server_default=text("false"))
    id: Mapped[str] = mapped_column(String)
    file_id: Mapped[str] = mapped_column(String)
    line_no: Mapped[int] = mapped_column(Integer)
    object_type: Mapped[str] = mapped_column(String(20))
    object_id: Mapped[str] = mapped_column(String)
    transaction_id: Mapped[str | None] = mapped_column(String)
    matched_by: Mapped[str] = mapped_column(String(10), server_default=text("'auto'"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=text("now()"))


class Break(Base):
    """A mismatch someone must look at: its type, both sides' amounts, the lines behind it, its resolution.

    ``kassa_amount`` is what Kassa booked (NULL: nothing), ``psp_amount`` what the report or the bank says (NULL:
    nothing). A break stays ``open`` until a late line closes it (``closed``) or an operator resolves it
    (``resolved``, with a resolution kind, a note and the adjusting ledger transaction, if any).
    """

    __tablename__ = "reconciliation_breaks"
    __table_args__ = (
        PrimaryKeyConstraint("merchant_id", "id", name="pk_reconciliation_breaks"),
        # One open break per cause: re-running a day does not file it again.
        UniqueConstraint("merchant_id", "livemode", "dedupe_key", name="uq_reconciliation_breaks_dedupe"),
        CheckConstraint(f"type IN ({_in(BREAK_TYPES)})", name="type"),
        CheckConstraint(f"status IN ({_in(BREAK_STATUSES)})", name="status"),
        CheckConstraint(f"resolution IN ({_in(RESOLUTIONS)})", name="resolution"),
        CheckConstraint("(status = 'resolved') = (resolution IS NOT NULL)", name="resolved_has_resolution"),
        Index("ix_reconciliation_breaks_scope_status", "merchant_id", "livemode", "status", "opened_at"),
        Index("ix_reconciliation_breaks_open", "opened_at", postgresql_where=text("status = 'open'")),
    )

    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"))
    livemode: Mapped[bool] = mapped_column(server_default=text("false"))
    id: Mapped[str] = mapped_column(String)
    type: Mapped[str] = mapped_column(String(30))
    psp: Mapped[str] = mapped_column(String(64))
    dedupe_key: Mapped[str] = mapped_column(String(300))
    status: Mapped[str] = mapped_column(String(10), server_default=text("'open'"))
    report_date: Mapped[date]
    reference: Mapped[str | None] = mapped_column(String(255))
    batch_id: Mapped[str | None] = mapped_column(String(100))
    currency: Mapped[str] = mapped_column(String(3))
    kassa_amount: Mapped[int | None]
    psp_amount: Mapped[int | None]
    object_type: Mapped[str | None] = mapped_column(String(20))
    object_id: Mapped[str | None] = mapped_column(String)
    # The lines behind it: [{"file": id, "line": n}, ...] (and bank entries as {"file", "entry"}).
    lines: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, server_default=text("'[]'::jsonb"))
    detail: Mapped[str] = mapped_column(Text, server_default=text("''"))
    assigned_to: Mapped[str | None] = mapped_column(String(320))
    opened_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=text("now()"))
    closed_at: Mapped[datetime | None]
    resolution: Mapped[str | None] = mapped_column(String(20))
    resolution_note: Mapped[str | None] = mapped_column(Text)
    resolved_by: Mapped[str | None] = mapped_column(String(320))
    resolution_transaction_id: Mapped[str | None] = mapped_column(String)


class FetchFailure(Base):
    """A report or statement whose scheduled fetch keeps failing: one row per source, kind, mode and day, from the
    first failed fetch until a file of that day is imported (fetched, uploaded or given to the CLI), which deletes
    it. Once ``raise_at`` (first failure + RECONCILIATION_FETCH_RAISE_HOURS) has passed it is raised in the
    operators' inbox and on the console's reconciliation page. Platform-wide: a PSP's report covers every merchant."""

    __tablename__ = "reconciliation_fetch_failures"
    __table_args__ = (
        PrimaryKeyConstraint("source", "kind", "livemode", "report_date", name="pk_reconciliation_fetch_failures"),
        CheckConstraint(f"kind IN ({_in(FILE_KINDS)})", name="kind"),
        Index("ix_reconciliation_fetch_failures_raise_at", "raise_at"),
    )

    source: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(20))
    livemode: Mapped[bool] = mapped_column(server_default=text("false"))
    report_date: Mapped[date]
    first_failed_at: Mapped[datetime]
    last_failed_at: Mapped[datetime]
    raise_at: Mapped[datetime]
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("1"))
    last_error: Mapped[str] = mapped_column(String(500))
