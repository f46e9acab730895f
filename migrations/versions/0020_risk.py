"""Risk: rules and value lists (the platform's and each merchant's), assessments, reviews, scoring weights.

Merchant-owned tables (``risk_rules``, ``risk_value_lists``, ``risk_value_list_items``, ``risk_assessments``,
``risk_reviews``) have ``merchant_id`` leading every key, and their foreign keys between them include it.
The platform's rules and lists and the weights are platform-wide tables of their own (reference tables when
sharded). Seeds the built-in platform block lists, the default platform rules that block on them and on the
vault's known-fraud hint (the sandbox's fraud card), and weights version ``v1``.

Payments gain the shopper's IP, the risk score and level, the outcome (Stripe's charge ``outcome``), the
review id and the request for 3-D Secure; merchants the setting "the platform keeps review to itself".

Revision ID: 0020_risk
Revises: 0019_disputes
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0020_risk"
down_revision = "0019_disputes"
branch_labels = None
depends_on = None

ACTIONS = "'request_3ds', 'allow', 'block', 'review'"
ITEM_TYPES = ("'card_fingerprint', 'card_bin', 'email', 'email_domain', 'ip_address', 'country', 'string', "
              "'case_sensitive_string'")

# The built-in platform block lists: (id, alias, name, item type).
BUILTIN_LISTS = (
    ("rsl_platform_card_fingerprint", "platform_card_fingerprint_block_list", "Blocked card fingerprints",
     "card_fingerprint"),
    ("rsl_platform_card_bin", "platform_card_bin_block_list", "Blocked card BINs", "card_bin"),
    ("rsl_platform_email", "platform_email_block_list", "Blocked emails", "email"),
    ("rsl_platform_email_domain", "platform_email_domain_block_list", "Blocked email domains", "email_domain"),
    ("rsl_platform_ip_address", "platform_ip_address_block_list", "Blocked IP addresses and ranges", "ip_address"),
    ("rsl_platform_country", "platform_country_block_list", "Blocked countries", "country"),
)
# The default platform rules: (id, action, predicate, position, enabled, description).
BUILTIN_RULES = (
    ("rule_platform_fraud_hint", "block", ":card_risk_hint: = 'fraudulent'", 10, True,
     "The card vault reports the card as known fraudulent"),
    ("rule_platform_card_fingerprint", "block", ":card_fingerprint: in @platform_card_fingerprint_block_list", 20,
     True, "Card on the platform's block list"),
    ("rule_platform_card_bin", "block", ":card_bin: in @platform_card_bin_block_list", 30, True,
     "BIN on the platform's block list"),
    ("rule_platform_email", "block", ":email: in @platform_email_block_list", 40, True,
     "Email on the platform's block list"),
    ("rule_platform_email_domain", "block", ":email_domain: in @platform_email_domain_block_list", 50, True,
     "Email domain on the platform's block list"),
    ("rule_platform_ip_address", "block", ":ip_address: in @platform_ip_address_block_list", 60, True,
     "IP address on the platform's block list"),
    ("rule_platform_country", "block",
     ":card_country: in @platform_country_block_list or :ip_country: in @platform_country_block_list", 70, True,
     "Card or IP country on the platform's block list"),
    ("rule_platform_highest_risk", "block", ":risk_level: = 'highest'", 80, False,
     "Highest risk level (disabled by default)"),
)
# Weights v1 (thousandths): a hand-set logistic model over the signals, documented in the README.
WEIGHTS_V1 = {
    "card_country_mismatch": 1500,
    "card_first_seen": 400,
    "card_prepaid": 600,
    "amount_over_1000": 700,
    "card_payments_10m": 350,
    "card_declines_24h": 600,
    "card_distinct_ips_1h": 0,
    "email_distinct_cards_24h": 500,
    "ip_distinct_cards_1h": 700,
    "ip_declines_1h": 500,
    "three_d_secure": -1500,
    "no_ip_address": 200,
}
WEIGHTS_V1_INTERCEPT = -4000


def _rule_columns():
    return [
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("predicate", sa.String(length=2000), nullable=False),
        sa.Column("description", sa.String(length=500), nullable=True),
        sa.Column("position", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("enabled", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("builtin", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
    ]


def _list_columns():
    return [
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("alias", sa.String(length=100), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("item_type", sa.String(length=32), nullable=False),
        sa.Column("builtin", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("metadata", postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"),
                  nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
    ]


def _scope_columns():
    return [
        sa.Column("merchant_id", sa.String(), nullable=False),
        sa.Column("livemode", sa.Boolean(), server_default=sa.text("false"), nullable=False),
    ]


def upgrade():
    op.create_table(
        "risk_rules", *_scope_columns(), *_rule_columns(),
        sa.ForeignKeyConstraint(["merchant_id"], ["merchants.id"], name=op.f("fk_risk_rules_merchant_id_merchants")),
        sa.PrimaryKeyConstraint("merchant_id", "id", name="pk_risk_rules"),
        sa.CheckConstraint(f"action IN ({ACTIONS})", name=op.f("ck_risk_rules_action")),
    )
    op.create_index("ix_risk_rules_scope_action_position", "risk_rules",
                    ["merchant_id", "livemode", "action", "position"])
    op.create_table(
        "risk_platform_rules", *_rule_columns(),
        sa.PrimaryKeyConstraint("id", name="pk_risk_platform_rules"),
        sa.CheckConstraint(f"action IN ({ACTIONS})", name=op.f("ck_risk_platform_rules_action")),
    )
    op.create_index("ix_risk_platform_rules_action_position", "risk_platform_rules", ["action", "position"])

    op.create_table(
        "risk_value_lists", *_scope_columns(), *_list_columns(),
        sa.ForeignKeyConstraint(["merchant_id"], ["merchants.id"],
                                name=op.f("fk_risk_value_lists_merchant_id_merchants")),
        sa.PrimaryKeyConstraint("merchant_id", "id", name="pk_risk_value_lists"),
        sa.UniqueConstraint("merchant_id", "livemode", "alias", name="uq_risk_value_lists_scope_alias"),
        sa.CheckConstraint(f"item_type IN ({ITEM_TYPES})", name=op.f("ck_risk_value_lists_item_type")),
    )
    op.create_table(
        "risk_value_list_items", *_scope_columns(),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("value_list_id", sa.String(length=64), nullable=False),
        sa.Column("value", sa.String(length=800), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["merchant_id"], ["merchants.id"],
                                name=op.f("fk_risk_value_list_items_merchant_id_merchants")),
        sa.ForeignKeyConstraint(["merchant_id", "value_list_id"], ["risk_value_lists.merchant_id", "risk_value_lists.id"],
                                name="fk_risk_value_list_items_list", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("merchant_id", "id", name="pk_risk_value_list_items"),
        sa.UniqueConstraint("merchant_id", "value_list_id", "value", name="uq_risk_value_list_items_list_value"),
    )
    op.create_index("ix_risk_value_list_items_list_created", "risk_value_list_items",
                    ["merchant_id", "value_list_id", "created_at"])
    op.create_table(
        "risk_platform_value_lists", *_list_columns(),
        sa.PrimaryKeyConstraint("id", name="pk_risk_platform_value_lists"),
        sa.UniqueConstraint("alias", name="uq_risk_platform_value_lists_alias"),
        sa.CheckConstraint(f"item_type IN ({ITEM_TYPES})", name=op.f("ck_risk_platform_value_lists_item_type")),
    )
    op.create_table(
        "risk_platform_value_list_items",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("value_list_id", sa.String(length=64), nullable=False),
        sa.Column("value", sa.String(length=800), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["value_list_id"], ["risk_platform_value_lists.id"], ondelete="CASCADE",
                                name=op.f("fk_risk_platform_value_list_items_value_list_id_risk_platform_value_lists")),
        sa.PrimaryKeyConstraint("id", name="pk_risk_platform_value_list_items"),
        sa.UniqueConstraint("value_list_id", "value", name="uq_risk_platform_value_list_items_list_value"),
    )
    op.create_index("ix_risk_platform_value_list_items_list_created", "risk_platform_value_list_items",
                    ["value_list_id", "created_at"])

    op.create_table(
        "risk_weights",
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("intercept", sa.Integer(), nullable=False),
        sa.Column("weights", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("active", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("version", name="pk_risk_weights"),
    )
    op.create_index("uq_risk_weights_active", "risk_weights", ["active"], unique=True,
                    postgresql_where=sa.text("active"))

    op.create_table(
        "risk_assessments", *_scope_columns(),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("payment_id", sa.String(length=64), nullable=False),
        sa.Column("attempt_id", sa.String(length=64), nullable=True),
        sa.Column("stage", sa.String(length=16), server_default=sa.text("'confirmation'"), nullable=False),
        sa.Column("signals", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("contributions", postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"),
                  nullable=False),
        sa.Column("score", sa.Integer(), nullable=False),
        sa.Column("level", sa.String(length=16), nullable=False),
        sa.Column("weights_version", sa.String(length=64), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("rule_id", sa.String(length=64), nullable=True),
        sa.Column("rule_owner", sa.String(length=16), nullable=True),
        sa.Column("rule_action", sa.String(length=16), nullable=True),
        sa.Column("rule_predicate", sa.String(length=2000), nullable=True),
        sa.Column("redis_degraded", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["merchant_id"], ["merchants.id"],
                                name=op.f("fk_risk_assessments_merchant_id_merchants")),
        sa.PrimaryKeyConstraint("merchant_id", "id", name="pk_risk_assessments"),
        sa.CheckConstraint("score >= 0 AND score <= 99", name=op.f("ck_risk_assessments_score_range")),
        sa.CheckConstraint("level IN ('normal', 'elevated', 'highest')", name=op.f("ck_risk_assessments_level")),
        sa.CheckConstraint("outcome IN ('allow', 'block', 'review', 'request_3ds')",
                           name=op.f("ck_risk_assessments_outcome")),
        sa.CheckConstraint("stage IN ('confirmation', 'after_3ds')", name=op.f("ck_risk_assessments_stage")),
        sa.CheckConstraint("rule_owner IN ('platform', 'merchant')", name=op.f("ck_risk_assessments_rule_owner")),
    )
    op.create_index("ix_risk_assessments_scope_payment", "risk_assessments", ["merchant_id", "livemode", "payment_id"])
    op.create_index("ix_risk_assessments_scope_created", "risk_assessments", ["merchant_id", "livemode", "created_at"])

    op.create_table(
        "risk_reviews", *_scope_columns(),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("payment_id", sa.String(length=64), nullable=False),
        sa.Column("assessment_id", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=16), server_default=sa.text("'open'"), nullable=False),
        sa.Column("owner", sa.String(length=16), nullable=False),
        sa.Column("opened_reason", sa.String(length=16), server_default=sa.text("'rule'"), nullable=False),
        sa.Column("closed_reason", sa.String(length=32), nullable=True),
        sa.Column("rule_id", sa.String(length=64), nullable=True),
        sa.Column("ip_address", sa.String(length=45), nullable=True),
        sa.Column("ip_country", sa.String(length=2), nullable=True),
        sa.Column("claimed_by", sa.String(length=64), nullable=True),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("notes", postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'[]'::jsonb"),
                  nullable=False),
        sa.Column("decided_by", sa.String(length=64), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["merchant_id"], ["merchants.id"], name=op.f("fk_risk_reviews_merchant_id_merchants")),
        sa.PrimaryKeyConstraint("merchant_id", "id", name="pk_risk_reviews"),
        sa.UniqueConstraint("merchant_id", "livemode", "payment_id", name="uq_risk_reviews_scope_payment"),
        sa.CheckConstraint("status IN ('open', 'closed')", name=op.f("ck_risk_reviews_status")),
        sa.CheckConstraint("owner IN ('platform', 'merchant')", name=op.f("ck_risk_reviews_owner")),
        sa.CheckConstraint("opened_reason IN ('rule', 'manual')", name=op.f("ck_risk_reviews_opened_reason")),
        sa.CheckConstraint("closed_reason IN ('approved', 'refunded', 'refunded_as_fraud', 'disputed', 'canceled', "
                           "'timed_out')", name=op.f("ck_risk_reviews_closed_reason")),
        sa.CheckConstraint("(status = 'closed') = (closed_reason IS NOT NULL)",
                           name=op.f("ck_risk_reviews_closed_has_reason")),
    )
    op.create_index("ix_risk_reviews_scope_status_created", "risk_reviews",
                    ["merchant_id", "livemode", "status", "created_at"])
    op.create_index("ix_risk_reviews_open_created", "risk_reviews", ["created_at"],
                    postgresql_where=sa.text("status = 'open'"))
    op.create_index("ix_risk_reviews_open_expires", "risk_reviews", ["expires_at"],
                    postgresql_where=sa.text("status = 'open'"))

    op.add_column("payments", sa.Column("customer_ip", sa.String(length=45), nullable=True))
    op.add_column("payments", sa.Column("risk_score", sa.Integer(), nullable=True))
    op.add_column("payments", sa.Column("risk_level", sa.String(length=16), nullable=True))
    op.add_column("payments", sa.Column("risk_outcome", postgresql.JSONB(astext_type=sa.Text()), nullable=True))
    op.add_column("payments", sa.Column("review_id", sa.String(length=64), nullable=True))
    op.add_column("payments", sa.Column("request_three_d_secure", sa.Boolean(), server_default=sa.text("false"),
                                        nullable=False))
    op.create_index("ix_payments_scope_risk_level_id", "payments", ["merchant_id", "livemode", "risk_level", "id"])
    # The signal "first time this merchant sees this card".
    op.create_index("ix_payments_scope_card_fingerprint", "payments", ["merchant_id", "livemode", "card_fingerprint"])
    op.add_column("merchants", sa.Column("risk_reviews_by_platform", sa.Boolean(), server_default=sa.text("false"),
                                         nullable=False))

    lists = sa.table("risk_platform_value_lists", sa.column("id"), sa.column("alias"), sa.column("name"),
                     sa.column("item_type"), sa.column("builtin"))
    op.bulk_insert(lists, [{"id": i, "alias": a, "name": n, "item_type": t, "builtin": True}
                           for i, a, n, t in BUILTIN_LISTS])
    rules = sa.table("risk_platform_rules", sa.column("id"), sa.column("action"), sa.column("predicate"),
                     sa.column("position"), sa.column("enabled"), sa.column("builtin"), sa.column("description"))
    op.bulk_insert(rules, [{"id": i, "action": a, "predicate": p, "position": pos, "enabled": e, "builtin": True,
                            "description": d} for i, a, p, pos, e, d in BUILTIN_RULES])
    weights = sa.table("risk_weights", sa.column("version"), sa.column("intercept"),
                       sa.column("weights", postgresql.JSONB), sa.column("active"), sa.column("description"))
    op.bulk_insert(weights, [{"version": "v1", "intercept": WEIGHTS_V1_INTERCEPT, "weights": WEIGHTS_V1,
                              "active": True, "description": "Hand-set logistic weights (README, Risk)."}])

    op.execute("GRANT SELECT, INSERT, UPDATE, DELETE ON risk_rules, risk_platform_rules, risk_value_lists, "
               "risk_value_list_items, risk_platform_value_lists, risk_platform_value_list_items TO kassa_app")
    # Assessments are facts: read and added. Reviews change (claim, decide). Weights are read only.
    op.execute("GRANT SELECT, INSERT ON risk_assessments TO kassa_app")
    op.execute("GRANT SELECT, INSERT, UPDATE ON risk_reviews TO kassa_app")
    op.execute("GRANT SELECT ON risk_weights TO kassa_app")


def downgrade():
    op.drop_column("merchants", "risk_reviews_by_platform")
    op.drop_index("ix_payments_scope_card_fingerprint", table_name="payments")
    op.drop_index("ix_payments_scope_risk_level_id", table_name="payments")
    for column in ("request_three_d_secure", "review_id", "risk_outcome", "risk_level", "risk_score", "customer_ip"):
        op.drop_column("payments", column)
    for table in ("risk_reviews", "risk_assessments", "risk_weights", "risk_platform_value_list_items",
                  "risk_platform_value_lists", "risk_value_list_items", "risk_value_lists", "risk_platform_rules",
                  "risk_rules"):
        op.drop_table(table)
