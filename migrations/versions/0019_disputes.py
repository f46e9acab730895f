"""Disputes: evidence, deadlines, the merchant's actions and what was booked; evidence files.

``disputes`` (created by 0006 as a record of PSP callbacks) becomes the disputes domain's table and meets
the shard rules of ARCHITECTURE.md: ``merchant_id`` leads its primary key and its unique key; the lookup of
a known dispute across merchants by the PSP's id keeps a plain index. New columns: the evidence (Stripe's
fields, a draft until submitted), its deadline and submissions, the action the merchant asked for and its
schedule, metadata, the booked shares of the disputed amount, the fee, and notification times.

``files``: uploads checked by content (PDF, PNG, JPEG), keyed by merchant and id, with a SHA-256 checksum,
the content as bytea unless kept in FILES_DIRECTORY. The application may read and insert them, never change
or delete one.

Revision ID: 0019_disputes
Revises: 0018_account_security
Create Date: 2026-12-07
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0019_disputes"
down_revision = "0018_account_security"
branch_labels = None
depends_on = None

AWAITING_RESPONSE = "status IN ('warning_needs_response', 'needs_response')"

NEW_COLUMNS = (
    sa.Column("is_charge_refundable", sa.Boolean(), server_default=sa.text("false"), nullable=False),
    sa.Column("evidence", postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"),
              nullable=False),
    sa.Column("evidence_due_by", sa.DateTime(timezone=True), nullable=True),
    sa.Column("submission_count", sa.Integer(), server_default=sa.text("0"), nullable=False),
    sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("pending_action", sa.String(length=16), nullable=True),
    sa.Column("action_tries", sa.Integer(), server_default=sa.text("0"), nullable=False),
    sa.Column("action_next_attempt_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("action_lease_until", sa.DateTime(timezone=True), nullable=True),
    sa.Column("action_error", sa.Text(), nullable=True),
    sa.Column("metadata", postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"),
              nullable=False),
    sa.Column("allocations", postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'[]'::jsonb"),
              nullable=False),
    sa.Column("funds_withdrawn_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("funds_reinstated_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("fee", sa.BigInteger(), nullable=True),
    sa.Column("fee_currency", sa.String(length=3), nullable=True),
    sa.Column("fee_returned", sa.BigInteger(), nullable=True),
    sa.Column("opened_notified_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("reminded_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
)


def upgrade():
    # The console's provisional "awaiting a response" index (0017): the disputes' inbox kind reads by due date.
    op.drop_index("ix_disputes_open", table_name="disputes")
    op.drop_constraint("pk_disputes", "disputes", type_="primary")
    op.create_primary_key("pk_disputes", "disputes", ["merchant_id", "id"])
    op.drop_constraint("uq_disputes_psp_psp_reference", "disputes", type_="unique")
    op.create_unique_constraint("uq_disputes_merchant_psp_reference", "disputes", ["merchant_id", "psp", "psp_reference"])
    op.create_index("ix_disputes_psp_reference", "disputes", ["psp", "psp_reference"])
    op.drop_index("ix_disputes_payment_id", table_name="disputes")
    op.create_index("ix_disputes_scope_payment", "disputes", ["merchant_id", "livemode", "payment_id"])
    for column in NEW_COLUMNS:
        op.add_column("disputes", column)
    op.create_check_constraint(op.f("ck_disputes_submission_count_not_negative"), "disputes", "submission_count >= 0")
    op.create_check_constraint(op.f("ck_disputes_pending_action"), "disputes",
                               "pending_action IN ('submit', 'close')")
    op.create_index("ix_disputes_awaiting_response", "disputes", ["evidence_due_by"],
                    postgresql_where=sa.text(AWAITING_RESPONSE))
    op.create_index("ix_disputes_actions_due", "disputes", ["action_next_attempt_at"],
                    postgresql_where=sa.text("pending_action IS NOT NULL"))

    op.create_table(
        "files",
        sa.Column("merchant_id", sa.String(), nullable=False),
        sa.Column("livemode", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("purpose", sa.String(length=40), nullable=False),
        sa.Column("type", sa.String(length=8), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("pages", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("filename", sa.String(length=255), nullable=True),
        sa.Column("storage", sa.String(length=16), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["merchant_id"], ["merchants.id"], name=op.f("fk_files_merchant_id_merchants")),
        sa.PrimaryKeyConstraint("merchant_id", "id", name="pk_files"),
        sa.CheckConstraint("purpose IN ('dispute_evidence')", name=op.f("ck_files_purpose")),
        sa.CheckConstraint("type IN ('pdf', 'png', 'jpg')", name=op.f("ck_files_type")),
        sa.CheckConstraint("storage IN ('database', 'directory')", name=op.f("ck_files_storage")),
        sa.CheckConstraint("size > 0", name=op.f("ck_files_size_positive")),
        sa.CheckConstraint("(storage = 'database') = (content IS NOT NULL)", name=op.f("ck_files_content_where_stored")),
    )
    op.create_index("ix_files_scope_created", "files", ["merchant_id", "livemode", "created_at"])
    # Evidence files are facts once uploaded: read and added, never changed or removed by the application.
    op.execute("GRANT SELECT, INSERT ON files TO kassa_app")


def downgrade():
    op.drop_table("files")
    op.drop_index("ix_disputes_actions_due", table_name="disputes")
    op.drop_index("ix_disputes_awaiting_response", table_name="disputes")
    op.drop_constraint(op.f("ck_disputes_pending_action"), "disputes", type_="check")
    op.drop_constraint(op.f("ck_disputes_submission_count_not_negative"), "disputes", type_="check")
    for column in reversed(NEW_COLUMNS):
        op.drop_column("disputes", column.name)
    op.drop_index("ix_disputes_scope_payment", table_name="disputes")
    op.create_index("ix_disputes_payment_id", "disputes", ["payment_id"])
    op.drop_index("ix_disputes_psp_reference", table_name="disputes")
    op.drop_constraint("uq_disputes_merchant_psp_reference", "disputes", type_="unique")
    op.create_unique_constraint("uq_disputes_psp_psp_reference", "disputes", ["psp", "psp_reference"])
    op.drop_constraint("pk_disputes", "disputes", type_="primary")
    op.create_primary_key("pk_disputes", "disputes", ["id"])
    op.create_index("ix_disputes_open", "disputes", ["created_at"],
                    postgresql_where=sa.text("status IN ('needs_response', 'warning_needs_response')"))
