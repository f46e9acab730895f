"""Early fraud warnings (issue 23): a PSP's notice that a payment was fraudulent (Stripe's
radar.early_fraud_warning, the sandbox's), one row per merchant, PSP and PSP warning id; a live payment with one is
labelled fraudulent for the learned risk score. Merchant-owned: merchant_id leads every key.

Revision ID: 0033_early_fraud_warnings
Revises: 0032_dispute_action_number
Create Date: 2026-12-08
"""
import sqlalchemy as sa
from alembic import op

revision = "0033_early_fraud_warnings"
down_revision = "0032_dispute_action_number"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "early_fraud_warnings",
        sa.Column("merchant_id", sa.String(), nullable=False),
        sa.Column("livemode", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("payment_id", sa.String(length=64), nullable=False),
        sa.Column("psp", sa.String(length=64), nullable=False),
        sa.Column("connector", sa.String(length=64), nullable=True),
        sa.Column("psp_reference", sa.String(length=255), nullable=False),
        sa.Column("charge_reference", sa.String(length=255), nullable=True),
        sa.Column("fraud_type", sa.String(length=64), nullable=False),
        sa.Column("actionable", sa.Boolean(), nullable=False),
        sa.Column("psp_created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("psp_updated", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["merchant_id"], ["merchants.id"],
                                name=op.f("fk_early_fraud_warnings_merchant_id_merchants")),
        sa.PrimaryKeyConstraint("merchant_id", "id", name="pk_early_fraud_warnings"),
        sa.UniqueConstraint("merchant_id", "psp", "psp_reference", name="uq_early_fraud_warnings_merchant_psp_reference"),
    )
    op.create_index("ix_early_fraud_warnings_scope_payment", "early_fraud_warnings",
                    ["merchant_id", "livemode", "payment_id"])
    # The app keeps the latest state of a warning (an update changes it); it never deletes one.
    op.execute("GRANT SELECT, INSERT, UPDATE ON early_fraud_warnings TO kassa_app")


def downgrade():
    op.drop_index("ix_early_fraud_warnings_scope_payment", table_name="early_fraud_warnings")
    op.drop_table("early_fraud_warnings")
