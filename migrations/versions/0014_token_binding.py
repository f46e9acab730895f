"""Token binding: which payment first used a vault token (a token pays for one payment only).

``payment_token_bindings`` is keyed by book, vault and token (merchant_id first, for the shard rules in
ARCHITECTURE.md). The application inserts and reads it; a binding is never changed or removed, so
kassa_app gets neither UPDATE nor DELETE.

Revision ID: 0014_token_binding
Revises: 0013_webhook_recovery
Create Date: 2026-11-22
"""
import sqlalchemy as sa
from alembic import op

revision = "0014_token_binding"
down_revision = "0013_webhook_recovery"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "payment_token_bindings",
        sa.Column("merchant_id", sa.String(), nullable=False),
        sa.Column("livemode", sa.Boolean(), nullable=False),
        sa.Column("vault", sa.String(length=64), nullable=False),
        sa.Column("token", sa.String(length=255), nullable=False),
        sa.Column("payment_id", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["merchant_id"], ["merchants.id"],
                                name="fk_payment_token_bindings_merchant_id_merchants"),
        sa.PrimaryKeyConstraint("merchant_id", "livemode", "vault", "token", name="pk_payment_token_bindings"),
    )
    # Tokens already used are bound to the payment that used them first (their payments' and
    # authorization attempts' tokens).
    op.execute("""
        INSERT INTO payment_token_bindings (merchant_id, livemode, vault, token, payment_id, created_at)
        SELECT DISTINCT ON (merchant_id, livemode, vault, token) merchant_id, livemode, vault, token, payment_id,
               created_at
        FROM (SELECT merchant_id, livemode, payment_method_vault AS vault, payment_method_token AS token,
                     id AS payment_id, created_at
              FROM payments WHERE payment_method_token IS NOT NULL AND payment_method_vault IS NOT NULL
              UNION ALL
              SELECT merchant_id, livemode, vault, payment_method_token, payment_id, created_at
              FROM payment_attempts
              WHERE operation = 'authorize' AND payment_method_token IS NOT NULL AND vault IS NOT NULL) AS used
        ORDER BY merchant_id, livemode, vault, token, created_at, payment_id
    """)
    op.execute("GRANT SELECT, INSERT ON payment_token_bindings TO kassa_app")


def downgrade():
    op.drop_table("payment_token_bindings")
