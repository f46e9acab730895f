"""Risk end to end over HTTP: gunicorn, the worker (PSP dispatcher, scheduler) and the sandbox PSP.

Block (the sandbox's fraud card never reaches an authorization), review (authorized and held; approve captures
once, reject voids once, a concurrent approve and reject decide once, a review left open is voided by the scheduled
sweep with an alert), request_3ds (the sandbox challenges a card that would not need it), the shopper's IP
from the checkout request and never from a forged X-Forwarded-For, and velocity counted across processes.
"""
import logging
import os
import subprocess
import sys
import threading
import time
import uuid
from datetime import timedelta

import pytest

from app.extensions import db
from app.payments.deps import deps_for
from app.risk import reviews, rules
from app.risk.errors import ReviewDecided
from app.scoping import Scope
from tests.payments import conftest as payments_conftest
from tests.payments.live_helpers import Api, Sandbox, new_merchant_key, session


live = payments_conftest.live  # the fixture: gunicorn + worker + sandbox on this module's database


@pytest.fixture(scope="module")
def world(app, live):
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


def follow_ups_done(api, payment_id: str) -> tuple[list[tuple[str, str]], dict]:
    """The payment's captures and voids once the worker has run them (polled with a bound), and its
    authorization attempt."""
    deadline = time.monotonic() + 45
    while True:
        attempts = api.payment(payment_id)["attempts"]
        follow_ups = [a for a in attempts if a["operation"] in ("capture", "void")]
        if (follow_ups and all(a["status"] == "succeeded" for a in follow_ups)) or time.monotonic() > deadline:
            return [(a["operation"], a["status"]) for a in follow_ups], attempts[0]
        time.sleep(0.1)  # the worker calls the sandbox; polled with a bound, no timing asserted


def status_at_the_sandbox(world, authorization: dict) -> str:
    """The authorization's status as its acquirer at the sandbox answers it (not a counter other tests move)."""
    services = world["live"].services
    port = {"sandbox": services.ports.sandbox_a, "sandbox_b": services.ports.sandbox_b}[authorization["connector"]]
    answer = session().get(f"http://127.0.0.1:{port}/v1/authorizations/{authorization['psp_reference']}",
                           headers={"Authorization": f"Bearer {services.env['SANDBOX_PSP_SECRET']}"}, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()["status"]


def test_review_holds_the_capture_and_approval_captures_once(world):
    api = world["api"]
    body = pay(world, 12345)
    payment = api.wait_for(body["id"], "requires_capture")
    assert payment["capture_method"] == "automatic" and payment["review"]
    assert payment["outcome"]["type"] == "manual_review"
    assert status_at_the_sandbox(world, payment["attempts"][0]) == "authorized"  # authorized, not captured
    approved = api.post(f"/v1/reviews/{payment['review']}/approve", note="Called the customer")
    assert approved.status_code == 200, approved.text
    assert api.post(f"/v1/reviews/{payment['review']}/approve").status_code == 409
    assert api.wait_for(body["id"], "succeeded")["amount_received"] == 12345
    follow_ups, authorization = follow_ups_done(api, body["id"])
    assert follow_ups == [("capture", "succeeded")] and status_at_the_sandbox(world, authorization) == "captured"


def test_rejecting_a_review_voids_once(world):
    api = world["api"]
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
    follow_ups, authorization = follow_ups_done(api, body["id"])
    assert follow_ups == [("void", "succeeded")] and status_at_the_sandbox(world, authorization) == "voided"


def test_a_concurrent_approve_over_http_and_reject_decide_once(world):
    """The merchant approves through the API while an operator rejects (the console's service call): one decision
    wins, the other is refused 409, and the sandbox sees one capture or one void, never both."""
    api, app, scope = world["api"], world["app"], world["scope"]
    body = pay(world, 12345)
    review_id = api.wait_for(body["id"], "requires_capture")["review"]
    barrier = threading.Barrier(2)
    outcomes = {}

    def approve():
        barrier.wait()
        outcomes["approve"] = api.post(f"/v1/reviews/{review_id}/approve", note="Known customer").status_code

    def reject():
        with app.app_context():
            barrier.wait()
            try:
                reviews.decide(db.session, scope, review_id, "reject", actor=None, note="Stolen card",
                               deps=deps_for(app))
                db.session.commit()
                outcomes["reject"] = 200
            except ReviewDecided:
                db.session.rollback()
                outcomes["reject"] = 409
            finally:
                db.session.remove()

    threads = [threading.Thread(target=approve), threading.Thread(target=reject)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(outcomes.values()) == [200, 409], outcomes
    approved = outcomes["approve"] == 200
    api.wait_for(body["id"], "succeeded" if approved else "canceled")
    review = api.get(f"/v1/reviews/{review_id}").json()
    assert review["open"] is False and review["closed_reason"] == ("approved" if approved else "refunded")
    # One follow-up, the winner's, done at the sandbox; the authorization there is in the winner's state.
    follow_ups, authorization = follow_ups_done(api, body["id"])
    assert follow_ups == [("capture" if approved else "void", "succeeded")]
    assert status_at_the_sandbox(world, authorization) == ("captured" if approved else "voided")


def test_a_review_left_open_is_voided_by_the_sweep_with_an_alert(world, caplog):
    """The scheduled sweep (app.jobs.risk.expire_reviews) voids a review still open when it is due, before the
    authorization would expire: the worker voids at the sandbox, the review closes timed_out, an ALERT is logged and
    audited. Time is driven through the row (its expires_at), not waited for."""
    from app.accounts.audit import AuditEntry
    from app.jobs.risk import expire_reviews
    from app.risk.models import Review

    api, app, scope = world["api"], world["app"], world["scope"]
    body = pay(world, 12345)
    payment = api.wait_for(body["id"], "requires_capture")
    review_id = payment["review"]
    assert api.get(f"/v1/reviews/{review_id}").json()["expires_at"] < payment["created"] + 7 * 86400
    with app.app_context():
        review = scope.get(db.session, Review, review_id)
        review.expires_at = review.expires_at - timedelta(days=30)  # as if nobody decided for days
        db.session.commit()
        db.session.remove()
    with caplog.at_level(logging.ERROR, logger="app.risk.reviews"), app.app_context():
        assert review_id in expire_reviews()
    assert any(record.levelno == logging.ERROR and record.getMessage().startswith(f"ALERT risk review {review_id}")
               for record in caplog.records)
    api.wait_for(body["id"], "canceled")
    review = api.get(f"/v1/reviews/{review_id}").json()
    assert review["open"] is False and review["closed_reason"] == "timed_out"
    follow_ups, authorization = follow_ups_done(api, body["id"])
    assert follow_ups == [("void", "succeeded")] and status_at_the_sandbox(world, authorization) == "voided"
    with app.app_context():
        [entry] = db.session.query(AuditEntry).filter_by(action="risk.review.timed_out", target=review_id).all()
        assert entry.merchant_id == scope.merchant_id and entry.details["payment"] == body["id"]
        db.session.remove()


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
        body = pay(world, 8888, "visa", return_url="https://shop.example/back", customer_ip="81.2.69.160")
        payment = api.wait_for(body["id"], "requires_action")
        assert payment["capture_method"] == "automatic"
        sandbox.answer_challenge(payment["next_action"]["redirect_to_url"]["url"], approve=True)
        payment = api.wait_for(body["id"], "requires_payment_method")
        assert payment["last_payment_error"]["code"] == "blocked" and payment["outcome"]["type"] == "blocked"
        assert payment["amount_received"] == 0
        follow_ups, authorization = follow_ups_done(api, body["id"])
        assert follow_ups == [("void", "succeeded")]  # and no capture
        assert status_at_the_sandbox(world, authorization) == "voided"
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
