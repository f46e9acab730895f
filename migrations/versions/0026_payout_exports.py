"""Payouts: SEPA credit-transfer exports (pain.001, the file sealed) and the payouts in each; the key
(merchant_id, payout_id) of payout_export_items lets a payout into exactly one export.

Revision ID: 0026_payout_exports
Revises: 0025_bank_accounts
Create Date: 2026-12-08
"""
from alembic import op
import sqlalchemy as sa

revision = "0026_payout_exports"
down_revision = "0025_bank_accounts"
branch_labels = None
depends_on = None


def _scope_columns():
    return [
        sa.Column("merchant_id", sa.String(), nullable=False),
        sa.Column("livemode", sa.Boolean(), server_default=sa.text("false"), nullable=False),
    ]


def upgrade():
    op.create_table(
        "payout_exports", *_scope_columns(),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("message_id", sa.String(length=35), nullable=False),
        sa.Column("debtor_bank_account_id", sa.String(length=64), nullable=False),
        sa.Column("debtor_last4", sa.String(length=4), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("payout_count", sa.BigInteger(), nullable=False),
        sa.Column("total", sa.BigInteger(), nullable=False),
        sa.Column("execution_date", sa.Date(), nullable=False),
        sa.Column("document_encrypted", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["merchant_id"], ["merchants.id"], name=op.f("fk_payout_exports_merchant_id_merchants")),
        sa.PrimaryKeyConstraint("merchant_id", "id", name="pk_payout_exports"),
    )
    op.create_index("ix_payout_exports_scope_created", "payout_exports", ["merchant_id", "livemode", "created_at"])
    op.create_table(
        "payout_export_items", *_scope_columns(),
        sa.Column("payout_id", sa.String(length=64), nullable=False),
        sa.Column("export_id", sa.String(length=64), nullable=False),
        sa.Column("bank_account_id", sa.String(length=64), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.ForeignKeyConstraint(["merchant_id"], ["merchants.id"],
                                name=op.f("fk_payout_export_items_merchant_id_merchants")),
        sa.ForeignKeyConstraint(["merchant_id", "export_id"], ["payout_exports.merchant_id", "payout_exports.id"],
                                name="fk_payout_export_items_export"),
        sa.PrimaryKeyConstraint("merchant_id", "payout_id", name="pk_payout_export_items"),
    )
    op.create_index("ix_payout_export_items_export", "payout_export_items", ["merchant_id", "export_id"])
    # Exports are facts: added and read, never changed (the file is sealed once; rotation re-seals it, hence
    # UPDATE) nor deleted, so that a payout can never be freed for a second file.
    op.execute("GRANT SELECT, INSERT, UPDATE ON payout_exports TO kassa_app")
    op.execute("GRANT SELECT, INSERT ON payout_export_items TO kassa_app")


def downgrade():
    op.drop_index("ix_payout_export_items_export", table_name="payout_export_items")
    op.drop_table("payout_export_items")
    op.drop_index("ix_payout_exports_scope_created", table_name="payout_exports")
    op.drop_table("payout_exports")
