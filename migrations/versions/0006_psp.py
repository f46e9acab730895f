"""PSP layer: inbound callbacks (deduplicated per PSP), disputes, per-merchant PSP credentials (encrypted).

Revision ID: 0006_psp
Revises: 0002_audit_log
Create Date: 2026-11-21
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0006_psp"
down_revision = "0002_audit_log"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "psp_callbacks",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("psp", sa.String(length=64), nullable=False),
        sa.Column("callback_id", sa.String(length=255), nullable=False),
        sa.Column("type", sa.String(length=100), nullable=False),
        sa.Column("connector", sa.String(length=64), nullable=True),
        sa.Column("psp_reference", sa.String(length=255), nullable=True),
        sa.Column("psp_created", sa.BigInteger(), nullable=True),
        sa.Column("livemode", sa.Boolean(), nullable=True),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("merchant_id", sa.String(), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("result", sa.String(length=20), server_default=sa.text("'unprocessed'"), nullable=False),
        sa.Column("attempts", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("event_id", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(["merchant_id"], ["merchants.id"], name=op.f("fk_psp_callbacks_merchant_id_merchants")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_psp_callbacks")),
        sa.UniqueConstraint("psp", "callback_id", name="uq_psp_callbacks_psp_callback_id"),
    )
    op.create_index("ix_psp_callbacks_merchant_id", "psp_callbacks", ["merchant_id"])
    op.create_index("ix_psp_callbacks_psp_reference", "psp_callbacks", ["psp_reference"])
    op.create_index("ix_psp_callbacks_pending", "psp_callbacks", ["next_attempt_at"],
                    postgresql_where=sa.text("processed_at IS NULL"))

    op.create_table(
        "disputes",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("merchant_id", sa.String(), nullable=False),
        sa.Column("livemode", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("psp", sa.String(length=64), nullable=False),
        sa.Column("connector", sa.String(length=64), nullable=True),
        sa.Column("psp_reference", sa.String(length=255), nullable=False),
        sa.Column("authorization_reference", sa.String(length=255), nullable=True),
        sa.Column("payment_id", sa.String(length=64), nullable=True),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("reason", sa.String(length=100), nullable=True),
        sa.Column("status", sa.String(length=40), nullable=False),
        sa.Column("psp_created", sa.BigInteger(), nullable=True),
        sa.Column("last_event_at", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["merchant_id"], ["merchants.id"], name=op.f("fk_disputes_merchant_id_merchants")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_disputes")),
        sa.UniqueConstraint("psp", "psp_reference", name="uq_disputes_psp_psp_reference"),
        # Amounts are positive minor units; the sign of a movement lives in the ledger, not here.
        sa.CheckConstraint("amount >= 0", name=op.f("ck_disputes_amount_not_negative")),
    )
    op.create_index("ix_disputes_merchant_id", "disputes", ["merchant_id"])
    op.create_index("ix_disputes_payment_id", "disputes", ["payment_id"])
    op.create_index("ix_disputes_scope_created", "disputes", ["merchant_id", "livemode", "created_at"])

    op.create_table(
        "psp_credentials",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("merchant_id", sa.String(), nullable=False),
        sa.Column("livemode", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("psp", sa.String(length=64), nullable=False),
        sa.Column("secret_key_encrypted", sa.Text(), nullable=False),
        sa.Column("webhook_secret_encrypted", sa.Text(), nullable=True),
        sa.Column("publishable_key", sa.String(length=255), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["merchant_id"], ["merchants.id"],
                                name=op.f("fk_psp_credentials_merchant_id_merchants")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_psp_credentials")),
        sa.UniqueConstraint("merchant_id", "livemode", "psp", name="uq_psp_credentials_scope_psp"),
    )
    op.create_index("ix_psp_credentials_merchant_id", "psp_credentials", ["merchant_id"])

    # Callbacks are updated while processing (result, attempts) but never deleted by the app.
    op.execute("GRANT SELECT, INSERT, UPDATE ON psp_callbacks TO kassa_app")
    op.execute("GRANT SELECT, INSERT, UPDATE ON disputes TO kassa_app")
    op.execute("GRANT SELECT, INSERT, UPDATE, DELETE ON psp_credentials TO kassa_app")


def downgrade():
    op.drop_table("psp_credentials")
    op.drop_table("disputes")
    op.drop_table("psp_callbacks")
