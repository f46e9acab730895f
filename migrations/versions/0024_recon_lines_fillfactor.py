"""Reconciliation lines back to the default fillfactor: the importer writes each line once, already linked to its
posting (bench/RESULTS.md, "Reconciliation"), so the room 0022 kept on each page for a second version is unused.

Revision ID: 0024_recon_lines_fillfactor
Revises: 0023_recon_fetch_failures
Create Date: 2026-12-08
"""
from alembic import op

revision = "0024_recon_lines_fillfactor"
down_revision = "0023_recon_fetch_failures"
branch_labels = None
depends_on = None


def upgrade():
    op.execute("ALTER TABLE reconciliation_lines SET (fillfactor = 100)")


def downgrade():
    op.execute("ALTER TABLE reconciliation_lines SET (fillfactor = 50)")
