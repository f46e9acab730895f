"""Risk: learned models (issue 23): trained models stored as data with their metrics and the operator's decision,
each change of the scorer in use (for rollback), and the weekly score drift reports. Platform-wide tables, like
risk_weights; the console activates a model by its row in risk_weights (which the app may now insert and update).

Revision ID: 0029_risk_models
Revises: 0028_risk_screening
Create Date: 2026-12-08
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0029_risk_models"
down_revision = "0028_risk_screening"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "risk_models",
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("parameters", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("metrics", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("baseline", postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'[]'::jsonb"),
                  nullable=False),
        sa.Column("status", sa.String(length=16), server_default=sa.text("'candidate'"), nullable=False),
        sa.Column("demo", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("trained_by", sa.String(length=64), nullable=True),
        sa.Column("decided_by", sa.String(length=64), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decision_note", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("status IN ('candidate', 'approved', 'rejected')", name=op.f("ck_risk_models_status")),
        sa.PrimaryKeyConstraint("version", name="pk_risk_models"),
    )
    op.create_index("ix_risk_models_created", "risk_models", ["created_at"])
    op.create_table(
        "risk_scorer_activations",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("previous_version", sa.String(length=64), nullable=True),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_risk_scorer_activations"),
    )
    op.create_index("ix_risk_scorer_activations_created", "risk_scorer_activations", ["created_at"])
    op.create_table(
        "risk_drift_reports",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("week", sa.String(length=10), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("reference", sa.String(length=32), nullable=False),
        sa.Column("psi_thousandths", sa.Integer(), nullable=True),
        sa.Column("assessments", sa.Integer(), nullable=False),
        sa.Column("bins", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_risk_drift_reports"),
        sa.UniqueConstraint("week", name="uq_risk_drift_reports_week"),
    )
    op.execute("GRANT SELECT, INSERT, UPDATE ON risk_models TO kassa_app")
    op.execute("GRANT SELECT, INSERT ON risk_scorer_activations, risk_drift_reports TO kassa_app")
    op.execute("GRANT INSERT, UPDATE ON risk_weights TO kassa_app")


def downgrade():
    op.execute("REVOKE INSERT, UPDATE ON risk_weights FROM kassa_app")
    op.drop_table("risk_drift_reports")
    op.drop_index("ix_risk_scorer_activations_created", table_name="risk_scorer_activations")
    op.drop_table("risk_scorer_activations")
    op.drop_index("ix_risk_models_created", table_name="risk_models")
    op.drop_table("risk_models")
