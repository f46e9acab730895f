"""PSP callbacks acting on payments, through the hooks (Flask test client) and a scripted PSP.

The scope of a callback: a merchant who signs an event with its own Stripe secret naming another
merchant's PaymentIntent, in test or in live mode, changes nothing of that payment, its disputes or its
events, and the callback is recorded as rejected; the platform's account does not speak for merchants
with their own; a test-mode secret does not speak for live payments.

Refunds the PSP reports failed after they succeeded (Stripe's charge.refund.updated / refund.failed, the
sandbox's refund.updated) are un-booked by a reversing posting, once.
"""
from dataclasses import replace
import hashlib
import hmac
import json
import time

import pytest
from sqlalchemy import func, select

from app.crypto import SecretBox
from app.disputes.models import Dispute
from app.events import Event
from app.jobs.payments import _run_attempt, _run_refund
from app.ledger.integration import ledger_hmac_key
from app.ledger.models import JournalTransaction
from app.ledger.queries import transaction_legs
from app.payments import idempotency
from app.payments.models import Payment, PaymentAttempt, PaymentOrder, Refund
from app.payments.service import create_seller
from app.psp.credentials import load_credentials, set_credentials
from app.psp.interfaces import Outcome
from app.psp.models import PspCallback
from app.scoping import Scope
from tests import factories
from tests.payments.helpers import ScriptedGateway, event_types, ledger_balances, make_deps, result
from tests.psp.fake_stripe import payment_intent, stripe_fixture
from tests.psp.fake_stripe import refund as stripe_refund

PLATFORM_SECRET = "whsec_platform_callbacks"
SANDBOX_SECRET = "sandbox-callbacks-secret"


@pytest.fixture(scope="module")
def app(database):
    """The app with the platform's Stripe and sandbox webhook secrets, and the tests' payments deps."""
    from app import create_app
    from app.extensions import db
    from tests.conftest import app_config

    application = create_app(app_config(database, CONFIRM_WAIT_SECONDS=0, STRIPE_WEBHOOK_SECRET=PLATFORM_SECRET,
                                        SANDBOX_WEBHOOK_SECRET=SANDBOX_SECRET))
    # The callback handlers take the app's deps: the same ledger key as the tests' postings, no RQ.
    application.extensions["payments_deps"] = make_deps(ledger_hmac_key=ledger_hmac_key(application))
    with application.app_context():
        application.extensions["redis"].flushdb()
    yield application
    with application.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def deps(app):
    return app.extensions["payments_deps"]


def signature(body: bytes, secret: str) -> str:
    """``t=<unix>,v1=<HMAC-SHA256(secret, "t.body")>``: Stripe's scheme, and the sandbox's."""
    timestamp = int(time.time())
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def post_stripe(client, path: str, event: dict, secret: str):
    body = json.dumps(event).encode()
    return client.post(path, data=body, headers={"Content-Type": "application/json",
                                                 "Stripe-Signature": signature(body, secret)})


def post_sandbox(client, callback: dict, secret: str = SANDBOX_SECRET):
    body = json.dumps(callback).encode()
    return client.post("/hooks/sandbox", data=body, headers={"Content-Type": "application/json",
                                                             "Sandbox-Signature": signature(body, secret)})


def stripe_event(event_id: str, stripe_type: str, obj: dict, *, livemode: bool = False) -> dict:
    event = stripe_fixture("event")
    event.update({"id": event_id, "type": stripe_type, "created": int(time.time()), "livemode": livemode,
                  "data": {"object": obj}})
    return event


def intent_succeeded(event_id: str, intent_id: str, *, livemode: bool = False) -> dict:
    """What a shopper-visible PaymentIntent id is enough to forge: "this payment was authorized"."""
    return stripe_event(event_id, "payment_intent.amount_capturable_updated",
                        payment_intent(id=intent_id, status="requires_capture", livemode=livemode),
                        livemode=livemode)


def dispute_created(event_id: str, intent_id: str, *, livemode: bool = False) -> dict:
    dispute = stripe_fixture("dispute")
    dispute.update({"id": f"du_{event_id}", "payment_intent": intent_id, "amount": 1000, "currency": "usd",
                    "status": "needs_response", "reason": "fraudulent", "livemode": livemode})
    return stripe_event(event_id, "charge.dispute.created", dispute, livemode=livemode)


def callback_row(db_session, callback_id: str) -> PspCallback:
    db_session.rollback()  # read what the view committed
    return db_session.scalars(select(PspCallback).where(PspCallback.callback_id == callback_id)).one()


def run(db_session, scope, deps, operation, params):
    return idempotency.execute(db_session, scope, operation, params, key=None, deps=deps, path="/test")


def stripe_payment_in_3ds(db_session, scope, deps, intent_id: str, credential: str | None = None) -> str:
    """A payment of ``scope`` whose Stripe authorization waits for 3-D Secure (made with ``credential`` when
    named, as the router reports it); its id."""
    stripe_deps = replace(deps, test_vault="stripe")  # test mode charging Stripe too: pm_ tokens
    body = run(db_session, scope, stripe_deps, "payment.create", {
        "amount": 1000, "currency": "USD", "capture_method": "manual",
        "payment_method": f"pm_card_{scope.merchant_id.lower()}_{intent_id.lower()}", "confirm": True}).body
    _run_attempt(body["attempts"][0]["id"], deps, ScriptedGateway(authorize_results=[result(
        Outcome.REQUIRES_ACTION, connector="stripe", psp_reference=intent_id, status="requires_action",
        action_url=f"https://hooks.stripe.com/3d_secure/{intent_id}", credential=credential)]))
    return body["id"]


def snapshot(db_session, scope, payment_id: str) -> tuple:
    """Everything a forged callback could change about a payment: its row, attempts, disputes and events."""
    db_session.rollback()
    payment = db_session.get(Payment, payment_id)
    attempts = db_session.scalars(scope.select(PaymentAttempt, PaymentAttempt.payment_id == payment_id)
                                  .order_by(PaymentAttempt.id)).all()
    disputes = db_session.scalar(select(func.count()).select_from(Dispute).where(Dispute.merchant_id == scope.merchant_id))
    events = db_session.scalars(scope.select(Event).order_by(Event.id).with_only_columns(Event.id)).all()
    return ((payment.status, payment.amount_capturable, payment.authorized_at),
            [(a.id, a.status) for a in attempts], disputes, events)


@pytest.fixture
def merchants(app, db_session):
    """Victim V (no Stripe account of its own) and M, who has its own Stripe account in both modes."""
    victim = factories.merchant(db_session, name="Victim")
    attacker = factories.merchant(db_session, name="Mallory")
    box = SecretBox(app.config["KASSA_ENCRYPTION_KEYS"])
    for livemode in (False, True):
        mode = "live" if livemode else "test"
        set_credentials(db_session, Scope(attacker.id, livemode), box, "stripe", secret_key=f"sk_{mode}_m",
                        webhook_secret=f"whsec_m_{mode}")
    db_session.commit()
    return victim, attacker


# -- the scope of a callback -------------------------------------------------------------------------------

@pytest.mark.parametrize("livemode", [False, True], ids=["test", "live"])
def test_a_merchant_cannot_sign_events_about_another_merchants_payment(client, db_session, deps, merchants,
                                                                        livemode):
    victim, attacker = merchants
    scope = Scope(victim.id, livemode)
    payment_id = stripe_payment_in_3ds(db_session, scope, deps, f"pi_victim_{livemode}")
    before = snapshot(db_session, scope, payment_id)
    secret = f"whsec_m_{'live' if livemode else 'test'}"
    path = f"/hooks/stripe/{attacker.id}"

    for event in (intent_succeeded(f"evt_forged_{livemode}", f"pi_victim_{livemode}", livemode=livemode),
                  dispute_created(f"evt_dispute_{livemode}", f"pi_victim_{livemode}", livemode=livemode)):
        answer = post_stripe(client, path, event, secret)
        assert answer.status_code == 200  # its signature is good: stored, and refused
        row = callback_row(db_session, event["id"])
        assert row.result == "rejected" and "another merchant" in row.last_error
        assert row.merchant_id is None and row.event_id is None
        assert row.verified_with.startswith("pcr_") and (row.scope_merchant_id, row.livemode) == (attacker.id, livemode)

    assert snapshot(db_session, scope, payment_id) == before
    assert snapshot(db_session, Scope(attacker.id, livemode), payment_id)[2:] == (0, [])


def test_the_merchants_own_secret_moves_its_own_payment(client, db_session, deps, merchants):
    _, merchant = merchants
    scope = Scope(merchant.id, False)
    payment_id = stripe_payment_in_3ds(db_session, scope, deps, "pi_own")
    answer = post_stripe(client, f"/hooks/stripe/{merchant.id}", intent_succeeded("evt_own", "pi_own"), "whsec_m_test")
    assert answer.status_code == 200
    row = callback_row(db_session, "evt_own")
    assert row.result == "applied" and row.merchant_id == merchant.id
    assert db_session.get(Payment, payment_id).status == "requires_capture"
    # Its authorization had recorded no credential: the one whose secret verified the callback holds it.
    assert db_session.get(Payment, payment_id).credential == row.verified_with


def test_the_platform_account_does_not_speak_for_merchants_with_their_own(client, db_session, deps, merchants):
    victim, attacker = merchants
    own = stripe_payment_in_3ds(db_session, Scope(attacker.id, False), deps, "pi_own_account")
    served = stripe_payment_in_3ds(db_session, Scope(victim.id, False), deps, "pi_platform_account")
    before = snapshot(db_session, Scope(attacker.id, False), own)

    post_stripe(client, "/hooks/stripe", intent_succeeded("evt_platform_own", "pi_own_account"), PLATFORM_SECRET)
    row = callback_row(db_session, "evt_platform_own")
    assert row.result == "rejected" and "its own stripe account" in row.last_error
    assert snapshot(db_session, Scope(attacker.id, False), own) == before

    post_stripe(client, "/hooks/stripe", intent_succeeded("evt_platform_served", "pi_platform_account"),
                PLATFORM_SECRET)
    assert callback_row(db_session, "evt_platform_served").result == "applied"
    assert db_session.get(Payment, served).status == "requires_capture"


def test_a_test_mode_secret_does_not_speak_for_a_live_payment(client, db_session, deps, merchants):
    victim, attacker = merchants
    own_live = stripe_payment_in_3ds(db_session, Scope(attacker.id, True), deps, "pi_own_live")
    platform_live = stripe_payment_in_3ds(db_session, Scope(victim.id, True), deps, "pi_platform_live")
    before = [snapshot(db_session, Scope(attacker.id, True), own_live),
              snapshot(db_session, Scope(victim.id, True), platform_live)]

    # The merchant's test secret, a test event, naming its own live payment.
    post_stripe(client, f"/hooks/stripe/{attacker.id}", intent_succeeded("evt_test_for_live", "pi_own_live"),
                "whsec_m_test")
    # The platform's account in test mode, and the sandbox (test mode only), naming a live payment.
    post_stripe(client, "/hooks/stripe", intent_succeeded("evt_platform_test_for_live", "pi_platform_live"),
                PLATFORM_SECRET)
    post_sandbox(client, {"id": "cb_sandbox_for_live", "type": "authorization.updated", "created": int(time.time()),
                          "data": {"id": "pi_platform_live", "status": "authorized", "acquirer": "stripe"}})
    for callback_id in ("evt_test_for_live", "evt_platform_test_for_live", "cb_sandbox_for_live"):
        row = callback_row(db_session, callback_id)
        assert row.result == "rejected" and "live mode" in row.last_error, callback_id
    assert [snapshot(db_session, Scope(attacker.id, True), own_live),
            snapshot(db_session, Scope(victim.id, True), platform_live)] == before


def test_a_callback_acts_only_on_payments_made_with_the_credential_that_verified_it(app, client, db_session, deps,
                                                                                   merchants):
    """Issue 14 review: a merchant that moved to another Stripe account hears from both; each account's secret
    speaks for the payments made with that account only (the retired one's still for its own)."""
    victim, merchant = merchants
    scope = Scope(merchant.id, False)
    box = SecretBox(app.config["KASSA_ENCRYPTION_KEYS"])
    old = load_credentials(db_session, scope, box, "stripe")["id"]
    old_payment = stripe_payment_in_3ds(db_session, scope, deps, "pi_old_account", credential=old)
    assert db_session.get(PaymentAttempt, db_session.get(Payment, old_payment).latest_attempt_id).credential == old
    new = set_credentials(db_session, scope, box, "stripe", secret_key="sk_test_m_other_account",
                          webhook_secret="whsec_m_other_account").id
    db_session.commit()
    assert new != old
    new_payment = stripe_payment_in_3ds(db_session, scope, deps, "pi_new_account", credential=new)
    before = [snapshot(db_session, scope, old_payment), snapshot(db_session, scope, new_payment)]
    path = f"/hooks/stripe/{merchant.id}"

    post_stripe(client, path, intent_succeeded("evt_new_for_old", "pi_old_account"), "whsec_m_other_account")
    post_stripe(client, path, intent_succeeded("evt_old_for_new", "pi_new_account"), "whsec_m_test")
    for callback_id, verified_with in (("evt_new_for_old", new), ("evt_old_for_new", old)):
        row = callback_row(db_session, callback_id)
        assert row.result == "rejected" and "was made with the credential" in row.last_error, callback_id
        assert row.verified_with == verified_with and row.event_id is None
    assert [snapshot(db_session, scope, old_payment), snapshot(db_session, scope, new_payment)] == before

    # Each account's secret moves its own payment: the retired account still tells about the old one.
    post_stripe(client, path, intent_succeeded("evt_old_for_old", "pi_old_account"), "whsec_m_test")
    post_stripe(client, path, intent_succeeded("evt_new_for_new", "pi_new_account"), "whsec_m_other_account")
    assert callback_row(db_session, "evt_old_for_old").result == "applied"
    assert callback_row(db_session, "evt_new_for_new").result == "applied"
    assert {db_session.get(Payment, old_payment).status, db_session.get(Payment, new_payment).status} == {
        "requires_capture"}

    # A payment made with the platform's account stays the platform's after its merchant got its own.
    served = stripe_payment_in_3ds(db_session, Scope(victim.id, False), deps, "pi_platform_before",
                                   credential="platform")
    set_credentials(db_session, Scope(victim.id, False), box, "stripe", secret_key="sk_test_v",
                    webhook_secret="whsec_v")
    db_session.commit()
    post_stripe(client, "/hooks/stripe", intent_succeeded("evt_platform_before", "pi_platform_before"),
                PLATFORM_SECRET)
    assert callback_row(db_session, "evt_platform_before").result == "applied"
    assert db_session.get(Payment, served).status == "requires_capture"
    post_stripe(client, f"/hooks/stripe/{victim.id}", intent_succeeded("evt_own_for_platform", "pi_platform_before"),
                "whsec_v")
    assert callback_row(db_session, "evt_own_for_platform").result == "rejected"


def test_the_platforms_webhook_secret_is_per_mode(database):
    """STRIPE_WEBHOOK_SECRET_LIVE verifies live events only, the test secret test events only."""
    from app import create_app
    from app.extensions import db
    from tests.conftest import app_config

    application = create_app(app_config(database, STRIPE_WEBHOOK_SECRET_TEST="whsec_platform_test",
                                        STRIPE_WEBHOOK_SECRET_LIVE="whsec_platform_live"))
    application.extensions["payments_deps"] = make_deps(ledger_hmac_key=ledger_hmac_key(application))
    client = application.test_client()
    try:
        for event_id, livemode, secret, stored in (
                ("evt_live_by_live", True, "whsec_platform_live", True),
                ("evt_test_by_test", False, "whsec_platform_test", True),
                ("evt_live_by_test", True, "whsec_platform_test", False),
                ("evt_test_by_live", False, "whsec_platform_live", False)):
            answer = post_stripe(client, "/hooks/stripe", intent_succeeded(event_id, "pi_nobody", livemode=livemode),
                                 secret)
            assert (answer.status_code == 200) == stored, event_id
            with application.app_context():
                row = db.session.scalars(select(PspCallback).where(PspCallback.callback_id == event_id)).one_or_none()
                assert (row is not None) == stored and (row is None or row.livemode == livemode)
                db.session.remove()
    finally:
        with application.app_context():
            db.session.remove()
            db.engine.dispose()


# -- refunds reported failed after they succeeded ----------------------------------------------------------

def captured_split_payment(db_session, scope, deps, connector: str = "sandbox") -> tuple[dict, str, str]:
    """A captured 100.00 payment split A 60.00 (fee 1.80) / B 40.00 (fee 1.20); (body, seller A, seller B)."""
    seller_a = create_seller(db_session, scope, name="A")
    seller_b = create_seller(db_session, scope, name="B")
    db_session.commit()
    body = run(db_session, scope, deps, "payment.create", {
        "amount": 10000, "currency": "USD", "capture_method": "automatic", "payment_method": "tok_1",
        "confirm": True, "split": [{"seller": seller_a.id, "amount": 6000, "fee": 180},
                                   {"seller": seller_b.id, "amount": 4000, "fee": 120}]}).body
    gateway = ScriptedGateway(authorize_results=[result(Outcome.SUCCEEDED, connector=connector,
                                                        psp_reference=f"auth_{body['id']}", status="authorized")])
    _run_attempt(body["attempts"][0]["id"], deps, gateway)
    return body, seller_a.id, seller_b.id


def refund_of(db_session, scope, deps, payment_id: str, params: dict, answer=None) -> Refund:
    refund = run(db_session, scope, deps, "refund.create", {"payment": payment_id, **params}).body
    _run_refund(refund["id"], deps, ScriptedGateway(refund_results=[answer] if answer else []))
    db_session.expire_all()
    return db_session.get(Refund, refund["id"])


def verify_ledger(app) -> None:
    answer = app.test_cli_runner().invoke(args=["ledger", "verify"])
    assert answer.exit_code == 0 and "ledger OK" in answer.output, answer.output


def refund_postings(db_session, scope, refund_id: str) -> dict[str, list[tuple]]:
    """The refund's postings by business key, each as its legs (code, direction, amount)."""
    db_session.rollback()
    rows = db_session.scalars(scope.select(JournalTransaction, JournalTransaction.reference == refund_id)).all()
    legs = transaction_legs(db_session, scope, [row.id for row in rows])
    return {row.business_key: sorted((leg.code, leg.direction, leg.amount.amount) for leg in legs[row.id])
            for row in rows}


def test_a_refund_the_sandbox_reports_failed_later_is_unbooked_once(app, client, db_session, deps, merchant):
    scope = Scope(merchant.id, False)
    body, seller_a, seller_b = captured_split_payment(db_session, scope, deps)
    captured = ledger_balances(db_session, scope)
    refund = refund_of(db_session, scope, deps, body["id"], {"sellers": [{"seller": seller_a, "amount": 3000}]})
    assert refund.status == "succeeded" and db_session.get(Payment, body["id"]).amount_refunded == 3000
    assert ledger_balances(db_session, scope)[f"seller_payable:{seller_a}:USD"] == 5820 - 2910

    callback = {"id": "cb_refund_failed", "type": "refund.updated", "created": int(time.time()),
                "data": {"id": refund.psp_reference, "acquirer": "sandbox", "authorization": f"auth_{body['id']}",
                         "amount": 3000, "currency": "USD", "status": "failed",
                         "failure_code": "expired_or_canceled_card", "created": int(time.time())}}
    assert post_sandbox(client, callback).json == {"received": True, "duplicate": False}

    db_session.rollback()
    refund = db_session.get(Refund, refund.id)
    assert (refund.status, refund.failure_code) == ("failed", "expired_or_canceled_card")
    payment = db_session.get(Payment, body["id"])
    assert payment.status == "succeeded" and payment.amount_refunded == 0
    orders = db_session.scalars(scope.select(PaymentOrder, PaymentOrder.payment_id == payment.id)).all()
    assert {(o.amount_refunded, o.fee_refunded) for o in orders} == {(0, 0)}
    assert ledger_balances(db_session, scope) == captured
    postings = refund_postings(db_session, scope, refund.id)
    flip = {"debit": "credit", "credit": "debit"}
    assert postings[f"refund_reversal:{refund.id}"] == sorted(
        (code, flip[direction], amount) for code, direction, amount in postings[f"refund:{refund.id}"])
    assert event_types(db_session, scope, refund.id) == ["refund.created", "refund.succeeded", "refund.failed"]
    verify_ledger(app)

    # The sandbox retrying, and a second callback saying the same: nothing more.
    assert post_sandbox(client, callback).json == {"received": True, "duplicate": True}
    assert post_sandbox(client, {**callback, "id": "cb_refund_failed_again"}).status_code == 200
    assert callback_row(db_session, "cb_refund_failed_again").result == "applied"
    assert len(refund_postings(db_session, scope, refund.id)) == 2
    assert event_types(db_session, scope, refund.id) == ["refund.created", "refund.succeeded", "refund.failed"]
    assert ledger_balances(db_session, scope) == captured

    # The amount is refundable again, and refunding it books as usual.
    again = refund_of(db_session, scope, deps, body["id"], {})
    assert again.amount == 10000 and again.status == "succeeded"
    verify_ledger(app)


def test_stripe_refund_failure_events_unbook_the_refund(app, client, db_session, deps, merchant):
    scope = Scope(merchant.id, False)
    body, _, _ = captured_split_payment(db_session, scope, deps, connector="stripe")
    refund = refund_of(db_session, scope, deps, body["id"], {"amount": 700}, answer=result(
        Outcome.SUCCEEDED, connector="stripe", psp_reference="re_to_fail", status="succeeded", amount=700))
    assert refund.status == "succeeded"
    failed = stripe_refund(id="re_to_fail", amount=700, currency="usd", payment_intent=f"auth_{body['id']}",
                           status="failed", failure_reason="lost_or_stolen_card")
    answer = post_stripe(client, "/hooks/stripe", stripe_event("evt_refund_failed", "charge.refund.updated", failed),
                         PLATFORM_SECRET)
    assert answer.status_code == 200
    row = callback_row(db_session, "evt_refund_failed")
    assert (row.type, row.result) == ("refund.updated", "applied")
    refund = db_session.get(Refund, refund.id)
    assert (refund.status, refund.failure_code) == ("failed", "lost_or_stolen_card")
    assert db_session.get(Payment, body["id"]).amount_refunded == 0
    assert f"refund_reversal:{refund.id}" in refund_postings(db_session, scope, refund.id)
    # Stripe also sends refund.failed for the same failure: nothing more happens.
    post_stripe(client, "/hooks/stripe", stripe_event("evt_refund_failed_2", "refund.failed", failed), PLATFORM_SECRET)
    assert len(refund_postings(db_session, scope, refund.id)) == 2
    verify_ledger(app)


def test_a_pending_refund_reported_failed_simply_fails(client, db_session, deps, merchant):
    scope = Scope(merchant.id, False)
    body, _, _ = captured_split_payment(db_session, scope, deps)
    captured = ledger_balances(db_session, scope)
    refund = refund_of(db_session, scope, deps, body["id"], {"amount": 500}, answer=result(
        Outcome.PENDING, psp_reference="rf_pending", status="pending"))
    assert (refund.status, refund.psp_reference) == ("pending", "rf_pending")
    post_sandbox(client, {"id": "cb_pending_failed", "type": "refund.updated", "created": int(time.time()),
                          "data": {"id": "rf_pending", "acquirer": "sandbox", "authorization": f"auth_{body['id']}",
                                   "amount": 500, "currency": "USD", "status": "failed",
                                   "failure_code": "charge_disputed"}})
    db_session.rollback()
    refund = db_session.get(Refund, refund.id)
    assert (refund.status, refund.failure_code) == ("failed", "charge_disputed")
    assert refund_postings(db_session, scope, refund.id) == {}
    assert ledger_balances(db_session, scope) == captured
    assert event_types(db_session, scope, refund.id) == ["refund.created", "refund.failed"]


def test_a_merchant_cannot_fail_another_merchants_refund(client, db_session, deps, merchants):
    victim, attacker = merchants
    scope = Scope(victim.id, False)
    body, _, _ = captured_split_payment(db_session, scope, deps, connector="stripe")
    refund = refund_of(db_session, scope, deps, body["id"], {"amount": 700}, answer=result(
        Outcome.SUCCEEDED, connector="stripe", psp_reference="re_victim", status="succeeded", amount=700))
    failed = stripe_refund(id="re_victim", amount=700, payment_intent=f"auth_{body['id']}", status="failed",
                           failure_reason="unknown")
    post_stripe(client, f"/hooks/stripe/{attacker.id}", stripe_event("evt_refund_forged", "refund.failed", failed),
                "whsec_m_test")
    assert callback_row(db_session, "evt_refund_forged").result == "rejected"
    assert db_session.get(Refund, refund.id).status == "succeeded"
    assert list(refund_postings(db_session, scope, refund.id)) == [f"refund:{refund.id}"]
