"""Payment rollups: Home's figures, maintained from the event stream in the same transaction (no Flask).

Every Event is written in the transaction of the state change it records (app/events.py). A hook of
``record_event`` adds to the event's own INSERT statement, and so to its transaction, a
``payment_rollup_deltas`` row for the events that move a figure:

| event | figure |
|---|---|
| ``payment.processing`` that starts the payment's first authorization | attempted_count + 1 |
| ``payment.succeeded`` (captured) | succeeded_count + 1, gross_amount + amount captured |
| ``refund.succeeded`` | refund_count + 1, refund_amount + amount |

A rolled-back state change takes its delta with it; an outcome applied twice writes no second event
(app/payments/state.py), so no second delta either. ``fold_deltas`` (a sweep) moves deltas into
``payment_rollups`` in one statement; readers sum both tables, so a figure never counts twice or
goes missing between the two. Success rate = succeeded / attempted over the same period.

Buckets are 15 minutes of UTC (app/reporting/models.py says why); the merchant's days are assembled at
read time with PostgreSQL's time zone rules, so a change of the merchant's time zone needs no rebuild.
"""
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import func, literal_column, select, text, union_all
from sqlalchemy.orm import Session

from app.events import on_event_recorded
from app.ids import new_id
from app.reporting.models import ROLLUP_FIELDS, PaymentRollup, PaymentRollupDelta
from app.scoping import Scope

BUCKET = timedelta(minutes=15)
_EPOCH = datetime(2000, 1, 1, tzinfo=timezone.utc)
# One fold moves at most this many deltas: a short statement even after a long pause of the sweep.
FOLD_BATCH = 5000
# The longest custom range Home accepts: a year of 15-minute buckets is ~35,000 rows per currency.
MAX_RANGE_DAYS = 366


def bucket_of(moment: datetime) -> datetime:
    """The start of the 15-minute UTC bucket holding ``moment``."""
    moment = moment.astimezone(timezone.utc)
    return _EPOCH + ((moment - _EPOCH) // BUCKET) * BUCKET


def deltas_for(event_type: str, data: dict[str, Any]) -> dict[str, int] | None:
    """The figures an event adds (see the table above), or None when it moves none."""
    if event_type == "payment.processing":
        authorizations = [a for a in data.get("attempts") or () if a.get("operation") == "authorize"]
        # Confirming creates the authorization attempt in `processing`; a payment coming back from
        # 3-D Secure also moves to processing, but its (only) authorization has succeeded by then, and
        # a retry after a decline has a second authorization: neither is a new attempted payment.
        if len(authorizations) == 1 and authorizations[0].get("status") == "processing":
            return {"attempted_count": 1}
        return None
    if event_type == "payment.succeeded":
        return {"succeeded_count": 1, "gross_amount": int(data.get("amount_received") or 0)}
    if event_type == "refund.succeeded":
        return {"refund_count": 1, "refund_amount": int(data.get("amount") or 0)}
    return None


@on_event_recorded
def _rollup_delta(event: dict[str, Any]):
    """An event's rollup delta row, written by the event's own statement; None when it moves no figure."""
    data = event["data"] or {}
    figures = deltas_for(event["type"], data)
    if not figures or not data.get("currency"):
        return None
    return PaymentRollupDelta, {
        "id": new_id("rud"), "merchant_id": event["merchant_id"], "livemode": bool(event["livemode"]),
        "bucket": bucket_of(event["created_at"]), "currency": str(data["currency"]).upper(),
        "event_id": event["id"], "created_at": event["created_at"],
        **{name: figures.get(name, 0) for name in ROLLUP_FIELDS}}


_FOLD_SQL = text(f"""
WITH moved AS (
    DELETE FROM payment_rollup_deltas
    WHERE id IN (SELECT id FROM payment_rollup_deltas ORDER BY created_at LIMIT :batch FOR UPDATE SKIP LOCKED)
    RETURNING merchant_id, livemode, bucket, currency, {", ".join(ROLLUP_FIELDS)}
), folded AS (
    INSERT INTO payment_rollups (merchant_id, livemode, bucket, currency, {", ".join(ROLLUP_FIELDS)}, updated_at)
    SELECT merchant_id, livemode, bucket, currency, {", ".join(f"sum({f})" for f in ROLLUP_FIELDS)}, now()
    FROM moved GROUP BY merchant_id, livemode, bucket, currency
    ON CONFLICT (merchant_id, livemode, bucket, currency) DO UPDATE SET
        {", ".join(f"{f} = payment_rollups.{f} + EXCLUDED.{f}" for f in ROLLUP_FIELDS)}, updated_at = now()
    RETURNING 1
)
SELECT count(*) FROM moved
""")


def fold_deltas(session: Session, *, batch: int = FOLD_BATCH) -> int:
    """Move up to ``batch`` committed deltas into the rollups (one statement, atomic); returns how many.

    SKIP LOCKED lets two folds run side by side without moving a delta twice; deltas of transactions
    not yet committed are invisible here and are folded by a later run.
    """
    return session.execute(_FOLD_SQL.bindparams(batch=batch)).scalar_one()


# -- reading -------------------------------------------------------------------------------------------------

def merchant_zone(name: str | None) -> ZoneInfo:
    """The merchant's time zone, UTC when unset or unknown."""
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


@dataclass(frozen=True)
class Period:
    """A range of the merchant's local days [start, end), and the UTC instants that bound it."""

    key: str              # today | 7d | 30d | custom
    first_day: date
    last_day: date        # inclusive
    zone: ZoneInfo
    hourly: bool          # chart by hour (a single day) instead of by day

    @property
    def start(self) -> datetime:
        return datetime.combine(self.first_day, time.min, self.zone).astimezone(timezone.utc)

    @property
    def end(self) -> datetime:
        return datetime.combine(self.last_day + timedelta(days=1), time.min, self.zone).astimezone(timezone.utc)

    @property
    def days(self) -> int:
        return (self.last_day - self.first_day).days + 1


def period_for(key: str, zone: ZoneInfo, now: datetime, first: date | None = None,
               last: date | None = None) -> Period:
    """today / 7d / 30d (ending today, local), or a custom inclusive range of local dates."""
    today = now.astimezone(zone).date()
    if key == "custom" and first and last:
        first, last = min(first, last), max(first, last)
        if (last - first).days >= MAX_RANGE_DAYS:
            first = last - timedelta(days=MAX_RANGE_DAYS - 1)
        return Period("custom", first, last, zone, hourly=first == last)
    if key == "today":
        return Period("today", today, today, zone, hourly=True)
    days = 30 if key == "30d" else 7
    return Period("30d" if days == 30 else "7d", today - timedelta(days=days - 1), today, zone, hourly=False)


@dataclass
class CurrencySummary:
    """One currency's figures over a period, and its series (one point per local day or hour)."""

    currency: str
    attempted_count: int = 0
    succeeded_count: int = 0
    gross_amount: int = 0
    refund_count: int = 0
    refund_amount: int = 0
    series: dict[datetime, int] = field(default_factory=dict)  # local slot start -> gross amount

    @property
    def success_rate(self) -> float | None:
        """Succeeded / attempted, None when nothing was attempted."""
        if not self.attempted_count:
            return None
        return min(self.succeeded_count / self.attempted_count, 1.0)

    @property
    def net_amount(self) -> int:
        return self.gross_amount - self.refund_amount


def _scoped_union(scope: Scope, start: datetime, end: datetime):
    """Rollups and not-yet-folded deltas of the book in [start, end), as one row source."""
    columns = lambda model: (model.currency, model.bucket, *(getattr(model, f) for f in ROLLUP_FIELDS))  # noqa: E731
    folded = scope.select(PaymentRollup, PaymentRollup.bucket >= start, PaymentRollup.bucket < end) \
        .with_only_columns(*columns(PaymentRollup))
    pending = scope.select(PaymentRollupDelta, PaymentRollupDelta.bucket >= start, PaymentRollupDelta.bucket < end) \
        .with_only_columns(*columns(PaymentRollupDelta))
    return union_all(folded, pending).subquery("r")


def summarize(session: Session, scope: Scope, period: Period) -> list[CurrencySummary]:
    """Per currency (largest gross first): totals over the period and the local-day (or hour) series."""
    rows_source = _scoped_union(scope, period.start, period.end)
    unit = "hour" if period.hourly else "day"
    # The bucket's wall-clock time in the merchant's zone, truncated: its local day or hour.
    slot = func.date_trunc(unit, func.timezone(period.zone.key, rows_source.c.bucket)).label("slot")
    statement = (
        select(rows_source.c.currency, slot, *(func.sum(rows_source.c[f]).label(f) for f in ROLLUP_FIELDS))
        .group_by(rows_source.c.currency, literal_column("slot"))
    )
    summaries: dict[str, CurrencySummary] = {}
    for row in session.execute(statement):
        summary = summaries.setdefault(row.currency, CurrencySummary(row.currency))
        for name in ROLLUP_FIELDS:
            setattr(summary, name, getattr(summary, name) + int(getattr(row, name) or 0))
        summary.series[row.slot] = summary.series.get(row.slot, 0) + int(row.gross_amount or 0)
    return sorted(summaries.values(), key=lambda s: (-s.gross_amount, -s.succeeded_count, s.currency))


def slots(period: Period) -> list[datetime]:
    """Every local slot start of the period (naive local times, as the summary's series keys)."""
    if period.hourly:
        base = datetime.combine(period.first_day, time.min)
        return [base + timedelta(hours=h) for h in range(24 * period.days)]
    return [datetime.combine(period.first_day + timedelta(days=d), time.min) for d in range(period.days)]


# -- rebuilding ------------------------------------------------------------------------------------------------

# The same rules as deltas_for, from the payments tables (used by the migration's backfill, the
# `flask reporting rebuild-rollups` command and the benchmark's seeding).
REBUILD_SQL = """
WITH bucketed AS (
    SELECT a.merchant_id, a.livemode, a.currency,
           date_bin('15 minutes', min(a.created_at), TIMESTAMPTZ '2000-01-01 00:00:00+00') AS bucket,
           1 AS attempted_count, 0 AS succeeded_count, 0 AS gross_amount, 0 AS refund_count, 0 AS refund_amount
    FROM payment_attempts a WHERE a.operation = 'authorize' {attempt_scope}
    GROUP BY a.merchant_id, a.livemode, a.currency, a.payment_id
    UNION ALL
    SELECT merchant_id, livemode, currency,
           date_bin('15 minutes', captured_at, TIMESTAMPTZ '2000-01-01 00:00:00+00'), 0, 1, amount_received, 0, 0
    FROM payments WHERE status = 'succeeded' AND captured_at IS NOT NULL {scope}
    UNION ALL
    SELECT merchant_id, livemode, currency,
           date_bin('15 minutes', coalesce(finished_at, updated_at), TIMESTAMPTZ '2000-01-01 00:00:00+00'),
           0, 0, 0, 1, amount
    FROM refunds WHERE status = 'succeeded' {scope}
)
INSERT INTO payment_rollups (merchant_id, livemode, bucket, currency, attempted_count, succeeded_count,
                             gross_amount, refund_count, refund_amount)
SELECT merchant_id, livemode, bucket, currency, sum(attempted_count), sum(succeeded_count), sum(gross_amount),
       sum(refund_count), sum(refund_amount)
FROM bucketed GROUP BY merchant_id, livemode, bucket, currency
"""


def rebuild(session: Session, scope: Scope | None = None) -> None:
    """Recompute the rollups of one book (or of every book) from the payments tables.

    Run it when nothing writes to that book (a maintenance command): deltas written meanwhile would be
    counted twice. Locks the book's rollup rows by deleting them first, in the caller's transaction.
    """
    params: dict[str, Any] = {}
    where = attempt_where = ""
    if scope is not None:
        where = "AND merchant_id = :merchant_id AND livemode = :livemode"
        attempt_where = "AND a.merchant_id = :merchant_id AND a.livemode = :livemode"
        params = {"merchant_id": scope.merchant_id, "livemode": scope.livemode}
    for table in ("payment_rollups", "payment_rollup_deltas"):
        session.execute(text(f"DELETE FROM {table} WHERE true {where}"), params)
    session.execute(text(REBUILD_SQL.format(scope=where, attempt_scope=attempt_where)), params)
