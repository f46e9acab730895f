"""The operator console: merchant lifecycle, user locks, callback dismissals, inbox claims.

- merchants: the business details of the go-live checklist, ``webhooks_not_needed``, ``suspended_at`` /
  ``suspension_reason``;
- users: ``locked_at`` / ``locked_reason``;
- psp_callbacks: ``dismissed_at`` / ``dismissed_by_user_id`` / ``dismissal_note``;
- inbox_claims: who works on which inbox item. A platform-wide table (the operators' own data, like
  users), so it has no merchant_id: nothing in it belongs to a merchant;
- partial indexes of the few rows the inbox lists: callbacks failed or rejected and not dismissed,
  disputes awaiting a response, webhook endpoints disabled or failing.

Revision ID: 0017_console
Revises: 0016_needs_attention
Create Date: 2026-12-02
"""
import sqlalchemy as sa
from alembic import op

revision = "0017_console"
down_revision = "0016_needs_attention"
branch_labels = None
depends_on = None

MERCHANT_DETAILS = (
    ("legal_name", 200), ("address_line1", 200), ("address_line2", 200), ("postal_code", 20), ("city", 100),
    ("country", 2), ("support_email", 320), ("support_url", 2000),
)


def upgrade():
    for name, length in MERCHANT_DETAILS:
        op.add_column("merchants", sa.Column(name, sa.String(length=length), nullable=True))
    op.add_column("merchants", sa.Column("webhooks_not_needed", sa.Boolean(), server_default=sa.text("false"),
                                         nullable=False))
    op.add_column("merchants", sa.Column("suspended_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("merchants", sa.Column("suspension_reason", sa.String(length=500), nullable=True))

    op.add_column("users", sa.Column("locked_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("users", sa.Column("locked_reason", sa.String(length=500), nullable=True))

    op.add_column("psp_callbacks", sa.Column("dismissed_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("psp_callbacks", sa.Column("dismissed_by_user_id", sa.String(), nullable=True))
    op.add_column("psp_callbacks", sa.Column("dismissal_note", sa.String(length=500), nullable=True))
    op.create_foreign_key(op.f("fk_psp_callbacks_dismissed_by_user_id_users"), "psp_callbacks", "users",
                          ["dismissed_by_user_id"], ["id"])
    op.create_index("ix_psp_callbacks_needs_operator", "psp_callbacks", ["received_at"],
                    postgresql_where=sa.text("result IN ('failed', 'rejected') AND dismissed_at IS NULL"))
    op.create_index("ix_disputes_open", "disputes", ["created_at"],
                    postgresql_where=sa.text("status IN ('needs_response', 'warning_needs_response')"))
    op.create_index("ix_webhook_endpoints_troubled", "webhook_endpoints", ["failing_since"],
                    postgresql_where=sa.text(
                        "deleted_at IS NULL AND (status = 'disabled' OR failing_since IS NOT NULL)"))

    op.create_table(
        "inbox_claims",
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("item_id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_inbox_claims_user_id_users")),
        sa.PrimaryKeyConstraint("kind", "item_id", name=op.f("pk_inbox_claims")),
    )
    op.execute("GRANT SELECT, INSERT, UPDATE, DELETE ON inbox_claims TO kassa_app")


def downgrade():
    op.drop_table("inbox_claims")
    op.drop_index("ix_webhook_endpoints_troubled", table_name="webhook_endpoints")
    op.drop_index("ix_disputes_open", table_name="disputes")
    op.drop_index("ix_psp_callbacks_needs_operator", table_name="psp_callbacks")
    op.drop_constraint(op.f("fk_psp_callbacks_dismissed_by_user_id_users"), "psp_callbacks", type_="foreignkey")
    for name in ("dismissal_note", "dismissed_by_user_id", "dismissed_at"):
        op.drop_column("psp_callbacks", name)
    for name in ("locked_reason", "locked_at"):
        op.drop_column("users", name)
    for name in ("suspension_reason", "suspended_at", "webhooks_not_needed"):
        op.drop_column("merchants", name)
    for name, _length in reversed(MERCHANT_DETAILS):
        op.drop_column("merchants", name)
