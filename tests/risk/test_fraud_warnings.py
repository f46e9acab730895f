"""Early fraud warnings (issue 23): Stripe's ``radar.early_fraud_warning.*`` events mapped and applied through
/hooks/stripe (the platform's live and test secrets), scoped to the merchant and mode of the payment they name;
the merchant's event, GET /v1/radar/early_fraud_warnings (one book only), the payment page, and the labels of the
learned score (live warnings only). The sandbox's warnings end to end: test_fraud_warnings_e2e.py."""
import hashlib
import hmac
import json
import time

import pytest
from sqlalchemy import select

from app.events import Event
from app.ids import new_id
from app.models_base import utcnow
from app.psp.models import PspCallback
from app.psp.stripe_connector import StripeConnector
from app.risk.fraud_warnings import EarlyFraudWarning
from app.risk.learning import training
from app.risk.models import Assessment
from app.scoping import Scope
from tests import factories
from tests.admin.conftest import login_as
from tests.dashboard.conftest import stored_payment
from tests.payments.conftest import mint_key
from tests.psp.fake_stripe import stripe_fixture

TEST_SECRET = "whsec_efw_test"
LIVE_SECRET = "whsec_efw_live"


@pytest.fixture(scope="module")
def app(database):
    """An app with the platform's Stripe webhook secrets for both modes."""
    from app import create_app
    from app.extensions import db
    from tests.conftest import app_config

    application = create_app(app_config(database, CONFIRM_WAIT_SECONDS=0, API_RATE_LIMIT="1000000/second",
                                        STRIPE_WEBHOOK_SECRET_TEST=TEST_SECRET, STRIPE_WEBHOOK_SECRET_LIVE=LIVE_SECRET))
    with application.app_context():
        application.extensions["redis"].flushdb()
    yield application
    with application.app_context():
        db.session.remove()
        db.engine.dispose()


def warning(**overrides) -> dict:
    """Stripe's example early fraud warning (fixtures3.json), naming the PaymentIntent as Stripe does."""
    body = stripe_fixture("radar.early_fraud_warning")
    body.update(overrides)
    return body


def signed(event_type: str, obj: dict, event_id: str, *, livemode: bool, secret: str,
           created: int | None = None) -> tuple[dict, bytes]:
    event = stripe_fixture("event")
    event.update({"id": event_id, "type": event_type, "created": created or int(time.time()), "livemode": livemode,
                  "data": {"object": obj}})
    body = json.dumps(event).encode()
    timestamp = int(time.time())
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return {"Stripe-Signature": f"t={timestamp},v1={digest}", "Content-Type": "application/json"}, body


def post(client, event_type: str, obj: dict, event_id: str, *, livemode: bool = True, created: int | None = None):
    headers, body = signed(event_type, obj, event_id, livemode=livemode,
                           secret=LIVE_SECRET if livemode else TEST_SECRET, created=created)
    answer = client.post("/hooks/stripe", data=body, headers=headers)
    assert answer.status_code == 200, answer.get_data(as_text=True)
    return answer.json


def stripe_payment(session, scope: Scope, intent: str, *, created=None):
    """A captured payment Stripe made (its PaymentIntent id as the PSP reference), assessed at confirmation."""
    payment = stored_payment(session, scope, amount=5000, currency="EUR", connector="stripe", psp_reference=intent,
                             credential="platform", created_at=created or utcnow())
    session.add(scope.new(Assessment, id=new_id("rska"), payment_id=payment.id, stage="confirmation",
                          signals={"amount": "50.00", "currency": "eur"}, score=10, level="normal",
                          weights_version="v1", outcome="allow", created_at=payment.created_at))
    session.commit()
    return payment


def callback_row(session, event_id: str) -> PspCallback:
    return session.scalars(select(PspCallback).where(PspCallback.callback_id == event_id)).one()


def test_the_stripe_events_are_mapped():
    connector = StripeConnector(api_key=None, webhook_secret=TEST_SECRET)
    event = connector.parse_callback(*signed("radar.early_fraud_warning.created", warning(payment_intent="pi_1"),
                                             "evt_map", livemode=False, secret=TEST_SECRET))
    assert (event.type, event.psp_reference, event.livemode) == ("early_fraud_warning.created", "pi_1", False)
    assert {k: event.data[k] for k in ("id", "charge", "payment_intent", "fraud_type", "actionable", "created")} == {
        "id": "issfr_1Pgc79B7WZ01zgkWxwDzEIPX", "charge": "ch_1234", "payment_intent": "pi_1", "fraud_type": "misc",
        "actionable": True, "created": 1234567890}
    assert event.data["stripe_event_type"] == "radar.early_fraud_warning.created"
    updated = connector.parse_callback(*signed("radar.early_fraud_warning.updated",
                                               warning(payment_intent={"id": "pi_2", "object": "payment_intent"}),
                                               "evt_map2", livemode=False, secret=TEST_SECRET))
    assert (updated.type, updated.psp_reference) == ("early_fraud_warning.updated", "pi_2")
    # Stripe's example as it is names only the charge, which Kassa does not keep: that is the reference then.
    bare = connector.parse_callback(*signed("radar.early_fraud_warning.created", warning(), "evt_map3",
                                            livemode=False, secret=TEST_SECRET))
    assert bare.psp_reference == "ch_1234"


def test_a_live_warning_is_kept_announced_listed_shown_and_labels_the_payment(app, client, db_session):
    merchant = factories.merchant(db_session, name="Warned Shop")
    owner = factories.member(db_session, merchant, "owner", email=f"owner-{merchant.id.lower()}@example.com")
    other = factories.merchant(db_session, name="Other Shop")
    db_session.commit()
    live = Scope(merchant.id, True)
    payment = stripe_payment(db_session, live, "pi_efw_live")
    created = int(time.time()) - 60

    post(client, "radar.early_fraud_warning.created",
         warning(payment_intent="pi_efw_live", fraud_type="made_with_stolen_card", created=created), "evt_efw_1")
    assert post(client, "radar.early_fraud_warning.created", warning(payment_intent="pi_efw_live"),
                "evt_efw_1")["duplicate"] is True
    db_session.rollback()
    assert callback_row(db_session, "evt_efw_1").result == "applied"
    row = db_session.scalars(live.select(EarlyFraudWarning)).one()
    assert (row.payment_id, row.psp, row.psp_reference, row.charge_reference, row.fraud_type, row.actionable,
            int(row.psp_created.timestamp())) == (payment.id, "stripe", "issfr_1Pgc79B7WZ01zgkWxwDzEIPX", "ch_1234",
                                                  "made_with_stolen_card", True, created)
    [announced] = db_session.scalars(live.select(Event, Event.object_id == row.id)).all()
    assert announced.type == "radar.early_fraud_warning.created"
    assert announced.data["payment_intent"] == payment.id and announced.data["object"] == "radar.early_fraud_warning"

    # The merchant's live key lists and retrieves it; the test-mode key and another merchant's see nothing.
    live_key = {"Authorization": f"Bearer {mint_key(db_session, merchant.id, livemode=True)}"}
    listed = client.get("/v1/radar/early_fraud_warnings", headers=live_key)
    assert listed.status_code == 200, listed.json
    assert [w["id"] for w in listed.json["data"]] == [row.id] and listed.json["url"] == "/v1/radar/early_fraud_warnings"
    assert listed.json["data"][0] | {"created": 0} == {
        "id": row.id, "object": "radar.early_fraud_warning", "actionable": True, "charge": None, "created": 0,
        "fraud_type": "made_with_stolen_card", "livemode": True, "payment_intent": payment.id, "payment": payment.id,
        "psp": "stripe", "psp_reference": "issfr_1Pgc79B7WZ01zgkWxwDzEIPX", "psp_charge": "ch_1234"}
    assert client.get(f"/v1/radar/early_fraud_warnings?payment_intent={payment.id}", headers=live_key
                      ).json["data"][0]["id"] == row.id
    assert client.get("/v1/radar/early_fraud_warnings?payment_intent=pay_other", headers=live_key).json["data"] == []
    assert client.get(f"/v1/radar/early_fraud_warnings/{row.id}", headers=live_key).json["id"] == row.id
    for key in (mint_key(db_session, merchant.id), mint_key(db_session, other.id, livemode=True)):
        auth = {"Authorization": f"Bearer {key}"}
        assert client.get("/v1/radar/early_fraud_warnings", headers=auth).json["data"] == []
        assert client.get(f"/v1/radar/early_fraud_warnings/{row.id}", headers=auth).status_code == 404

    # A live payment with a warning is fraudulent for training, however recent.
    labels = {r.payment_id: r.fraudulent for r in training.labelled_payments(db_session, now=utcnow())}
    assert labels.get(payment.id) is True

    # The payment page shows it, with the issuer's advice while it is actionable.
    login_as(client, db_session, owner)
    html = client.get(f"/dashboard/{merchant.id}/live/payments/{payment.id}").get_data(as_text=True)
    assert f'data-fraud-warning-row="{row.id}"' in html and "made with stolen card" in html
    assert f'data-fraud-warning="{row.id}"' in html and "radar.early_fraud_warning.created" in html

    # Updated (Stripe: no longer actionable once refunded): one more event; an older notice changes nothing.
    post(client, "radar.early_fraud_warning.updated",
         warning(payment_intent="pi_efw_live", fraud_type="made_with_stolen_card", actionable=False), "evt_efw_2")
    post(client, "radar.early_fraud_warning.updated",
         warning(payment_intent="pi_efw_live", fraud_type="made_with_stolen_card", actionable=True), "evt_efw_old",
         created=created - 3600)
    db_session.rollback()
    db_session.expire_all()
    assert db_session.scalars(live.select(EarlyFraudWarning)).one().actionable is False
    types = sorted(e.type for e in db_session.scalars(live.select(Event, Event.object_id == row.id)))
    assert types == ["radar.early_fraud_warning.created", "radar.early_fraud_warning.updated"]
    html = client.get(f"/dashboard/{merchant.id}/live/payments/{payment.id}").get_data(as_text=True)
    assert f'data-fraud-warning-row="{row.id}"' in html and f'data-fraud-warning="{row.id}"' not in html


def test_a_warning_acts_only_inside_the_scope_of_the_secret_that_verified_it(app, client, db_session):
    merchant = factories.merchant(db_session, name="Scoped Shop")
    db_session.commit()
    live, test = Scope(merchant.id, True), Scope(merchant.id, False)
    live_payment = stripe_payment(db_session, live, "pi_efw_scoped_live")
    test_payment = stripe_payment(db_session, test, "pi_efw_scoped_test")

    # A test-mode event (the test secret) naming the live payment is refused; nothing is kept for it.
    post(client, "radar.early_fraud_warning.created", warning(payment_intent="pi_efw_scoped_live", id="issfr_x"),
         "evt_efw_cross", livemode=False)
    db_session.rollback()
    refused = callback_row(db_session, "evt_efw_cross")
    assert refused.result == "rejected" and "live mode" in refused.last_error
    assert db_session.scalars(live.select(EarlyFraudWarning)).all() == []
    # A warning naming a charge Kassa does not know is unmatched (an operator sees it), never guessed.
    post(client, "radar.early_fraud_warning.created", warning(id="issfr_y"), "evt_efw_unknown")
    db_session.rollback()
    assert callback_row(db_session, "evt_efw_unknown").result == "unmatched"

    # A test-mode warning on a test payment is kept in the test book, and never becomes a label.
    post(client, "radar.early_fraud_warning.created", warning(payment_intent="pi_efw_scoped_test", id="issfr_z"),
         "evt_efw_test", livemode=False)
    db_session.rollback()
    kept = db_session.scalars(test.select(EarlyFraudWarning)).one()
    assert kept.payment_id == test_payment.id and kept.livemode is False
    labels = {r.payment_id for r in training.labelled_payments(db_session, now=utcnow())}
    assert test_payment.id not in labels and live_payment.id not in labels  # the live one: too young, no outcome


def test_a_merchants_own_stripe_secret_cannot_warn_about_another_merchants_payment(app, client, db_session):
    from app.crypto import SecretBox
    from app.psp.credentials import set_credentials

    signer, victim = (factories.merchant(db_session, name=name) for name in ("Signing Shop", "Victim Shop"))
    db_session.commit()
    box = SecretBox(app.config["KASSA_ENCRYPTION_KEYS"])
    set_credentials(db_session, Scope(signer.id, True), box, "stripe", secret_key="sk_live_signer",
                    webhook_secret="whsec_signer_live")
    db_session.commit()
    victims = stripe_payment(db_session, Scope(victim.id, True), "pi_efw_victim")
    headers, body = signed("radar.early_fraud_warning.created", warning(payment_intent="pi_efw_victim", id="issfr_v"),
                           "evt_efw_forged", livemode=True, secret="whsec_signer_live")
    assert client.post(f"/hooks/stripe/{signer.id}", data=body, headers=headers).status_code == 200
    db_session.rollback()
    forged = callback_row(db_session, "evt_efw_forged")
    assert forged.result == "rejected" and "another merchant" in forged.last_error
    assert db_session.scalars(select(EarlyFraudWarning).where(EarlyFraudWarning.payment_id == victims.id)).all() == []
    labels = {r.payment_id: r.fraudulent for r in training.labelled_payments(db_session, now=utcnow())}
    assert victims.id not in labels


def test_the_operators_payment_page_shows_the_payments_warnings(app, client, db_session):
    merchant = factories.merchant(db_session, name="Operated Shop")
    operator_user = factories.user(db_session, is_platform_admin=True, name="Efw Operator")
    db_session.commit()
    live = Scope(merchant.id, True)
    warned = stripe_payment(db_session, live, "pi_efw_operator")
    quiet = stripe_payment(db_session, live, "pi_efw_operator_quiet")
    post(client, "radar.early_fraud_warning.created",
         warning(payment_intent="pi_efw_operator", id="issfr_op", fraud_type="unauthorized_use_of_card"),
         "evt_efw_operator")
    db_session.rollback()
    row = db_session.scalars(live.select(EarlyFraudWarning, EarlyFraudWarning.payment_id == warned.id)).one()

    login_as(client, db_session, operator_user)
    html = client.get(f"/admin/payments/{warned.id}").get_data(as_text=True)
    assert f'data-fraud-warning-row="{row.id}"' in html and "unauthorized use of card" in html and "issfr_op" in html
    html = client.get(f"/admin/payments/{quiet.id}").get_data(as_text=True)
    assert "data-fraud-warning-row" not in html and "No early fraud warning." in html


def test_the_refund_advice_is_not_shown_once_nothing_is_left_to_refund(app, client, db_session):
    merchant = factories.merchant(db_session, name="Refunded Shop")
    owner = factories.member(db_session, merchant, "owner", email=f"owner-{merchant.id.lower()}@example.com")
    db_session.commit()
    live = Scope(merchant.id, True)
    payment = stripe_payment(db_session, live, "pi_efw_refunded")
    post(client, "radar.early_fraud_warning.created", warning(payment_intent="pi_efw_refunded", id="issfr_rf"),
         "evt_efw_refunded")
    db_session.rollback()
    row = db_session.scalars(live.select(EarlyFraudWarning, EarlyFraudWarning.payment_id == payment.id)).one()
    assert row.actionable is True
    login_as(client, db_session, owner)
    path = f"/dashboard/{merchant.id}/live/payments/{payment.id}"
    assert f'data-fraud-warning="{row.id}"' in client.get(path).get_data(as_text=True)
    # Refunded in full (the PSP may not have marked the warning unactionable yet): listed, no advice to refund.
    db_session.get(type(payment), payment.id).amount_refunded = payment.amount_received
    db_session.commit()
    html = client.get(path).get_data(as_text=True)
    assert f'data-fraud-warning-row="{row.id}"' in html and f'data-fraud-warning="{row.id}"' not in html
