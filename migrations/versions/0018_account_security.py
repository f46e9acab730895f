"""Account security: second factors, re-authentication before sensitive actions, sessions' second-factor state.

- ``user_second_factors``: a user's TOTP secret, sealed with KASSA_ENCRYPTION_KEYS (app/crypto.py), confirmed
  once its first code was typed; the time step of the last accepted code (replay refusal).
- ``recovery_codes``: ten single-use codes per user, argon2id hashes.
- ``user_sessions``: when the session passed the second factor, when its user last re-authenticated, and a
  form kept across a re-authentication.
- ``merchants``: ``require_second_factor`` (every member), ``refund_reauth_threshold`` and
  ``refund_reauth_currency`` (refunds up to it need no re-authentication; none set: every refund needs it).

Users and their factors are platform-wide (a person belongs to several merchants), so these tables carry
no merchant_id (ARCHITECTURE.md, "Growing past one machine": reference tables).

Revision ID: 0018_account_security
Revises: 0017_console
Create Date: 2026-11-23
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0018_account_security"
down_revision = "0017_console"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "user_second_factors",
        sa.Column("user_id", sa.String(), nullable=False),
        sa.Column("secret_encrypted", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_used_step", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_user_second_factors_user_id_users")),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_user_second_factors")),
    )
    op.create_table(
        "recovery_codes",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("user_id", sa.String(), nullable=False),
        sa.Column("code_hash", sa.String(length=300), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_recovery_codes_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recovery_codes")),
    )
    op.create_index(op.f("ix_recovery_codes_user_id"), "recovery_codes", ["user_id"])
    # Kassa (kassa_app) replaces a factor and its codes on set-up, reset and turning it off.
    op.execute("GRANT SELECT, INSERT, UPDATE, DELETE ON user_second_factors, recovery_codes TO kassa_app")

    op.add_column("user_sessions", sa.Column("second_factor_passed_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("user_sessions", sa.Column("reauthenticated_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("user_sessions", sa.Column("pending_form", postgresql.JSONB(astext_type=sa.Text()), nullable=True))

    op.add_column("merchants", sa.Column("require_second_factor", sa.Boolean(), server_default=sa.text("false"),
                                         nullable=False))
    op.add_column("merchants", sa.Column("refund_reauth_threshold", sa.BigInteger(), nullable=True))
    op.add_column("merchants", sa.Column("refund_reauth_currency", sa.String(length=3), nullable=True))
    op.create_check_constraint(op.f("ck_merchants_refund_reauth_threshold_currency"), "merchants",
                               "(refund_reauth_threshold IS NULL) = (refund_reauth_currency IS NULL)")
    op.create_check_constraint(op.f("ck_merchants_refund_reauth_threshold_not_negative"), "merchants",
                               "refund_reauth_threshold >= 0")


def downgrade():
    # Dropping the tables drops their grants.
    op.drop_constraint(op.f("ck_merchants_refund_reauth_threshold_not_negative"), "merchants", type_="check")
    op.drop_constraint(op.f("ck_merchants_refund_reauth_threshold_currency"), "merchants", type_="check")
    op.drop_column("merchants", "refund_reauth_currency")
    op.drop_column("merchants", "refund_reauth_threshold")
    op.drop_column("merchants", "require_second_factor")
    op.drop_column("user_sessions", "pending_form")
    op.drop_column("user_sessions", "reauthenticated_at")
    op.drop_column("user_sessions", "second_factor_passed_at")
    op.drop_index(op.f("ix_recovery_codes_user_id"), table_name="recovery_codes")
    op.drop_table("recovery_codes")
    op.drop_table("user_second_factors")
