"""RQ entry points of dashboard CSV exports: build one (with progress), and the sweep that expires them.

The file is read in one REPEATABLE READ snapshot on a connection of its own (the list as it was at one
instant, however long the export takes), while progress and chunks are committed on the job's session
as they are written, so the progress bar moves and a crash loses at most one chunk of work (a rerun
starts over: ``claim`` clears the chunks of a taken-over export).
"""
import logging
import zlib
from typing import Callable

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app.extensions import db
from app.jobs import enqueue_after_commit, job
from app.models_base import utcnow
from app.reporting import exports, listing
from app.reporting.models import DashboardExport, DashboardExportChunk, ExportStatus
from app.reporting.rollups import merchant_zone
from app.scoping import Scope

log = logging.getLogger(__name__)

QUEUE = "default"
# Rows per database read while building: a page of work small enough to keep memory flat.
READ_BATCH = 1000


@job
def build_export(export_id: str) -> str:
    """Build a queued export's CSV; "skipped" when another run has it or it is already done."""
    return run_export(db.session, export_id)


def run_export(session: Session, export_id: str, *, now: Callable = utcnow,
               chunk_rows: int = exports.CHUNK_ROWS) -> str:
    try:
        export = exports.claim(session, export_id, now())
        session.commit()
    except Exception:
        session.rollback()
        raise
    if export is None:
        return "skipped"
    try:
        _build(session, export, now, chunk_rows)
        return "succeeded"
    except Exception as error:  # noqa: BLE001 - recorded on the export for the person waiting for it
        session.rollback()
        log.exception("export %s failed", export_id)
        session.execute(update(DashboardExport).where(DashboardExport.id == export_id).values(
            status=ExportStatus.FAILED, error=f"{type(error).__name__}"[:500], finished_at=now(),
            lease_until=None))
        session.commit()
        return "failed"


def _build(session: Session, export: DashboardExport, now: Callable, chunk_rows: int) -> None:
    scope = Scope(export.merchant_id, export.livemode)
    zone = merchant_zone(export.timezone)
    kind, export_id = export.kind, export.id
    statement = exports.filters_for(kind, export.filters).statement(scope, zone)
    model = exports.model_for(kind)
    columns = exports.columns_for(kind)
    with db.engine.connect().execution_options(isolation_level="REPEATABLE READ") as connection:
        reader = Session(bind=connection)
        try:
            total = reader.scalar(select(func.count()).select_from(statement.order_by(None).subquery())) or 0
            _progress(session, export_id, now, rows_total=total)
            seq, done, size = 0, 0, 0
            buffer, buffered = [exports.encode_rows(columns, [], {}, header=True)], 0
            for rows in listing.iterate(reader, statement, model, batch=min(READ_BATCH, chunk_rows)):
                fees = exports.platform_fees(reader, scope, [r.id for r in rows]) if kind == "payments" else {}
                buffer.append(exports.encode_rows(columns, rows, {"zone": zone, "fees": fees}, header=False))
                buffered += len(rows)
                if buffered >= chunk_rows:
                    size += _write_chunk(session, export, seq, buffer)
                    seq, done, buffer, buffered = seq + 1, done + buffered, [], 0
                    _progress(session, export_id, now, rows_done=done, chunks=seq, byte_size=size)
            if buffer or seq == 0:
                size += _write_chunk(session, export, seq, buffer)
                seq, done = seq + 1, done + buffered
        finally:
            reader.close()
    finished = now()
    session.execute(update(DashboardExport).where(DashboardExport.id == export_id).values(
        status=ExportStatus.SUCCEEDED, rows_done=done, rows_total=done, chunks=seq, byte_size=size,
        finished_at=finished, expires_at=finished + exports.RETENTION, lease_until=None))
    session.commit()


def _write_chunk(session: Session, export: DashboardExport, seq: int, parts: list[bytes]) -> int:
    data = b"".join(parts)
    session.add(DashboardExportChunk(export_id=export.id, seq=seq, merchant_id=export.merchant_id,
                                     livemode=export.livemode, data=zlib.compress(data, 6)))
    session.flush()
    return len(data)


def _progress(session: Session, export_id: str, now: Callable, **values) -> None:
    """Commit progress and renew the lease (each chunk proves the run is alive)."""
    session.execute(update(DashboardExport).where(DashboardExport.id == export_id)
                    .values(lease_until=now() + exports.LEASE, **values))
    session.commit()


@job
def sweep_exports() -> dict:
    """Delete expired exports; hand exports whose job was lost (or died) to a new job."""
    session = db.session
    now = utcnow()
    try:
        deleted = exports.sweep_expired(session, now)
        owed = exports.stale(session, now)
        for export_id in owed:
            enqueue_after_commit(session, "app.jobs.exports.build_export", export_id, queue_name=QUEUE)
        session.commit()
    except Exception:
        session.rollback()
        raise
    return {"deleted": deleted, "requeued": owed}
