"""CSV exports of the dashboard's filtered lists, built by a job and kept for a day (no Flask).

An export stores the list's filters; the job (app/jobs/exports.py) reads the rows with the same
statement as the list page (app/reporting/listing.py) in one REPEATABLE READ snapshot, so the file is
the list as it was at one instant, and writes the CSV in zlib-compressed chunks to the database, which
web processes on any machine can stream back. Progress is committed per chunk for the progress bar.

Amounts appear twice: integer minor units (for machines) and formatted for the currency (for people).
Text cells that a spreadsheet would run as a formula (starting with = + - @, a tab or a carriage
return) are prefixed with an apostrophe (OWASP "CSV injection").
"""
import csv
import io
import json
import zlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable, Iterable, Iterator
from zoneinfo import ZoneInfo

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session

from app.ids import new_id
from app.money import DEFAULT_LOCALE, format_money
from app.payments.models import Payment, PaymentOrder, Refund
from app.reporting.listing import PaymentFilters, RefundFilters
from app.reporting.models import DashboardExport, DashboardExportChunk, ExportStatus
from app.scoping import Scope

# Downloads stay available this long after the file is ready (the issue: "expiring after a day").
RETENTION = timedelta(days=1)
# Rows per compressed chunk: ~1 MB of CSV, so a chunk is one modest bytea and progress moves visibly.
CHUNK_ROWS = 5000
# A running export whose worker died is taken over after this long without progress (a chunk takes
# well under a second to read and write; a minute means the job is gone).
LEASE = timedelta(seconds=60)
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
KINDS = ("payments", "refunds")


def csv_safe(value: Any) -> Any:
    """A text cell a spreadsheet will show as text, never evaluate; other values unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


# The key under which an export keeps the locale its amount filters were typed in.
LOCALE_KEY = "locale"


def filters_for(kind: str, args: dict[str, Any], locale: str | None = None):
    """The list filters of an export: from the form (with the person's locale) or as the export stored them."""
    locale = locale or args.get(LOCALE_KEY) or DEFAULT_LOCALE
    return (PaymentFilters if kind == "payments" else RefundFilters).parse(args, locale)


def create_export(session: Session, scope: Scope, kind: str, args: dict[str, Any], *, timezone: str,
                  user_id: str | None, now: datetime, locale: str = DEFAULT_LOCALE) -> DashboardExport:
    """A queued export of the filtered list (the caller enqueues the job after commit)."""
    if kind not in KINDS:
        raise ValueError(f"unknown export kind {kind!r}")
    export = DashboardExport(
        id=new_id("exp"), merchant_id=scope.merchant_id, livemode=scope.livemode, kind=kind,
        filters={**filters_for(kind, args, locale).to_args(), LOCALE_KEY: locale}, timezone=timezone,
        status=ExportStatus.QUEUED,
        rows_done=0, byte_size=0, chunks=0, created_by=user_id, created_at=now,
        # Until it is built the row expires a day after creation; a finished file gets a day from then.
        expires_at=now + RETENTION)
    session.add(export)
    session.flush()
    return export


def get_export(session: Session, scope: Scope, export_id: str) -> DashboardExport | None:
    return scope.get(session, DashboardExport, export_id)


def claim(session: Session, export_id: str, now: datetime) -> DashboardExport | None:
    """Take a queued export (or one whose runner died) for this run; None if done or held by another."""
    row = session.execute(
        update(DashboardExport)
        .where(DashboardExport.id == export_id,
               or_(DashboardExport.status == ExportStatus.QUEUED,
                   (DashboardExport.status == ExportStatus.RUNNING) & (DashboardExport.lease_until < now)))
        .values(status=ExportStatus.RUNNING, lease_until=now + LEASE, started_at=now, rows_done=0,
                byte_size=0, chunks=0)
        .returning(DashboardExport.id)).scalar_one_or_none()
    if row is None:
        return None
    session.execute(delete(DashboardExportChunk).where(DashboardExportChunk.export_id == export_id))
    return session.get(DashboardExport, export_id, populate_existing=True)


def stale(session: Session, now: datetime, *, batch: int = 100) -> list[str]:
    """Exports owed a run: queued for over a lease (a lost enqueue) or running with an expired lease."""
    return list(session.scalars(
        select(DashboardExport.id).where(
            or_((DashboardExport.status == ExportStatus.QUEUED) & (DashboardExport.created_at < now - LEASE),
                (DashboardExport.status == ExportStatus.RUNNING) & (DashboardExport.lease_until < now)))
        .limit(batch)))


def sweep_expired(session: Session, now: datetime, *, batch: int = 500) -> int:
    """Delete exports past their expiry (their chunks go with them); returns how many."""
    ids = select(DashboardExport.id).where(DashboardExport.expires_at < now).limit(batch) \
        .with_for_update(skip_locked=True).scalar_subquery()
    return session.execute(delete(DashboardExport).where(DashboardExport.id.in_(ids))).rowcount or 0


# -- rows --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Column:
    title: str
    value: Callable[[Any, dict], Any]


def _local(moment: datetime | None, zone: ZoneInfo) -> str:
    return moment.astimezone(zone).isoformat(timespec="seconds") if moment else ""


def _money(attr: str) -> list[Column]:
    return [Column(attr, lambda r, _x, a=attr: getattr(r, a)),
            Column(f"{attr}_formatted", lambda r, _x, a=attr: format_money(getattr(r, a), r.currency))]


def payment_status_label(payment) -> str:
    """The status a person reads (as the list shows it)."""
    if payment.status == "succeeded" and payment.amount_refunded:
        return "refunded" if payment.amount_refunded >= payment.amount_received else "partially_refunded"
    if payment.status == "requires_payment_method" and payment.last_error:
        return "failed"
    return payment.status


PAYMENT_COLUMNS = [
    Column("id", lambda p, _x: p.id),
    Column("created", lambda p, x: _local(p.created_at, x["zone"])),
    Column("status", lambda p, _x: payment_status_label(p)),
    *_money("amount"),
    Column("currency", lambda p, _x: p.currency),
    *_money("amount_received"),
    *_money("amount_refunded"),
    Column("platform_fee", lambda p, x: x["fees"].get(p.id, 0)),
    Column("platform_fee_formatted", lambda p, x: format_money(x["fees"].get(p.id, 0), p.currency)),
    Column("capture_method", lambda p, _x: p.capture_method),
    Column("customer_email", lambda p, _x: p.customer_email or ""),
    Column("description", lambda p, _x: p.description or ""),
    Column("card_brand", lambda p, _x: p.card_brand or ""),
    Column("card_last4", lambda p, _x: p.card_last4 or ""),
    Column("psp_reference", lambda p, _x: p.psp_reference or ""),
    Column("metadata", lambda p, _x: json.dumps(p.metadata_ or {}, sort_keys=True, ensure_ascii=False)),
]
REFUND_COLUMNS = [
    Column("id", lambda r, _x: r.id),
    Column("created", lambda r, x: _local(r.created_at, x["zone"])),
    Column("status", lambda r, _x: r.status),
    *_money("amount"),
    Column("currency", lambda r, _x: r.currency),
    Column("payment", lambda r, _x: r.payment_id),
    Column("reason", lambda r, _x: r.reason or ""),
    Column("psp_reference", lambda r, _x: r.psp_reference or ""),
    Column("failure_code", lambda r, _x: r.failure_code or ""),
]


def columns_for(kind: str) -> list[Column]:
    return PAYMENT_COLUMNS if kind == "payments" else REFUND_COLUMNS


def model_for(kind: str):
    return Payment if kind == "payments" else Refund


def platform_fees(session: Session, scope: Scope, payment_ids: list[str]) -> dict[str, int]:
    """Captured minus refunded platform fee per payment (one query per batch of rows)."""
    if not payment_ids:
        return {}
    rows = session.execute(
        scope.select(PaymentOrder, PaymentOrder.payment_id.in_(payment_ids))
        .with_only_columns(PaymentOrder.payment_id,
                           func.sum(PaymentOrder.fee_captured - PaymentOrder.fee_refunded))
        .group_by(PaymentOrder.payment_id))
    return {payment_id: int(total or 0) for payment_id, total in rows}


def encode_rows(columns: list[Column], rows: Iterable, extra: dict, *, header: bool) -> bytes:
    """CSV text (UTF-8, CRLF as RFC 4180 says) of rows, with formula-looking cells escaped."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    if header:
        writer.writerow([c.title for c in columns])
    for row in rows:
        writer.writerow([csv_safe(c.value(row, extra)) for c in columns])
    return buffer.getvalue().encode("utf-8")


def stream(session: Session, scope: Scope, export_id: str, chunks: int) -> Iterator[bytes]:
    """The finished file, chunk by chunk (each read in its own small query)."""
    for seq in range(chunks):
        data = session.scalar(select(DashboardExportChunk.data).where(
            DashboardExportChunk.export_id == export_id, DashboardExportChunk.seq == seq,
            DashboardExportChunk.merchant_id == scope.merchant_id, DashboardExportChunk.livemode == scope.livemode))
        if data is None:
            return
        yield zlib.decompress(data)


def filename(export: DashboardExport) -> str:
    stamp = export.created_at.astimezone(ZoneInfo(export.timezone)).strftime("%Y%m%d-%H%M%S")
    mode = "live" if export.livemode else "test"
    return f"{export.kind}-{mode}-{stamp}.csv"
