"""Payments remember the PSP credential they were made with; credentials are retired, never deleted.

``credential`` on payments, payment_attempts and refunds: ``platform`` (the platform's own account at the
PSP) or the psp_credentials id of the merchant's own account that made the authorization; every
follow-up (capture, void, refund, status query, dispute action) uses exactly that credential. NULL: no
PSP has seen the row yet (the credential is chosen when it is first sent).

``psp_credentials.retired_at``: a replaced or deleted credential is kept (payments made with it still
need it), so the one-row-per-merchant-mode-PSP constraint becomes a unique index over current rows.

Backfill: rows that reached a PSP were made with the merchant's credential at that PSP in that mode if it
had one (there was at most one, never retired), else with the platform's account.

Revision ID: 0021_payment_credentials
Revises: 0020_risk
Create Date: 2026-12-07
"""
import sqlalchemy as sa
from alembic import op

revision = "0021_payment_credentials"
down_revision = "0020_risk"
branch_labels = None
depends_on = None

TABLES = ("payments", "payment_attempts", "refunds")


def upgrade() -> None:
    op.add_column("psp_credentials", sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True))
    op.drop_constraint("uq_psp_credentials_scope_psp", "psp_credentials", type_="unique")
    op.create_index("uq_psp_credentials_current", "psp_credentials", ["merchant_id", "livemode", "psp"],
                    unique=True, postgresql_where=sa.text("retired_at IS NULL"))
    for table in TABLES:
        op.add_column(table, sa.Column("credential", sa.String(length=64), nullable=True))
    op.execute("""
        UPDATE payment_attempts a SET credential = COALESCE(
            (SELECT c.id FROM psp_credentials c
              WHERE c.merchant_id = a.merchant_id AND c.livemode = a.livemode AND c.psp = a.vault), 'platform')
         WHERE a.connector IS NOT NULL
    """)
    op.execute("""
        UPDATE payments p SET credential = COALESCE(
            (SELECT c.id FROM psp_credentials c
              WHERE c.merchant_id = p.merchant_id AND c.livemode = p.livemode AND c.psp = p.payment_method_vault),
            'platform')
         WHERE p.connector IS NOT NULL
    """)
    op.execute("""
        UPDATE refunds r SET credential = p.credential
          FROM payments p
         WHERE p.id = r.payment_id AND p.merchant_id = r.merchant_id AND p.credential IS NOT NULL
    """)


def downgrade() -> None:
    for table in TABLES:
        op.drop_column(table, "credential")
    op.drop_index("uq_psp_credentials_current", table_name="psp_credentials")
    op.execute("DELETE FROM psp_credentials WHERE retired_at IS NOT NULL")
    op.create_unique_constraint("uq_psp_credentials_scope_psp", "psp_credentials", ["merchant_id", "livemode", "psp"])
    op.drop_column("psp_credentials", "retired_at")
