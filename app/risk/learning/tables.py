"""Tables of the learned risk score (migration 0029_risk_models): platform-wide, like ``risk_weights``.

A model is trained on every merchant's live outcomes and scores every merchant's confirmations, so it is the
platform's (a reference table when sharded); it holds coefficients and trees, never a merchant's rows.
"""
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, CheckConstraint, Index, Integer, PrimaryKeyConstraint, String, Text, \
    UniqueConstraint, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.models_base import Base, utcnow

MODEL_STATUSES = ("candidate", "approved", "rejected")


class RiskModel(Base):
    """A trained model (``app/risk/learning/model.py``'s JSON document), its metrics and the operator's decision.

    ``approved`` means an operator let it score; which scorer scores now is the active ``risk_weights`` row
    (a learned model's row there carries its version and no weights). ``metrics`` holds the candidate's and
    the scorer in use's ROC AUC, precision and recall at the ``elevated`` and ``highest`` thresholds on the
    same time-based test set; ``baseline`` the test set's score distribution (the drift report's reference).
    """

    __tablename__ = "risk_models"
    __table_args__ = (
        PrimaryKeyConstraint("version", name="pk_risk_models"),
        CheckConstraint("status IN ('candidate', 'approved', 'rejected')", name="status"),
        Index("ix_risk_models_created", "created_at"),
    )

    version: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(32))
    parameters: Mapped[dict[str, Any]] = mapped_column(JSONB)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSONB)
    baseline: Mapped[list[Any]] = mapped_column(JSONB, server_default=text("'[]'::jsonb"))
    status: Mapped[str] = mapped_column(String(16), server_default=text("'candidate'"))
    # Trained on generated history (the demo), not on the platform's outcomes: shown as such everywhere.
    demo: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    trained_by: Mapped[str | None] = mapped_column(String(64))
    decided_by: Mapped[str | None] = mapped_column(String(64))
    decided_at: Mapped[datetime | None]
    decision_note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=text("now()"))


class ScorerActivation(Base):
    """Each change of the scorer in use (approval or rollback), in order: a rollback returns to the previous one."""

    __tablename__ = "risk_scorer_activations"
    __table_args__ = (
        PrimaryKeyConstraint("id", name="pk_risk_scorer_activations"),
        Index("ix_risk_scorer_activations_created", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(64))
    version: Mapped[str] = mapped_column(String(64))
    previous_version: Mapped[str | None] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(16))       # approve, rollback
    actor: Mapped[str | None] = mapped_column(String(64))
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=text("now()"))


class DriftReport(Base):
    """A week's score distribution of live confirmations against its reference: the population stability index."""

    __tablename__ = "risk_drift_reports"
    __table_args__ = (
        PrimaryKeyConstraint("id", name="pk_risk_drift_reports"),
        UniqueConstraint("week", name="uq_risk_drift_reports_week"),
    )

    id: Mapped[str] = mapped_column(String(64))
    week: Mapped[str] = mapped_column(String(10))          # ISO week reported, e.g. 2026-W49
    version: Mapped[str] = mapped_column(String(64))       # the scorer in use
    reference: Mapped[str] = mapped_column(String(32))     # model_test_set or previous_4_weeks
    # PSI in thousandths (0.1 = 100): below 100 stable, 100-250 moderate shift, above 250 significant.
    psi_thousandths: Mapped[int | None] = mapped_column(Integer)
    assessments: Mapped[int] = mapped_column(Integer)
    bins: Mapped[list[Any]] = mapped_column(JSONB)         # [{"from", "to", "reference", "current"}] shares
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=text("now()"))
