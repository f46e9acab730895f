"""Reporting tables: payment rollups (and their pending deltas), CSV exports, the API request log.

Also the indexes the dashboard's payments and refunds lists need on the payments area's tables. They are
declared here, on those tables' metadata, so that ``flask db check`` sees them, and created by the
dashboard's migration (migrations/versions/0010_dashboard.py), which owns them.

Rollups are counted in 15-minute UTC buckets: every UTC offset in use (India +5:30, Nepal +5:45,
Chatham +12:45, and every DST rule) is a multiple of 15 minutes, so any merchant time zone's days and
hours are exact unions of buckets, and a merchant changing its time zone needs no rebuild.
"""
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, LargeBinary, PrimaryKeyConstraint, String, func, text
from sqlalchemy.orm import Mapped, mapped_column

from app.models_base import Base, utcnow
from app.payments.models import Payment, Refund


class RollupCounts:
    """The figures a rollup bucket adds up (integers; amounts in minor units of the row's currency)."""

    attempted_count: Mapped[int] = mapped_column(server_default=text("0"))   # payments confirmed for the first time
    succeeded_count: Mapped[int] = mapped_column(server_default=text("0"))   # payments captured
    gross_amount: Mapped[int] = mapped_column(server_default=text("0"))      # captured amount
    refund_count: Mapped[int] = mapped_column(server_default=text("0"))      # refunds that succeeded
    refund_amount: Mapped[int] = mapped_column(server_default=text("0"))


ROLLUP_FIELDS = ("attempted_count", "succeeded_count", "gross_amount", "refund_count", "refund_amount")


class PaymentRollup(RollupCounts, Base):
    """Payment figures of one book and currency in one 15-minute UTC bucket (folded from the deltas)."""

    __tablename__ = "payment_rollups"
    __table_args__ = (
        # Home reads one book over a bucket range, every currency at once: bucket before currency.
        PrimaryKeyConstraint("merchant_id", "livemode", "bucket", "currency", name="pk_payment_rollups"),
    )

    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"))
    livemode: Mapped[bool]
    bucket: Mapped[datetime]
    currency: Mapped[str] = mapped_column(String(3))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=text("now()"))


class PaymentRollupDelta(RollupCounts, Base):
    """A change to a rollup, written in the transaction of the event that caused it (a plain INSERT).

    Appending instead of updating the bucket row in place means two payments of one merchant never wait
    on each other's rollup row lock; ``fold_deltas`` (a sweep every few seconds) moves deltas into
    ``payment_rollups``, and readers add up both tables, so figures are exact at every moment.
    """

    __tablename__ = "payment_rollup_deltas"
    __table_args__ = (Index("ix_payment_rollup_deltas_scope_bucket", "merchant_id", "livemode", "bucket"),)

    id: Mapped[str] = mapped_column(primary_key=True)
    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"))
    livemode: Mapped[bool]
    bucket: Mapped[datetime]
    currency: Mapped[str] = mapped_column(String(3))
    event_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=text("now()"))


class ExportStatus:
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class DashboardExport(Base):
    """A CSV export of a filtered payments or refunds list, built by a job and kept for a day."""

    __tablename__ = "dashboard_exports"
    __table_args__ = (
        Index("ix_dashboard_exports_scope_created", "merchant_id", "livemode", "created_at"),
        Index("ix_dashboard_exports_expires_at", "expires_at"),
    )

    id: Mapped[str] = mapped_column(primary_key=True)
    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"))
    livemode: Mapped[bool]
    kind: Mapped[str] = mapped_column(String(20))             # payments | refunds
    filters: Mapped[dict[str, Any]]                           # the list's query arguments
    timezone: Mapped[str] = mapped_column(String(64))         # dates in the file are in this zone
    status: Mapped[str] = mapped_column(String(16))
    rows_total: Mapped[int | None]
    rows_done: Mapped[int] = mapped_column(server_default=text("0"))
    byte_size: Mapped[int] = mapped_column(server_default=text("0"))
    chunks: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    error: Mapped[str | None] = mapped_column(String(500))
    created_by: Mapped[str | None] = mapped_column(ForeignKey("users.id"))
    lease_until: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=text("now()"))
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    expires_at: Mapped[datetime]


class DashboardExportChunk(Base):
    """A run of CSV lines of an export, zlib-compressed; the download streams the chunks in order."""

    __tablename__ = "dashboard_export_chunks"
    __table_args__ = (PrimaryKeyConstraint("export_id", "seq", name="pk_dashboard_export_chunks"),)

    export_id: Mapped[str] = mapped_column(ForeignKey("dashboard_exports.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    merchant_id: Mapped[str] = mapped_column(String)
    livemode: Mapped[bool]
    data: Mapped[bytes] = mapped_column(LargeBinary)


class ApiRequestLog(Base):
    """One API request as Developers › Logs shows it; bodies are redacted before they are stored."""

    __tablename__ = "api_request_logs"
    __table_args__ = (
        Index("ix_api_request_logs_scope_created", "merchant_id", "livemode", "created_at", "id"),
        Index("ix_api_request_logs_created_at", "created_at"),
        Index("ix_api_request_logs_request_id", "request_id"),
    )

    id: Mapped[str] = mapped_column(primary_key=True)
    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"))
    livemode: Mapped[bool]
    api_key_id: Mapped[str | None] = mapped_column(String(64))
    method: Mapped[str] = mapped_column(String(10))
    path: Mapped[str] = mapped_column(String(2000))
    status: Mapped[int] = mapped_column(Integer)
    request_id: Mapped[str | None] = mapped_column(String(128))
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    latency_ms: Mapped[int] = mapped_column(Integer)
    ip: Mapped[str | None] = mapped_column(String(64))
    request_body: Mapped[str | None]
    response_body: Mapped[str | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=text("now()"))


# -- indexes on the payments area's tables, for the dashboard's lists (created by 0010_dashboard) -----------
# Every list is newest first by (created_at, id) within one book; each filter the benchmark measures has
# an index whose prefix is (book, filter column) followed by that order, so the first page, any keyset
# page and a filtered page each read about one page of index entries however long the history is.
_p = Payment.__table__
_r = Refund.__table__
DASHBOARD_INDEXES = (
    Index("ix_payments_dash_created", _p.c.merchant_id, _p.c.livemode, _p.c.created_at, _p.c.id),
    Index("ix_payments_dash_status", _p.c.merchant_id, _p.c.livemode, _p.c.status, _p.c.created_at, _p.c.id),
    # lower(email) with text_pattern_ops: equality (the email filter, in list order) and prefix LIKE (the
    # search box: "jane.doe" finds jane.doe@example.com) whatever the database's collation.
    Index("ix_payments_dash_email", _p.c.merchant_id, _p.c.livemode,
          func.lower(_p.c.customer_email).label("email_lower"), _p.c.created_at, _p.c.id,
          postgresql_ops={"email_lower": "text_pattern_ops"}),
    Index("ix_payments_dash_last4", _p.c.merchant_id, _p.c.livemode, _p.c.card_last4, _p.c.created_at, _p.c.id,
          postgresql_where=_p.c.card_last4.isnot(None)),
    Index("ix_payments_dash_psp_reference", _p.c.merchant_id, _p.c.livemode, _p.c.psp_reference,
          postgresql_where=_p.c.psp_reference.isnot(None)),
    Index("ix_refunds_dash_created", _r.c.merchant_id, _r.c.livemode, _r.c.created_at, _r.c.id),
    Index("ix_refunds_dash_status", _r.c.merchant_id, _r.c.livemode, _r.c.status, _r.c.created_at, _r.c.id),
)


from app.reporting import rollups  # noqa: E402,F401  (registers the Event listener that writes rollup deltas)
