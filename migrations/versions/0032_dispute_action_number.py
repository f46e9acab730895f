"""Disputes: the submission an action was requested as, fixed when the merchant asks (its idempotency key and the
retry's "done already?" check must not move when a PSP notice raises the submission count meanwhile).

Revision ID: 0032_dispute_action_number
Revises: 0031_recon_import_storage
Create Date: 2026-12-08
"""
import sqlalchemy as sa
from alembic import op

revision = "0032_dispute_action_number"
down_revision = "0031_recon_import_storage"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("disputes", sa.Column("action_submission_count", sa.Integer(), nullable=True))
    op.execute("UPDATE disputes SET action_submission_count = submission_count WHERE pending_action IS NOT NULL")


def downgrade():
    op.drop_column("disputes", "action_submission_count")
