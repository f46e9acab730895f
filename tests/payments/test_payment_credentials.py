"""The credential a payment was made with, end to end through the API, the jobs and the real router and Stripe
connector (against the stand-in of Stripe's API, tests/psp/fake_stripe.py): after the merchant replaces or
deletes its Stripe credentials, the capture and the refund of an earlier payment still go to the account that
holds it, and a payment whose credential is gone is refused and marked for a person, never sent elsewhere
(issue 14 review)."""
import pytest
from sqlalchemy import update

from app.crypto import SecretBox
from app.jobs.payments import _run_attempt, _run_refund
from app.payments.deps import deps_for
from app.payments.gateway import gateway_for_app
from app.payments.models import Payment, PaymentAttempt, Refund
from app.psp.credentials import delete_credentials, set_credentials
from app.scoping import Scope
from tests import factories
from tests.payments.conftest import mint_key
from tests.psp.fake_stripe import FakeStripe, payment_intent, refund


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

    # No worker runs here: the tests run the jobs inline. The platform's live key exists, so that a switch
    # to the platform's account would show.
    application = create_app(app_config(database, CONFIRM_WAIT_SECONDS=0, STRIPE_API_BASE=fake_stripe.url,
                                        STRIPE_API_KEY_LIVE="sk_live_platform", API_RATE_LIMIT="1000000/second"))
    with application.app_context():
        application.extensions["redis"].flushdb()
    yield application
    router = application.extensions.get("psp_router")
    if router is not None:
        router.close()
    with application.app_context():
        db.session.remove()
        db.engine.dispose()


def keys_sent(fake_stripe) -> set[str]:
    return {r.headers["Authorization"] for r in fake_stripe.requests}


def authorized_payment(app, client, db_session, fake_stripe, auth) -> dict:
    fake_stripe.answer("POST", "/v1/payment_intents", (200, payment_intent()))
    fake_stripe.answer("POST", "/v1/payment_intents/pi_kassa_1/confirm",
                       (200, payment_intent(status="requires_capture", amount_capturable=2500)))
    created = client.post("/v1/payments", headers=auth, json={
        "amount": 2500, "currency": "eur", "confirm": True, "capture_method": "manual",
        "payment_method": f"pm_card_{len(fake_stripe.requests)}"})
    assert created.status_code == 200, created.json
    db_session.commit()
    _run_attempt(created.json["attempts"][0]["id"], deps_for(app), gateway_for_app(app))
    return created.json


def test_capture_and_refund_go_to_the_account_that_made_the_payment(app, client, db_session, fake_stripe):
    merchant = factories.merchant(db_session, name="Moving Shop")
    scope = Scope(merchant.id, True)
    box = SecretBox(app.config["KASSA_ENCRYPTION_KEYS"])
    old = set_credentials(db_session, scope, box, "stripe", secret_key="sk_live_old_account").id
    db_session.commit()
    auth = {"Authorization": f"Bearer {mint_key(db_session, merchant.id, livemode=True)}"}
    fake_stripe.requests.clear()
    payment = authorized_payment(app, client, db_session, fake_stripe, auth)
    assert keys_sent(fake_stripe) == {"Bearer sk_live_old_account"}
    db_session.expire_all()
    assert db_session.get(Payment, payment["id"]).credential == old

    # The merchant moves to another Stripe account: the earlier payment is captured where it is held.
    new = set_credentials(db_session, scope, box, "stripe", secret_key="sk_live_new_account").id
    db_session.commit()
    fake_stripe.requests.clear()
    fake_stripe.answer("POST", "/v1/payment_intents/pi_kassa_1/capture",
                       (200, payment_intent(status="succeeded", amount_received=2500)))
    captured = client.post(f"/v1/payments/{payment['id']}/capture", headers=auth, json={})
    assert captured.status_code == 200, captured.json
    db_session.commit()
    _run_attempt(captured.json["attempts"][-1]["id"], deps_for(app), gateway_for_app(app))
    assert keys_sent(fake_stripe) == {"Bearer sk_live_old_account"}
    shown = client.get(f"/v1/payments/{payment['id']}", headers=auth).json
    assert shown["status"] == "succeeded"
    assert shown["credential"] == old and {a["credential"] for a in shown["attempts"]} == {old}

    # ...and refunded there after the merchant deleted its credentials altogether.
    assert delete_credentials(db_session, scope, "stripe")
    db_session.commit()
    fake_stripe.requests.clear()
    fake_stripe.answer("POST", "/v1/refunds", (200, refund(amount=700)))
    refunded = client.post("/v1/refunds", headers=auth, json={"payment": payment["id"], "amount": 700})
    assert refunded.status_code == 200, refunded.json
    db_session.commit()
    _run_refund(refunded.json["id"], deps_for(app), gateway_for_app(app))
    assert keys_sent(fake_stripe) == {"Bearer sk_live_old_account"}
    shown_refund = client.get(f"/v1/refunds/{refunded.json['id']}", headers=auth).json
    assert shown_refund["status"] == "succeeded" and shown_refund["credential"] == old
    db_session.expire_all()
    assert db_session.get(Refund, refunded.json["id"]).credential == old != new


def test_a_payment_whose_credential_is_gone_is_refused_and_needs_attention(app, client, db_session, fake_stripe):
    merchant = factories.merchant(db_session, name="Lost Keys")
    scope = Scope(merchant.id, True)
    box = SecretBox(app.config["KASSA_ENCRYPTION_KEYS"])
    set_credentials(db_session, scope, box, "stripe", secret_key="sk_live_lost_account")
    db_session.commit()
    auth = {"Authorization": f"Bearer {mint_key(db_session, merchant.id, livemode=True)}"}
    payment = authorized_payment(app, client, db_session, fake_stripe, auth)
    # The credential row vanished behind Kassa's back (it never deletes one); the merchant has a new one.
    db_session.execute(update(Payment).where(Payment.id == payment["id"]).values(credential="pcr_vanished"))
    set_credentials(db_session, scope, box, "stripe", secret_key="sk_live_other_account")
    db_session.commit()

    fake_stripe.requests.clear()
    captured = client.post(f"/v1/payments/{payment['id']}/capture", headers=auth, json={})
    assert captured.status_code == 200, captured.json
    db_session.commit()
    capture_id = captured.json["attempts"][-1]["id"]
    _run_attempt(capture_id, deps_for(app), gateway_for_app(app))
    assert fake_stripe.requests == []  # neither the merchant's new account nor the platform's
    db_session.expire_all()
    attempt = db_session.get(PaymentAttempt, capture_id)
    assert attempt.credential == "pcr_vanished" and attempt.attention_since is not None
    assert "pcr_vanished" in attempt.attention_reason and "not sent" in attempt.attention_reason
    body = client.get(f"/v1/payments/{payment['id']}", headers=auth).json
    assert body["status"] == "requires_capture" and body["amount_received"] == 0
