"""PSP credentials declare how their payouts are confirmed as deposited: ``bank_statement`` (the platform's bank
statement shows them) or ``payout_events`` (the PSP's payout.paid / payout.failed events stand in for the deposit:
a merchant's own account pays into the merchant's own bank, which Kassa never sees; the default for merchants'
credentials). The platform's own accounts declare it in the configuration (STRIPE_DEPOSIT_CONFIRMATION_TEST/_LIVE,
default bank_statement).

Revision ID: 0027_stripe_deposit_confirmation
Revises: 0026_payout_exports
Create Date: 2026-12-08
"""
from alembic import op
import sqlalchemy as sa

revision = "0027_stripe_deposit_confirmation"
down_revision = "0026_payout_exports"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("psp_credentials", sa.Column("deposit_confirmation", sa.String(length=20),
                                               server_default=sa.text("'payout_events'"), nullable=False))
    op.create_check_constraint(op.f("ck_psp_credentials_deposit_confirmation"), "psp_credentials",
                               "deposit_confirmation IN ('bank_statement', 'payout_events')")


def downgrade():
    op.drop_constraint(op.f("ck_psp_credentials_deposit_confirmation"), "psp_credentials", type_="check")
    op.drop_column("psp_credentials", "deposit_confirmation")
