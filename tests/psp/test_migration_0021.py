"""Migration 0021 on payments made before it: each row that reached a PSP gets the credential it was made
with (the merchant's own at that PSP in that mode if it had one, else the platform's account).

A module of its own: it moves its database down and up again.
"""
import flask_migrate
import psycopg
import pytest
from sqlalchemy import text

from app.ids import new_id
from tests import factories
from tests.conftest import app_connect

BEFORE = "0020_risk"


def _payment(conn, merchant_id: str, livemode: bool, vault: str, connector: str | None) -> dict:
    ids = {"payment": new_id("pay"), "attempt": new_id("att"), "refund": new_id("re")}
    values = {"m": merchant_id, "live": livemode, "vault": vault, "connector": connector, **ids,
              "token": f"tok_{ids['payment']}", "reference": f"ref_{ids['payment']}",
              "attempt_key": f"kassa-{ids['attempt']}", "refund_key": f"kassa-{ids['refund']}"}
    conn.execute("""INSERT INTO payments (id, merchant_id, livemode, amount, currency, status, capture_method,
                        payment_method_vault, payment_method_token, connector, psp_reference)
                    VALUES (%(payment)s, %(m)s, %(live)s, 1000, 'USD', 'requires_capture', 'manual', %(vault)s,
                        %(token)s, %(connector)s, %(reference)s)""", values)
    conn.execute("""INSERT INTO payment_attempts (id, merchant_id, livemode, payment_id, operation, status, amount,
                        currency, vault, connector, idempotency_key)
                    VALUES (%(attempt)s, %(m)s, %(live)s, %(payment)s, 'authorize', 'succeeded', 1000, 'USD',
                        %(vault)s, %(connector)s, %(attempt_key)s)""", values)
    conn.execute("""INSERT INTO refunds (id, merchant_id, livemode, payment_id, amount, currency, status,
                        allocations, connector, idempotency_key)
                    VALUES (%(refund)s, %(m)s, %(live)s, %(payment)s, 100, 'USD', 'pending', '[]'::jsonb,
                        %(connector)s, %(refund_key)s)""", values)
    return ids


def test_payments_made_before_0021_get_the_credential_they_were_made_with(app, database, db_session):
    own = factories.merchant(db_session, name="Own account")
    served = factories.merchant(db_session, name="Platform account")
    db_session.commit()
    own_id, served_id = own.id, served.id
    db_session.remove()
    flask_migrate.downgrade(revision=BEFORE)
    with app_connect(database) as conn:
        conn.execute("""INSERT INTO psp_credentials (id, merchant_id, livemode, psp, secret_key_encrypted)
                        VALUES ('pcr_own_live', %(m)s, true, 'stripe', 'sealed')""", {"m": own_id})
        stripe_live = _payment(conn, own_id, True, "stripe", "stripe")
        stripe_test = _payment(conn, own_id, False, "stripe", "stripe")       # no credential in test mode
        sandbox = _payment(conn, own_id, False, "sandbox", "sandbox")
        platform = _payment(conn, served_id, True, "stripe", "stripe")
        unsent = _payment(conn, own_id, True, "stripe", None)                 # never reached a PSP
        conn.commit()
    flask_migrate.upgrade(revision="heads")

    def credentials(ids: dict) -> tuple:
        return tuple(db_session.execute(text(f"SELECT credential FROM {table} WHERE id = :id"), {"id": ids[key]})
                     .scalar_one() for table, key in (("payments", "payment"), ("payment_attempts", "attempt"),
                                                      ("refunds", "refund")))

    assert credentials(stripe_live) == ("pcr_own_live",) * 3
    assert credentials(stripe_test) == ("platform",) * 3
    assert credentials(sandbox) == ("platform",) * 3
    assert credentials(platform) == ("platform",) * 3
    assert credentials(unsent) == (None,) * 3
    # The credential row is the current one, and a second current one per merchant, mode and PSP is refused.
    assert db_session.execute(text("SELECT retired_at FROM psp_credentials WHERE id = 'pcr_own_live'")).scalar_one() \
        is None
    db_session.rollback()
    insert = """INSERT INTO psp_credentials (id, merchant_id, livemode, psp, secret_key_encrypted, retired_at)
                VALUES (%(id)s, %(m)s, true, 'stripe', 'sealed', %(retired)s)"""
    with app_connect(database) as conn:
        conn.execute(insert, {"id": "pcr_own_retired", "m": own_id, "retired": "2026-12-01T00:00:00Z"})
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute(insert, {"id": "pcr_own_second", "m": own_id, "retired": None})
