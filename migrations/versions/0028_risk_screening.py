"""Risk screening:

* a payment whose card facts the vault could not give is held for review, and says why. The assessment gets a
  ``reason`` (``card_facts_unavailable``: the platform's card block lists could not be checked), and a review
  may open for that reason (``opened_reason``, widened to 32 characters);
* configuration stamps: a random uuid per book (``risk_config_stamps``) and one for the platform
  (``risk_platform_config_stamp``), replaced by triggers whenever rules, value lists (not their items) or the
  weights change, so that each process caches the compiled configuration and checks it is current inside the
  evaluation's one query (app/risk/evaluate.py). Random, not a counter: a database cloned or restored from an
  older copy never repeats a stamp with other contents.

Revision ID: 0028_risk_screening
Revises: 0027_stripe_deposit_confirmation
Create Date: 2026-12-08
"""
from alembic import op
import sqlalchemy as sa

revision = "0028_risk_screening"
down_revision = "0027_stripe_deposit_confirmation"
branch_labels = None
depends_on = None


_MERCHANT_TABLES = ("risk_rules", "risk_value_lists")
_PLATFORM_TABLES = ("risk_platform_rules", "risk_platform_value_lists", "risk_weights")


def upgrade():
    op.create_table(
        "risk_config_stamps",
        sa.Column("merchant_id", sa.String(length=64), nullable=False),
        sa.Column("livemode", sa.Boolean(), nullable=False),
        sa.Column("stamp", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(["merchant_id"], ["merchants.id"],
                                name=op.f("fk_risk_config_stamps_merchant_id_merchants")),
        sa.PrimaryKeyConstraint("merchant_id", "livemode", name="pk_risk_config_stamps"),
    )
    op.create_table(
        "risk_platform_config_stamp",
        sa.Column("id", sa.SmallInteger(), nullable=False),
        sa.Column("stamp", sa.Uuid(), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_risk_platform_config_stamp_single_row")),
        sa.PrimaryKeyConstraint("id", name="pk_risk_platform_config_stamp"),
    )
    op.execute("INSERT INTO risk_platform_config_stamp (id, stamp) VALUES (1, gen_random_uuid())")
    op.execute("""
CREATE FUNCTION risk_stamp_book() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE row_ record;
BEGIN
  IF TG_OP = 'DELETE' THEN row_ := OLD; ELSE row_ := NEW; END IF;
  INSERT INTO risk_config_stamps (merchant_id, livemode, stamp) VALUES (row_.merchant_id, row_.livemode, gen_random_uuid())
    ON CONFLICT (merchant_id, livemode) DO UPDATE SET stamp = EXCLUDED.stamp;
  RETURN NULL;
END $$""")
    op.execute("""
CREATE FUNCTION risk_stamp_books_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE risk_config_stamps SET stamp = gen_random_uuid();
  RETURN NULL;
END $$""")
    op.execute("""
CREATE FUNCTION risk_stamp_platform() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE risk_platform_config_stamp SET stamp = gen_random_uuid();
  RETURN NULL;
END $$""")
    for table in _MERCHANT_TABLES:
        op.execute(f"CREATE TRIGGER {table}_stamp AFTER INSERT OR UPDATE OR DELETE ON {table} "
                   f"FOR EACH ROW EXECUTE FUNCTION risk_stamp_book()")
        op.execute(f"CREATE TRIGGER {table}_stamp_truncated AFTER TRUNCATE ON {table} "
                   f"FOR EACH STATEMENT EXECUTE FUNCTION risk_stamp_books_truncated()")
    for table in _PLATFORM_TABLES:
        op.execute(f"CREATE TRIGGER {table}_stamp AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {table} "
                   f"FOR EACH STATEMENT EXECUTE FUNCTION risk_stamp_platform()")
    # The triggers write as the role that changed the rules.
    op.execute("GRANT SELECT, INSERT, UPDATE ON risk_config_stamps TO kassa_app")
    op.execute("GRANT SELECT, UPDATE ON risk_platform_config_stamp TO kassa_app")
    op.add_column("risk_assessments", sa.Column("reason", sa.String(length=32), nullable=True))
    op.create_check_constraint(op.f("ck_risk_assessments_reason"), "risk_assessments",
                               "reason IN ('card_facts_unavailable')")
    op.alter_column("risk_reviews", "opened_reason", type_=sa.String(length=32), existing_type=sa.String(length=16),
                    existing_nullable=False, existing_server_default=sa.text("'rule'"))
    op.drop_constraint(op.f("ck_risk_reviews_opened_reason"), "risk_reviews", type_="check")
    op.create_check_constraint(op.f("ck_risk_reviews_opened_reason"), "risk_reviews",
                               "opened_reason IN ('rule', 'manual', 'card_facts_unavailable')")


def downgrade():
    for table in _MERCHANT_TABLES:
        op.execute(f"DROP TRIGGER {table}_stamp ON {table}")
        op.execute(f"DROP TRIGGER {table}_stamp_truncated ON {table}")
    for table in _PLATFORM_TABLES:
        op.execute(f"DROP TRIGGER {table}_stamp ON {table}")
    op.execute("DROP FUNCTION risk_stamp_book()")
    op.execute("DROP FUNCTION risk_stamp_books_truncated()")
    op.execute("DROP FUNCTION risk_stamp_platform()")
    op.drop_table("risk_platform_config_stamp")
    op.drop_table("risk_config_stamps")
    op.drop_constraint(op.f("ck_risk_reviews_opened_reason"), "risk_reviews", type_="check")
    op.execute("UPDATE risk_reviews SET opened_reason = 'rule' WHERE opened_reason = 'card_facts_unavailable'")
    op.create_check_constraint(op.f("ck_risk_reviews_opened_reason"), "risk_reviews",
                               "opened_reason IN ('rule', 'manual')")
    op.alter_column("risk_reviews", "opened_reason", type_=sa.String(length=16), existing_type=sa.String(length=32),
                    existing_nullable=False, existing_server_default=sa.text("'rule'"))
    op.drop_constraint(op.f("ck_risk_assessments_reason"), "risk_assessments", type_="check")
    op.drop_column("risk_assessments", "reason")
