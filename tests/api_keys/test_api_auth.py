"""/v1 authentication: Bearer and Basic keys, 401s, publishable keys, grace periods, scoping, rate limits,
last-used bookkeeping and request bodies."""
from datetime import timedelta

import pytest
from flask import g, jsonify
from sqlalchemy import select, update

from app import create_app
from app.accounts.api_keys import PUBLISHABLE, ApiKey, revoke_key, roll_key
from app.api.auth import api_view, hmac_key
from app.api.errors import ApiError, handle_api_error
from app.api.params import Params
from app.extensions import csrf
from app.extensions import db as _db
from app.models_base import utcnow
from app.scoping import Scope
from tests.api_keys.conftest import basic, bearer, mint
from tests.conftest import app_config

RATE_LIMIT = "5/minute"  # tiny, so that the test reaches it in a few requests


@pytest.fixture(scope="module")
def app(database):
    """The Kassa app plus a few test-only /v1 routes (added before the first request, as Flask requires)."""
    application = create_app(app_config(database, API_RATE_LIMIT=RATE_LIMIT))

    @api_view(publishable_ok=True)
    def browser_safe():
        return jsonify(merchant=g.scope.merchant_id, kind=g.api_key.kind)

    @api_view
    def visible_keys():
        """What the key's scope can read: proves merchant and mode come from the key."""
        return jsonify(ids=sorted(k.id for k in _db.session.scalars(g.scope.select(ApiKey))))

    @api_view
    def fail_after_auth():
        raise ApiError(400, "invalid_request_error", "boom", "failed after authentication")

    @api_view
    def echo():
        p = Params.from_request()
        result = {"amount": p.integer("amount", required=True, min_value=1),
                  "currency": p.currency("currency", required=True), "metadata": p.metadata()}
        p.done()
        return jsonify(result)

    # These routes live on the app, not the api blueprint (registered already), so give them its handler.
    application.register_error_handler(ApiError, handle_api_error)
    application.add_url_rule("/v1/_test/browser", view_func=browser_safe)
    application.add_url_rule("/v1/_test/keys", view_func=visible_keys)
    application.add_url_rule("/v1/_test/fail", view_func=fail_after_auth)
    application.add_url_rule("/v1/_test/echo", view_func=csrf.exempt(echo), methods=["POST"])
    with application.app_context():
        application.extensions["redis"].flushdb()
    yield application
    with application.app_context():
        _db.session.remove()
        _db.engine.dispose()


def _error(response):
    return response.json["error"]


# -- authentication -------------------------------------------------------------------------------------------

def test_bearer_key_authenticates(client, merchant, secret_key):
    response = client.get("/v1/account", headers=bearer(secret_key.plaintext))
    assert response.status_code == 200
    assert response.json["id"] == merchant.id
    assert response.json["object"] == "account"
    assert response.json["livemode"] is False
    assert response.json["suspended"] is False and response.json["charges_enabled"] is True  # test mode: always
    assert response.json["settings"]["display_name"] == merchant.name


def test_basic_auth_with_key_as_username(client, merchant, secret_key):
    response = client.get("/v1/account", headers=basic(secret_key.plaintext))
    assert response.status_code == 200
    assert response.json["id"] == merchant.id


@pytest.mark.parametrize("headers, code", [
    ({}, "api_key_missing"),
    ({"Authorization": "Bearer sk_test_" + "x" * 32}, "api_key_invalid"),
    ({"Authorization": "Bearer not-a-key"}, "api_key_invalid"),
    ({"Authorization": "Bearer "}, "api_key_invalid"),
    ({"Authorization": "Token sk_test_abc"}, "api_key_invalid"),
    ({"Authorization": "Basic !!!notbase64"}, "api_key_invalid"),
])
def test_missing_or_wrong_key_is_401_json(client, headers, code):
    response = client.get("/v1/account", headers=headers)
    assert response.status_code == 401
    assert response.json == {"error": {"type": "authentication_error", "code": code,
                                       "message": response.json["error"]["message"], "param": None}}
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_key_of_right_shape_but_one_character_off_is_rejected(client, secret_key):
    plaintext = secret_key.plaintext
    tampered = plaintext[:-1] + ("A" if plaintext[-1] != "A" else "B")
    assert _error(client.get("/v1/account", headers=bearer(tampered)))["code"] == "api_key_invalid"


def test_revoked_key_is_rejected(client, db_session, merchant, secret_key):
    assert client.get("/v1/account", headers=bearer(secret_key.plaintext)).status_code == 200
    revoke_key(db_session, Scope(merchant.id, False), secret_key.row.id)
    db_session.commit()
    response = client.get("/v1/account", headers=bearer(secret_key.plaintext))
    assert response.status_code == 401
    assert _error(response)["code"] == "api_key_invalid"
    assert "revoked" in _error(response)["message"]


def test_rolled_key_works_during_grace_and_fails_after(client, db_session, merchant, secret_key):
    new = roll_key(db_session, Scope(merchant.id, False), secret_key.row.id, "24h", hmac_key=hmac_key())
    db_session.commit()
    # Both the old key (in its grace period) and the new one work.
    assert client.get("/v1/account", headers=bearer(secret_key.plaintext)).status_code == 200
    assert client.get("/v1/account", headers=bearer(new.plaintext)).status_code == 200
    # Drive time through the row: the grace period is over.
    db_session.execute(update(ApiKey).where(ApiKey.id == secret_key.row.id)
                       .values(expires_at=utcnow() - timedelta(seconds=1)))
    db_session.commit()
    response = client.get("/v1/account", headers=bearer(secret_key.plaintext))
    assert response.status_code == 401
    assert _error(response)["code"] == "api_key_expired"
    assert client.get("/v1/account", headers=bearer(new.plaintext)).status_code == 200


def test_roll_with_no_grace_expires_the_old_key_at_once(client, db_session, merchant, secret_key):
    new = roll_key(db_session, Scope(merchant.id, False), secret_key.row.id, "now", hmac_key=hmac_key())
    db_session.commit()
    assert _error(client.get("/v1/account", headers=bearer(secret_key.plaintext)))["code"] == "api_key_expired"
    assert client.get("/v1/account", headers=bearer(new.plaintext)).status_code == 200


def test_publishable_key_only_on_browser_safe_routes(client, merchant, publishable_key):
    response = client.get("/v1/account", headers=bearer(publishable_key.plaintext))
    assert response.status_code == 403
    assert _error(response)["code"] == "secret_key_required"
    response = client.get("/v1/_test/browser", headers=bearer(publishable_key.plaintext))
    assert response.status_code == 200
    assert response.json == {"merchant": merchant.id, "kind": PUBLISHABLE}


def test_secret_key_also_works_on_browser_safe_routes(client, secret_key):
    assert client.get("/v1/_test/browser", headers=bearer(secret_key.plaintext)).status_code == 200


# -- scoping: merchant and mode come from the key -------------------------------------------------------------

def test_test_and_live_keys_see_only_their_mode(client, db_session, merchant):
    test_key = mint(db_session, merchant.id, livemode=False)
    live_key = mint(db_session, merchant.id, livemode=True)
    assert live_key.plaintext.startswith("sk_live_") and test_key.plaintext.startswith("sk_test_")

    seen_by_test = client.get("/v1/_test/keys", headers=bearer(test_key.plaintext)).json["ids"]
    seen_by_live = client.get("/v1/_test/keys", headers=bearer(live_key.plaintext)).json["ids"]
    assert test_key.row.id in seen_by_test and live_key.row.id not in seen_by_test
    assert live_key.row.id in seen_by_live and test_key.row.id not in seen_by_live
    assert client.get("/v1/account", headers=bearer(live_key.plaintext)).json["livemode"] is True
    assert client.get("/v1/account", headers=bearer(test_key.plaintext)).json["livemode"] is False


def test_merchant_a_key_never_reads_merchant_b(client, db_session, merchant, other_merchant):
    key_a = mint(db_session, merchant.id)
    key_b = mint(db_session, other_merchant.id)
    assert client.get("/v1/account", headers=bearer(key_a.plaintext)).json["id"] == merchant.id
    assert client.get("/v1/account", headers=bearer(key_b.plaintext)).json["id"] == other_merchant.id
    seen_by_a = client.get("/v1/_test/keys", headers=bearer(key_a.plaintext)).json["ids"]
    assert key_b.row.id not in seen_by_a
    # There is no way to name another account: /v1/account takes no id, and stray parameters are refused.
    response = client.get(f"/v1/account?id={other_merchant.id}", headers=bearer(key_a.plaintext))
    assert response.status_code == 400
    assert _error(response)["param"] == "id"


# -- rate limit ------------------------------------------------------------------------------------------------

def test_per_key_rate_limit_answers_429_with_retry_after(client, db_session, merchant):
    key = mint(db_session, merchant.id)
    other = mint(db_session, merchant.id)
    limit = int(RATE_LIMIT.split("/")[0])
    for _ in range(limit):
        assert client.get("/v1/account", headers=bearer(key.plaintext)).status_code == 200
    response = client.get("/v1/account", headers=bearer(key.plaintext))
    assert response.status_code == 429
    assert _error(response)["type"] == "rate_limit_error"
    assert _error(response)["code"] == "rate_limited"
    assert 1 <= int(response.headers["Retry-After"]) <= 60
    # The limit is per key: another key of the same merchant is unaffected.
    assert client.get("/v1/account", headers=bearer(other.plaintext)).status_code == 200


# -- last used -------------------------------------------------------------------------------------------------

def _last_used(db_session, key_id):
    db_session.rollback()  # a fresh snapshot
    return db_session.scalar(select(ApiKey.last_used_at).where(ApiKey.id == key_id))


def test_last_used_is_written_after_the_response_at_most_once_a_minute(client, db_session, redis, merchant):
    key = mint(db_session, merchant.id)
    response = client.get("/v1/account", headers=bearer(key.plaintext))
    assert response.status_code == 200
    # Not written while the request ran: only once the server has sent the response (closes it).
    assert _last_used(db_session, key.row.id) is None
    response.close()
    first = _last_used(db_session, key.row.id)
    assert first is not None

    # Within the minute, further uses do not write (cleared by hand to see that nothing writes it again).
    db_session.execute(update(ApiKey).where(ApiKey.id == key.row.id).values(last_used_at=None))
    db_session.commit()
    client.get("/v1/account", headers=bearer(key.plaintext), buffered=True)
    assert _last_used(db_session, key.row.id) is None

    # A minute later (the Redis throttle key has expired) the next use writes again.
    redis.delete(f"kassa:api-key-used:{key.row.id}")
    client.get("/v1/account", headers=bearer(key.plaintext), buffered=True)
    assert _last_used(db_session, key.row.id) is not None


def test_last_used_throttle_expires_after_a_minute(client, db_session, redis, merchant):
    key = mint(db_session, merchant.id)
    client.get("/v1/account", headers=bearer(key.plaintext), buffered=True)
    assert 0 < redis.ttl(f"kassa:api-key-used:{key.row.id}") <= 60


def test_last_used_is_written_outside_the_request_transaction(client, db_session, merchant):
    """The view fails and its transaction rolls back, yet the use is recorded: it has its own transaction."""
    key = mint(db_session, merchant.id)
    response = client.get("/v1/_test/fail", headers=bearer(key.plaintext), buffered=True)
    assert response.status_code == 400
    assert _last_used(db_session, key.row.id) is not None


def test_failed_authentication_records_no_use(client, db_session, merchant, secret_key):
    revoke_key(db_session, Scope(merchant.id, False), secret_key.row.id)
    db_session.commit()
    client.get("/v1/account", headers=bearer(secret_key.plaintext), buffered=True)
    assert _last_used(db_session, secret_key.row.id) is None


# -- request bodies --------------------------------------------------------------------------------------------

def test_json_body(client, secret_key):
    response = client.post("/v1/_test/echo", headers=bearer(secret_key.plaintext),
                           json={"amount": 1000, "currency": "eur", "metadata": {"order": "42"}})
    assert response.status_code == 200
    assert response.json == {"amount": 1000, "currency": "EUR", "metadata": {"order": "42"}}


def test_form_encoded_body_with_brackets(client, secret_key):
    response = client.post("/v1/_test/echo", headers=bearer(secret_key.plaintext),
                           data={"amount": "1000", "currency": "usd", "metadata[order]": "42"})
    assert response.status_code == 200
    assert response.json == {"amount": 1000, "currency": "USD", "metadata": {"order": "42"}}


def test_other_content_types_are_415(client, secret_key):
    response = client.post("/v1/_test/echo", headers={**bearer(secret_key.plaintext), "Content-Type": "text/plain"},
                           data="amount=1")
    assert response.status_code == 415
    assert _error(response)["code"] == "unsupported_media_type"
    response = client.post("/v1/_test/echo", headers=bearer(secret_key.plaintext),
                           data={"amount": "1", "file": (__import__("io").BytesIO(b"x"), "x.txt")})
    assert response.status_code == 415


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b'{"amount": NaN}', b"\xff\xfe"])
def test_malformed_json_is_400(client, secret_key, body):
    response = client.post("/v1/_test/echo", headers={**bearer(secret_key.plaintext),
                                                      "Content-Type": "application/json"}, data=body)
    assert response.status_code == 400
    assert _error(response)["code"] == "invalid_json"


def test_oversized_body_is_413_json(client, app, secret_key):
    body = b'{"amount": 1, "pad": "' + b"x" * app.config["MAX_CONTENT_LENGTH"] + b'"}'
    response = client.post("/v1/_test/echo", headers={**bearer(secret_key.plaintext),
                                                      "Content-Type": "application/json"}, data=body)
    assert response.status_code == 413
    assert response.json["error"]["code"] == "request_too_large"


def test_unknown_parameter_is_400_naming_it(client, secret_key):
    response = client.post("/v1/_test/echo", headers=bearer(secret_key.plaintext),
                           json={"amount": 1, "currency": "usd", "amuont": 2})
    assert response.status_code == 400
    assert _error(response) == {"type": "invalid_request_error", "code": "parameter_unknown",
                                "message": "Received unknown parameter: amuont.", "param": "amuont"}


def test_invalid_parameter_is_400_naming_it(client, secret_key):
    response = client.post("/v1/_test/echo", headers=bearer(secret_key.plaintext),
                           json={"amount": True, "currency": "usd"})
    assert response.status_code == 400
    assert _error(response)["param"] == "amount"
    response = client.post("/v1/_test/echo", headers=bearer(secret_key.plaintext), json={"amount": 5})
    assert _error(response)["param"] == "currency"
    assert _error(response)["code"] == "parameter_missing"


def test_authentication_comes_before_body_checks(client):
    response = client.post("/v1/_test/echo", headers={"Content-Type": "text/plain"}, data="x")
    assert response.status_code == 401
