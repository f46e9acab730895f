"""/v1/webhook_endpoints: create (the secret once), list, retrieve, update, delete; scoped to the key's book."""
import pytest
from sqlalchemy import select

from app.accounts.api_keys import SECRET, create_key
from app.accounts.audit import AuditEntry
from app.api.auth import hmac_key
from app.scoping import Scope
from app.webhooks import service
from app.webhooks.models import WebhookEndpoint
from tests import factories


def key_for(session, merchant_id: str, livemode: bool = False) -> dict:
    new = create_key(session, Scope(merchant_id, livemode), SECRET, hmac_key=hmac_key())
    session.commit()
    return {"Authorization": f"Bearer {new.plaintext}"}


@pytest.fixture
def auth(db_session, book):
    return key_for(db_session, book.merchant_id)


def test_create_returns_the_secret_once_and_stores_it_encrypted(client, db_session, book, settings, auth):
    response = client.post("/v1/webhook_endpoints", headers=auth, json={
        "url": "https://example.com/hooks", "enabled_events": ["payment.succeeded", "refund.created"],
        "description": "Orders"})
    assert response.status_code == 200, response.json
    body = response.json
    assert body["object"] == "webhook_endpoint" and body["status"] == "enabled" and body["livemode"] is False
    assert body["enabled_events"] == ["payment.succeeded", "refund.created"]
    assert body["secret"].startswith("whsec_")
    row = db_session.get(WebhookEndpoint, body["id"])
    assert body["secret"] not in row.secret_encrypted and service.reveal_secret(settings, row) == body["secret"]
    retrieved = client.get(f"/v1/webhook_endpoints/{body['id']}", headers=auth).json
    assert "secret" not in retrieved and retrieved["url"] == "https://example.com/hooks"
    audit = db_session.scalars(select(AuditEntry).where(AuditEntry.target == body["id"])).all()
    assert [a.action for a in audit] == ["webhook_endpoint.created"]


def test_form_encoded_create_with_all_events(client, book, settings, auth):
    response = client.post("/v1/webhook_endpoints", headers=auth,
                           data={"url": "http://127.0.0.1:9/hook", "enabled_events[]": "*"})
    assert response.status_code == 200, response.json
    assert response.json["enabled_events"] == ["*"]


@pytest.mark.parametrize("payload, param, code", [
    ({"enabled_events": ["*"]}, "url", "parameter_missing"),
    ({"url": "https://example.com/h"}, "enabled_events", "parameter_missing"),
    ({"url": "ftp://example.com/h", "enabled_events": ["*"]}, "url", "parameter_invalid"),
    ({"url": "https://example.com/h", "enabled_events": ["Not An Event"]}, "enabled_events", "parameter_invalid"),
    ({"url": "https://example.com/h", "enabled_events": ["*"], "secret": "x"}, "secret", "parameter_unknown"),
])
def test_create_validation(client, book, settings, auth, payload, param, code):
    response = client.post("/v1/webhook_endpoints", headers=auth, json=payload)
    assert response.status_code == 400
    assert (response.json["error"]["param"], response.json["error"]["code"]) == (param, code)


def test_ssrf_targets_are_refused_by_the_api(client, book, settings, auth):
    settings.allow_private = False
    for url in ("http://127.0.0.1/h", "http://169.254.169.254/", "http://[::1]/", "http://10.0.0.1/"):
        response = client.post("/v1/webhook_endpoints", headers=auth, json={"url": url, "enabled_events": ["*"]})
        assert response.status_code == 400 and response.json["error"]["param"] == "url", url


def test_live_keys_need_https(client, db_session, book, settings):
    live = key_for(db_session, book.merchant_id, livemode=True)
    response = client.post("/v1/webhook_endpoints", headers=live,
                           json={"url": "http://example.com/h", "enabled_events": ["*"]})
    assert response.status_code == 400 and "https" in response.json["error"]["message"]
    response = client.post("/v1/webhook_endpoints", headers=live,
                           json={"url": "https://example.com/h", "enabled_events": ["*"]})
    assert response.status_code == 200 and response.json["livemode"] is True


def test_update_disable_enable_and_delete(client, book, settings, auth):
    created = client.post("/v1/webhook_endpoints", headers=auth,
                          json={"url": "https://example.com/a", "enabled_events": ["*"]}).json
    path = f"/v1/webhook_endpoints/{created['id']}"
    updated = client.post(path, headers=auth, json={"url": "https://example.com/b", "description": "B",
                                                     "enabled_events": ["payment.failed"], "disabled": True}).json
    assert (updated["url"], updated["description"], updated["enabled_events"]) == (
        "https://example.com/b", "B", ["payment.failed"])
    assert (updated["status"], updated["disabled_reason"]) == ("disabled", "manual")
    enabled = client.post(path, headers=auth, json={"disabled": False}).json
    assert (enabled["status"], enabled["disabled_reason"]) == ("enabled", None)
    assert client.delete(path, headers=auth).json == {"id": created["id"], "object": "webhook_endpoint",
                                                      "deleted": True}
    assert client.get(path, headers=auth).status_code == 404
    listed = client.get("/v1/webhook_endpoints", headers=auth).json
    assert created["id"] not in [e["id"] for e in listed["data"]]


def test_list_is_scoped_to_the_keys_merchant_and_mode(client, db_session, book, settings, auth):
    other = factories.merchant(db_session, name="Other")
    db_session.commit()
    other_auth = key_for(db_session, other.id)
    live_auth = key_for(db_session, book.merchant_id, livemode=True)
    mine = client.post("/v1/webhook_endpoints", headers=auth,
                       json={"url": "https://example.com/mine", "enabled_events": ["*"]}).json
    theirs = client.post("/v1/webhook_endpoints", headers=other_auth,
                         json={"url": "https://example.com/theirs", "enabled_events": ["*"]}).json
    listed = client.get("/v1/webhook_endpoints?limit=100", headers=auth).json
    ids = [e["id"] for e in listed["data"]]
    assert mine["id"] in ids and theirs["id"] not in ids
    assert client.get(f"/v1/webhook_endpoints/{theirs['id']}", headers=auth).status_code == 404
    assert client.post(f"/v1/webhook_endpoints/{theirs['id']}", headers=auth,
                       json={"disabled": True}).status_code == 404
    assert client.delete(f"/v1/webhook_endpoints/{theirs['id']}", headers=auth).status_code == 404
    assert client.get(f"/v1/webhook_endpoints/{mine['id']}", headers=live_auth).status_code == 404
    assert all(e["livemode"] is True for e in client.get("/v1/webhook_endpoints", headers=live_auth).json["data"])


def test_the_api_needs_a_secret_key(client):
    assert client.get("/v1/webhook_endpoints").status_code == 401
