"""Fetches that keep failing: recorded by the scheduled job at each failed fetch of a day's report or statement,
deleted as soon as a file of that day is imported (however it came: fetch, admin upload, CLI). A failure older
than its ``raise_at`` is raised in the operators' inbox (app/reconciliation/inbox.py) and on the console's
reconciliation page. No Flask; flushes, never commits."""
from datetime import date, datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from app.reconciliation.models import FetchFailure

# RECONCILIATION_FETCH_RAISE_HOURS: the "after a day".
DEFAULT_RAISE_HOURS = 24


def record_failure(session: Session, *, source: str, kind: str, livemode: bool, report_date: date, error: str,
                   now: datetime, raise_after: timedelta) -> None:
    """One more failed fetch of a day: the first one starts the clock (raise_at), later ones count."""
    error = (error or "unknown error")[:500]
    stmt = insert(FetchFailure).values(source=source, kind=kind, livemode=livemode, report_date=report_date,
                                       first_failed_at=now, last_failed_at=now, raise_at=now + raise_after,
                                       attempts=1, last_error=error)
    session.execute(stmt.on_conflict_do_update(
        index_elements=["source", "kind", "livemode", "report_date"],
        set_={"last_failed_at": now, "attempts": FetchFailure.attempts + 1, "last_error": error}))
    session.flush()


def clear_failure(session: Session, *, source: str, kind: str, livemode: bool, report_date: date) -> None:
    """A file of the day was imported: its failures are over."""
    session.execute(delete(FetchFailure).where(
        FetchFailure.source == source, FetchFailure.kind == kind, FetchFailure.livemode == livemode,
        FetchFailure.report_date == report_date))


def raised(session: Session, now: datetime, *, since_before: datetime | None = None,
           limit: int | None = None) -> list[FetchFailure]:
    """Failures past their raise_at, oldest first."""
    query = select(FetchFailure).where(FetchFailure.raise_at <= now)
    if since_before is not None:
        query = query.where(FetchFailure.first_failed_at < since_before)
    query = query.order_by(FetchFailure.first_failed_at, FetchFailure.source, FetchFailure.report_date)
    if limit is not None:
        query = query.limit(limit)
    return list(session.scalars(query))
