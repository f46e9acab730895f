"""Payments: sellers, payments and their per-seller orders, PSP attempts, refunds, idempotency keys.

Revision ID: 0007_payments
Revises: 0002_audit_log
Create Date: 2026-11-20
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0007_payments"
down_revision = "0002_audit_log"
branch_labels = None
depends_on = None

PAYMENT_STATUSES = ("requires_payment_method", "requires_confirmation", "requires_action", "processing",
                    "requires_capture", "succeeded", "canceled")
ATTEMPT_STATUSES = ("processing", "unknown", "requires_action", "succeeded", "declined", "failed")
TABLES = ("sellers", "payments", "payment_orders", "payment_attempts", "refunds", "idempotency_keys")


def _in(values) -> str:
    return ", ".join(f"'{v}'" for v in values)


def _owned(table: str) -> list:
    """merchant_id + livemode, as app.models_base.MerchantOwned declares them."""
    return [
        sa.Column("merchant_id", sa.String(), nullable=False),
        sa.Column("livemode", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.ForeignKeyConstraint(["merchant_id"], ["merchants.id"], name=f"fk_{table}_merchant_id_merchants"),
    ]


def _timestamps(*names: str) -> list:
    return [sa.Column(n, sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False) for n in names]


def upgrade():
    op.create_table(
        "sellers",
        sa.Column("id", sa.String(), nullable=False),
        *_owned("sellers"),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("is_default", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("metadata", postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"),
                  nullable=False),
        *_timestamps("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_sellers"),
    )
    op.create_index("ix_sellers_merchant_id", "sellers", ["merchant_id"])
    op.create_index("ix_sellers_scope_id", "sellers", ["merchant_id", "livemode", "id"])
    op.create_index("uq_sellers_default", "sellers", ["merchant_id", "livemode"], unique=True,
                    postgresql_where=sa.text("is_default"))

    op.create_table(
        "payments",
        sa.Column("id", sa.String(), nullable=False),
        *_owned("payments"),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("capture_method", sa.String(length=16), nullable=False),
        sa.Column("amount_capturable", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("amount_received", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("amount_refunded", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("customer_email", sa.String(length=320), nullable=True),
        sa.Column("description", sa.String(length=1000), nullable=True),
        sa.Column("metadata", postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"),
                  nullable=False),
        sa.Column("payment_method_token", sa.String(length=255), nullable=True),
        sa.Column("payment_method_vault", sa.String(length=64), nullable=True),
        sa.Column("card_brand", sa.String(length=32), nullable=True),
        sa.Column("card_last4", sa.String(length=4), nullable=True),
        sa.Column("card_exp_month", sa.Integer(), nullable=True),
        sa.Column("card_exp_year", sa.Integer(), nullable=True),
        sa.Column("card_fingerprint", sa.String(length=128), nullable=True),
        sa.Column("connector", sa.String(length=64), nullable=True),
        sa.Column("psp_reference", sa.String(length=255), nullable=True),
        sa.Column("latest_attempt_id", sa.String(length=64), nullable=True),
        sa.Column("return_url", sa.String(length=2000), nullable=True),
        sa.Column("next_action_url", sa.String(length=2000), nullable=True),
        sa.Column("last_error", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("cancellation_reason", sa.String(length=64), nullable=True),
        sa.Column("capture_count", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("authorized_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("captured_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("canceled_at", sa.DateTime(timezone=True), nullable=True),
        *_timestamps("created_at", "updated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_payments"),
        sa.CheckConstraint(f"status IN ({_in(PAYMENT_STATUSES)})", name="ck_payments_status"),
        sa.CheckConstraint("capture_method IN ('automatic', 'manual')", name="ck_payments_capture_method"),
        sa.CheckConstraint("amount > 0", name="ck_payments_amount_positive"),
        sa.CheckConstraint("amount_capturable >= 0 AND amount_capturable <= amount",
                           name="ck_payments_amount_capturable_range"),
        sa.CheckConstraint("amount_received >= 0 AND amount_received <= amount",
                           name="ck_payments_amount_received_range"),
        sa.CheckConstraint("amount_refunded >= 0 AND amount_refunded <= amount_received",
                           name="ck_payments_amount_refunded_range"),
    )
    op.create_index("ix_payments_merchant_id", "payments", ["merchant_id"])
    op.create_index("ix_payments_scope_id", "payments", ["merchant_id", "livemode", "id"])
    op.create_index("ix_payments_scope_status_id", "payments", ["merchant_id", "livemode", "status", "id"])
    op.create_index("ix_payments_scope_email_id", "payments", ["merchant_id", "livemode", "customer_email", "id"])
    op.create_index("ix_payments_scope_created", "payments", ["merchant_id", "livemode", "created_at"])
    op.create_index("ix_payments_authorized_uncaptured", "payments", ["authorized_at"],
                    postgresql_where=sa.text("status = 'requires_capture'"))

    op.create_table(
        "payment_orders",
        sa.Column("id", sa.String(), nullable=False),
        *_owned("payment_orders"),
        sa.Column("payment_id", sa.String(), nullable=False),
        sa.Column("seller_id", sa.String(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("fee", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("amount_captured", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("fee_captured", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("amount_refunded", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("fee_refunded", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_payment_orders"),
        sa.ForeignKeyConstraint(["payment_id"], ["payments.id"], name="fk_payment_orders_payment_id_payments"),
        sa.ForeignKeyConstraint(["seller_id"], ["sellers.id"], name="fk_payment_orders_seller_id_sellers"),
        sa.UniqueConstraint("payment_id", "seller_id", name="uq_payment_orders_payment_seller"),
        sa.CheckConstraint("amount > 0", name="ck_payment_orders_amount_positive"),
        sa.CheckConstraint("fee >= 0 AND fee <= amount", name="ck_payment_orders_fee_range"),
        sa.CheckConstraint("amount_captured >= 0 AND amount_captured <= amount",
                           name="ck_payment_orders_captured_range"),
        sa.CheckConstraint("fee_captured >= 0 AND fee_captured <= fee", name="ck_payment_orders_fee_captured_range"),
        sa.CheckConstraint("amount_refunded >= 0 AND amount_refunded <= amount_captured",
                           name="ck_payment_orders_refunded_range"),
        sa.CheckConstraint("fee_refunded >= 0 AND fee_refunded <= fee_captured",
                           name="ck_payment_orders_fee_refunded_range"),
    )
    op.create_index("ix_payment_orders_merchant_id", "payment_orders", ["merchant_id"])
    op.create_index("ix_payment_orders_payment_id", "payment_orders", ["payment_id"])
    op.create_index("ix_payment_orders_scope_seller", "payment_orders",
                    ["merchant_id", "livemode", "seller_id", "payment_id"])

    op.create_table(
        "payment_attempts",
        sa.Column("id", sa.String(), nullable=False),
        *_owned("payment_attempts"),
        sa.Column("payment_id", sa.String(), nullable=False),
        sa.Column("operation", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("vault", sa.String(length=64), nullable=True),
        sa.Column("payment_method_token", sa.String(length=255), nullable=True),
        sa.Column("connector", sa.String(length=64), nullable=True),
        sa.Column("psp_reference", sa.String(length=255), nullable=True),
        sa.Column("psp_status", sa.String(length=64), nullable=True),
        sa.Column("decline_code", sa.String(length=64), nullable=True),
        sa.Column("error_message", sa.String(length=1000), nullable=True),
        sa.Column("action_url", sa.String(length=2000), nullable=True),
        sa.Column("idempotency_key", sa.String(length=255), nullable=False),
        sa.Column("tries", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("latency_ms", sa.Integer(), nullable=True),
        *_timestamps("created_at", "updated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_payment_attempts"),
        sa.ForeignKeyConstraint(["payment_id"], ["payments.id"], name="fk_payment_attempts_payment_id_payments"),
        sa.UniqueConstraint("idempotency_key", name="uq_payment_attempts_idempotency_key"),
        sa.CheckConstraint("operation IN ('authorize', 'capture', 'void')", name="ck_payment_attempts_operation"),
        sa.CheckConstraint(f"status IN ({_in(ATTEMPT_STATUSES)})", name="ck_payment_attempts_status"),
        sa.CheckConstraint("amount > 0", name="ck_payment_attempts_amount_positive"),
    )
    op.create_index("ix_payment_attempts_merchant_id", "payment_attempts", ["merchant_id"])
    op.create_index("ix_payment_attempts_payment_id", "payment_attempts", ["payment_id"])
    op.create_index("ix_payment_attempts_psp_reference", "payment_attempts", ["psp_reference"])
    op.create_index("ix_payment_attempts_due", "payment_attempts", ["next_attempt_at"],
                    postgresql_where=sa.text("status IN ('processing', 'unknown', 'requires_action')"))

    op.create_table(
        "refunds",
        sa.Column("id", sa.String(), nullable=False),
        *_owned("refunds"),
        sa.Column("payment_id", sa.String(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=True),
        sa.Column("allocations", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("metadata", postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"),
                  nullable=False),
        sa.Column("connector", sa.String(length=64), nullable=True),
        sa.Column("psp_reference", sa.String(length=255), nullable=True),
        sa.Column("failure_code", sa.String(length=64), nullable=True),
        sa.Column("failure_message", sa.String(length=1000), nullable=True),
        sa.Column("idempotency_key", sa.String(length=255), nullable=False),
        sa.Column("tries", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("latency_ms", sa.Integer(), nullable=True),
        *_timestamps("created_at", "updated_at"),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_refunds"),
        sa.ForeignKeyConstraint(["payment_id"], ["payments.id"], name="fk_refunds_payment_id_payments"),
        sa.UniqueConstraint("idempotency_key", name="uq_refunds_idempotency_key"),
        sa.CheckConstraint("status IN ('pending', 'succeeded', 'failed')", name="ck_refunds_status"),
        sa.CheckConstraint("amount > 0", name="ck_refunds_amount_positive"),
    )
    op.create_index("ix_refunds_merchant_id", "refunds", ["merchant_id"])
    op.create_index("ix_refunds_payment_id", "refunds", ["payment_id"])
    op.create_index("ix_refunds_scope_id", "refunds", ["merchant_id", "livemode", "id"])
    op.create_index("ix_refunds_scope_payment_id", "refunds", ["merchant_id", "livemode", "payment_id", "id"])
    op.create_index("ix_refunds_due", "refunds", ["next_attempt_at"], postgresql_where=sa.text("status = 'pending'"))

    op.create_table(
        "idempotency_keys",
        sa.Column("id", sa.String(), nullable=False),
        *_owned("idempotency_keys"),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("operation", sa.String(length=64), nullable=False),
        sa.Column("request_method", sa.String(length=10), nullable=False),
        sa.Column("request_path", sa.String(length=2000), nullable=False),
        sa.Column("request_params", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("request_fingerprint", sa.String(length=64), nullable=False),
        sa.Column("recovery_point", sa.String(length=64), nullable=False),
        sa.Column("state", postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"),
                  nullable=False),
        sa.Column("locked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("locked_by", sa.String(length=64), nullable=True),
        sa.Column("response_status", sa.Integer(), nullable=True),
        sa.Column("response_body", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("request_id", sa.String(length=128), nullable=True),
        *_timestamps("created_at", "last_run_at"),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_idempotency_keys"),
        sa.UniqueConstraint("merchant_id", "livemode", "key", name="uq_idempotency_keys_scope_key"),
    )
    op.create_index("ix_idempotency_keys_merchant_id", "idempotency_keys", ["merchant_id"])
    op.create_index("ix_idempotency_keys_created_at", "idempotency_keys", ["created_at"])
    op.create_index("ix_idempotency_keys_unfinished", "idempotency_keys", ["last_run_at"],
                    postgresql_where=sa.text("recovery_point <> 'finished'"))

    # Money records are never deleted by the application: no DELETE on them. Idempotency keys are
    # reaped after 24 hours, so that table alone grants DELETE.
    for table in TABLES:
        op.execute(f"GRANT SELECT, INSERT, UPDATE ON {table} TO kassa_app")
    op.execute("GRANT DELETE ON idempotency_keys TO kassa_app")


def downgrade():
    for table in reversed(TABLES):
        op.drop_table(table)
