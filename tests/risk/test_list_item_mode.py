"""A value-list item is in its list's mode, and the database says so (migration 0034_risk_list_item_mode): the
item's key to its list is (merchant_id, livemode, value_list_id).

A module of its own: the migration test moves its database down and up again.
"""
import flask_migrate
import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from app.ids import new_id
from app.risk import lists
from app.risk.models import ValueListItem
from app.scoping import Scope
from tests import factories
from tests.conftest import app_connect

BEFORE = "0033_early_fraud_warnings"
INSERT_ITEM = """INSERT INTO risk_value_list_items (merchant_id, livemode, id, value_list_id, value)
                 VALUES (%(m)s, %(live)s, %(id)s, %(list)s, %(value)s)"""


def test_the_database_refuses_an_item_in_another_mode_than_its_list(database, db_session):
    merchant = factories.merchant(db_session, name="Modes")
    db_session.commit()
    test_list = lists.create_value_list(db_session, Scope(merchant.id, False), alias="blocked_emails",
                                        name="Blocked emails", item_type="email")
    db_session.commit()
    values = {"m": merchant.id, "list": test_list.id, "value": "a@example.com"}
    with app_connect(database) as conn:
        with pytest.raises(psycopg.errors.ForeignKeyViolation):
            conn.execute(INSERT_ITEM, {**values, "live": True, "id": new_id("rsli")})
        conn.rollback()
        conn.execute(INSERT_ITEM, {**values, "live": False, "id": "rsli_same_mode"})
        conn.commit()
        # Nor can either side change mode afterwards.
        with pytest.raises(psycopg.errors.ForeignKeyViolation):
            conn.execute("UPDATE risk_value_list_items SET livemode = true WHERE merchant_id = %(m)s "
                         "AND id = 'rsli_same_mode'", values)
        conn.rollback()
        with pytest.raises(psycopg.errors.ForeignKeyViolation):
            conn.execute("UPDATE risk_value_lists SET livemode = true WHERE merchant_id = %(m)s AND id = %(list)s",
                         values)
        conn.rollback()
    # The ORM is refused the same way: a live-mode item on the test-mode list.
    db_session.add(Scope(merchant.id, True).new(ValueListItem, id=new_id("rsli"), value_list_id=test_list.id,
                                                value="b@example.com"))
    with pytest.raises(IntegrityError) as refused:
        db_session.flush()
    assert "fk_risk_value_list_items_list" in str(refused.value)
    db_session.rollback()
    # The service adds items in the list's own mode.
    item = lists.add_item(db_session, Scope(merchant.id, False), test_list.id, "c@example.com")
    db_session.commit()
    assert item.livemode is False


def test_items_at_odds_with_their_list_before_0032_take_the_lists_mode(app, database, db_session):
    merchant = factories.merchant(db_session, name="Before 0032")
    db_session.commit()
    merchant_id = merchant.id
    db_session.remove()
    flask_migrate.downgrade(revision=BEFORE)
    with app_connect(database) as conn:
        conn.execute("""INSERT INTO risk_value_lists (merchant_id, livemode, id, alias, name, item_type)
                        VALUES (%(m)s, true, 'rsl_live_list', 'live_list', 'Live list', 'email')""",
                     {"m": merchant_id})
        conn.execute(INSERT_ITEM, {"m": merchant_id, "live": False, "id": "rsli_odd", "list": "rsl_live_list",
                                   "value": "odd@example.com"})
        conn.commit()
    flask_migrate.upgrade(revision="heads")
    assert db_session.execute(text("SELECT livemode FROM risk_value_list_items WHERE id = 'rsli_odd'")).scalar_one() \
        is True
    db_session.rollback()
