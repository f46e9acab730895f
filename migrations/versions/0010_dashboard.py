"""Dashboard: payment rollups and their deltas, CSV exports, the API request log, list indexes.

- ``payment_rollups`` / ``payment_rollup_deltas``: Home's figures per book, currency and 15-minute UTC
  bucket (app/reporting/rollups.py). Filled from what already exists at upgrade time, so Home is right
  from the first page view after the upgrade.
- ``dashboard_exports`` / ``dashboard_export_chunks``: CSV exports built by a job, kept for a day.
- ``api_request_logs``: Developers › Logs, kept 30 days.
- Indexes on ``payments`` and ``refunds`` that make the dashboard's lists fast at millions of rows
  (declared in app/reporting/models.py). Email search is by whole address or prefix, on a
  ``text_pattern_ops`` index: pg_trgm (substring search) is not used because the embedded PostgreSQL
  the run and test commands start ships without contrib extensions, so ``CREATE EXTENSION pg_trgm``
  fails there (checked: "extension pg_trgm is not available").

Revision ID: 0010_dashboard
Revises: 0007_payments
Create Date: 2026-11-21
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0010_dashboard"
# Once 0002_audit_log with depends_on 0007_payments: that left 0007_payments a second head, on which a
# plain `flask db upgrade` stopped. Databases upgraded before are unaffected (alembic_version holds the
# merge revision only).
down_revision = "0007_payments"
branch_labels = None
depends_on = None

COUNTS = ("attempted_count", "succeeded_count", "gross_amount", "refund_count", "refund_amount")


def _counts() -> list:
    return [sa.Column(name, sa.BigInteger(), server_default=sa.text("0"), nullable=False) for name in COUNTS]


def _now(name: str, nullable: bool = False) -> sa.Column:
    if nullable:
        return sa.Column(name, sa.DateTime(timezone=True), nullable=True)
    return sa.Column(name, sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False)


def upgrade():
    op.create_table(
        "payment_rollups",
        sa.Column("merchant_id", sa.String(), nullable=False),
        sa.Column("livemode", sa.Boolean(), nullable=False),
        sa.Column("bucket", sa.DateTime(timezone=True), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        *_counts(),
        _now("updated_at"),
        sa.ForeignKeyConstraint(["merchant_id"], ["merchants.id"], name="fk_payment_rollups_merchant_id_merchants"),
        sa.PrimaryKeyConstraint("merchant_id", "livemode", "bucket", "currency", name="pk_payment_rollups"),
    )
    op.create_table(
        "payment_rollup_deltas",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("merchant_id", sa.String(), nullable=False),
        sa.Column("livemode", sa.Boolean(), nullable=False),
        sa.Column("bucket", sa.DateTime(timezone=True), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        *_counts(),
        _now("created_at"),
        sa.ForeignKeyConstraint(["merchant_id"], ["merchants.id"],
                                name="fk_payment_rollup_deltas_merchant_id_merchants"),
        sa.PrimaryKeyConstraint("id", name="pk_payment_rollup_deltas"),
    )
    op.create_index("ix_payment_rollup_deltas_scope_bucket", "payment_rollup_deltas",
                    ["merchant_id", "livemode", "bucket"])

    op.create_table(
        "dashboard_exports",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("merchant_id", sa.String(), nullable=False),
        sa.Column("livemode", sa.Boolean(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("filters", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("rows_total", sa.BigInteger(), nullable=True),
        sa.Column("rows_done", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("byte_size", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("chunks", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("error", sa.String(length=500), nullable=True),
        sa.Column("created_by", sa.String(), nullable=True),
        _now("lease_until", nullable=True),
        _now("created_at"),
        _now("started_at", nullable=True),
        _now("finished_at", nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("kind IN ('payments', 'refunds')", name="ck_dashboard_exports_kind"),
        sa.CheckConstraint("status IN ('queued', 'running', 'succeeded', 'failed')",
                           name="ck_dashboard_exports_status"),
        sa.ForeignKeyConstraint(["merchant_id"], ["merchants.id"], name="fk_dashboard_exports_merchant_id_merchants"),
        sa.ForeignKeyConstraint(["created_by"], ["users.id"], name="fk_dashboard_exports_created_by_users"),
        sa.PrimaryKeyConstraint("id", name="pk_dashboard_exports"),
    )
    op.create_index("ix_dashboard_exports_scope_created", "dashboard_exports", ["merchant_id", "livemode", "created_at"])
    op.create_index("ix_dashboard_exports_expires_at", "dashboard_exports", ["expires_at"])
    op.create_table(
        "dashboard_export_chunks",
        sa.Column("export_id", sa.String(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("merchant_id", sa.String(), nullable=False),
        sa.Column("livemode", sa.Boolean(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["export_id"], ["dashboard_exports.id"], ondelete="CASCADE",
                                name="fk_dashboard_export_chunks_export_id_dashboard_exports"),
        sa.PrimaryKeyConstraint("export_id", "seq", name="pk_dashboard_export_chunks"),
    )

    op.create_table(
        "api_request_logs",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("merchant_id", sa.String(), nullable=False),
        sa.Column("livemode", sa.Boolean(), nullable=False),
        sa.Column("api_key_id", sa.String(length=64), nullable=True),
        sa.Column("method", sa.String(length=10), nullable=False),
        sa.Column("path", sa.String(length=2000), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("request_id", sa.String(length=128), nullable=True),
        sa.Column("idempotency_key", sa.String(length=255), nullable=True),
        sa.Column("latency_ms", sa.Integer(), nullable=False),
        sa.Column("ip", sa.String(length=64), nullable=True),
        sa.Column("request_body", sa.String(), nullable=True),
        sa.Column("response_body", sa.String(), nullable=True),
        _now("created_at"),
        sa.ForeignKeyConstraint(["merchant_id"], ["merchants.id"], name="fk_api_request_logs_merchant_id_merchants"),
        sa.PrimaryKeyConstraint("id", name="pk_api_request_logs"),
    )
    op.create_index("ix_api_request_logs_scope_created", "api_request_logs", ["merchant_id", "livemode", "created_at", "id"])
    op.create_index("ix_api_request_logs_created_at", "api_request_logs", ["created_at"])
    op.create_index("ix_api_request_logs_request_id", "api_request_logs", ["request_id"])

    # The lists' indexes (app/reporting/models.py explains the shape).
    op.create_index("ix_payments_dash_created", "payments", ["merchant_id", "livemode", "created_at", "id"])
    op.create_index("ix_payments_dash_status", "payments", ["merchant_id", "livemode", "status", "created_at", "id"])
    op.create_index("ix_payments_dash_email", "payments",
                    ["merchant_id", "livemode", sa.text("lower(customer_email) text_pattern_ops"), "created_at", "id"])
    op.create_index("ix_payments_dash_last4", "payments", ["merchant_id", "livemode", "card_last4", "created_at", "id"],
                    postgresql_where=sa.text("card_last4 IS NOT NULL"))
    op.create_index("ix_payments_dash_psp_reference", "payments", ["merchant_id", "livemode", "psp_reference"],
                    postgresql_where=sa.text("psp_reference IS NOT NULL"))
    op.create_index("ix_refunds_dash_created", "refunds", ["merchant_id", "livemode", "created_at", "id"])
    op.create_index("ix_refunds_dash_status", "refunds", ["merchant_id", "livemode", "status", "created_at", "id"])

    # Rollups for what happened before this revision (app/reporting/rollups.py REBUILD_SQL, same rules).
    op.execute(_REBUILD_SQL)

    op.execute("GRANT SELECT, INSERT, UPDATE, DELETE ON payment_rollups, payment_rollup_deltas TO kassa_app")
    op.execute("GRANT SELECT, INSERT, UPDATE, DELETE ON dashboard_exports, dashboard_export_chunks TO kassa_app")
    op.execute("GRANT SELECT, INSERT, DELETE ON api_request_logs TO kassa_app")


# Kept in step with app/reporting/rollups.py (a migration must not import application code that moves on).
_REBUILD_SQL = """
WITH bucketed AS (
    SELECT a.merchant_id, a.livemode, a.currency,
           date_bin('15 minutes', min(a.created_at), TIMESTAMPTZ '2000-01-01 00:00:00+00') AS bucket,
           1 AS attempted_count, 0 AS succeeded_count, 0 AS gross_amount, 0 AS refund_count, 0 AS refund_amount
    FROM payment_attempts a WHERE a.operation = 'authorize'
    GROUP BY a.merchant_id, a.livemode, a.currency, a.payment_id
    UNION ALL
    SELECT merchant_id, livemode, currency,
           date_bin('15 minutes', captured_at, TIMESTAMPTZ '2000-01-01 00:00:00+00'), 0, 1, amount_received, 0, 0
    FROM payments WHERE status = 'succeeded' AND captured_at IS NOT NULL
    UNION ALL
    SELECT merchant_id, livemode, currency,
           date_bin('15 minutes', coalesce(finished_at, updated_at), TIMESTAMPTZ '2000-01-01 00:00:00+00'), 0, 0, 0, 1, amount
    FROM refunds WHERE status = 'succeeded'
)
INSERT INTO payment_rollups (merchant_id, livemode, bucket, currency, attempted_count, succeeded_count,
                             gross_amount, refund_count, refund_amount)
SELECT merchant_id, livemode, bucket, currency, sum(attempted_count), sum(succeeded_count), sum(gross_amount),
       sum(refund_count), sum(refund_amount)
FROM bucketed GROUP BY merchant_id, livemode, bucket, currency
"""


def downgrade():
    for name in ("ix_refunds_dash_status", "ix_refunds_dash_created"):
        op.drop_index(name, table_name="refunds")
    for name in ("ix_payments_dash_psp_reference", "ix_payments_dash_last4",
                 "ix_payments_dash_email", "ix_payments_dash_status", "ix_payments_dash_created"):
        op.drop_index(name, table_name="payments")
    op.drop_table("api_request_logs")
    op.drop_table("dashboard_export_chunks")
    op.drop_table("dashboard_exports")
    op.drop_table("payment_rollup_deltas")
    op.drop_table("payment_rollups")
