"""Risk tables (migration 0020_risk): rules and value lists (the platform's and each merchant's), the
assessment of every confirmation, the reviews of payments held for a human, and the scoring weights.

Shard rules (ARCHITECTURE.md, "Growing past one machine"): merchant-owned tables (``risk_rules``,
``risk_value_lists``, ``risk_value_list_items``, ``risk_assessments``, ``risk_reviews``) carry
``merchant_id`` NOT NULL, set at insert and never updated, leading every primary and unique key and the
foreign keys between them. What belongs to the platform (its rules, its value lists and their items, the
weights) lives in small platform-wide tables of their own (``risk_platform_*``, ``risk_weights``): reference
tables in a Citus cluster, replicated to every shard, so that one merchant's evaluation still runs inside
its shard. A merchant-owned row never points at a platform row with a foreign key (a matched platform rule
is named by its id and owner in the assessment and the payment's outcome).
"""
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, ForeignKeyConstraint, Index, Integer, \
    PrimaryKeyConstraint, SmallInteger, String, Text, UniqueConstraint, Uuid, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.models_base import Base, utcnow

# Radar's actions, in Radar's evaluation order (the platform's blocks run before all of them).
ACTIONS = ("request_3ds", "allow", "block", "review")
OWNERS = ("platform", "merchant")
# Stripe's value list item types, plus Kassa's email_domain and ip_address ranges (CIDR in ip_address lists).
ITEM_TYPES = ("card_fingerprint", "card_bin", "email", "email_domain", "ip_address", "country", "string",
              "case_sensitive_string")
LEVELS = ("normal", "elevated", "highest")
# The payment's ``outcome.type``, as Stripe's charge outcome names it.
OUTCOME_TYPES = ("authorized", "manual_review", "blocked", "issuer_declined")
# What an assessment decided: a rule's action, or "allow" by default when nothing matched.
OUTCOMES = ("allow", "block", "review", "request_3ds")
# Stage of an assessment: at confirmation, or again after 3-D Secure (the whole chain, with its result).
STAGES = ("confirmation", "after_3ds")
REVIEW_STATUSES = ("open", "closed")
# Stripe's review reasons: why it opened, why it closed.
OPENED_REASONS = ("rule", "manual", "card_facts_unavailable")
# Why an assessment decided other than by a rule: the vault could not be asked for the card's facts, so the
# platform's card block lists could not be checked (held for review; app/payments/risk.py).
ASSESSMENT_REASONS = ("card_facts_unavailable",)
CLOSED_REASONS = ("approved", "refunded", "refunded_as_fraud", "disputed", "canceled", "timed_out")


def _in(values) -> str:
    return ", ".join(f"'{v}'" for v in values)


class _RuleColumns:
    """Columns of a rule, the platform's or a merchant's."""

    id: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(16))
    # The rule's text in the rule language (app/risk/language.py), checked on save.
    predicate: Mapped[str] = mapped_column(String(2000))
    description: Mapped[str | None] = mapped_column(String(500))
    # Order within its action (first match wins); gaps allowed.
    position: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    enabled: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    # Built-in rules (the default blocks on the built-in lists) can be disabled, not deleted or edited.
    builtin: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    created_by: Mapped[str | None] = mapped_column(String(64))     # a user id
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=text("now()"))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow, server_default=text("now()"))


class RiskRule(_RuleColumns, Base):
    """A merchant's rule in one mode."""

    __tablename__ = "risk_rules"
    __table_args__ = (
        PrimaryKeyConstraint("merchant_id", "id", name="pk_risk_rules"),
        CheckConstraint(f"action IN ({_in(ACTIONS)})", name="action"),
        Index("ix_risk_rules_scope_action_position", "merchant_id", "livemode", "action", "position"),
    )

    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"))
    livemode: Mapped[bool] = mapped_column(server_default=text("false"))


class PlatformRiskRule(_RuleColumns, Base):
    """A platform rule: applies to every merchant, in both modes. Its blocks run before any merchant rule."""

    __tablename__ = "risk_platform_rules"
    __table_args__ = (
        PrimaryKeyConstraint("id", name="pk_risk_platform_rules"),
        CheckConstraint(f"action IN ({_in(ACTIONS)})", name="action"),
        Index("ix_risk_platform_rules_action_position", "action", "position"),
    )


class _ListColumns:
    id: Mapped[str] = mapped_column(String(64))
    # How rules name the list: ``@alias`` (letters, digits, underscore).
    alias: Mapped[str] = mapped_column(String(100))
    name: Mapped[str] = mapped_column(String(200))
    item_type: Mapped[str] = mapped_column(String(32))
    builtin: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSONB, server_default=text("'{}'::jsonb"))
    created_by: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=text("now()"))


class ValueList(_ListColumns, Base):
    """A merchant's value list (Stripe's ``radar.value_list``) in one mode."""

    __tablename__ = "risk_value_lists"
    __table_args__ = (
        PrimaryKeyConstraint("merchant_id", "id", name="pk_risk_value_lists"),
        UniqueConstraint("merchant_id", "livemode", "alias", name="uq_risk_value_lists_scope_alias"),
        # The target of the items' key: an item is in its list's mode (migration 0034_risk_list_item_mode).
        UniqueConstraint("merchant_id", "livemode", "id", name="uq_risk_value_lists_scope_id"),
        CheckConstraint(f"item_type IN ({_in(ITEM_TYPES)})", name="item_type"),
    )

    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"))
    livemode: Mapped[bool] = mapped_column(server_default=text("false"))


class ValueListItem(Base):
    """An item of a merchant's value list (Stripe's ``radar.value_list_item``)."""

    __tablename__ = "risk_value_list_items"
    __table_args__ = (
        PrimaryKeyConstraint("merchant_id", "id", name="pk_risk_value_list_items"),
        UniqueConstraint("merchant_id", "value_list_id", "value", name="uq_risk_value_list_items_list_value"),
        # livemode in the key: the database refuses an item whose mode is not its list's.
        ForeignKeyConstraint(["merchant_id", "livemode", "value_list_id"],
                             ["risk_value_lists.merchant_id", "risk_value_lists.livemode", "risk_value_lists.id"],
                             name="fk_risk_value_list_items_list", ondelete="CASCADE"),
        Index("ix_risk_value_list_items_list_created", "merchant_id", "value_list_id", "created_at"),
    )

    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"))
    livemode: Mapped[bool] = mapped_column(server_default=text("false"))
    id: Mapped[str] = mapped_column(String(64))
    value_list_id: Mapped[str] = mapped_column(String(64))
    value: Mapped[str] = mapped_column(String(800))
    created_by: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=text("now()"))


class PlatformValueList(_ListColumns, Base):
    """A platform value list: the built-in block lists and the platform's own; platform rules read these only."""

    __tablename__ = "risk_platform_value_lists"
    __table_args__ = (
        PrimaryKeyConstraint("id", name="pk_risk_platform_value_lists"),
        UniqueConstraint("alias", name="uq_risk_platform_value_lists_alias"),
        CheckConstraint(f"item_type IN ({_in(ITEM_TYPES)})", name="item_type"),
    )


class PlatformValueListItem(Base):
    __tablename__ = "risk_platform_value_list_items"
    __table_args__ = (
        PrimaryKeyConstraint("id", name="pk_risk_platform_value_list_items"),
        UniqueConstraint("value_list_id", "value", name="uq_risk_platform_value_list_items_list_value"),
        Index("ix_risk_platform_value_list_items_list_created", "value_list_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(64))
    value_list_id: Mapped[str] = mapped_column(
        ForeignKey("risk_platform_value_lists.id", ondelete="CASCADE"))
    value: Mapped[str] = mapped_column(String(800))
    created_by: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=text("now()"))


class RiskWeights(Base):
    """A version of the scoring weights, as data (app/risk/scoring.py): the active one scores new assessments.

    ``weights`` maps a signal feature to its weight; the score is the logistic of ``intercept`` plus the sum of
    contributions, scaled to 0-99. A learned model (later) adds a version and activates it.
    """

    __tablename__ = "risk_weights"
    __table_args__ = (
        PrimaryKeyConstraint("version", name="pk_risk_weights"),
        # At most one active version.
        Index("uq_risk_weights_active", "active", unique=True, postgresql_where=text("active")),
    )

    version: Mapped[str] = mapped_column(String(64))
    intercept: Mapped[int] = mapped_column(Integer)         # in thousandths, like the weights
    weights: Mapped[dict[str, Any]] = mapped_column(JSONB)  # feature -> weight in thousandths (integers)
    active: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    description: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=text("now()"))


class Assessment(Base):
    """One evaluation of a payment's confirmation (or of its 3-D Secure result): the signals, each one's
    contribution to the score, the score and its level, the weights' version, the outcome and the rule
    that decided it, and whether the velocity counters were unavailable (Redis away)."""

    __tablename__ = "risk_assessments"
    __table_args__ = (
        PrimaryKeyConstraint("merchant_id", "id", name="pk_risk_assessments"),
        CheckConstraint("score >= 0 AND score <= 99", name="score_range"),
        CheckConstraint(f"level IN ({_in(LEVELS)})", name="level"),
        CheckConstraint(f"outcome IN ({_in(OUTCOMES)})", name="outcome"),
        CheckConstraint(f"stage IN ({_in(STAGES)})", name="stage"),
        CheckConstraint(f"rule_owner IN ({_in(OWNERS)})", name="rule_owner"),
        CheckConstraint(f"reason IN ({_in(ASSESSMENT_REASONS)})", name="reason"),
        Index("ix_risk_assessments_scope_payment", "merchant_id", "livemode", "payment_id"),
        # The backtest reads the last 30 days of one book.
        Index("ix_risk_assessments_scope_created", "merchant_id", "livemode", "created_at"),
    )

    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"))
    livemode: Mapped[bool] = mapped_column(server_default=text("false"))
    id: Mapped[str] = mapped_column(String(64))
    payment_id: Mapped[str] = mapped_column(String(64))
    attempt_id: Mapped[str | None] = mapped_column(String(64))   # the authorization attempt it screened
    stage: Mapped[str] = mapped_column(String(16), server_default=text("'confirmation'"))
    # Signal name -> value (JSON types; what the rules saw). Never a card number.
    signals: Mapped[dict[str, Any]] = mapped_column(JSONB)
    # Feature -> contribution to the score, in thousandths (integers).
    contributions: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    score: Mapped[int] = mapped_column(Integer)
    level: Mapped[str] = mapped_column(String(16))
    weights_version: Mapped[str] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(16))
    rule_id: Mapped[str | None] = mapped_column(String(64))
    rule_owner: Mapped[str | None] = mapped_column(String(16))
    rule_action: Mapped[str | None] = mapped_column(String(16))
    rule_predicate: Mapped[str | None] = mapped_column(String(2000))
    # The velocity counters could not be read or counted (Redis away): the evaluation went on without them.
    redis_degraded: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    # Set when the outcome came from something other than a rule (ASSESSMENT_REASONS).
    reason: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=text("now()"))


class Review(Base):
    """A payment held for review (Stripe's ``review``): authorized, its capture held until someone decides.

    ``owner`` says who decides: the platform (a platform rule opened it, or the merchant leaves reviews to
    the platform) or the merchant. Decided once: the decision is a conditional update of an open row.
    """

    __tablename__ = "risk_reviews"
    __table_args__ = (
        PrimaryKeyConstraint("merchant_id", "id", name="pk_risk_reviews"),
        CheckConstraint(f"status IN ({_in(REVIEW_STATUSES)})", name="status"),
        CheckConstraint(f"owner IN ({_in(OWNERS)})", name="owner"),
        CheckConstraint(f"opened_reason IN ({_in(OPENED_REASONS)})", name="opened_reason"),
        CheckConstraint(f"closed_reason IN ({_in(CLOSED_REASONS)})", name="closed_reason"),
        CheckConstraint("(status = 'closed') = (closed_reason IS NOT NULL)", name="closed_has_reason"),
        UniqueConstraint("merchant_id", "livemode", "payment_id", name="uq_risk_reviews_scope_payment"),
        Index("ix_risk_reviews_scope_status_created", "merchant_id", "livemode", "status", "created_at"),
        # The queue across merchants, oldest first, and the timeout sweep.
        Index("ix_risk_reviews_open_created", "created_at", postgresql_where=text("status = 'open'")),
        Index("ix_risk_reviews_open_expires", "expires_at", postgresql_where=text("status = 'open'")),
    )

    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"))
    livemode: Mapped[bool] = mapped_column(server_default=text("false"))
    id: Mapped[str] = mapped_column(String(64))
    payment_id: Mapped[str] = mapped_column(String(64))
    assessment_id: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), server_default=text("'open'"))
    owner: Mapped[str] = mapped_column(String(16))
    opened_reason: Mapped[str] = mapped_column(String(32), server_default=text("'rule'"))
    closed_reason: Mapped[str | None] = mapped_column(String(32))
    rule_id: Mapped[str | None] = mapped_column(String(64))
    ip_address: Mapped[str | None] = mapped_column(String(45))
    ip_country: Mapped[str | None] = mapped_column(String(2))
    # Who works it (a platform admin or a merchant's member): user id and when.
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    claimed_at: Mapped[datetime | None]
    # Notes in order: [{"at": iso, "by": user id or "system", "text": ...}].
    notes: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, server_default=text("'[]'::jsonb"))
    decided_by: Mapped[str | None] = mapped_column(String(64))
    # When the sweep voids it if still open (before the authorization would expire).
    expires_at: Mapped[datetime]
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=text("now()"))
    closed_at: Mapped[datetime | None]


class ConfigStamp(Base):
    """A random stamp replaced (by triggers, migration 0028_risk_screening) whenever this book's rules or value lists change
    (not their items): each process caches the compiled configuration and checks the stamp in the evaluation's
    one query (app/risk/evaluate.py). Written by the triggers only."""

    __tablename__ = "risk_config_stamps"
    __table_args__ = (PrimaryKeyConstraint("merchant_id", "livemode", name="pk_risk_config_stamps"),)

    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"))
    livemode: Mapped[bool] = mapped_column(Boolean)
    stamp: Mapped[uuid.UUID] = mapped_column(Uuid)


class PlatformConfigStamp(Base):
    """The platform's stamp (one row): replaced whenever platform rules, platform lists or the weights change."""

    __tablename__ = "risk_platform_config_stamp"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    stamp: Mapped[uuid.UUID] = mapped_column(Uuid)
