"""Reconciliation lines written leaner (bench/RESULTS.md, "Reconciliation"): no foreign key to
reconciliation_files (a trigger per line; the importer writes a file's lines in the transaction that stored the file,
and the application may neither delete files nor change their ids, so every line's file exists by construction:
tests/reconciliation/test_import.py checks it), and no ``ix_reconciliation_lines_book`` (merchant, mode, day), an
index entry per line that only the merchant's settlement pages read: the daily settlement now comes from
``reconciliation_book_days`` (one row per file, book, PSP and currency, written by the importer with the lines), a
payment's settlement lines through the reference index.

Revision ID: 0035_recon_lines_lean
Revises: 0034_risk_list_item_mode
Create Date: 2026-12-08
"""
import sqlalchemy as sa
from alembic import op

revision = "0035_recon_lines_lean"
down_revision = "0034_risk_list_item_mode"
branch_labels = None
depends_on = None


def upgrade():
    op.drop_constraint("fk_reconciliation_lines_file", "reconciliation_lines", type_="foreignkey")
    op.drop_index("ix_reconciliation_lines_book", table_name="reconciliation_lines")
    op.create_table(
        "reconciliation_book_days",
        sa.Column("merchant_id", sa.String(), nullable=False),
        sa.Column("livemode", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("file_id", sa.String(), nullable=False),
        sa.Column("psp", sa.String(length=64), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("report_date", sa.Date(), nullable=False),
        sa.Column("gross", sa.BigInteger(), nullable=False),
        sa.Column("fees", sa.BigInteger(), nullable=False),
        sa.Column("refunds", sa.BigInteger(), nullable=False),
        sa.Column("disputes", sa.BigInteger(), nullable=False),
        sa.Column("net", sa.BigInteger(), nullable=False),
        sa.Column("lines", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["merchant_id"], ["merchants.id"], name="fk_reconciliation_book_days_merchant"),
        sa.ForeignKeyConstraint(["file_id"], ["reconciliation_files.id"], name="fk_reconciliation_book_days_file"),
        sa.PrimaryKeyConstraint("merchant_id", "livemode", "file_id", "psp", "currency",
                                name="pk_reconciliation_book_days"),
    )
    op.create_index("ix_reconciliation_book_days_day", "reconciliation_book_days",
                    ["merchant_id", "livemode", "report_date"], unique=False)
    # What the lines of files imported before this migration settled, per book (as the importer now writes it).
    op.execute("""
        INSERT INTO reconciliation_book_days (merchant_id, livemode, file_id, psp, currency, report_date, gross, fees,
                                              refunds, disputes, net, lines)
        SELECT merchant_id, livemode, file_id, psp, currency, report_date,
               coalesce(sum(gross) FILTER (WHERE type = 'charge'), 0),
               coalesce(sum(fee), 0),
               coalesce(sum(gross) FILTER (WHERE type IN ('refund', 'refund_failure')), 0),
               coalesce(sum(gross) FILTER (WHERE type = 'dispute'), 0),
               sum(net), count(*)
          FROM reconciliation_lines
         WHERE status IN ('matched', 'mismatch', 'unchanged') AND merchant_id IS NOT NULL
         GROUP BY merchant_id, livemode, file_id, psp, currency, report_date""")
    op.execute("GRANT SELECT, INSERT ON reconciliation_book_days TO kassa_app")


def downgrade():
    op.drop_index("ix_reconciliation_book_days_day", table_name="reconciliation_book_days")
    op.drop_table("reconciliation_book_days")
    op.create_index("ix_reconciliation_lines_book", "reconciliation_lines", ["merchant_id", "livemode", "report_date"],
                    unique=False)
    op.create_foreign_key("fk_reconciliation_lines_file", "reconciliation_lines", "reconciliation_files",
                          ["file_id"], ["id"])
