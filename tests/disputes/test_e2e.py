"""Disputes end to end over HTTP: gunicorn, a real RQ worker (with its scheduler) and the sandbox PSP, which
opens disputes, takes evidence, decides and calls Kassa back.

Each flow runs on a split payment (seller A 60.00 with 1.80 of platform fee, seller B 40.00 with 1.20) of which
30.00 of A's part was refunded before the dispute, and ends with the books checked: `flask ledger verify` passes,
the sellers' balances (GET /v1/balance) show what the dispute took and gave back, and captured - refunded -
disputed + reinstated equals what the payment's orders hold in the ledger. Time moves on the sandbox clock.
"""
import hashlib
import hmac
import io
import json
import sys
import time
import uuid
from pathlib import Path

import pytest
from pypdf import PdfWriter

from app.extensions import db
from app.scoping import Scope
from tests.disputes.helpers import held_by_orders, verify_ledger
from tests.payments.conftest import live  # noqa: F401  (gunicorn + worker + sandbox on this module's database)
from tests.payments.live_helpers import WAIT_SECONDS, Api, Sandbox, new_merchant_key

DAY = 86400
DECISION_DAYS = 2  # the sandbox's default --dispute-decision-days
# The merchant's webhook endpoint is a local receiver on 127.0.0.1.
LIVE_ENV = {"WEBHOOKS_ALLOW_PRIVATE": "true"}
DISPUTE_EVENTS = ["dispute.created", "dispute.updated", "dispute.closed", "dispute.funds_withdrawn",
                  "dispute.funds_reinstated"]


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


@pytest.fixture(scope="module")
def world(app, live, receiver):  # noqa: F811
    merchant_id, key = new_merchant_key(app, "Disputed marketplace")
    api = Api(live.url, key)
    sellers = [api.post("/v1/sellers", name=name).json()["id"] for name in ("Seller A", "Seller B")]
    endpoint = api.post("/v1/webhook_endpoints", url=receiver.url, enabled_events=DISPUTE_EVENTS)
    assert endpoint.status_code == 200, endpoint.text
    return {"api": api, "sandbox": Sandbox(live.sandbox_url), "scope": Scope(merchant_id, False), "app": app,
            "receiver": receiver,
            "sellers": sellers, "hook": f"{live.url}/hooks/sandbox",
            "secret": live.services.env["SANDBOX_WEBHOOK_SECRET"]}


def wait_until(predicate, what: str):
    deadline = time.monotonic() + WAIT_SECONDS
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
    return value


def admin(world, path: str, body: dict | None = None) -> dict:
    sandbox = world["sandbox"]
    response = sandbox.http.post(sandbox.url + path, json=body or {}, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def split_payment(world, card: str = "visa") -> dict:
    """The split payment, captured, with 30.00 of seller A's part refunded."""
    api, (a, b) = world["api"], world["sellers"]
    created = api.post("/v1/payments", key=str(uuid.uuid4()), amount=10000, currency="usd", confirm=True,
                       payment_method=world["sandbox"].token(card),
                       split=[{"seller": a, "amount": 6000, "fee": 180}, {"seller": b, "amount": 4000, "fee": 120}])
    assert created.status_code == 200, created.text
    payment = api.wait_for(created.json()["id"], "succeeded")
    refund = api.post("/v1/refunds", key=str(uuid.uuid4()), payment=payment["id"], sellers=[
        {"seller": a, "amount": 3000}]).json()
    assert api.wait_for_refund(refund["id"])["status"] == "succeeded"
    return api.payment(payment["id"])


def authorization(payment: dict) -> str:
    return next(a["psp_reference"] for a in payment["attempts"] if a["operation"] == "authorize")


def dispute_of(world, payment: dict, *statuses: str, pending: bool = False) -> dict:
    """The payment's dispute once Kassa shows it in one of ``statuses`` (and with no action pending)."""
    def seen():
        listed = world["api"].get("/v1/disputes", payment=payment["id"]).json()["data"]
        if listed and listed[0]["status"] in statuses and (pending or listed[0]["pending_action"] is None):
            return listed[0]
        return None
    return wait_until(seen, f"the dispute of {payment['id']} to be {statuses}")


def balances(world) -> dict[str, int]:
    body = world["api"].get("/v1/balance").json()
    return {**{s["seller"]: s["amount"] for s in body["sellers"]},
            "fees": sum(f["amount"] for f in body["platform_fees"])}


def check_books(world, payment_id: str) -> None:
    """The ledger verifies, and captured - refunded - disputed + reinstated is what the orders hold."""
    app, scope = world["app"], world["scope"]
    payment = world["api"].payment(payment_id)
    disputes = world["api"].get("/v1/disputes", payment=payment_id).json()["data"]
    disputed = sum(d["amount"] for d in disputes if d["funds_withdrawn"])
    reinstated = sum(d["amount"] for d in disputes if d["funds_reinstated"])
    with app.app_context():
        verify_ledger(app)
        held = held_by_orders(db.session, scope, payment_id)
        db.session.remove()
    assert held == payment["amount_received"] - payment["amount_refunded"] - disputed + reinstated


def pdf() -> bytes:
    writer = PdfWriter()
    writer.add_blank_page(width=200, height=200)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def submit(world, dispute: dict, text: str, with_file: bool = True) -> dict:
    api = world["api"]
    evidence = {"uncategorized_text": text, "customer_name": "Ann Example"}
    if with_file:
        uploaded = api.http.post(api.base_url + "/v1/files", data={"purpose": "dispute_evidence"},
                                 files={"file": ("receipt.pdf", pdf(), "application/pdf")}, timeout=30)
        assert uploaded.status_code == 200, uploaded.text
        evidence["receipt"] = uploaded.json()["id"]
    answer = api.post(f"/v1/disputes/{dispute['id']}", key=str(uuid.uuid4()), evidence=evidence, submit=True)
    assert answer.status_code == 200, answer.text
    return answer.json()


def resend(world, callback: dict, callback_id: str | None = None) -> None:
    """A copy of a sandbox callback, signed as the sandbox signs (a retry, or a late duplicate)."""
    body = json.dumps({"id": callback_id or callback["id"], "type": callback["type"], "created": callback["created"],
                       "data": callback["data"]}).encode()
    timestamp = int(time.time())
    digest = hmac.new(world["secret"].encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    response = world["sandbox"].http.post(world["hook"], data=body, timeout=10, headers={
        "Content-Type": "application/json", "Sandbox-Signature": f"t={timestamp},v1={digest}"})
    assert response.status_code == 200, response.text


def sandbox_callbacks(world, dispute_reference: str) -> list[dict]:
    listed = world["sandbox"].http.get(world["sandbox"].url + "/_admin/callbacks", timeout=10).json()["data"]
    return [c for c in reversed(listed) if c["type"].startswith("dispute.") and c["data"]["id"] == dispute_reference]


def test_won(world):
    a, b = world["sellers"]
    payment = split_payment(world)
    before = balances(world)
    opened = admin(world, "/_admin/disputes", {"authorization": authorization(payment), "reason": "fraudulent"})
    dispute = dispute_of(world, payment, "needs_response")
    assert dispute["amount"] == 7000 and dispute["funds_withdrawn"] and dispute["fee"]["amount"] == 1500
    assert world["api"].payment(payment["id"])["disputed"] is True
    after = balances(world)
    assert (before[a] - after[a], before[b] - after[b], before["fees"] - after["fees"]) == (2910, 3880, 210)
    check_books(world, payment["id"])
    refused = world["api"].post("/v1/refunds", payment=payment["id"], amount=100)
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "charge_disputed"

    answered = submit(world, dispute, "Signed for on delivery: winning_evidence")
    assert answered["status"] in ("needs_response", "under_review")
    dispute = dispute_of(world, payment, "under_review")
    assert dispute["evidence_details"]["submission_count"] == 1 and dispute["evidence"]["receipt"].startswith("file_")
    admin(world, "/_admin/clock", {"advance_seconds": DECISION_DAYS * DAY})
    dispute = dispute_of(world, payment, "won")
    wait_until(lambda: world["api"].get(f"/v1/disputes/{dispute['id']}").json()["funds_reinstated"], "reinstatement")
    assert balances(world) == before
    check_books(world, payment["id"])

    # Duplicate, late and out-of-order copies of the sandbox's callbacks change nothing.
    created, *_rest = sandbox_callbacks(world, opened["id"])
    resend(world, created)                       # the same callback again: deduplicated on its id
    resend(world, created, "cb_late_copy")       # a late copy under another id: older, never reopens it
    assert world["api"].get(f"/v1/disputes/{dispute['id']}").json()["status"] == "won"
    assert balances(world) == before
    types = [e["type"] for e in world["api"].get("/v1/events", object=dispute["id"], limit=50).json()["data"]]
    assert sorted(types) == sorted(["dispute.created", "dispute.funds_withdrawn", "dispute.updated", "dispute.updated",
                                    "dispute.closed", "dispute.funds_reinstated"])
    # ... and each of them reached the merchant's webhook endpoint.
    def delivered():
        seen = [body for _headers, body, _raw in world["receiver"].events()
                if body.get("data", {}).get("object", {}).get("id") == dispute["id"]]
        return seen if len(seen) >= len(types) else None
    assert sorted(e["type"] for e in wait_until(delivered, "the webhooks")) == sorted(types)
    check_books(world, payment["id"])


def test_lost(world):
    payment = split_payment(world)
    before = balances(world)
    admin(world, "/_admin/disputes", {"authorization": authorization(payment), "reason": "product_not_received"})
    dispute = dispute_of(world, payment, "needs_response")
    submit(world, dispute, "losing_evidence")
    dispute_of(world, payment, "under_review")
    admin(world, "/_admin/clock", {"advance_seconds": DECISION_DAYS * DAY})
    lost = dispute_of(world, payment, "lost")
    assert lost["funds_withdrawn"] and not lost["funds_reinstated"]
    a, b = world["sellers"]
    after = balances(world)
    assert (before[a] - after[a], before[b] - after[b]) == (2910, 3880)
    check_books(world, payment["id"])


def test_accepted(world):
    payment = split_payment(world)
    admin(world, "/_admin/disputes", {"authorization": authorization(payment)})
    dispute = dispute_of(world, payment, "needs_response")
    accepted = world["api"].post(f"/v1/disputes/{dispute['id']}/close", key=str(uuid.uuid4()))
    assert accepted.status_code == 200, accepted.text
    closed = dispute_of(world, payment, "lost")
    assert closed["funds_withdrawn"] and not closed["funds_reinstated"]
    check_books(world, payment["id"])


def test_inquiry(world):
    payment = split_payment(world)
    before = balances(world)
    admin(world, "/_admin/disputes", {"authorization": authorization(payment), "inquiry": True, "reason": "general"})
    inquiry = dispute_of(world, payment, "warning_needs_response")
    assert not inquiry["funds_withdrawn"] and inquiry["is_charge_refundable"]
    assert balances(world) == before  # an inquiry moves no money
    # Refunding what is left is allowed, and ends the inquiry.
    refund = world["api"].post("/v1/refunds", key=str(uuid.uuid4()), payment=payment["id"]).json()
    assert world["api"].wait_for_refund(refund["id"])["status"] == "succeeded"
    dispute_of(world, payment, "warning_closed")
    check_books(world, payment["id"])


def test_withdrawn(world):
    payment = split_payment(world)
    before = balances(world)
    opened = admin(world, "/_admin/disputes", {"authorization": authorization(payment)})
    dispute_of(world, payment, "needs_response")
    admin(world, f"/_admin/disputes/{opened['id']}/withdraw")
    won = dispute_of(world, payment, "won")
    wait_until(lambda: world["api"].get(f"/v1/disputes/{won['id']}").json()["funds_reinstated"], "reinstatement")
    assert balances(world) == before
    check_books(world, payment["id"])


def test_the_psp_refuses_evidence_after_its_deadline(world):
    payment = split_payment(world)
    admin(world, "/_admin/disputes", {"authorization": authorization(payment)})
    dispute = dispute_of(world, payment, "needs_response")
    admin(world, "/_admin/clock", {"advance_seconds": 7 * DAY + 60})  # past due at the sandbox
    submit(world, dispute, "winning_evidence", with_file=False)
    refused = wait_until(lambda: (d := world["api"].get(f"/v1/disputes/{dispute['id']}").json())["last_action_error"]
                         and d, "the sandbox's refusal")
    assert refused["pending_action"] is None and "deadline" in refused["last_action_error"]
    assert refused["status"] == "needs_response" and refused["evidence_details"]["submission_count"] == 0
    check_books(world, payment["id"])
