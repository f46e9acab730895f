"""Secrets at rest (SecretBox rotation, `flask secrets rotate`), `flask api-key create` and the demo seed step."""
import base64

import pytest
from sqlalchemy import String, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from app import crypto
from app.accounts import api_keys as service
from app.accounts.api_keys import ApiKey
from app.accounts.api_keys_cli import seed_api_keys
from app.api.auth import hmac_key
from app.crypto import CryptoError, SecretBox, register_encrypted_column
from app.seed import SEED_STEPS
from tests.conftest import owner_connect

K1 = "k1:" + base64.b64encode(b"1" * 32).decode()
K2 = "k2:" + base64.b64encode(b"2" * 32).decode()


# -- SecretBox ---------------------------------------------------------------------------------------------------

def test_secretbox_rotation_round_trip():
    old_box = SecretBox(K1)
    token = old_box.encrypt("whsec_123", "row-1")
    assert token.startswith("k1$") and "whsec_123" not in token
    rotated_box = SecretBox(f"{K2},{K1}")
    assert rotated_box.decrypt(token, "row-1") == "whsec_123"  # old ciphertexts still readable
    assert rotated_box.needs_reencrypt(token)
    fresh = rotated_box.reencrypt(token, "row-1")
    assert fresh.startswith("k2$") and not rotated_box.needs_reencrypt(fresh)
    assert rotated_box.decrypt(fresh, "row-1") == "whsec_123"
    with pytest.raises(CryptoError):
        old_box.decrypt(fresh, "row-1")      # k2 unknown to the old configuration
    with pytest.raises(CryptoError):
        rotated_box.decrypt(fresh, "row-2")  # associated data binds the ciphertext to its row
    with pytest.raises(CryptoError):
        SecretBox(K2).decrypt(token, "row-1")  # the old key removed too early: loud failure


def test_secretbox_refuses_bad_keys():
    with pytest.raises(CryptoError):
        SecretBox("k1:" + base64.b64encode(b"short").decode())
    with pytest.raises(CryptoError):
        SecretBox("").encrypt("x")


# -- flask secrets rotate ----------------------------------------------------------------------------------------

class _ProbeBase(DeclarativeBase):
    """A metadata of its own: the test-only table never reaches the app's models or `flask db check`."""


class RotationProbe(_ProbeBase):
    __tablename__ = "test_rotation_probe"
    id: Mapped[str] = mapped_column(String, primary_key=True)
    secret: Mapped[str | None] = mapped_column(String)


@pytest.fixture
def probe_table(database):
    with owner_connect(database) as conn:
        conn.execute("CREATE TABLE test_rotation_probe (id text PRIMARY KEY, secret text)")
        conn.execute("GRANT SELECT, INSERT, UPDATE ON test_rotation_probe TO kassa_app")
        conn.commit()
    entry = register_encrypted_column(RotationProbe, "secret", associated_data=lambda row: row.id)
    yield RotationProbe
    crypto.ENCRYPTED_COLUMNS.remove(entry)
    with owner_connect(database) as conn:
        conn.execute("DROP TABLE test_rotation_probe")
        conn.commit()


@pytest.fixture
def empty_registry():
    saved = list(crypto.ENCRYPTED_COLUMNS)
    crypto.ENCRYPTED_COLUMNS.clear()
    yield
    crypto.ENCRYPTED_COLUMNS.extend(saved)


@pytest.fixture
def keys_config(app):
    saved = app.config["KASSA_ENCRYPTION_KEYS"]
    yield app.config
    app.config["KASSA_ENCRYPTION_KEYS"] = saved


def test_rotate_with_nothing_registered(app, empty_registry, keys_config):
    keys_config["KASSA_ENCRYPTION_KEYS"] = K1
    result = app.test_cli_runner().invoke(args=["secrets", "rotate"])
    assert result.exit_code == 0, result.output
    assert "nothing to rotate" in result.output


def test_rotate_without_keys_fails(app, keys_config):
    keys_config["KASSA_ENCRYPTION_KEYS"] = ""
    result = app.test_cli_runner().invoke(args=["secrets", "rotate"])
    assert result.exit_code != 0 and "not configured" in result.output


def test_rotate_reencrypts_registered_columns(app, db_session, probe_table, keys_config):
    old_box = SecretBox(K1)
    db_session.add_all([RotationProbe(id=f"r{i}", secret=old_box.encrypt(f"s{i}", f"r{i}")) for i in range(5)]
                       + [RotationProbe(id="empty", secret=None)])
    db_session.commit()

    keys_config["KASSA_ENCRYPTION_KEYS"] = f"{K2},{K1}"
    result = app.test_cli_runner().invoke(args=["secrets", "rotate", "--batch-size", "2"])
    assert result.exit_code == 0, result.output
    assert "test_rotation_probe.secret: 5 re-encrypted" in result.output

    db_session.expire_all()
    new_only = SecretBox(K2)  # the old key can now be removed
    for row in db_session.scalars(select(RotationProbe).where(RotationProbe.secret.is_not(None))):
        assert row.secret.startswith("k2$")
        assert new_only.decrypt(row.secret, row.id) == f"s{row.id[1:]}"

    # Running it again finds nothing left to do.
    again = app.test_cli_runner().invoke(args=["secrets", "rotate"])
    assert "test_rotation_probe.secret: 0 re-encrypted" in again.output


def test_rotate_stops_loudly_on_an_unknown_key(app, db_session, probe_table, keys_config):
    db_session.add(RotationProbe(id="orphan", secret=SecretBox(K1).encrypt("s", "orphan")))
    db_session.commit()
    keys_config["KASSA_ENCRYPTION_KEYS"] = K2  # k1 was dropped before rotating
    result = app.test_cli_runner().invoke(args=["secrets", "rotate"])
    assert result.exit_code != 0
    assert "orphan" in result.output and "k1" in result.output


# -- flask api-key create and the seed step --------------------------------------------------------------------

def test_cli_creates_a_key_and_prints_it_once(app, db_session, merchant):
    result = app.test_cli_runner().invoke(args=["api-key", "create", "--merchant", merchant.id])
    assert result.exit_code == 0, result.output
    plaintext = result.output.strip()
    assert plaintext.startswith("sk_test_")
    key = service.authenticate(db_session, plaintext, hmac_key=hmac_key())
    assert key.merchant_id == merchant.id and key.livemode is False

    # Live keys only once a platform operator enabled live mode (the console's checklist), as in the dashboard.
    refused = app.test_cli_runner().invoke(args=["api-key", "create", "--merchant", merchant.id, "--live"])
    assert refused.exit_code != 0 and "live mode is not enabled" in refused.output
    db_session.rollback()
    assert db_session.scalars(select(ApiKey).where(ApiKey.merchant_id == merchant.id, ApiKey.livemode)).all() == []
    merchant.live_enabled = True
    db_session.commit()
    live = app.test_cli_runner().invoke(args=["api-key", "create", "--merchant", merchant.id, "--live"])
    assert live.output.strip().startswith("sk_live_")


def test_cli_refuses_an_unknown_merchant(app):
    result = app.test_cli_runner().invoke(args=["api-key", "create", "--merchant", "mer_nope"])
    assert result.exit_code != 0 and "no merchant" in result.output


def test_seed_step_creates_test_keys_once(db_session, merchant):
    assert seed_api_keys in SEED_STEPS
    first = seed_api_keys(db_session, merchant, "http://kassa.test")
    db_session.commit()
    secret_line = next(line for line in first if "secret API key" in line)
    plaintext = secret_line.rsplit(" ", 1)[1]
    assert service.authenticate(db_session, plaintext, hmac_key=hmac_key()).merchant_id == merchant.id
    keys = db_session.scalars(select(ApiKey).where(ApiKey.merchant_id == merchant.id)).all()
    assert sorted(k.kind for k in keys) == ["publishable", "secret"]
    assert all(not k.livemode for k in keys)

    second = seed_api_keys(db_session, merchant, "http://kassa.test")
    db_session.commit()
    assert any("keys exist" in line for line in second)
    assert not any("sk_test_" in line for line in second)
    assert len(db_session.scalars(select(ApiKey).where(ApiKey.merchant_id == merchant.id)).all()) == 2
