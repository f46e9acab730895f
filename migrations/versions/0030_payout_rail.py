"""Payouts: a merchant's payout rail, ``sandbox`` (the sandbox's bank transfers, the default) or ``sepa`` (SEPA
credit-transfer files its own bank pays, app/payouts/sepa.py).

Revision ID: 0030_payout_rail
Revises: 0029_risk_models
Create Date: 2026-12-08
"""
from alembic import op
import sqlalchemy as sa

revision = "0030_payout_rail"
down_revision = "0029_risk_models"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("merchants", sa.Column("payout_rail", sa.String(length=10), server_default=sa.text("'sandbox'"),
                                         nullable=False))
    op.create_check_constraint(op.f("ck_merchants_payout_rail"), "merchants", "payout_rail IN ('sandbox', 'sepa')")


def downgrade():
    op.drop_constraint(op.f("ck_merchants_payout_rail"), "merchants", type_="check")
    op.drop_column("merchants", "payout_rail")
