"""API keys: secret and publishable keys per merchant and mode, stored as keyed hashes.

Secret keys are never stored in clear (a CHECK constraint refuses it); publishable keys, which are public,
keep their clear value for display. last_used_at is written by its own short transaction after the API
response (see app/api/auth.py), so the application role needs UPDATE.

Revision ID: 0004_api_keys
Revises: 0002_audit_log
Create Date: 2026-11-20
"""
import sqlalchemy as sa
from alembic import op

revision = "0004_api_keys"
down_revision = "0002_audit_log"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=True),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("prefix", sa.String(length=20), nullable=False),
        sa.Column("last4", sa.String(length=4), nullable=False),
        sa.Column("publishable_token", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("created_by_user_id", sa.String(), nullable=True),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("rolled_from_id", sa.String(), nullable=True),
        sa.Column("replaced_by_id", sa.String(), nullable=True),
        sa.Column("merchant_id", sa.String(), nullable=False),
        sa.Column("livemode", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.CheckConstraint("kind IN ('secret', 'publishable')", name=op.f("ck_api_keys_kind")),
        sa.CheckConstraint("kind = 'publishable' OR publishable_token IS NULL",
                           name=op.f("ck_api_keys_secret_never_in_clear")),
        sa.ForeignKeyConstraint(["created_by_user_id"], ["users.id"],
                                name=op.f("fk_api_keys_created_by_user_id_users")),
        sa.ForeignKeyConstraint(["merchant_id"], ["merchants.id"], name=op.f("fk_api_keys_merchant_id_merchants")),
        sa.ForeignKeyConstraint(["replaced_by_id"], ["api_keys.id"], name=op.f("fk_api_keys_replaced_by_id_api_keys")),
        sa.ForeignKeyConstraint(["rolled_from_id"], ["api_keys.id"], name=op.f("fk_api_keys_rolled_from_id_api_keys")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_api_keys_key_hash")),
    )
    op.create_index(op.f("ix_api_keys_merchant_id"), "api_keys", ["merchant_id"])
    op.create_index("ix_api_keys_merchant_mode_kind", "api_keys", ["merchant_id", "livemode", "kind"])
    # Keys are revoked, never deleted (the audit log and rolled_from/replaced_by point at them): no DELETE.
    op.execute("GRANT SELECT, INSERT, UPDATE ON api_keys TO kassa_app")


def downgrade():
    op.drop_table("api_keys")
