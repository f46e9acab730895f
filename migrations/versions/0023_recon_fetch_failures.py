"""Reconciliation: fetches that keep failing (one row per source, kind, mode and day until a file of that day is
imported), raised in the operators' inbox and on the console once failing for longer than
RECONCILIATION_FETCH_RAISE_HOURS. Platform-wide rows (a PSP's report covers every merchant).

Revision ID: 0023_recon_fetch_failures
Revises: 0022_reconciliation
Create Date: 2026-12-07
"""
from alembic import op
import sqlalchemy as sa

revision = "0023_recon_fetch_failures"
down_revision = "0022_reconciliation"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "reconciliation_fetch_failures",
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("livemode", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("report_date", sa.Date(), nullable=False),
        sa.Column("first_failed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_failed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("raise_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column("last_error", sa.String(length=500), nullable=False),
        sa.CheckConstraint("kind IN ('settlement', 'bank_statement')",
                           name=op.f("ck_reconciliation_fetch_failures_kind")),
        sa.PrimaryKeyConstraint("source", "kind", "livemode", "report_date", name="pk_reconciliation_fetch_failures"),
    )
    op.create_index("ix_reconciliation_fetch_failures_raise_at", "reconciliation_fetch_failures", ["raise_at"])
    # Recorded by the job, deleted when the day's file is imported.
    op.execute("GRANT SELECT, INSERT, UPDATE, DELETE ON reconciliation_fetch_failures TO kassa_app")


def downgrade():
    op.drop_index("ix_reconciliation_fetch_failures_raise_at", table_name="reconciliation_fetch_failures")
    op.drop_table("reconciliation_fetch_failures")
