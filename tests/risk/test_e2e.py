"""Risk end to end over HTTP: gunicorn, the worker (PSP dispatcher, scheduler) and the sandbox PSP.

Block (the sandbox's fraud card never reaches an authorization), review (authorized and held; approve captures
once, reject voids once), request_3ds (the sandbox challenges a card that would not need it), the shopper's IP
from the checkout request and never from a forged X-Forwarded-For, and velocity counted across processes.
"""
import os
import subprocess
import sys
import time
import uuid

import pytest

from app.extensions import db
from app.payments.deps import deps_for
from app.risk import reviews, rules
from app.scoping import Scope
from tests.payments.conftest import live  # noqa: F401  (gunicorn + worker + sandbox on this module's database)
from tests.payments.live_helpers import Api, Sandbox, new_merchant_key, session


@pytest.fixture(scope="module")
def world(app, live):  # noqa: F811
    merchant_id, key = new_merchant_key(app, "Risky shop")
    scope = Scope(merchant_id, False)
    with app.app_context():
        rules.create_rule(db.session, scope, action="review", predicate=":amount: = 123.45")
        rules.create_rule(db.session, scope, action="request_3ds", predicate=":amount: = 77.77")
        db.session.commit()
        db.session.remove()
    return {"api": Api(live.url, key), "sandbox": Sandbox(live.sandbox_url), "scope": scope, "app": app,
            "live": live}


def pay(world, amount: int, card: str = "visa", **extra) -> dict:
    api = world["api"]
    response = api.post("/v1/payments", key=str(uuid.uuid4()), amount=amount, currency="eur", confirm=True,
                        payment_method=world["sandbox"].token(card), **extra)
    assert response.status_code == 200, response.text
    return response.json()


def test_the_fraud_card_is_blocked_and_never_authorized(world):
    body = pay(world, 2500, "4100000000000019", customer_ip="81.2.69.160")
    payment = world["api"].wait_for(body["id"], "requires_payment_method")
    assert payment["last_payment_error"]["code"] == "blocked"
    assert payment["outcome"]["type"] == "blocked" and payment["outcome"]["rule"]["id"] == "rule_platform_fraud_hint"
    attempt = payment["attempts"][0]
    assert attempt["status"] == "failed" and attempt["decline_code"] == "blocked"
    assert world["sandbox"].authorizations(f"kassa-{attempt['id']}") == 0


def test_review_holds_the_capture_and_approval_captures_once(world):
    api, sandbox = world["api"], world["sandbox"]
    captures_before = sandbox.total("captures")
    body = pay(world, 12345)
    payment = api.wait_for(body["id"], "requires_capture")
    assert payment["capture_method"] == "automatic" and payment["review"]
    assert payment["outcome"]["type"] == "manual_review"
    assert sandbox.total("captures") == captures_before  # authorized, not captured
    approved = api.post(f"/v1/reviews/{payment['review']}/approve", note="Called the customer")
    assert approved.status_code == 200, approved.text
    assert api.post(f"/v1/reviews/{payment['review']}/approve").status_code == 409
    assert api.wait_for(body["id"], "succeeded")["amount_received"] == 12345
    assert sandbox.total("captures") == captures_before + 1


def test_rejecting_a_review_voids_once(world):
    api, sandbox = world["api"], world["sandbox"]
    voids_before = sandbox.total("voids")
    body = pay(world, 12345)
    payment = api.wait_for(body["id"], "requires_capture")
    app = world["app"]
    with app.app_context():
        reviews.decide(db.session, world["scope"], payment["review"], "reject", actor=None, note="Stolen card",
                       deps=deps_for(app), as_fraud=True)
        db.session.commit()
        db.session.remove()
    api.wait_for(body["id"], "canceled")
    review = api.get(f"/v1/reviews/{payment['review']}").json()
    assert review["open"] is False and review["closed_reason"] == "refunded_as_fraud"
    deadline = time.monotonic() + 45
    while sandbox.total("voids") < voids_before + 1 and time.monotonic() < deadline:
        time.sleep(0.1)  # the void runs in the worker; polled with a bound, no timing asserted
    assert sandbox.total("voids") == voids_before + 1


def test_request_3ds_challenges_any_card(world):
    api, sandbox = world["api"], world["sandbox"]
    body = pay(world, 7777, "visa", return_url="https://shop.example/back")
    payment = api.wait_for(body["id"], "requires_action")
    url = payment["next_action"]["redirect_to_url"]["url"]
    sandbox.answer_challenge(url, approve=True)
    assert api.wait_for(body["id"], "succeeded")["amount_received"] == 7777


def test_a_block_after_the_challenge_voids_counts_a_decline_and_never_captures(world):
    """Automatic capture and a 3-D Secure rule that blocks: the authorization is not captured before the rules
    run again (the sandbox does not capture a challenged sale, Stripe's connector never sells; the capture is a
    follow-up the block never stages), so the block voids it, and the velocity counters count a decline."""
    from app.payments.models import Payment
    from app.risk.velocity import Velocity

    api, sandbox, scope, app = world["api"], world["sandbox"], world["scope"], world["app"]
    with app.app_context():
        made = [rules.create_rule(db.session, scope, action="request_3ds", predicate=":amount: = 88.88").id,
                rules.create_rule(db.session, scope, action="block", predicate=":is_3d_secure: and :amount: = 88.88").id]
        db.session.commit()
        db.session.remove()
    try:
        captures_before, voids_before = sandbox.total("captures"), sandbox.total("voids")
        body = pay(world, 8888, "visa", return_url="https://shop.example/back", customer_ip="81.2.69.160")
        payment = api.wait_for(body["id"], "requires_action")
        assert payment["capture_method"] == "automatic"
        sandbox.answer_challenge(payment["next_action"]["redirect_to_url"]["url"], approve=True)
        payment = api.wait_for(body["id"], "requires_payment_method")
        assert payment["last_payment_error"]["code"] == "blocked" and payment["outcome"]["type"] == "blocked"
        assert payment["amount_received"] == 0
        for _ in range(300):
            if sandbox.total("voids") > voids_before:
                break
            time.sleep(0.1)  # the void runs in the worker; polled with a bound, no timing asserted
        assert sandbox.total("voids") == voids_before + 1
        assert sandbox.total("captures") == captures_before
        with app.app_context():
            fingerprint = db.session.get(Payment, body["id"]).card_fingerprint
            db.session.remove()
        counters = Velocity(app.extensions["redis"]).record_and_read(
            payment_id="reader", merchant_id=scope.merchant_id, livemode=False, fingerprint=fingerprint,
            email=None, ip="81.2.69.160", currency="EUR", amount=0, record=False)
        assert counters["card_declines_24h"] >= 1 and counters["ip_declines_24h"] >= 1
    finally:
        with app.app_context():
            for rule_id in made:
                rules.delete_rule(db.session, scope, rule_id)
            db.session.commit()
            db.session.remove()


def test_the_shoppers_ip_comes_from_the_checkout_request_never_from_a_forged_header(world):
    api, sandbox = world["api"], world["sandbox"]
    created = api.post("/v1/checkout/sessions", amount=2000, currency="eur",
                       success_url="https://shop.example/thanks")
    assert created.status_code == 200, created.text
    page = created.json()["url"]
    http = session()
    answer = http.post(page.rstrip("/") + "/confirm", json={"token": sandbox.token("visa")},
                       headers={"X-Forwarded-For": "203.0.113.66"}, timeout=30)
    assert answer.status_code == 200, answer.text
    payment_id = api.get(f"/v1/checkout/sessions/{created.json()['id']}").json()["payment"]
    payment = api.wait_for(payment_id, "succeeded")
    assert payment["customer_ip"] == "127.0.0.1"  # TRUSTED_PROXIES=0: the header is ignored
    # An API confirmation takes the shopper's address only from customer_ip, never from a header.
    response = api.http.post(api.base_url + "/v1/payments", json={
        "amount": 1500, "currency": "eur", "confirm": True, "payment_method": sandbox.token("visa")},
        headers={"X-Forwarded-For": "203.0.113.66", "Idempotency-Key": str(uuid.uuid4())}, timeout=30)
    assert response.json()["customer_ip"] is None


VELOCITY_SCRIPT = """
import sys
import redis
from app.risk.velocity import Velocity
client = redis.Redis.from_url(sys.argv[1])
for n in range(int(sys.argv[3])):
    Velocity(client).record_and_read(payment_id=f"{sys.argv[2]}-{n}", merchant_id="mer_velocity", livemode=False,
                                     fingerprint="fp_velocity", email="v@example.com", ip="198.51.100.9",
                                     currency="EUR", amount=100)
"""


def test_velocity_is_counted_across_processes(app):
    url = os.environ["REDIS_URL"]
    processes = [subprocess.Popen([sys.executable, "-c", VELOCITY_SCRIPT, url, f"proc{i}", "5"]) for i in range(3)]
    assert [p.wait(timeout=60) for p in processes] == [0, 0, 0]
    from app.risk.velocity import Velocity
    seen = Velocity(app.extensions["redis"]).record_and_read(
        payment_id="reader", merchant_id="mer_velocity", livemode=False, fingerprint="fp_velocity",
        email="v@example.com", ip="198.51.100.9", currency="EUR", amount=100, record=False)
    assert seen["card_payments_10m"] == 15 and seen["ip_payments_1h"] == 15 and seen["email_payments_24h"] == 15
    assert seen["card_amount_24h_minor"] == 1500
