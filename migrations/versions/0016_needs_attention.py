"""Payments: "needs attention" on attempts and refunds whose PSP outcome stayed unknown too long.

``attention_reason`` / ``attention_since`` on ``payment_attempts`` and ``refunds``: set by the janitor's
path when the PSP gave no definite answer for longer than PSP_UNKNOWN_ATTENTION_AFTER (the row stays
open and is still asked about), cleared by a definite answer (app/payments/attention.py). A partial
index per table lists the few marked rows of a book.

Revision ID: 0016_needs_attention
Revises: 0015_ledger_account_rules
Create Date: 2026-11-22
"""
import sqlalchemy as sa
from alembic import op

revision = "0016_needs_attention"
down_revision = "0015_ledger_account_rules"
branch_labels = None
depends_on = None

TABLES = ("payment_attempts", "refunds")


def upgrade():
    for table in TABLES:
        op.add_column(table, sa.Column("attention_reason", sa.String(length=500), nullable=True))
        op.add_column(table, sa.Column("attention_since", sa.DateTime(timezone=True), nullable=True))
        op.create_index(f"ix_{table}_attention", table, ["merchant_id", "livemode", "payment_id"],
                        postgresql_where=sa.text("attention_since IS NOT NULL"))


def downgrade():
    for table in TABLES:
        op.drop_index(f"ix_{table}_attention", table_name=table)
        op.drop_column(table, "attention_since")
        op.drop_column(table, "attention_reason")
