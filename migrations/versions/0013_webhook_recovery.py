"""Webhooks: a delivery row for every subscribed endpoint, a disabled one's marked "missed", to be sent later.

Fan-out now writes the delivery row of an endpoint that is disabled too, with status 'missed' and no
schedule, so that "send missed events" can turn the rows of the last 30 days into pending deliveries. A
partial index serves the count on the endpoint's page and the send.

Downgrade: 'missed' rows become 'failed' (never sent, not retried), which the old status list allows.

Revision ID: 0013_webhook_recovery
Revises: 0012_callback_scope
Create Date: 2026-11-20
"""
import sqlalchemy as sa
from alembic import op

revision = "0013_webhook_recovery"
down_revision = "0012_callback_scope"
branch_labels = None
depends_on = None


def upgrade():
    op.drop_constraint(op.f("ck_webhook_deliveries_status"), "webhook_deliveries", type_="check")
    op.create_check_constraint(op.f("ck_webhook_deliveries_status"), "webhook_deliveries",
                               "status IN ('pending', 'succeeded', 'failed', 'missed')")
    op.create_index("ix_webhook_deliveries_missed", "webhook_deliveries", ["merchant_id", "endpoint_id", "id"],
                    postgresql_where=sa.text("status = 'missed'"))


def downgrade():
    op.drop_index("ix_webhook_deliveries_missed", table_name="webhook_deliveries")
    op.execute("UPDATE webhook_deliveries SET status = 'failed', last_error = 'endpoint disabled', "
               "completed_at = now() WHERE status = 'missed'")
    op.drop_constraint(op.f("ck_webhook_deliveries_status"), "webhook_deliveries", type_="check")
    op.create_check_constraint(op.f("ck_webhook_deliveries_status"), "webhook_deliveries",
                               "status IN ('pending', 'succeeded', 'failed')")
