"""Payouts (issue 22): the merchants' fee bearer setting, payout schedules and reserves, payouts, and the ledger
entries each scheduled payout pays. Merchant-owned tables with merchant_id first in every key.

Revision ID: 0024_payouts
Revises: 0023_recon_fetch_failures
Create Date: 2026-12-08
"""
from alembic import op
import sqlalchemy as sa

revision = "0024_payouts"
down_revision = "0023_recon_fetch_failures"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("merchants", sa.Column("fee_bearer", sa.String(length=10), server_default=sa.text("'platform'"),
                                         nullable=False))
    op.create_check_constraint("fee_bearer", "merchants", "fee_bearer IN ('platform', 'seller')")
    op.create_table(
        "payout_schedules",
        sa.Column("merchant_id", sa.String(), nullable=False),
        sa.Column("livemode", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("subject", sa.String(length=100), nullable=False),
        sa.Column("interval", sa.String(length=10), server_default=sa.text("'daily'"), nullable=False),
        sa.Column("weekly_anchor", sa.String(length=10), server_default=sa.text("'monday'"), nullable=False),
        sa.Column("monthly_anchor", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column("minimum_amount", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("delay_days", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("reserve_percent_bp", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("reserve_days", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("reserve_minimum", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("interval IN ('daily', 'weekly', 'monthly', 'manual')",
                           name=op.f("ck_payout_schedules_interval")),
        sa.CheckConstraint("weekly_anchor IN ('monday', 'tuesday', 'wednesday', 'thursday', 'friday', 'saturday', "
                           "'sunday')", name=op.f("ck_payout_schedules_weekly_anchor")),
        sa.CheckConstraint("monthly_anchor BETWEEN 1 AND 31", name=op.f("ck_payout_schedules_monthly_anchor")),
        sa.CheckConstraint("minimum_amount >= 0 AND delay_days >= 0 AND reserve_days >= 0 AND reserve_minimum >= 0",
                           name=op.f("ck_payout_schedules_not_negative")),
        sa.CheckConstraint("reserve_percent_bp BETWEEN 0 AND 10000", name=op.f("ck_payout_schedules_reserve_percent")),
        sa.ForeignKeyConstraint(["merchant_id"], ["merchants.id"], name=op.f("fk_payout_schedules_merchant_id_merchants")),
        sa.PrimaryKeyConstraint("merchant_id", "livemode", "subject", name="pk_payout_schedules"),
    )
    op.create_table(
        "payouts",
        sa.Column("merchant_id", sa.String(), nullable=False),
        sa.Column("livemode", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("seller_id", sa.String(), nullable=True),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("status", sa.String(length=16), server_default=sa.text("'pending'"), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("business_key", sa.String(length=200), nullable=False),
        sa.Column("period", sa.Date(), nullable=True),
        sa.Column("description", sa.String(length=500), nullable=True),
        sa.Column("bank_account_id", sa.String(), nullable=True),
        sa.Column("bank_account_last4", sa.String(length=4), nullable=True),
        sa.Column("rail", sa.String(length=20), server_default=sa.text("'sandbox'"), nullable=False),
        sa.Column("rail_reference", sa.String(length=100), nullable=True),
        sa.Column("held_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("hold_reason", sa.String(length=40), nullable=True),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("arrival_date", sa.Date(), nullable=True),
        sa.Column("failure_code", sa.String(length=40), nullable=True),
        sa.Column("failure_message", sa.String(length=500), nullable=True),
        sa.Column("created_by", sa.String(length=320), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("paid_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("failed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("canceled_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("status IN ('pending', 'in_transit', 'paid', 'failed', 'canceled')",
                           name=op.f("ck_payouts_status")),
        sa.CheckConstraint("kind IN ('scheduled', 'manual')", name=op.f("ck_payouts_kind")),
        sa.CheckConstraint("amount > 0", name=op.f("ck_payouts_amount_positive")),
        sa.CheckConstraint("currency ~ '^[A-Z]{3}$'", name=op.f("ck_payouts_currency")),
        sa.ForeignKeyConstraint(["merchant_id"], ["merchants.id"], name=op.f("fk_payouts_merchant_id_merchants")),
        sa.PrimaryKeyConstraint("merchant_id", "id", name="pk_payouts"),
        sa.UniqueConstraint("merchant_id", "livemode", "business_key", name="uq_payouts_business_key"),
    )
    op.create_index("ix_payouts_scope_id", "payouts", ["merchant_id", "livemode", "id"])
    op.create_index("ix_payouts_scope_seller", "payouts", ["merchant_id", "livemode", "seller_id", "currency"])
    op.create_index("ix_payouts_due", "payouts", ["next_attempt_at"],
                    postgresql_where=sa.text("next_attempt_at IS NOT NULL"))
    op.create_table(
        "payout_items",
        sa.Column("merchant_id", sa.String(), nullable=False),
        sa.Column("livemode", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("entry_id", sa.String(), nullable=False),
        sa.Column("payout_id", sa.String(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["merchant_id"], ["merchants.id"], name=op.f("fk_payout_items_merchant_id_merchants")),
        sa.PrimaryKeyConstraint("merchant_id", "entry_id", name="pk_payout_items"),
    )
    op.create_index("ix_payout_items_payout", "payout_items", ["merchant_id", "payout_id"])
    op.execute("GRANT SELECT, INSERT, UPDATE ON payout_schedules, payouts TO kassa_app")
    # Items are written once with their payout and never change.
    op.execute("GRANT SELECT, INSERT ON payout_items TO kassa_app")


def downgrade():
    op.drop_index("ix_payout_items_payout", table_name="payout_items")
    op.drop_table("payout_items")
    op.drop_index("ix_payouts_due", table_name="payouts")
    op.drop_index("ix_payouts_scope_seller", table_name="payouts")
    op.drop_index("ix_payouts_scope_id", table_name="payouts")
    op.drop_table("payouts")
    op.drop_table("payout_schedules")
    op.drop_constraint(op.f("ck_merchants_fee_bearer"), "merchants", type_="check")
    op.drop_column("merchants", "fee_bearer")
