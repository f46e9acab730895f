"""The API key service: formats, keyed hashes, lifecycle, audit, and what the database stores."""
from datetime import timedelta

import psycopg
import pytest
from sqlalchemy import select, text

from app.accounts import api_keys as service
from app.accounts.api_keys import PUBLISHABLE, SECRET, AuditContext
from app.accounts.audit import AuditEntry
from app.api.auth import hmac_key
from app.models_base import utcnow
from app.scoping import Scope
from tests.conftest import app_connect

CTX = AuditContext(actor_label="test", ip="203.0.113.9", request_id="req_test")


@pytest.fixture
def key_bytes(app):
    return hmac_key()


def test_key_formats(db_session, scope, key_bytes):
    secret = service.create_key(db_session, scope, SECRET, hmac_key=key_bytes)
    publishable = service.create_key(db_session, scope, PUBLISHABLE, hmac_key=key_bytes)
    live = service.create_key(db_session, Scope(scope.merchant_id, True), SECRET, hmac_key=key_bytes)
    assert secret.plaintext.startswith("sk_test_") and len(secret.plaintext) == len("sk_test_") + 32
    assert publishable.plaintext.startswith("pk_test_")
    assert live.plaintext.startswith("sk_live_") and live.row.livemode is True
    assert service.parse_key(secret.plaintext) == (SECRET, False)
    assert service.parse_key(live.plaintext) == (SECRET, True)
    assert service.parse_key(publishable.plaintext) == (PUBLISHABLE, False)
    for bad in ("", "sk_test_short", "sk_prod_" + "a" * 32, "xx_test_" + "a" * 32, "sk_test_" + "-" * 32,
                "sk_test_" + "a" * 31 + "_"):
        assert service.parse_key(bad) is None
    assert secret.row.masked == f"{secret.plaintext[:12]}…{secret.plaintext[-4:]}"
    assert publishable.row.masked == publishable.plaintext


def test_keys_are_random(db_session, scope, key_bytes):
    plaintexts = {service.create_key(db_session, scope, SECRET, hmac_key=key_bytes).plaintext for _ in range(20)}
    assert len(plaintexts) == 20


def test_hash_is_keyed(key_bytes):
    assert service.hash_key("sk_test_x", key_bytes) != service.hash_key("sk_test_x", key_bytes + b"other")
    with pytest.raises(service.ApiKeyError):
        service.hash_key("sk_test_x", b"")


def test_secret_is_never_stored_in_clear(database, db_session, scope, key_bytes):
    secret = service.create_key(db_session, scope, SECRET, hmac_key=key_bytes, ctx=CTX)
    rolled = service.roll_key(db_session, scope, secret.row.id, "1h", hmac_key=key_bytes, ctx=CTX)
    db_session.commit()
    random_parts = [p.plaintext[len("sk_test_"):] for p in (secret, rolled)]
    with app_connect(database) as conn:
        # Scan every column of every row of the key table and of the audit log.
        dumps = [row[0] for row in conn.execute("SELECT row_to_json(k)::text FROM api_keys k")]
        dumps += [row[0] for row in conn.execute("SELECT row_to_json(a)::text FROM audit_log a")]
    assert dumps
    for dump in dumps:
        for part in random_parts:
            assert part not in dump
            assert part[:-4] not in dump  # not even most of it; only a 4-character prefix and the last 4


def test_database_refuses_a_secret_key_in_clear(database, db_session, scope, key_bytes):
    secret = service.create_key(db_session, scope, SECRET, hmac_key=key_bytes)
    db_session.commit()
    with app_connect(database) as conn:
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute("UPDATE api_keys SET publishable_token = %s WHERE id = %s", (secret.plaintext, secret.row.id))


def test_app_role_cannot_delete_keys(database, db_session, scope, key_bytes):
    secret = service.create_key(db_session, scope, SECRET, hmac_key=key_bytes)
    db_session.commit()
    with app_connect(database) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM api_keys WHERE id = %s", (secret.row.id,))


def test_authenticate(db_session, scope, key_bytes):
    secret = service.create_key(db_session, scope, SECRET, hmac_key=key_bytes)
    assert service.authenticate(db_session, secret.plaintext, hmac_key=key_bytes).id == secret.row.id
    for bad in ("nope", "sk_test_" + "A" * 32):
        with pytest.raises(service.AuthenticationFailed) as failure:
            service.authenticate(db_session, bad, hmac_key=key_bytes)
        assert failure.value.code == "api_key_invalid"
    # A different HMAC key (a misconfigured server) authenticates nothing.
    with pytest.raises(service.AuthenticationFailed):
        service.authenticate(db_session, secret.plaintext, hmac_key=key_bytes + b"x")


def test_roll_grace_period_with_injected_clock(db_session, scope, key_bytes):
    t0 = utcnow()
    old = service.create_key(db_session, scope, SECRET, hmac_key=key_bytes, now=t0)
    new = service.roll_key(db_session, scope, old.row.id, "7d", hmac_key=key_bytes, now=t0)
    assert old.row.expires_at == t0 + timedelta(days=7)
    assert old.row.replaced_by_id == new.row.id and new.row.rolled_from_id == old.row.id
    auth = service.authenticate
    assert auth(db_session, old.plaintext, hmac_key=key_bytes, now=t0 + timedelta(days=6)).id == old.row.id
    with pytest.raises(service.AuthenticationFailed) as failure:
        auth(db_session, old.plaintext, hmac_key=key_bytes, now=t0 + timedelta(days=7))
    assert failure.value.code == "api_key_expired"
    assert auth(db_session, new.plaintext, hmac_key=key_bytes, now=t0 + timedelta(days=30)).id == new.row.id


@pytest.mark.parametrize("grace, delta", [("now", timedelta(0)), ("1h", timedelta(hours=1)),
                                          ("24h", timedelta(hours=24)), ("7d", timedelta(days=7))])
def test_grace_choices(db_session, scope, key_bytes, grace, delta):
    t0 = utcnow()
    old = service.create_key(db_session, scope, PUBLISHABLE, hmac_key=key_bytes, now=t0)
    new = service.roll_key(db_session, scope, old.row.id, grace, hmac_key=key_bytes, now=t0)
    assert old.row.expires_at == t0 + delta
    assert new.row.kind == PUBLISHABLE and new.plaintext.startswith("pk_test_")


def test_a_rolled_or_revoked_key_cannot_be_rolled_again(db_session, scope, key_bytes):
    old = service.create_key(db_session, scope, SECRET, hmac_key=key_bytes)
    service.roll_key(db_session, scope, old.row.id, "1h", hmac_key=key_bytes)
    with pytest.raises(service.KeyNotActive):
        service.roll_key(db_session, scope, old.row.id, "1h", hmac_key=key_bytes)
    # ...but revoking it ends the grace period early.
    service.revoke_key(db_session, scope, old.row.id)
    with pytest.raises(service.KeyNotActive):
        service.revoke_key(db_session, scope, old.row.id)
    with pytest.raises(service.AuthenticationFailed):
        service.authenticate(db_session, old.plaintext, hmac_key=key_bytes)


def test_other_merchants_and_modes_keys_are_not_found(db_session, scope, key_bytes):
    from tests import factories

    other = factories.merchant(db_session, name="Other")
    theirs = service.create_key(db_session, Scope(other.id, False), SECRET, hmac_key=key_bytes)
    live = service.create_key(db_session, Scope(scope.merchant_id, True), SECRET, hmac_key=key_bytes)
    for key_id in (theirs.row.id, live.row.id):
        with pytest.raises(service.KeyNotFound):
            service.revoke_key(db_session, scope, key_id)
        with pytest.raises(service.KeyNotFound):
            service.roll_key(db_session, scope, key_id, "now", hmac_key=key_bytes)
    assert service.list_keys(db_session, scope) == []


def test_audit_rows_for_create_roll_revoke(db_session, scope, key_bytes):
    created = service.create_key(db_session, scope, SECRET, hmac_key=key_bytes, ctx=CTX)
    rolled = service.roll_key(db_session, scope, created.row.id, "24h", hmac_key=key_bytes, ctx=CTX)
    service.revoke_key(db_session, scope, rolled.row.id, ctx=CTX)
    db_session.commit()
    entries = db_session.scalars(select(AuditEntry).where(AuditEntry.merchant_id == scope.merchant_id)
                                 .order_by(AuditEntry.id)).all()
    assert [(e.action, e.target) for e in entries] == [
        ("api_key.created", created.row.id),
        ("api_key.rolled", created.row.id),
        ("api_key.revoked", rolled.row.id),
    ]
    for entry in entries:
        assert entry.livemode is False and entry.ip == "203.0.113.9" and entry.request_id == "req_test"
        assert entry.actor_label == "test"
    assert entries[1].details["new_key_id"] == rolled.row.id
    assert entries[1].details["grace_seconds"] == 24 * 3600


def test_audit_rows_cannot_be_changed(database, db_session, scope, key_bytes):
    service.create_key(db_session, scope, SECRET, hmac_key=key_bytes, ctx=CTX)
    db_session.commit()
    with app_connect(database) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("UPDATE audit_log SET action = 'x' WHERE action = 'api_key.created'")


def test_touch_last_used_never_moves_back(db_session, scope, key_bytes, app):
    from app.extensions import db

    key = service.create_key(db_session, scope, SECRET, hmac_key=key_bytes)
    db_session.commit()
    t1 = utcnow()
    with db.engine.begin() as connection:
        service.touch_last_used(connection, key.row.id, t1)
        service.touch_last_used(connection, key.row.id, t1 - timedelta(minutes=5))
    assert db_session.scalar(text("SELECT last_used_at FROM api_keys WHERE id = :id"), {"id": key.row.id}) == t1
