"""Checkout sessions: the hosted payment page's order, expiry, redirect URLs and its one payment.

Revision ID: 0009_checkout
Revises: 0007_payments (payment_id references payments)
Create Date: 2026-11-20
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0009_checkout"
# Once 0002_audit_log with depends_on 0007_payments: that left 0007_payments a second head, on which a
# plain `flask db upgrade` stopped. Databases upgraded before are unaffected (alembic_version holds the
# merge revision only).
down_revision = "0007_payments"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "checkout_sessions",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("merchant_id", sa.String(), nullable=False),
        sa.Column("livemode", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("status", sa.String(length=16), server_default=sa.text("'open'"), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("amount_total", sa.BigInteger(), nullable=False),
        sa.Column("line_items", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("description", sa.String(length=500), nullable=True),
        sa.Column("split", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("success_url", sa.String(length=2000), nullable=False),
        sa.Column("cancel_url", sa.String(length=2000), nullable=True),
        sa.Column("customer_email", sa.String(length=320), nullable=True),
        sa.Column("client_reference_id", sa.String(length=200), nullable=True),
        sa.Column("metadata", postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"),
                  nullable=False),
        sa.Column("payment_id", sa.String(), nullable=True),
        sa.Column("attempt_number", sa.BigInteger(), server_default=sa.text("1"), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expired_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("status IN ('open', 'complete', 'expired')", name=op.f("ck_checkout_sessions_status")),
        sa.CheckConstraint("amount_total > 0", name=op.f("ck_checkout_sessions_amount_total_positive")),
        sa.CheckConstraint("attempt_number >= 1", name=op.f("ck_checkout_sessions_attempt_number_positive")),
        sa.ForeignKeyConstraint(["merchant_id"], ["merchants.id"],
                                name=op.f("fk_checkout_sessions_merchant_id_merchants")),
        sa.ForeignKeyConstraint(["payment_id"], ["payments.id"],
                                name=op.f("fk_checkout_sessions_payment_id_payments")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_checkout_sessions")),
        sa.UniqueConstraint("payment_id", name=op.f("uq_checkout_sessions_payment_id")),
    )
    op.create_index(op.f("ix_checkout_sessions_merchant_id"), "checkout_sessions", ["merchant_id"])
    op.create_index("ix_checkout_sessions_scope_id", "checkout_sessions", ["merchant_id", "livemode", "id"])
    op.create_index("ix_checkout_sessions_open_expires_at", "checkout_sessions", ["expires_at"],
                    postgresql_where=sa.text("status = 'open'"))
    # Sessions change state (open -> complete/expired, attempt_number) but are never deleted by the app.
    op.execute("GRANT SELECT, INSERT, UPDATE ON checkout_sessions TO kassa_app")


def downgrade():
    op.drop_table("checkout_sessions")
