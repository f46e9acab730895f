"""Base: merchants, users, memberships, the event outbox, and the append-only guard.

Revision ID: 0001_base
Revises:
Create Date: 2026-11-20
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001_base"
down_revision = None
branch_labels = None
depends_on = None

# Shared by every append-only table (events, audit log, ledger): UPDATE, DELETE and TRUNCATE raise.
APPEND_ONLY_FUNCTION = """
CREATE FUNCTION kassa_reject_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% on % is not allowed: the table is append-only', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
"""


def append_only(table: str) -> None:
    """Install the row- and statement-level triggers that make ``table`` append-only."""
    op.execute(f"""
        CREATE TRIGGER {table}_no_update_delete BEFORE UPDATE OR DELETE ON {table}
        FOR EACH ROW EXECUTE FUNCTION kassa_reject_change();
        CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}
        FOR EACH STATEMENT EXECUTE FUNCTION kassa_reject_change();
    """)


def upgrade():
    op.execute(APPEND_ONLY_FUNCTION)
    op.create_table(
        "merchants",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("display_name", sa.String(length=200), nullable=True),
        sa.Column("accent_color", sa.String(length=7), server_default=sa.text("'#4f46e5'"), nullable=False),
        sa.Column("logo_url", sa.String(length=2000), nullable=True),
        sa.Column("timezone", sa.String(length=64), server_default=sa.text("'UTC'"), nullable=False),
        sa.Column("live_enabled", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_merchants")),
    )
    op.create_table(
        "users",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("password_hash", sa.String(length=300), nullable=False),
        sa.Column("is_platform_admin", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("email", name=op.f("uq_users_email")),
    )
    op.create_table(
        "memberships",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("user_id", sa.String(), nullable=False),
        sa.Column("merchant_id", sa.String(), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["merchant_id"], ["merchants.id"], name=op.f("fk_memberships_merchant_id_merchants")),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_memberships_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_memberships")),
        sa.UniqueConstraint("user_id", "merchant_id", name="uq_memberships_user_merchant"),
        sa.CheckConstraint("role IN ('owner', 'admin', 'developer', 'analyst')", name=op.f("ck_memberships_role")),
    )
    op.create_index(op.f("ix_memberships_merchant_id"), "memberships", ["merchant_id"])
    op.create_index(op.f("ix_memberships_user_id"), "memberships", ["user_id"])
    op.create_table(
        "events",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("type", sa.String(), nullable=False),
        sa.Column("object_type", sa.String(), nullable=False),
        sa.Column("object_id", sa.String(), nullable=False),
        sa.Column("data", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("request_id", sa.String(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("merchant_id", sa.String(), nullable=False),
        sa.Column("livemode", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.ForeignKeyConstraint(["merchant_id"], ["merchants.id"], name=op.f("fk_events_merchant_id_merchants")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
    )
    op.create_index(op.f("ix_events_merchant_id"), "events", ["merchant_id"])
    op.create_index(op.f("ix_events_object_id"), "events", ["object_id"])
    op.create_index("ix_events_scope_created", "events", ["merchant_id", "livemode", "id"])
    append_only("events")
    op.create_table(
        "event_fanout_pending",
        sa.Column("event_id", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["event_id"], ["events.id"], name=op.f("fk_event_fanout_pending_event_id_events")),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_event_fanout_pending")),
    )
    op.execute("GRANT SELECT, INSERT, UPDATE ON merchants, users, memberships TO kassa_app")
    op.execute("GRANT DELETE ON memberships TO kassa_app")
    op.execute("GRANT SELECT, INSERT ON events TO kassa_app")
    op.execute("GRANT SELECT, INSERT, DELETE ON event_fanout_pending TO kassa_app")


def downgrade():
    op.drop_table("event_fanout_pending")
    op.drop_table("events")
    op.drop_table("memberships")
    op.drop_table("users")
    op.drop_table("merchants")
    op.execute("DROP FUNCTION kassa_reject_change()")
