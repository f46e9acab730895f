"""Early fraud warnings: the PSP's update time in 64 bits (Unix seconds pass 2**31 in January 2038), and the PSP's
warning id unique per merchant *and mode*, as it is looked up.

Revision ID: 0036_fraud_warning_keys
Revises: 0035_recon_lines_lean
Create Date: 2026-12-08
"""
import sqlalchemy as sa
from alembic import op

revision = "0036_fraud_warning_keys"
down_revision = "0035_recon_lines_lean"
branch_labels = None
depends_on = None


def upgrade():
    op.alter_column("early_fraud_warnings", "psp_updated", type_=sa.BigInteger(), existing_type=sa.Integer(),
                    existing_server_default=sa.text("0"))
    op.drop_constraint("uq_early_fraud_warnings_merchant_psp_reference", "early_fraud_warnings", type_="unique")
    op.create_unique_constraint("uq_early_fraud_warnings_merchant_psp_reference", "early_fraud_warnings",
                                ["merchant_id", "livemode", "psp", "psp_reference"])


def downgrade():
    op.drop_constraint("uq_early_fraud_warnings_merchant_psp_reference", "early_fraud_warnings", type_="unique")
    op.create_unique_constraint("uq_early_fraud_warnings_merchant_psp_reference", "early_fraud_warnings",
                                ["merchant_id", "psp", "psp_reference"])
    op.alter_column("early_fraud_warnings", "psp_updated", type_=sa.Integer(), existing_type=sa.BigInteger(),
                    existing_server_default=sa.text("0"))
