"""Webhooks: endpoints with encrypted signing secrets, deliveries (the schedule), the attempt log, bulk resends.

webhook_deliveries is the durable record of what each endpoint is owed (next_attempt_at, a lease for the
worker holding it); a partial index on the pending rows serves the due sweep. webhook_attempts is
append-only (the kassa_reject_change triggers of 0001_base). Endpoints are soft-deleted (deleted_at), so
the application role gets no DELETE on them.

Revision ID: 0008_webhooks
Revises: 0002_audit_log
Create Date: 2026-11-20
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0008_webhooks"
down_revision = "0002_audit_log"
branch_labels = None
depends_on = None


def _ts(name: str, nullable: bool = True, default: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable,
                     server_default=sa.text("now()") if default else None)


def _owned() -> list[sa.Column]:
    return [
        sa.Column("merchant_id", sa.String(), nullable=False),
        sa.Column("livemode", sa.Boolean(), server_default=sa.text("false"), nullable=False),
    ]


def upgrade():
    op.create_table(
        "webhook_endpoints",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("url", sa.String(length=2048), nullable=False),
        sa.Column("description", sa.String(length=500), nullable=True),
        sa.Column("enabled_events", postgresql.JSONB(astext_type=sa.Text()),
                  server_default=sa.text("'[\"*\"]'::jsonb"), nullable=False),
        sa.Column("status", sa.String(length=16), server_default=sa.text("'enabled'"), nullable=False),
        sa.Column("disabled_reason", sa.String(length=16), nullable=True),
        sa.Column("disabled_detail", sa.String(length=500), nullable=True),
        _ts("disabled_at"),
        _ts("failing_since"),
        sa.Column("secret_encrypted", sa.String(length=400), nullable=False),
        sa.Column("previous_secret_encrypted", sa.String(length=400), nullable=True),
        _ts("previous_secret_expires_at"),
        _ts("secret_rotated_at"),
        _ts("created_at", nullable=False, default=True),
        _ts("updated_at", nullable=False, default=True),
        _ts("deleted_at"),
        *_owned(),
        sa.CheckConstraint("status IN ('enabled', 'disabled')", name=op.f("ck_webhook_endpoints_status")),
        sa.CheckConstraint("disabled_reason IS NULL OR disabled_reason IN ('manual', 'gone', 'failing')",
                           name=op.f("ck_webhook_endpoints_disabled_reason")),
        sa.CheckConstraint("status = 'disabled' OR disabled_reason IS NULL",
                           name=op.f("ck_webhook_endpoints_reason_only_when_disabled")),
        sa.CheckConstraint("jsonb_typeof(enabled_events) = 'array'",
                           name=op.f("ck_webhook_endpoints_enabled_events_array")),
        sa.ForeignKeyConstraint(["merchant_id"], ["merchants.id"],
                                name=op.f("fk_webhook_endpoints_merchant_id_merchants")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_endpoints")),
    )
    op.create_index(op.f("ix_webhook_endpoints_merchant_id"), "webhook_endpoints", ["merchant_id"])
    op.create_index("ix_webhook_endpoints_scope", "webhook_endpoints", ["merchant_id", "livemode", "id"])

    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("event_id", sa.String(), nullable=False),
        sa.Column("endpoint_id", sa.String(), nullable=False),
        sa.Column("event_type", sa.String(), nullable=False),
        sa.Column("status", sa.String(length=16), server_default=sa.text("'pending'"), nullable=False),
        sa.Column("attempt_count", sa.Integer(), server_default=sa.text("0"), nullable=False),
        _ts("next_attempt_at"),
        _ts("lease_until"),
        sa.Column("locked_by", sa.String(length=64), nullable=True),
        sa.Column("next_trigger", sa.String(length=16), server_default=sa.text("'automatic'"), nullable=False),
        _ts("last_attempt_at"),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        _ts("completed_at"),
        _ts("created_at", nullable=False, default=True),
        *_owned(),
        sa.CheckConstraint("status IN ('pending', 'succeeded', 'failed')", name=op.f("ck_webhook_deliveries_status")),
        sa.CheckConstraint("status <> 'pending' OR next_attempt_at IS NOT NULL",
                           name=op.f("ck_webhook_deliveries_pending_is_scheduled")),
        sa.CheckConstraint("attempt_count >= 0", name=op.f("ck_webhook_deliveries_attempt_count")),
        sa.ForeignKeyConstraint(["endpoint_id"], ["webhook_endpoints.id"],
                                name=op.f("fk_webhook_deliveries_endpoint_id_webhook_endpoints")),
        sa.ForeignKeyConstraint(["event_id"], ["events.id"], name=op.f("fk_webhook_deliveries_event_id_events")),
        sa.ForeignKeyConstraint(["merchant_id"], ["merchants.id"],
                                name=op.f("fk_webhook_deliveries_merchant_id_merchants")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_deliveries")),
        sa.UniqueConstraint("event_id", "endpoint_id", name="uq_webhook_deliveries_event_endpoint"),
    )
    op.create_index(op.f("ix_webhook_deliveries_event_id"), "webhook_deliveries", ["event_id"])
    op.create_index(op.f("ix_webhook_deliveries_merchant_id"), "webhook_deliveries", ["merchant_id"])
    op.create_index("ix_webhook_deliveries_endpoint", "webhook_deliveries", ["endpoint_id", "id"])
    # The due sweep reads pending rows by time; finished rows (nearly all of them) stay out of the index.
    op.create_index("ix_webhook_deliveries_due", "webhook_deliveries", ["next_attempt_at"],
                    postgresql_where=sa.text("status = 'pending'"))

    op.create_table(
        "webhook_attempts",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("delivery_id", sa.String(), nullable=False),
        sa.Column("endpoint_id", sa.String(), nullable=False),
        sa.Column("event_id", sa.String(), nullable=False),
        sa.Column("event_type", sa.String(), nullable=False),
        sa.Column("webhook_id", sa.String(), nullable=False),
        sa.Column("attempt_number", sa.Integer(), nullable=False),
        sa.Column("trigger", sa.String(length=16), nullable=False),
        sa.Column("url", sa.String(length=2048), nullable=False),
        _ts("attempted_at", nullable=False),
        sa.Column("succeeded", sa.Boolean(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.String(length=500), nullable=True),
        sa.Column("latency_ms", sa.Integer(), nullable=True),
        sa.Column("response_excerpt", sa.Text(), nullable=True),
        *_owned(),
        sa.CheckConstraint("length(response_excerpt) <= 1024", name=op.f("ck_webhook_attempts_excerpt_size")),
        sa.ForeignKeyConstraint(["delivery_id"], ["webhook_deliveries.id"],
                                name=op.f("fk_webhook_attempts_delivery_id_webhook_deliveries")),
        sa.ForeignKeyConstraint(["endpoint_id"], ["webhook_endpoints.id"],
                                name=op.f("fk_webhook_attempts_endpoint_id_webhook_endpoints")),
        sa.ForeignKeyConstraint(["event_id"], ["events.id"], name=op.f("fk_webhook_attempts_event_id_events")),
        sa.ForeignKeyConstraint(["merchant_id"], ["merchants.id"],
                                name=op.f("fk_webhook_attempts_merchant_id_merchants")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_attempts")),
    )
    op.create_index(op.f("ix_webhook_attempts_merchant_id"), "webhook_attempts", ["merchant_id"])
    op.create_index("ix_webhook_attempts_endpoint", "webhook_attempts", ["endpoint_id", "attempted_at"])
    op.create_index("ix_webhook_attempts_delivery", "webhook_attempts", ["delivery_id", "attempted_at"])
    op.execute("""
        CREATE TRIGGER webhook_attempts_no_update_delete BEFORE UPDATE OR DELETE ON webhook_attempts
        FOR EACH ROW EXECUTE FUNCTION kassa_reject_change();
        CREATE TRIGGER webhook_attempts_no_truncate BEFORE TRUNCATE ON webhook_attempts
        FOR EACH STATEMENT EXECUTE FUNCTION kassa_reject_change();
    """)

    op.create_table(
        "webhook_resend_jobs",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("endpoint_id", sa.String(), nullable=False),
        _ts("since", nullable=False),
        sa.Column("status", sa.String(length=16), server_default=sa.text("'queued'"), nullable=False),
        sa.Column("total", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("processed", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("cursor", sa.String(), nullable=True),
        _ts("lease_until"),
        sa.Column("created_by_user_id", sa.String(), nullable=True),
        _ts("created_at", nullable=False, default=True),
        _ts("finished_at"),
        *_owned(),
        sa.CheckConstraint("status IN ('queued', 'running', 'completed')", name=op.f("ck_webhook_resend_jobs_status")),
        sa.ForeignKeyConstraint(["created_by_user_id"], ["users.id"],
                                name=op.f("fk_webhook_resend_jobs_created_by_user_id_users")),
        sa.ForeignKeyConstraint(["endpoint_id"], ["webhook_endpoints.id"],
                                name=op.f("fk_webhook_resend_jobs_endpoint_id_webhook_endpoints")),
        sa.ForeignKeyConstraint(["merchant_id"], ["merchants.id"],
                                name=op.f("fk_webhook_resend_jobs_merchant_id_merchants")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_resend_jobs")),
    )
    op.create_index(op.f("ix_webhook_resend_jobs_merchant_id"), "webhook_resend_jobs", ["merchant_id"])
    op.create_index("ix_webhook_resend_jobs_open", "webhook_resend_jobs", ["status"],
                    postgresql_where=sa.text("status <> 'completed'"))

    op.execute("GRANT SELECT, INSERT, UPDATE ON webhook_endpoints TO kassa_app")
    op.execute("GRANT SELECT, INSERT, UPDATE ON webhook_deliveries TO kassa_app")
    op.execute("GRANT SELECT, INSERT ON webhook_attempts TO kassa_app")
    op.execute("GRANT SELECT, INSERT, UPDATE ON webhook_resend_jobs TO kassa_app")
    # The fan-out claims event_fanout_pending rows with SELECT ... FOR UPDATE SKIP LOCKED, and PostgreSQL
    # requires the UPDATE privilege for row locks (0001_base granted SELECT, INSERT, DELETE only).
    op.execute("GRANT UPDATE ON event_fanout_pending TO kassa_app")


def downgrade():
    op.execute("REVOKE UPDATE ON event_fanout_pending FROM kassa_app")
    op.drop_table("webhook_resend_jobs")
    op.drop_table("webhook_attempts")
    op.drop_table("webhook_deliveries")
    op.drop_table("webhook_endpoints")
