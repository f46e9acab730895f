"""Full payment flows over HTTP: gunicorn (threads) + a real worker + the sandbox PSP.

Every flow ends with a check of the books: the ledger balances and holds exactly what was captured
less what was refunded.
"""
import threading
import time
import uuid

import pytest

from app.extensions import db
from app.scoping import Scope
from tests.payments.helpers import assert_ledger_balanced, event_types, ledger_balances
from tests.payments.live_helpers import WAIT_SECONDS, Api, Sandbox, new_merchant_key


@pytest.fixture(scope="module")
def world(app, live):
    merchant_id, key = new_merchant_key(app)
    return {"api": Api(live.url, key), "sandbox": Sandbox(live.sandbox_url), "scope": Scope(merchant_id, False),
            "app": app}


@pytest.fixture
def api(world) -> Api:
    return world["api"]


@pytest.fixture
def sandbox(world) -> Sandbox:
    return world["sandbox"]


def books(world) -> dict:
    with world["app"].app_context():
        assert_ledger_balanced(db.session, world["scope"])
        balances = ledger_balances(db.session, world["scope"])
        db.session.remove()
    return balances


def events(world, object_id: str) -> list[str]:
    with world["app"].app_context():
        types = event_types(db.session, world["scope"], object_id)
        db.session.remove()
    return types


def test_automatic_capture(api, sandbox, world):
    before = books(world).get("psp_receivable:sandbox:USD", 0) + books(world).get("psp_receivable:sandbox_b:USD", 0)
    response = api.post("/v1/payments", key=str(uuid.uuid4()), amount=2500, currency="usd",
                        payment_method=sandbox.token("visa"), confirm=True, customer_email="e2e@example.com")
    assert response.status_code == 200, response.text
    body = response.json()
    # The confirm wait (about 2 s) covers authorization and capture on an idle system: the answer is final.
    assert body["status"] == "succeeded", body
    payment = api.wait_for(body["id"], "succeeded")
    assert body == payment  # the answer (the worker's snapshot) is the payment as stored
    assert payment["amount_received"] == 2500
    assert payment["payment_method"]["last4"] == "4242" and payment["payment_method"]["brand"]
    assert [a["operation"] for a in payment["attempts"]] == ["authorize", "capture"]
    authorize = payment["attempts"][0]
    assert sandbox.authorizations(f"kassa-{authorize['id']}") == 1
    after = books(world)
    assert after.get(f"psp_receivable:{payment['connector']}:USD", 0) + (
        after.get("psp_receivable:sandbox_b:USD" if payment["connector"] == "sandbox" else
                  "psp_receivable:sandbox:USD", 0)) == before + 2500
    assert events(world, body["id"]).count("payment.succeeded") == 1


def test_manual_capture_full_and_partial(api, sandbox, world):
    full = api.post("/v1/payments", amount=1000, currency="eur", capture_method="manual",
                    payment_method=sandbox.token("mastercard"), confirm=True).json()
    assert api.wait_for(full["id"], "requires_capture")["amount_capturable"] == 1000
    captured = api.post(f"/v1/payments/{full['id']}/capture", key=str(uuid.uuid4())).json()
    assert captured["status"] in ("succeeded", "requires_capture")
    assert api.wait_for(full["id"], "succeeded")["amount_received"] == 1000

    partial = api.post("/v1/payments", amount=1000, currency="eur", capture_method="manual",
                       payment_method=sandbox.token("visa"), confirm=True).json()
    api.wait_for(partial["id"], "requires_capture")
    api.post(f"/v1/payments/{partial['id']}/capture", amount=400)
    done = api.wait_for(partial["id"], "succeeded")
    assert (done["amount_received"], done["amount_capturable"]) == (400, 0)
    balances = books(world)
    assert sum(v for k, v in balances.items() if k.startswith("psp_receivable:") and k.endswith(":EUR")) == 1400


def test_cancel_voids_at_the_psp(api, sandbox, world):
    voids_before = sandbox.total("voids")
    created = api.post("/v1/payments", amount=700, currency="usd", capture_method="manual",
                       payment_method=sandbox.token("visa"), confirm=True).json()
    api.wait_for(created["id"], "requires_capture")
    canceled = api.post(f"/v1/payments/{created['id']}/cancel", cancellation_reason="requested_by_customer")
    assert canceled.status_code == 200 and canceled.json()["status"] == "canceled"
    deadline_payment = api.wait_for(created["id"], "canceled")
    assert deadline_payment["cancellation_reason"] == "requested_by_customer"
    deadline = time.monotonic() + WAIT_SECONDS
    while sandbox.total("voids") < voids_before + 1 and time.monotonic() < deadline:
        time.sleep(0.1)  # the void runs in the worker after the cancel committed
    assert sandbox.total("voids") == voids_before + 1
    assert events(world, created["id"])[-1] == "payment.canceled"


def test_decline_then_retry_with_another_card(api, sandbox):
    created = api.post("/v1/payments", amount=1200, currency="usd", payment_method=sandbox.token("insufficient_funds"),
                       confirm=True).json()
    declined = api.wait_for(created["id"], "requires_payment_method")
    assert declined["last_payment_error"]["decline_code"] == "insufficient_funds"
    retried = api.post(f"/v1/payments/{created['id']}/confirm", key=str(uuid.uuid4()),
                       payment_method=sandbox.token("visa"))
    assert retried.status_code == 200
    payment = api.wait_for(created["id"], "succeeded")
    assert [(a["operation"], a["status"]) for a in payment["attempts"]] == [
        ("authorize", "declined"), ("authorize", "succeeded"), ("capture", "succeeded")]
    assert payment["last_payment_error"] is None


def test_three_d_secure_required(api, sandbox, world):
    created = api.post("/v1/payments", amount=3000, currency="usd", payment_method=sandbox.token("three_d_secure"),
                       confirm=True, return_url="https://shop.example/return").json()
    payment = api.wait_for(created["id"], "requires_action")
    action = payment["next_action"]["redirect_to_url"]
    assert action["url"] and action["return_url"] == "https://shop.example/return"
    sandbox.answer_challenge(action["url"], approve=True)
    # The sandbox calls back (authorization.updated); Kassa captures automatically.
    done = api.wait_for(created["id"], "succeeded")
    assert done["amount_received"] == 3000
    assert events(world, created["id"]) == ["payment.created", "payment.processing", "payment.requires_action",
                                            "payment.processing", "payment.succeeded"]


def test_partial_and_multiple_refunds(api, sandbox, world):
    seller_a = api.post("/v1/sellers", name="Seller A").json()["id"]
    seller_b = api.post("/v1/sellers", name="Seller B").json()["id"]
    created = api.post("/v1/payments", amount=10000, currency="gbp", payment_method=sandbox.token("visa"),
                       confirm=True, split=[{"seller": seller_a, "amount": 6000, "fee": 180},
                                            {"seller": seller_b, "amount": 4000, "fee": 120}]).json()
    api.wait_for(created["id"], "succeeded")
    first = api.post("/v1/refunds", key=str(uuid.uuid4()), payment=created["id"],
                     sellers=[{"seller": seller_a, "amount": 3000}]).json()
    assert api.wait_for_refund(first["id"])["status"] == "succeeded"
    second = api.post("/v1/refunds", payment=created["id"], amount=1000).json()
    assert api.wait_for_refund(second["id"])["status"] == "succeeded"
    too_much = api.post("/v1/refunds", payment=created["id"], amount=6001)
    assert too_much.status_code == 400 and too_much.json()["error"]["code"] == "amount_too_large"
    payment = api.payment(created["id"])
    assert payment["amount_refunded"] == 4000
    balances = books(world)
    # First 30.00 of A's part: A -29.10, fee -0.90. Then 10.00 pro rata over what is left (A 30.00,
    # B 40.00): A 4.29 (fee back 0.13), B 5.71 (fee back 0.17).
    assert balances[f"seller_payable:{seller_a}:GBP"] == 5820 - 2910 - (429 - 13)
    assert balances[f"seller_payable:{seller_b}:GBP"] == 3880 - (571 - 17)
    assert balances["merchant_revenue:GBP"] == 300 - 90 - 13 - 17
    balance = api.get("/v1/balance").json()
    shown = {(entry["seller"], entry["currency"]): entry["amount"] for entry in balance["sellers"]}
    assert shown[(seller_a, "GBP")] == 5820 - 2910 - 416
    assert events(world, first["id"]) == ["refund.created", "refund.succeeded"]


def test_twenty_concurrent_identical_requests(api, sandbox, world):
    token, key = sandbox.token("visa"), str(uuid.uuid4())
    barrier = threading.Barrier(20)
    answers, lock = [], threading.Lock()

    def client():
        barrier.wait()
        response = api.post("/v1/payments", key=key, amount=999, currency="usd", payment_method=token,
                            confirm=True, description="twenty at once")
        with lock:
            answers.append(response)

    threads = [threading.Thread(target=client) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    statuses = sorted(r.status_code for r in answers)
    assert set(statuses) <= {200, 409} and 200 in statuses, statuses
    payment_ids = {r.json()["id"] for r in answers if r.status_code == 200}
    assert len(payment_ids) == 1
    payment = api.wait_for(payment_ids.pop(), "succeeded")
    listed = api.get("/v1/payments", limit=100).json()["data"]
    assert [p["id"] for p in listed if p["description"] == "twenty at once"] == [payment["id"]]
    authorize = [a for a in payment["attempts"] if a["operation"] == "authorize"]
    assert len(authorize) == 1 and sandbox.authorizations(f"kassa-{authorize[0]['id']}") == 1
    # Once it is done, the same request replays; a different one with the key is refused.
    replay = api.post("/v1/payments", key=key, amount=999, currency="usd", payment_method=token, confirm=True,
                      description="twenty at once")
    assert replay.status_code == 200 and replay.headers.get("Idempotent-Replayed") == "true"
    other = api.post("/v1/payments", key=key, amount=998, currency="usd")
    assert other.status_code == 400 and other.json()["error"]["type"] == "idempotency_error"


def test_timeout_card_ends_succeeded_exactly_once_via_the_janitor(api, sandbox, world):
    created = api.post("/v1/payments", amount=4100, currency="usd", payment_method=sandbox.token("timeout"),
                       confirm=True).json()
    assert created["status"] == "processing"
    payment = api.wait_for(created["id"], "succeeded")
    authorize = payment["attempts"][0]
    assert authorize["operation"] == "authorize" and authorize["tries"] >= 2  # resolved by a later run
    assert sandbox.authorizations(f"kassa-{authorize['id']}") == 1
    assert events(world, created["id"]).count("payment.succeeded") == 1
    assert [a["operation"] for a in payment["attempts"]] == ["authorize", "capture"]
    books(world)


def test_merchant_b_cannot_touch_merchant_a_over_http(api, sandbox, world, live):
    created = api.post("/v1/payments", amount=500, currency="usd").json()
    _, other_key = new_merchant_key(world["app"], "Other live shop")
    other = Api(live.url, other_key)
    assert other.get(f"/v1/payments/{created['id']}").status_code == 404
    assert other.post(f"/v1/payments/{created['id']}/cancel").status_code == 404
    assert api.payment(created["id"])["status"] == "requires_payment_method"
