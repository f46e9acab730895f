"""Risk value-list items in their list's mode: the item's foreign key to its list includes ``livemode``.

Until now ``risk_value_list_items`` referenced its list by ``(merchant_id, value_list_id)`` only, so a row could
claim test mode on a live list (or the reverse) and a mode-scoped read of items would disagree with a read
through the list. The key becomes ``(merchant_id, livemode, value_list_id)`` -> ``risk_value_lists (merchant_id,
livemode, id)``, backed by a unique constraint on the lists; the database refuses a mismatched item whoever
writes it. An item already at odds with its list takes the list's mode first (the list is what rules name).

Adding the key checks every item once, holding a lock that blocks writes to lists and items (not reads: the
evaluation only reads them) for that scan; lists are edited rarely, and env.py's lock timeout bounds the wait.

Revision ID: 0034_risk_list_item_mode
Revises: 0033_early_fraud_warnings
Create Date: 2026-12-08
"""
from alembic import op

revision = "0034_risk_list_item_mode"
down_revision = "0033_early_fraud_warnings"
branch_labels = None
depends_on = None


def upgrade():
    op.execute("""UPDATE risk_value_list_items AS item SET livemode = list.livemode
                  FROM risk_value_lists AS list
                  WHERE list.merchant_id = item.merchant_id AND list.id = item.value_list_id
                    AND item.livemode IS DISTINCT FROM list.livemode""")
    op.create_unique_constraint("uq_risk_value_lists_scope_id", "risk_value_lists", ["merchant_id", "livemode", "id"])
    op.drop_constraint("fk_risk_value_list_items_list", "risk_value_list_items", type_="foreignkey")
    op.create_foreign_key("fk_risk_value_list_items_list", "risk_value_list_items", "risk_value_lists",
                          ["merchant_id", "livemode", "value_list_id"], ["merchant_id", "livemode", "id"],
                          ondelete="CASCADE")


def downgrade():
    op.drop_constraint("fk_risk_value_list_items_list", "risk_value_list_items", type_="foreignkey")
    op.create_foreign_key("fk_risk_value_list_items_list", "risk_value_list_items", "risk_value_lists",
                          ["merchant_id", "value_list_id"], ["merchant_id", "id"], ondelete="CASCADE")
    op.drop_constraint("uq_risk_value_lists_scope_id", "risk_value_lists", type_="unique")
