"""PSP callbacks carry the scope their signature was verified for (psp, mode, which merchants).

Revision ID: 0012_callback_scope
Revises: 0011_merge_areas
Create Date: 2026-12-01

Rows stored before this revision get the platform's scope in the mode they were stored with: that is
what the platform hooks verified them with, and a row a merchant's own secret verified is then refused
(its merchant has its own credentials, which the platform's account does not serve) rather than
applied outside its merchant.
"""
import sqlalchemy as sa
from alembic import op

revision = "0012_callback_scope"
down_revision = "0011_merge_areas"
branch_labels = None
depends_on = None


def upgrade():
    # The server default only fills the rows that exist; new rows always name their verifying secret.
    op.add_column("psp_callbacks", sa.Column("verified_with", sa.String(length=64), nullable=False,
                                             server_default="platform"))
    op.alter_column("psp_callbacks", "verified_with", server_default=None)
    op.add_column("psp_callbacks", sa.Column("scope_merchant_id", sa.String(), nullable=True))
    op.create_foreign_key(op.f("fk_psp_callbacks_scope_merchant_id_merchants"), "psp_callbacks", "merchants",
                          ["scope_merchant_id"], ["id"])
    # Every hook has always stored a mode (the sandbox's is test); the NULLs are only a type's leniency.
    op.execute("UPDATE psp_callbacks SET livemode = false WHERE livemode IS NULL")
    op.alter_column("psp_callbacks", "livemode", existing_type=sa.Boolean(), nullable=False)


def downgrade():
    op.alter_column("psp_callbacks", "livemode", existing_type=sa.Boolean(), nullable=True)
    op.drop_constraint(op.f("fk_psp_callbacks_scope_merchant_id_merchants"), "psp_callbacks", type_="foreignkey")
    op.drop_column("psp_callbacks", "scope_merchant_id")
    op.drop_column("psp_callbacks", "verified_with")
