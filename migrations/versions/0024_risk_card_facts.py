"""Risk: a payment whose card facts the vault could not give is held for review, and says why. The assessment
gets a ``reason`` (``card_facts_unavailable``: the platform's card block lists could not be checked), and a
review may open for that reason (``opened_reason``, widened to 32 characters).

Revision ID: 0024_risk_card_facts
Revises: 0023_recon_fetch_failures
Create Date: 2026-12-08
"""
from alembic import op
import sqlalchemy as sa

revision = "0024_risk_card_facts"
down_revision = "0023_recon_fetch_failures"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("risk_assessments", sa.Column("reason", sa.String(length=32), nullable=True))
    op.create_check_constraint(op.f("ck_risk_assessments_reason"), "risk_assessments",
                               "reason IN ('card_facts_unavailable')")
    op.alter_column("risk_reviews", "opened_reason", type_=sa.String(length=32), existing_type=sa.String(length=16),
                    existing_nullable=False, existing_server_default=sa.text("'rule'"))
    op.drop_constraint(op.f("ck_risk_reviews_opened_reason"), "risk_reviews", type_="check")
    op.create_check_constraint(op.f("ck_risk_reviews_opened_reason"), "risk_reviews",
                               "opened_reason IN ('rule', 'manual', 'card_facts_unavailable')")


def downgrade():
    op.drop_constraint(op.f("ck_risk_reviews_opened_reason"), "risk_reviews", type_="check")
    op.execute("UPDATE risk_reviews SET opened_reason = 'rule' WHERE opened_reason = 'card_facts_unavailable'")
    op.create_check_constraint(op.f("ck_risk_reviews_opened_reason"), "risk_reviews",
                               "opened_reason IN ('rule', 'manual')")
    op.alter_column("risk_reviews", "opened_reason", type_=sa.String(length=16), existing_type=sa.String(length=32),
                    existing_nullable=False, existing_server_default=sa.text("'rule'"))
    op.drop_constraint(op.f("ck_risk_assessments_reason"), "risk_assessments", type_="check")
    op.drop_column("risk_assessments", "reason")
