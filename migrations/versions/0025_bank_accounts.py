"""Payouts: bank accounts of sellers and of merchants themselves (the number sealed, the last four in clear; one
active account per seller and book; a cooling period and a flag after a failed payout).

Revision ID: 0025_bank_accounts
Revises: 0024_payouts
Create Date: 2026-12-08
"""
from alembic import op
import sqlalchemy as sa

revision = "0025_bank_accounts"
down_revision = "0024_payouts"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "bank_accounts",
        sa.Column("merchant_id", sa.String(), nullable=False),
        sa.Column("livemode", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("seller_id", sa.String(length=64), nullable=True),
        sa.Column("holder_name", sa.String(length=140), nullable=False),
        sa.Column("country", sa.String(length=2), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("number_encrypted", sa.Text(), nullable=False),
        sa.Column("last4", sa.String(length=4), nullable=False),
        sa.Column("bic", sa.String(length=11), nullable=True),
        sa.Column("routing_code", sa.String(length=34), nullable=True),
        sa.Column("bank_name", sa.String(length=200), nullable=True),
        sa.Column("cooling_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("flagged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("flag_code", sa.String(length=64), nullable=True),
        sa.Column("created_by", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("replaced_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("kind IN ('iban', 'local')", name=op.f("ck_bank_accounts_kind")),
        sa.ForeignKeyConstraint(["merchant_id"], ["merchants.id"], name=op.f("fk_bank_accounts_merchant_id_merchants")),
        sa.PrimaryKeyConstraint("merchant_id", "id", name="pk_bank_accounts"),
    )
    op.create_index("uq_bank_accounts_active_seller", "bank_accounts", ["merchant_id", "livemode", "seller_id"],
                    unique=True, postgresql_where=sa.text("replaced_at IS NULL AND seller_id IS NOT NULL"))
    op.create_index("uq_bank_accounts_active_merchant", "bank_accounts", ["merchant_id", "livemode"],
                    unique=True, postgresql_where=sa.text("replaced_at IS NULL AND seller_id IS NULL"))
    op.create_index("ix_bank_accounts_scope_seller", "bank_accounts",
                    ["merchant_id", "livemode", "seller_id", "created_at"])
    # Rows are never deleted: a change marks the old one replaced, a failed payout flags it.
    op.execute("GRANT SELECT, INSERT, UPDATE ON bank_accounts TO kassa_app")


def downgrade():
    op.drop_index("ix_bank_accounts_scope_seller", table_name="bank_accounts")
    op.drop_index("uq_bank_accounts_active_merchant", table_name="bank_accounts")
    op.drop_index("uq_bank_accounts_active_seller", table_name="bank_accounts")
    op.drop_table("bank_accounts")
