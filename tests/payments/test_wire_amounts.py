"""Amounts on the wire, end to end through the API: what the real Stripe connector sends the stand-in of
Stripe's API (tests/psp/fake_stripe.py) and reads back, and the 400 naming ``amount`` for an amount the PSP
of the payment method's vault cannot take, given before anything is staged or sent (app/psp/wire.py)."""
import pytest
from sqlalchemy import func, select

from app.crypto import SecretBox
from app.jobs.payments import _run_attempt, _run_refund
from app.payments.deps import deps_for
from app.payments.gateway import gateway_for_app
from app.payments.models import Payment, PaymentAttempt
from app.psp.credentials import set_credentials
from app.scoping import Scope
from tests import factories
from tests.payments.conftest import mint_key
from tests.psp.fake_stripe import FakeStripe, payment_intent, refund

CREATE = ("POST", "/v1/payment_intents")


@pytest.fixture(scope="module")
def fake_stripe():
    server = FakeStripe()
    yield server
    server.close()


@pytest.fixture(scope="module")
def app(database, fake_stripe):
    from app import create_app
    from app.extensions import db
    from tests.conftest import app_config

    # No worker runs here: confirmations answer at once (processing); the tests run the jobs inline.
    application = create_app(app_config(database, CONFIRM_WAIT_SECONDS=0, STRIPE_API_BASE=fake_stripe.url,
                                        API_RATE_LIMIT="1000000/second"))
    with application.app_context():
        application.extensions["redis"].flushdb()
    yield application
    router = application.extensions.get("psp_router")
    if router is not None:
        router.close()
    with application.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def keys(app, db_session, fake_stripe) -> dict:
    """A merchant whose live mode charges its own Stripe account: its live key (vault stripe) and its test
    key (vault sandbox)."""
    fake_stripe.requests.clear()
    fake_stripe.answers.clear()
    merchant = factories.merchant(db_session, name="Reykjavik Wool")
    set_credentials(db_session, Scope(merchant.id, True), SecretBox(app.config["KASSA_ENCRYPTION_KEYS"]), "stripe",
                    secret_key="sk_live_reykjavik")
    db_session.commit()
    return {"live": {"Authorization": f"Bearer {mint_key(db_session, merchant.id, livemode=True)}"},
            "test": {"Authorization": f"Bearer {mint_key(db_session, merchant.id)}"},
            "merchant_id": merchant.id}


def run_attempt(app, db_session, attempt_id: str) -> None:
    """What the worker does with a staged attempt (and the capture that follows an authorization)."""
    db_session.commit()
    _run_attempt(attempt_id, deps_for(app), gateway_for_app(app))


def payments_of(db_session, merchant_id: str) -> int:
    return db_session.scalar(select(func.count()).select_from(Payment).where(Payment.merchant_id == merchant_id))


def assert_refused(response, param: str = "amount"):
    assert response.status_code == 400, response.json
    error = response.json["error"]
    assert (error["type"], error["code"], error["param"]) == ("invalid_request_error", "amount_not_representable",
                                                              param)
    return error["message"]


def test_15000_isk_reaches_stripe_as_1500000_and_is_read_back_as_15000(app, client, db_session, keys, fake_stripe):
    isk = {"amount": 1500000, "currency": "isk", "id": "pi_isk"}
    fake_stripe.answer(*CREATE, (200, payment_intent(**isk)))
    fake_stripe.answer("POST", "/v1/payment_intents/pi_isk/confirm",
                       (200, payment_intent(status="requires_capture", amount_capturable=1500000, **isk)))
    fake_stripe.answer("POST", "/v1/payment_intents/pi_isk/capture",
                       (200, payment_intent(status="succeeded", amount_received=1500000, **isk)))
    fake_stripe.answer("POST", "/v1/refunds", (200, refund(amount=400000, currency="isk", payment_intent="pi_isk")))

    created = client.post("/v1/payments", headers=keys["live"], json={
        "amount": 15000, "currency": "isk", "confirm": True, "payment_method": "pm_card_visa"})
    assert created.status_code == 200, created.json
    assert (created.json["amount"], created.json["currency"]) == (15000, "ISK")
    run_attempt(app, db_session, created.json["attempts"][0]["id"])

    # The writes (the risk screening first reads the PaymentMethod's card: a GET, app/payments/risk.py).
    create, _confirm, capture = [r for r in fake_stripe.requests if r.method == "POST"]
    assert (create.path, create.fields["amount"], create.fields["currency"]) == (CREATE[1], "1500000", "isk")
    assert capture.fields == {"amount_to_capture": "1500000"}
    payment = client.get(f"/v1/payments/{created.json['id']}", headers=keys["live"]).json
    assert (payment["status"], payment["amount"], payment["amount_received"]) == ("succeeded", 15000, 15000)
    attempts = db_session.scalars(select(PaymentAttempt).where(PaymentAttempt.payment_id == payment["id"])
                                  .order_by(PaymentAttempt.id)).all()
    assert [(a.operation, a.amount, a.psp_status) for a in attempts] == [
        ("authorize", 15000, "requires_capture"), ("capture", 15000, "succeeded")]

    refunded = client.post("/v1/refunds", headers=keys["live"], json={"payment": payment["id"], "amount": 4000})
    assert refunded.status_code == 200, refunded.json
    db_session.commit()
    _run_refund(refunded.json["id"], deps_for(app), gateway_for_app(app))
    sent = fake_stripe.requests[-1].fields
    assert (sent["payment_intent"], sent["amount"]) == ("pi_isk", "400000")
    refund_body = client.get(f"/v1/refunds/{refunded.json['id']}", headers=keys["live"]).json
    assert (refund_body["status"], refund_body["amount"]) == ("succeeded", 4000)
    assert client.get(f"/v1/payments/{payment['id']}", headers=keys["live"]).json["amount_refunded"] == 4000


def test_an_amount_stripe_cannot_take_is_refused_before_anything_is_sent(client, db_session, keys, fake_stripe):
    body = {"amount": 1235, "currency": "bhd", "confirm": True, "payment_method": "pm_card_visa"}
    message = assert_refused(client.post("/v1/payments", headers=keys["live"], json=body))
    assert message.startswith("Stripe cannot take an amount of 1235 in BHD")
    assert "multiples of 10 minor units" in message and "1230 or 1240" in message
    assert payments_of(db_session, keys["merchant_id"]) == 0 and fake_stripe.requests == []

    # The sandbox (test mode) takes ISO minor units: the same request is accepted.
    accepted = client.post("/v1/payments", headers=keys["test"], json={**body, "payment_method": "tok_visa"})
    assert accepted.status_code == 200 and accepted.json["status"] == "processing", accepted.json
    assert accepted.json["attempts"][0]["amount"] == 1235


def test_confirming_a_payment_stripe_cannot_take_changes_nothing(client, db_session, keys, fake_stripe):
    created = client.post("/v1/payments", headers=keys["live"], json={"amount": 9995, "currency": "kwd"})
    assert created.status_code == 200  # no payment method yet: no PSP chosen
    confirm = client.post(f"/v1/payments/{created.json['id']}/confirm", headers=keys["live"],
                          json={"payment_method": "pm_card_visa"})
    assert "9990 or 10000" in assert_refused(confirm)
    payment = client.get(f"/v1/payments/{created.json['id']}", headers=keys["live"]).json
    assert (payment["status"], payment["payment_method"], payment["attempts"]) == \
        ("requires_payment_method", None, [])
    assert fake_stripe.requests == []


def test_partial_captures_and_refunds_stripe_cannot_take_are_refused(app, client, db_session, keys, fake_stripe):
    bhd = {"amount": 2000, "currency": "bhd", "id": "pi_bhd"}
    fake_stripe.answer(*CREATE, (200, payment_intent(**bhd)))
    fake_stripe.answer("POST", "/v1/payment_intents/pi_bhd/confirm",
                       (200, payment_intent(status="requires_capture", amount_capturable=2000, **bhd)))
    fake_stripe.answer("POST", "/v1/payment_intents/pi_bhd/capture",
                       (200, payment_intent(status="succeeded", amount_received=1230, **bhd)))
    created = client.post("/v1/payments", headers=keys["live"], json={
        "amount": 2000, "currency": "bhd", "capture_method": "manual", "confirm": True,
        "payment_method": "pm_card_visa"})
    run_attempt(app, db_session, created.json["attempts"][0]["id"])
    payment_id = created.json["id"]
    sent = len(fake_stripe.requests)

    assert_refused(client.post(f"/v1/payments/{payment_id}/capture", headers=keys["live"], json={"amount": 1235}))
    assert len(fake_stripe.requests) == sent
    assert client.get(f"/v1/payments/{payment_id}", headers=keys["live"]).json["status"] == "requires_capture"

    captured = client.post(f"/v1/payments/{payment_id}/capture", headers=keys["live"], json={"amount": 1230})
    assert captured.status_code == 200, captured.json
    run_attempt(app, db_session, captured.json["attempts"][-1]["id"])
    assert fake_stripe.requests[-1].fields == {"amount_to_capture": "1230"}
    assert client.get(f"/v1/payments/{payment_id}", headers=keys["live"]).json["amount_received"] == 1230

    seller = captured.json["split"][0]["seller"]
    assert_refused(client.post("/v1/refunds", headers=keys["live"], json={"payment": payment_id, "amount": 5}))
    assert_refused(client.post("/v1/refunds", headers=keys["live"], json={
        "payment": payment_id, "sellers": [{"seller": seller, "amount": 5}]}), param="sellers")
    assert len(fake_stripe.requests) == sent + 1  # the capture, nothing since
    assert client.get("/v1/refunds", headers=keys["live"], query_string={"payment": payment_id}).json["data"] == []


def test_a_checkout_session_stripe_cannot_take_is_refused_when_created(client, keys):
    session = {"currency": "omr", "success_url": "https://shop.example/thanks"}
    assert "1230 or 1240" in assert_refused(client.post("/v1/checkout/sessions", headers=keys["live"],
                                                        json={**session, "amount": 1235}))
    assert_refused(client.post("/v1/checkout/sessions", headers=keys["live"], json={
        **session, "line_items": [{"name": "Scarf", "quantity": 1, "unit_amount": 1235}]}), param="line_items")
    assert client.post("/v1/checkout/sessions", headers=keys["live"],
                       json={**session, "amount": 1230}).status_code == 200
    assert client.post("/v1/checkout/sessions", headers=keys["test"],
                       json={**session, "amount": 1235}).status_code == 200
