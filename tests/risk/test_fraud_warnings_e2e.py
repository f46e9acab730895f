"""Early fraud warnings end to end over HTTP: gunicorn, a real RQ worker and the sandbox PSP. The sandbox raises a
warning on a captured payment (``POST /_admin/early_fraud_warnings``) and calls Kassa back as it does for disputes;
Kassa keeps it in the merchant's test book, lists it on /v1/radar/early_fraud_warnings (that merchant only), sends
``radar.early_fraud_warning.created`` / ``.updated`` to the merchant's webhook endpoint, and never labels the
payment for training (the sandbox is test mode)."""
import sys
import time
import uuid
from pathlib import Path

import pytest

from app.extensions import db
from app.models_base import utcnow
from app.risk.learning import training
from tests.payments import conftest as payments_fixtures
from tests.payments.live_helpers import WAIT_SECONDS, Api, Sandbox, new_merchant_key

LIVE_ENV = {"WEBHOOKS_ALLOW_PRIVATE": "true"}  # the merchant's endpoint is a local receiver on 127.0.0.1
live = payments_fixtures.live  # gunicorn + worker + sandbox on this module's database
EVENTS = ["radar.early_fraud_warning.created", "radar.early_fraud_warning.updated"]


@pytest.fixture(scope="module")
def receiver():
    """The merchant's webhook endpoint: a local HTTP server recording what it receives."""
    sandbox_tests = str(Path(__file__).resolve().parents[1] / "sandbox_psp")
    if sandbox_tests not in sys.path:
        sys.path.insert(0, sandbox_tests)
    from sbx_helpers import HookReceiver

    server = HookReceiver()
    server.start()
    yield server
    server.stop()


def wait_until(predicate, what: str):
    deadline = time.monotonic() + WAIT_SECONDS
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
    return value


def admin(sandbox: Sandbox, path: str, body: dict) -> dict:
    response = sandbox.http.post(sandbox.url + path, json=body, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def test_a_sandbox_warning_reaches_the_merchant_and_never_becomes_a_label(app, live, receiver):
    _merchant_id, key = new_merchant_key(app, "Warned marketplace")
    _other_id, other_key = new_merchant_key(app, "Another marketplace")
    api, other, sandbox = Api(live.url, key), Api(live.url, other_key), Sandbox(live.sandbox_url)
    endpoint = api.post("/v1/webhook_endpoints", url=receiver.url, enabled_events=EVENTS)
    assert endpoint.status_code == 200, endpoint.text
    created = api.post("/v1/payments", key=str(uuid.uuid4()), amount=4200, currency="usd", confirm=True,
                       payment_method=sandbox.token("visa"))
    assert created.status_code == 200, created.text
    payment = api.wait_for(created.json()["id"], "succeeded")
    authorization = next(a["psp_reference"] for a in payment["attempts"] if a["operation"] == "authorize")

    refused = sandbox.http.post(sandbox.url + "/_admin/early_fraud_warnings",
                                json={"authorization": authorization, "fraud_type": "nonsense"}, timeout=10)
    assert refused.status_code == 400
    raised = admin(sandbox, "/_admin/early_fraud_warnings",
                   {"authorization": authorization, "fraud_type": "unauthorized_use_of_card"})
    assert raised["id"].startswith("efw_") and raised["actionable"] is True

    def listed():
        data = api.get("/v1/radar/early_fraud_warnings", payment_intent=payment["id"]).json()["data"]
        return data[0] if data else None
    kept = wait_until(listed, "the warning on /v1/radar/early_fraud_warnings")
    assert (kept["payment_intent"], kept["fraud_type"], kept["actionable"], kept["livemode"], kept["psp"],
            kept["psp_reference"], kept["psp_charge"]) == (payment["id"], "unauthorized_use_of_card", True, False,
                                                           "sandbox", raised["id"], authorization)
    assert other.get("/v1/radar/early_fraud_warnings").json()["data"] == []
    assert other.get(f"/v1/radar/early_fraud_warnings/{kept['id']}").status_code == 404

    admin(sandbox, f"/_admin/early_fraud_warnings/{raised['id']}", {"actionable": False})
    wait_until(lambda: api.get(f"/v1/radar/early_fraud_warnings/{kept['id']}").json()["actionable"] is False,
               "the update")

    def delivered():
        seen = [body["type"] for _headers, body, _raw in receiver.events()
                if body.get("data", {}).get("object", {}).get("id") == kept["id"]]
        return seen if len(seen) >= 2 else None
    assert sorted(wait_until(delivered, "the webhooks")) == EVENTS

    # The sandbox is test mode: its warnings never label anything for training.
    with app.app_context():
        labels = {row.payment_id for row in training.labelled_payments(db.session, now=utcnow(), window_days=0)}
        db.session.remove()
    assert payment["id"] not in labels
