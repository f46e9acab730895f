"""Reconciliation storage for the importer (bench/RESULTS.md, "Reconciliation"): lines back to the default
fillfactor (the importer writes each line once, already linked to its posting, so the room 0022 kept on each page
for a second version is unused), and files' bytes stored uncompressed (pglz took three times as long as writing the
bytes: most of a large import's storing time; a file is written once and read rarely).

Revision ID: 0031_recon_import_storage
Revises: 0030_payout_rail
Create Date: 2026-12-08
"""
from alembic import op

revision = "0031_recon_import_storage"
down_revision = "0030_payout_rail"
branch_labels = None
depends_on = None


def upgrade():
    op.execute("ALTER TABLE reconciliation_lines SET (fillfactor = 100)")
    op.execute("ALTER TABLE reconciliation_files ALTER COLUMN content SET STORAGE EXTERNAL")


def downgrade():
    op.execute("ALTER TABLE reconciliation_files ALTER COLUMN content SET STORAGE EXTENDED")
    op.execute("ALTER TABLE reconciliation_lines SET (fillfactor = 50)")
