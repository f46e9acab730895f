"""The hosted page in Stripe mode, in-process: which tokenizer a session gets (publishable key rules), the
page and its Content-Security-Policy, and the server side of a PaymentMethod id: confirmed through the
same payments service as the sandbox path, then authorized, declined or sent to 3-D Secure by the real
Stripe connector against the local stand-in of Stripe's API (tests/psp/fake_stripe.py), after the card
was read from Stripe for the card-testing limits. The browser side is test_checkout_stripe_browser.py."""
import re
import time

import pytest
from sqlalchemy import select

from app.checkout import service
from app.checkout.limits import Limits
from app.checkout.models import CheckoutSession
from app.checkout.tokenization import tokenizer_for
from app.crypto import SecretBox
from app.jobs.payments import _run_attempt
from app.payments.deps import deps_for
from app.payments.gateway import gateway_for_app
from app.payments.models import Payment, PaymentAttempt
from app.psp.credentials import set_credentials
from app.scoping import Scope
from tests import factories
from tests.conftest import app_config
from tests.psp.fake_stripe import card_declined, payment_intent, payment_method

pytestmark = pytest.mark.usefixtures("clear_limits")

SECRET_KEY = "sk_live_kassa_merchant"
PUBLISHABLE_KEY = "pk_live_kassa_merchant"
CREATE = ("POST", "/v1/payment_intents")
# Stripe's API error for a request it could not handle (5xx).
API_ERROR = {"error": {"type": "api_error", "message": "Something went wrong on Stripe's end."}}


@pytest.fixture(scope="module")
def app(database, fake_stripe):
    from app import create_app
    from app.extensions import db

    # No worker runs here: confirmations answer at once (processing); the tests run the attempt job.
    application = create_app(app_config(database, CONFIRM_WAIT_SECONDS=0, STRIPE_API_BASE=fake_stripe.url,
                                        STRIPE_JS_URL=None, STRIPE_JS_API_URL=None))
    with application.app_context():
        application.extensions["redis"].flushdb()
    yield application
    router = application.extensions.get("psp_router")
    if router is not None:
        router.close()  # the Stripe connectors' HTTP connections to the stand-in
    with application.app_context():
        db.session.remove()
        db.engine.dispose()


def box(app) -> SecretBox:
    return SecretBox(app.config["KASSA_ENCRYPTION_KEYS"])


@pytest.fixture
def live_scope(app, db_session) -> Scope:
    """A merchant whose live mode charges its own Stripe account (secret and publishable key stored)."""
    merchant = factories.merchant(db_session, name="Stripe Shop")
    scope = Scope(merchant.id, True)
    set_credentials(db_session, scope, box(app), "stripe", secret_key=SECRET_KEY, publishable_key=PUBLISHABLE_KEY)
    db_session.commit()
    return scope


def new_session(db_session, scope) -> CheckoutSession:
    cs = service.create_session(db_session, scope, currency="EUR", line_items=[
        {"name": "Shoes", "quantity": 1, "unit_amount": 12900}, {"name": "Socks", "quantity": 2, "unit_amount": 1450}],
        success_url="https://shop.example/thanks?order=7", cancel_url="https://shop.example/cart")
    db_session.commit()
    return cs


def csp_of(response) -> dict[str, str]:
    return dict(part.strip().split(" ", 1) for part in response.headers["Content-Security-Policy"].split(";"))


def attempts(db_session, payment_id: str) -> list[PaymentAttempt]:
    return db_session.scalars(select(PaymentAttempt).where(PaymentAttempt.payment_id == payment_id)
                              .order_by(PaymentAttempt.id)).all()


def run_latest_attempt(app, db_session, cs: CheckoutSession) -> None:
    """What the worker does with the attempt the confirmation staged (and the capture that follows)."""
    db_session.refresh(cs)
    payment = db_session.get(Payment, cs.payment_id, populate_existing=True)
    db_session.commit()
    _run_attempt(payment.latest_attempt_id, deps_for(app), gateway_for_app(app))


def test_live_stripe_page_loads_stripe_js_with_the_merchants_publishable_key(client, db_session, live_scope):
    cs = new_session(db_session, live_scope)
    response = client.get(f"/c/{cs.id}")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    csp = csp_of(response)
    nonce = re.search(r"'nonce-([^']+)'", csp["script-src"]).group(1)
    assert f'<script src="https://js.stripe.com/v3/" nonce="{nonce}" defer></script>' in html
    # Stripe.js first: deferred scripts run in document order, and checkout.js needs window.Stripe.
    assert html.index("js.stripe.com/v3/") < html.index("checkout/checkout.js")
    assert f'data-stripe-key="{PUBLISHABLE_KEY}"' in html and "data-vault-url" not in html
    assert 'id="card-element"' in html and '<label for="card-element">' in html
    assert 'id="card-element-error"' in html
    assert "<input" not in html  # the card is typed into Stripe's frame, not into this page
    assert "Test mode" not in html
    # Only Stripe's origins, each where Stripe.js needs it, and never the sandbox.
    assert csp["script-src"] == f"'nonce-{nonce}' https://js.stripe.com"
    assert csp["frame-src"] == "https://js.stripe.com"
    assert csp["connect-src"] == "'self' https://api.stripe.com"
    assert csp["default-src"] == "'none'" and csp["frame-ancestors"] == "'none'"
    assert client.application.config["SANDBOX_PSP_URL"] not in response.headers["Content-Security-Policy"]


def test_stripe_js_url_is_configurable(app, client, db_session, live_scope):
    cs = new_session(db_session, live_scope)
    app.config.update(STRIPE_JS_URL="https://stripe-js.example:8443/v3/",
                      STRIPE_JS_API_URL="https://stripe-api.example")
    try:
        response = client.get(f"/c/{cs.id}")
    finally:
        app.config.update(STRIPE_JS_URL=None, STRIPE_JS_API_URL=None)
    csp = csp_of(response)
    assert 'src="https://stripe-js.example:8443/v3/"' in response.get_data(as_text=True)
    assert csp["script-src"].endswith(" https://stripe-js.example:8443")
    assert csp["frame-src"] == "https://stripe-js.example:8443"
    assert csp["connect-src"] == "'self' https://stripe-api.example"
    assert "js.stripe.com" not in response.headers["Content-Security-Policy"]


def test_which_publishable_key_a_page_gets(app, db_session):
    config = {"SANDBOX_PSP_URL": "http://vault.example/", "STRIPE_API_KEY": None, "STRIPE_PUBLISHABLE_KEY": None}
    own = factories.merchant(db_session)
    platform = factories.merchant(db_session)
    keyless = factories.merchant(db_session)
    set_credentials(db_session, Scope(own.id, True), box(app), "stripe", secret_key="sk_live_own",
                    publishable_key="pk_live_own")
    # Saving a key of the other mode is refused; a row stored before that check still never reaches a page.
    set_credentials(db_session, Scope(own.id, False), box(app), "stripe", secret_key="sk_test_own",
                    publishable_key="pk_test_own").publishable_key = "pk_live_wrong_mode"
    set_credentials(db_session, Scope(keyless.id, True), box(app), "stripe", secret_key="sk_live_keyless")
    db_session.flush()

    def key(merchant, livemode, vault="stripe", **settings):
        found = tokenizer_for(db_session, Scope(merchant.id, livemode), vault, {**config, **settings})
        return found and (found.publishable_key or found.url)

    assert key(own, True) == "pk_live_own"
    # A key of the other mode would make PaymentMethods the secret key cannot use.
    assert key(own, False) is None
    # No credentials: the platform's account, if it has both keys.
    assert key(platform, True) is None
    assert key(platform, True, STRIPE_PUBLISHABLE_KEY="pk_live_platform") is None
    assert key(platform, True, STRIPE_API_KEY_LIVE="sk_live_platform",
               STRIPE_PUBLISHABLE_KEY_LIVE="pk_live_platform") == "pk_live_platform"
    assert key(platform, False, STRIPE_API_KEY_TEST="sk_test_platform",
               STRIPE_PUBLISHABLE_KEY_TEST="pk_test_platform") == "pk_test_platform"
    # The mode-less settings of earlier versions are the test-mode keys only.
    assert key(platform, False, STRIPE_API_KEY="sk_test_platform", STRIPE_PUBLISHABLE_KEY="pk_test_platform") == \
        "pk_test_platform"
    assert key(platform, True, STRIPE_API_KEY="sk_test_platform", STRIPE_PUBLISHABLE_KEY="pk_test_platform") is None
    # Own secret key but no publishable key: never the platform's key (another account).
    assert key(keyless, True, STRIPE_API_KEY_LIVE="sk_live_platform",
               STRIPE_PUBLISHABLE_KEY_LIVE="pk_live_platform") is None
    # The sandbox: test mode only; other vaults take no card on this page.
    assert key(own, False, vault="sandbox") == "http://vault.example"
    assert key(own, True, vault="sandbox") is None
    assert key(own, True, vault="adyen") is None
    db_session.rollback()


def test_without_a_usable_key_the_live_page_takes_no_card(client, db_session):
    merchant = factories.merchant(db_session)
    db_session.commit()
    cs = new_session(db_session, Scope(merchant.id, True))
    response = client.get(f"/c/{cs.id}")
    assert response.status_code == 503 and b"not available" in response.data
    assert b"pay-form" not in response.data and "stripe" not in response.headers["Content-Security-Policy"]
    confirm = client.post(f"/c/{cs.id}/confirm", json={"token": "pm_123", "card": {}})
    assert confirm.status_code == 503 and confirm.json["error"]["code"] == "unavailable"


def test_stripe_mode_takes_only_payment_method_ids(client, db_session, live_scope, fake_stripe):
    cs = new_session(db_session, live_scope)
    before = len(fake_stripe.requests)
    for token in ("tok_sandbox_1", "card_123", "pm_", "pm_with space", "pm_x" + "y" * 300):
        response = client.post(f"/c/{cs.id}/confirm", json={"token": token, "card": {}})
        assert response.status_code == 400, token
        assert response.json["error"] == {"code": "token_invalid", "param": "card",
                                          "message": "The card could not be read. Please enter it again."}
    db_session.refresh(cs)
    assert cs.payment_id is None and len(fake_stripe.requests) == before


def test_a_payment_method_id_pays_through_the_payments_service(app, client, db_session, live_scope, fake_stripe):
    cs = new_session(db_session, live_scope)
    fake_stripe.answer(*CREATE, (200, payment_intent(id="pi_cs_paid", amount=15800, payment_method="pm_1ShopperCard")))
    fake_stripe.answer("POST", "/v1/payment_intents/pi_cs_paid/confirm",
                (200, payment_intent(id="pi_cs_paid", amount=15800, status="requires_capture",
                                     amount_capturable=15800)))
    fake_stripe.answer("POST", "/v1/payment_intents/pi_cs_paid/capture",
                (200, payment_intent(id="pi_cs_paid", amount=15800, status="succeeded", amount_received=15800)))
    before = len(fake_stripe.requests)

    response = client.post(f"/c/{cs.id}/confirm", json={"token": "pm_1ShopperCard",
                                                        "card": {"brand": "visa", "last4": "4242"}})
    assert response.status_code == 200 and response.json == {"redirect": f"/c/{cs.id}"}
    db_session.refresh(cs)
    payment = db_session.get(Payment, cs.payment_id)
    assert payment.livemode and payment.amount == 15800 and payment.currency == "EUR"
    assert (payment.payment_method_vault, payment.payment_method_token) == ("stripe", "pm_1ShopperCard")
    assert len(attempts(db_session, payment.id)) == 1
    assert "Processing your payment" in client.get(f"/c/{cs.id}").get_data(as_text=True)

    run_latest_attempt(app, db_session, cs)
    lookup, risk_read, create, confirm, capture = fake_stripe.requests[before:]
    # Before confirming, the card was read from the merchant's own account for the card-testing limits, and
    # again by the worker's risk screening before the authorization (app/payments/risk.py).
    assert (lookup.method, lookup.path) == ("GET", "/v1/payment_methods/pm_1ShopperCard")
    assert lookup.headers["Authorization"] == f"Bearer {SECRET_KEY}"
    assert (risk_read.method, risk_read.path) == ("GET", "/v1/payment_methods/pm_1ShopperCard")
    assert risk_read.headers["Authorization"] == f"Bearer {SECRET_KEY}"
    assert (create.method, create.path) == CREATE
    assert create.headers["Authorization"] == f"Bearer {SECRET_KEY}"  # the merchant's own account
    assert create.fields["payment_method"] == "pm_1ShopperCard"
    assert (create.fields["amount"], create.fields["currency"], create.fields["capture_method"]) == \
        ("15800", "eur", "manual")
    assert confirm.path == "/v1/payment_intents/pi_cs_paid/confirm"
    assert confirm.fields == {"return_url": f"http://localhost/c/{cs.id}/return", "expand[0]": "payment_method"}
    assert capture.path == "/v1/payment_intents/pi_cs_paid/capture" and capture.fields == {"amount_to_capture": "15800"}

    html = client.get(f"/c/{cs.id}").get_data(as_text=True)
    assert "Payment successful" in html
    db_session.refresh(cs)
    payment = db_session.get(Payment, cs.payment_id, populate_existing=True)
    assert cs.status == "complete" and payment.status == "succeeded" and payment.psp_reference == "pi_cs_paid"
    assert payment.connector == "stripe"


def test_a_stripe_decline_shows_the_reason_and_the_form_again(app, client, db_session, live_scope, fake_stripe):
    cs = new_session(db_session, live_scope)
    fake_stripe.answer(*CREATE, (200, payment_intent(id="pi_cs_declined", amount=15800)))
    fake_stripe.answer("POST", "/v1/payment_intents/pi_cs_declined/confirm", (402, {"error": {
        "type": "card_error", "code": "card_declined", "decline_code": "insufficient_funds",
        "message": "Your card has insufficient funds.",
        "payment_intent": payment_intent(id="pi_cs_declined", status="requires_payment_method")}}))
    client.post(f"/c/{cs.id}/confirm", json={"token": "pm_1Declined", "card": {}})
    run_latest_attempt(app, db_session, cs)

    response = client.get(f"/c/{cs.id}")
    html = response.get_data(as_text=True)
    assert "Your card has insufficient funds. Please try another card." in html
    assert f'data-stripe-key="{PUBLISHABLE_KEY}"' in html
    db_session.refresh(cs)
    assert cs.attempt_number == 2 and cs.status == "open"
    assert [a.status for a in attempts(db_session, cs.payment_id)] == ["declined"]


def test_stripe_three_d_secure_goes_to_the_action_url_and_back(app, client, db_session, live_scope, fake_stripe):
    cs = new_session(db_session, live_scope)
    action = "https://hooks.stripe.com/redirect/authenticate/src_1Kassa?client_secret=src_client_secret_x"
    fake_stripe.answer(*CREATE, (200, payment_intent(id="pi_cs_3ds", amount=15800)))
    fake_stripe.answer("POST", "/v1/payment_intents/pi_cs_3ds/confirm", (200, payment_intent(
        id="pi_cs_3ds", amount=15800, status="requires_action",
        next_action={"type": "redirect_to_url", "redirect_to_url": {
            "url": action, "return_url": f"http://localhost/c/{cs.id}/return"}})))
    client.post(f"/c/{cs.id}/confirm", json={"token": "pm_1ThreeDS", "card": {}})
    run_latest_attempt(app, db_session, cs)

    # The browser is sent to the URL the connector returned (a second submission too, without a new attempt).
    assert client.post(f"/c/{cs.id}/confirm", json={"token": "pm_1ThreeDS", "card": {}}).json == {"redirect": action}
    html = client.get(f"/c/{cs.id}").get_data(as_text=True)
    assert "Confirm the payment with your bank" in html and 'href="' + action.replace("&", "&amp;") + '"' in html

    # Stripe sends the shopper back to return_url; the status query then finds the intent authorized.
    fake_stripe.answer("GET", "/v1/payment_intents/pi_cs_3ds",
                (200, payment_intent(id="pi_cs_3ds", amount=15800, status="requires_capture")))
    fake_stripe.answer("POST", "/v1/payment_intents/pi_cs_3ds/capture",
                (200, payment_intent(id="pi_cs_3ds", amount=15800, status="succeeded", amount_received=15800)))
    back = client.get(f"/c/{cs.id}/return?payment_intent=pi_cs_3ds&redirect_status=succeeded")
    assert back.status_code == 303 and back.headers["Location"] == f"/c/{cs.id}?returned=1"
    assert "Processing your payment" in client.get(back.headers["Location"]).get_data(as_text=True)
    run_latest_attempt(app, db_session, cs)
    assert "Payment successful" in client.get(f"/c/{cs.id}").get_data(as_text=True)
    assert [a.status for a in attempts(db_session, cs.payment_id) if a.operation == "authorize"] == ["succeeded"]


def test_a_stripe_payment_stores_the_card_stripe_names(app, client, db_session, live_scope, fake_stripe):
    """The confirm expands the PaymentMethod: the payment keeps Stripe's brand, last 4, expiry and
    fingerprint (what the browser said about the card is not used), and the success page names the card."""
    cs = new_session(db_session, live_scope)
    fake_stripe.payment_methods["pm_1CardFacts"] = payment_method(
        id="pm_1CardFacts", brand="mastercard", last4="4444", exp_month=9, exp_year=2031, fingerprint="Kx3mFpStripe01")
    fake_stripe.answer(*CREATE, (200, payment_intent(id="pi_cs_card", amount=15800, payment_method="pm_1CardFacts")))
    fake_stripe.answer("POST", "/v1/payment_intents/pi_cs_card/confirm",
                (200, payment_intent(id="pi_cs_card", amount=15800, payment_method="pm_1CardFacts",
                                     status="requires_capture", amount_capturable=15800)))
    fake_stripe.answer("POST", "/v1/payment_intents/pi_cs_card/capture",
                (200, payment_intent(id="pi_cs_card", amount=15800, payment_method="pm_1CardFacts",
                                     status="succeeded", amount_received=15800)))
    client.post(f"/c/{cs.id}/confirm", json={"token": "pm_1CardFacts", "card": {"brand": "visa", "last4": "4242"}})
    run_latest_attempt(app, db_session, cs)

    payment = db_session.get(Payment, cs.payment_id, populate_existing=True)
    assert payment.status == "succeeded"
    assert (payment.card_brand, payment.card_last4, payment.card_exp_month, payment.card_exp_year,
            payment.card_fingerprint) == ("mastercard", "4444", 9, 2031, "Kx3mFpStripe01")
    html = client.get(f"/c/{cs.id}").get_data(as_text=True)
    assert "Payment successful" in html and "Mastercard ending in 4444" in html


def test_a_declined_stripe_card_counts_against_its_stripe_fingerprint(app, client, db_session, live_scope, fake_stripe,
                                                                      redis):
    """Stripe.js gives the page no fingerprint (Stripe sends it only to secret keys), so the browser names
    none; the decline's 402 carries the PaymentMethod, and its fingerprint is what the decline counts against."""
    cs = new_session(db_session, live_scope)
    declined = payment_method(id="pm_1Stolen", brand="visa", last4="0002", exp_month=4, exp_year=2030,
                              fingerprint="StolenCardFp001")
    fake_stripe.payment_methods["pm_1Stolen"] = declined
    fake_stripe.answer(*CREATE, (200, payment_intent(id="pi_cs_stolen", amount=15800, payment_method="pm_1Stolen")))
    fake_stripe.answer("POST", "/v1/payment_intents/pi_cs_stolen/confirm",
                (402, card_declined("pi_cs_stolen", "stolen_card", "Your card was declined.", method=declined)))
    client.post(f"/c/{cs.id}/confirm", json={"token": "pm_1Stolen", "card": {"brand": "visa", "last4": "0002"}})
    run_latest_attempt(app, db_session, cs)

    payment = db_session.get(Payment, cs.payment_id, populate_existing=True)
    assert payment.status == "requires_payment_method"
    assert (payment.card_last4, payment.card_fingerprint) == ("0002", "StolenCardFp001")
    html = client.get(f"/c/{cs.id}").get_data(as_text=True)  # the page moves to attempt 2 and counts
    assert 'id="card-element"' in html
    db_session.refresh(cs)
    assert cs.attempt_number == 2
    window = int(time.time() // Limits().window_seconds)
    assert redis.get(f"kassa:checkout:declines:fingerprint:StolenCardFp001:{window}") == b"1"
    assert redis.get(f"kassa:checkout:declines:session:{cs.id}:{window}") == b"1"
    # The fingerprint read before the confirmation is the decline's: no lie, the page takes the next card.
    assert client.get(f"/c/{cs.id}").status_code == 200


def decline_once(app, client, db_session, scope, fake_stripe, token: str, intent_id: str, **browser) -> CheckoutSession:
    """A new session pays with PaymentMethod ``token`` (registered in the stand-in) and Stripe declines it;
    the page then moves on and counts the decline."""
    cs = new_session(db_session, scope)
    fake_stripe.answer(*CREATE, (200, payment_intent(id=intent_id, amount=15800, payment_method=token)))
    fake_stripe.answer("POST", f"/v1/payment_intents/{intent_id}/confirm", (402, card_declined(
        intent_id, "stolen_card", "Your card was declined.", method=fake_stripe.payment_methods[token])))
    assert client.post(f"/c/{cs.id}/confirm", json={"token": token, "card": browser}).status_code == 200
    run_latest_attempt(app, db_session, cs)
    client.get(f"/c/{cs.id}")
    return cs


def test_a_stripe_card_at_its_decline_limit_is_refused_before_it_reaches_stripe(app, client, db_session, live_scope,
                                                                                 fake_stripe, redis):
    """Stripe.js names no fingerprint; the server reads the PaymentMethod with the merchant's secret key and
    limits by Stripe's fingerprint, so a card declined up to its limit is refused from a new session and a
    new address before Stripe is asked to charge it again. What the browser claims about the card is ignored."""
    app.config["CHECKOUT_LIMITS"] = "fingerprint_declines=2"
    try:
        for number in (1, 2):  # a new PaymentMethod of the same card each time, as Stripe.js makes them
            token = f"pm_1StolenAgain{number}"
            fake_stripe.payment_methods[token] = payment_method(id=token, last4="0002", fingerprint="StolenCardFp002")
            decline_once(app, client, db_session, live_scope, fake_stripe, token, f"pi_cs_stolen_{number}",
                         fingerprint="fp_made_up_by_the_browser")
        window = int(time.time() // Limits().window_seconds)
        assert redis.get(f"kassa:checkout:declines:fingerprint:StolenCardFp002:{window}") == b"2"
        assert not list(redis.scan_iter("kassa:checkout:*:fingerprint:fp_made_up_by_the_browser:*"))

        cs = new_session(db_session, live_scope)
        fake_stripe.payment_methods["pm_1StolenAgain3"] = payment_method(id="pm_1StolenAgain3", last4="0002",
                                                                  fingerprint="StolenCardFp002")
        before = len(fake_stripe.requests)
        response = client.post(f"/c/{cs.id}/confirm", json={"token": "pm_1StolenAgain3", "card": {}},
                               environ_base={"REMOTE_ADDR": "203.0.113.7"})
        assert response.status_code == 429 and response.json["error"]["code"] == "too_many_attempts"
        # Stripe was only asked what the card is: no PaymentIntent was created, nothing was confirmed.
        [lookup] = fake_stripe.requests[before:]
        assert (lookup.method, lookup.path) == ("GET", "/v1/payment_methods/pm_1StolenAgain3")
        assert lookup.headers["Authorization"] == f"Bearer {SECRET_KEY}"
        db_session.refresh(cs)
        assert cs.payment_id is None

        # The limit is the card's: another card pays on the same page from the same address.
        fake_stripe.payment_methods["pm_1OtherCard"] = payment_method(id="pm_1OtherCard", fingerprint="OtherCardFp003")
        fake_stripe.answer(*CREATE, (200, payment_intent(id="pi_cs_other_card", amount=15800, payment_method="pm_1OtherCard")))
        fake_stripe.answer("POST", "/v1/payment_intents/pi_cs_other_card/confirm",
                    (200, payment_intent(id="pi_cs_other_card", amount=15800, status="requires_capture")))
        fake_stripe.answer("POST", "/v1/payment_intents/pi_cs_other_card/capture",
                    (200, payment_intent(id="pi_cs_other_card", amount=15800, status="succeeded",
                                         amount_received=15800)))
        response = client.post(f"/c/{cs.id}/confirm", json={"token": "pm_1OtherCard", "card": {}},
                               environ_base={"REMOTE_ADDR": "203.0.113.7"})
        assert response.status_code == 200 and response.json == {"redirect": f"/c/{cs.id}"}
        run_latest_attempt(app, db_session, cs)
        [create] = [r for r in fake_stripe.requests[before:] if (r.method, r.path) == CREATE]
        assert create.fields["payment_method"] == "pm_1OtherCard"
        assert "Payment successful" in client.get(f"/c/{cs.id}").get_data(as_text=True)
    finally:
        app.config.pop("CHECKOUT_LIMITS")


def test_a_failed_card_lookup_still_lets_a_good_card_pay(app, client, db_session, live_scope, fake_stripe, redis):
    """When Stripe cannot say what the card is, the shopper is not held up: the confirmation goes on, limited
    per session and address only (a decline would still count against the fingerprint Stripe reports). The
    risk screening could not check the card either, so the authorization's capture waits for the platform's
    review (README, Risk: card_facts_unavailable)."""
    cs = new_session(db_session, live_scope)
    fake_stripe.answer("GET", "/v1/payment_methods/pm_1GoodCard", (500, API_ERROR))
    fake_stripe.answer(*CREATE, (200, payment_intent(id="pi_cs_unread", amount=15800, payment_method="pm_1GoodCard")))
    fake_stripe.answer("POST", "/v1/payment_intents/pi_cs_unread/confirm",
                (200, payment_intent(id="pi_cs_unread", amount=15800, status="requires_capture")))
    fake_stripe.answer("POST", "/v1/payment_intents/pi_cs_unread/capture",
                (200, payment_intent(id="pi_cs_unread", amount=15800, status="succeeded", amount_received=15800)))
    before = len(fake_stripe.requests)

    response = client.post(f"/c/{cs.id}/confirm", json={"token": "pm_1GoodCard", "card": {"fingerprint": "fp_x"}})
    assert response.status_code == 200 and response.json == {"redirect": f"/c/{cs.id}"}
    run_latest_attempt(app, db_session, cs)
    # One lookup (no retries by the library), the risk screening's read, then the authorization, held.
    assert [(r.method, r.path) for r in fake_stripe.requests[before:]] == [
        ("GET", "/v1/payment_methods/pm_1GoodCard"), ("GET", "/v1/payment_methods/pm_1GoodCard"), CREATE,
        ("POST", "/v1/payment_intents/pi_cs_unread/confirm")]
    db_session.expire_all()
    held = db_session.scalars(select(Payment).where(Payment.psp_reference == "pi_cs_unread")).one()
    assert held.status == "requires_capture" and held.review_id
    assert (held.risk_outcome["type"], held.risk_outcome["reason"]) == ("manual_review", "card_facts_unavailable")
    window = int(time.time() // Limits().window_seconds)
    assert redis.get(f"kassa:checkout:confirmations:session:{cs.id}:{window}") == b"1"
    # Neither Stripe's fingerprint (unknown) nor the browser's claim was counted.
    assert not list(redis.scan_iter("kassa:checkout:*:fingerprint:*"))


def test_an_order_stripe_cannot_take_is_not_sent_to_stripe(app, client, db_session, live_scope, fake_stripe):
    """A session whose total Stripe cannot take (the API refuses to create one, tests/payments/
    test_wire_amounts.py; this one was made before the PSP changed) tells the shopper the order cannot be
    paid, without blaming the card, and creates no PaymentIntent."""
    cs = service.create_session(db_session, live_scope, currency="BHD", amount=1235,
                                success_url="https://shop.example/thanks")
    db_session.commit()
    before = len(fake_stripe.requests)
    response = client.post(f"/c/{cs.id}/confirm", json={"token": "pm_1Dinar", "card": {}})
    assert response.status_code == 409
    assert response.json["error"]["message"] == "This order cannot be paid at the moment. Please contact the shop."
    assert [(r.method, r.path) for r in fake_stripe.requests[before:]] == [("GET", "/v1/payment_methods/pm_1Dinar")]
    payment = db_session.get(Payment, cs.payment_id, populate_existing=True)
    assert payment.status == "requires_payment_method" and not attempts(db_session, payment.id)
