"""The hosted checkout in Stripe mode, end to end in headless Chromium: a live-mode session of a merchant
whose live mode routes to the Stripe connector, gunicorn web and RQ worker started against this module's
database (tests/checkout/conftest.py's ``live``, here with the Stripe settings below).

Stripe cannot be reached from the test environment, so two local stand-ins take its place:

* Stripe.js: tests/checkout/stripe_js_standin.js, served with its card frame by ``stripe_js`` below at
  the configured ``STRIPE_JS_URL`` (the page's CSP must allow exactly that origin);
* Stripe's API: tests/psp/fake_stripe.py (the connector's tests use it too), at ``STRIPE_API_BASE``,
  answering with Stripe's own example objects what each test queues.

The merchant's shop (https://shop.example, live mode wants https) and Stripe's 3-D Secure page
(https://hooks.stripe.com) are answered by the browser context's request routing. Screenshots go to
test-artifacts/checkout/stripe-*.png.
"""
import json
import re
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest
from playwright.sync_api import expect
from psycopg import sql

from app.accounts.api_keys import SECRET, create_key
from app.api.auth import hmac_key
from app.crypto import SecretBox
from app.psp.credentials import set_credentials
from app.scoping import Scope
from tests import factories
from tests.browser import assert_accessible, browser  # noqa: F401  (pytest fixture)
from tests.checkout.conftest import (
    SUCCESS_CARD,
    Api,
    PageServer,
    live_services,
    screenshot,
    serving,
    shop_page,
    text_columns,
)
from tests.conftest import admin_connect
from tests.psp.fake_stripe import payment_intent

pytestmark = pytest.mark.usefixtures("clear_limits")

STANDIN = Path(__file__).with_name("stripe_js_standin.js")
# Stripe.js loads its card Element from this page of its own origin (the stand-in draws the inputs).
INNER_PAGE = ("<!doctype html><html lang='en'><head><meta charset='utf-8'>"
              "<title>Secure card payment input frame</title></head><body><script src='/v3/'></script></body></html>")
SECRET_KEY = "sk_live_kassa_acme"
PUBLISHABLE_KEY = "pk_live_kassa_acme"
SHOP = "https://shop.example"
STRIPE_HOOKS = "https://hooks.stripe.com"
INVALID_CARD = "4242424242424241"
CREATE = ("POST", "/v1/payment_intents")
AMOUNT = 15800
NUMBER_LABEL = "Credit or debit card number"
EXPIRY_LABEL = "Credit or debit card expiration date"
CVC_LABEL = "Credit or debit card CVC/CVV"


def stripe_js_files(path: str) -> tuple[str, bytes]:
    """The Stripe.js stand-in at /v3/ and its card frame at /v3/elements-inner-card.html."""
    files = {"/v3/": ("text/javascript", STANDIN.read_bytes()),
             "/v3/elements-inner-card.html": ("text/html; charset=utf-8", INNER_PAGE.encode())}
    return files.get(urlsplit(path).path, ("text/plain", b""))


@pytest.fixture(scope="module")
def stripe_js():
    yield from serving(PageServer(stripe_js_files))


@pytest.fixture(scope="module")
def live(app, database, tmp_path_factory, fake_stripe, stripe_js):
    """Sandbox PSP + web + worker on this module's database, talking to the Stripe stand-ins."""
    yield from live_services(database, tmp_path_factory.mktemp("checkout-stripe-live"),
                             STRIPE_API_BASE=fake_stripe.url, STRIPE_JS_URL=f"{stripe_js.url}/v3/",
                             STRIPE_JS_API_URL=stripe_js.url, STRIPE_API_KEY="", STRIPE_PUBLISHABLE_KEY="")


@pytest.fixture(scope="module")
def stripe_merchant(app, live):
    """A merchant with a live secret API key and its own live Stripe account's keys."""
    from app.extensions import db

    with app.app_context():
        merchant = factories.merchant(db.session, name="Acme Outfitters", display_name="Acme Outfitters",
                                      accent_color="#0f766e")
        scope = Scope(merchant.id, True)
        key = create_key(db.session, scope, SECRET, hmac_key=hmac_key())
        set_credentials(db.session, scope, SecretBox(app.config["KASSA_ENCRYPTION_KEYS"]), "stripe",
                        secret_key=SECRET_KEY, publishable_key=PUBLISHABLE_KEY)
        db.session.commit()
        info = {"id": merchant.id, "secret": key.plaintext}
        db.session.remove()
    assert info["secret"].startswith("sk_live_")
    return info


@pytest.fixture(scope="module")
def api(live, stripe_merchant):
    return Api(live.web_url, stripe_merchant["secret"])


@pytest.fixture(scope="module")
def posted_to_kassa():
    """Every request the browser sent to Kassa during the module (to prove no card number was among them)."""
    return []


@pytest.fixture
def checkout(page, context, api, live, posted_to_kassa):
    """Open a new live session's page; the shop's pages are answered by the browser context."""
    def answer_shop(route):
        content_type, body = shop_page(urlsplit(route.request.url).path)
        route.fulfill(status=200, content_type=content_type, body=body)

    context.route(f"{SHOP}/**", answer_shop)
    page.on("request", lambda request: request.url.startswith(live.web_url)
            and posted_to_kassa.append((request.url, request.post_data or "")))

    def open_session(**overrides):
        session = api.create_session(SHOP, **overrides)
        assert session["livemode"] is True
        page.goto(session["url"])
        return session

    return open_session


def card_frame(page):
    return page.frame_locator("#card-element iframe")


def fill_card(page, number: str, expiry: str = "12 / 34", cvc: str = "123") -> None:
    frame = card_frame(page)
    frame.get_by_label(NUMBER_LABEL).fill(number)
    frame.get_by_label(EXPIRY_LABEL).fill(expiry)
    frame.get_by_label(CVC_LABEL).fill(cvc)


def pay_button(page):
    return page.locator("#pay-button")


def answer_authorized(fake, intent_id: str) -> None:
    """Stripe's API authorizes the next PaymentIntent and captures it."""
    fake.answer(*CREATE, (200, payment_intent(id=intent_id, amount=AMOUNT)))
    fake.answer("POST", f"/v1/payment_intents/{intent_id}/confirm",
                (200, payment_intent(id=intent_id, amount=AMOUNT, status="requires_capture", amount_capturable=AMOUNT)))
    fake.answer("POST", f"/v1/payment_intents/{intent_id}/capture",
                (200, payment_intent(id=intent_id, amount=AMOUNT, status="succeeded", amount_received=AMOUNT)))


def requests_to(fake, since: int, method: str, path: str) -> list:
    return [r for r in fake.requests[since:] if (r.method, r.path) == (method, path)]


def expect_success_then_shop(page, session) -> None:
    expect(page.get_by_role("heading", name="Payment successful")).to_be_visible()
    page.wait_for_url(re.compile(re.escape(f"{SHOP}/thanks?order=42&session_id={session['id']}")))


def test_a_live_stripe_session_pays_with_stripe_js_and_lands_on_success_url(page, checkout, api, fake_stripe,
                                                                           stripe_merchant):
    answer_authorized(fake_stripe, "pi_browser_paid")
    before = len(fake_stripe.requests)
    session = checkout()
    expect(page.get_by_role("heading", name="Pay with card")).to_be_visible()
    expect(page.locator(".test-banner")).to_have_count(0)
    expect(page.locator(".amount-due")).to_have_text("€158.00")
    expect(card_frame(page).get_by_label(NUMBER_LABEL)).to_be_visible()
    # The card is typed into Stripe's frame: the page itself has no card input at all.
    assert page.locator("input").count() == 0
    screenshot(page, "stripe-01-form")
    assert_accessible(page)

    fill_card(page, SUCCESS_CARD)
    expect(page.locator("#card-brand")).to_have_text("Visa")
    expect(page.locator("#card-element")).to_have_class(re.compile(r"\bStripeElement--complete\b"))
    with page.expect_request(lambda r: r.url.endswith(f"/c/{session['id']}/confirm")) as sent:
        pay_button(page).click()
    body = json.loads(sent.value.post_data)
    assert set(body) == {"token", "card"} and re.fullmatch(r"pm_[A-Za-z0-9]{24}", body["token"])
    assert body["card"] == {"brand": "visa", "last4": "4242", "exp_month": 12, "exp_year": 2034}
    expect_success_then_shop(page, session)

    # Kassa's server confirmed that PaymentMethod at the merchant's own Stripe account, then captured it.
    [create] = requests_to(fake_stripe, before, *CREATE)
    assert create.fields["payment_method"] == body["token"]
    assert create.headers["Authorization"] == f"Bearer {SECRET_KEY}"
    assert (create.fields["amount"], create.fields["currency"]) == (str(AMOUNT), "eur")
    [confirm] = requests_to(fake_stripe, before, "POST", "/v1/payment_intents/pi_browser_paid/confirm")
    assert confirm.fields["return_url"] == f"{session['url']}/return"
    assert len(requests_to(fake_stripe, before, "POST", "/v1/payment_intents/pi_browser_paid/capture")) == 1

    body = api.get(f"/v1/checkout/sessions/{session['id']}").json()
    assert body["status"] == "complete" and body["livemode"] is True
    payment = api.get(f"/v1/payments/{body['payment']}")
    if payment.status_code != 404:  # the payments API lives in its own module
        assert payment.json()["status"] == "succeeded" and payment.json()["amount"] == AMOUNT
    assert page.console_errors == []


def test_stripe_js_errors_are_shown_beside_the_field_and_announced(page, checkout, fake_stripe, live,
                                                                  posted_to_kassa):
    before, confirmations = len(fake_stripe.requests), len(posted_to_kassa)
    checkout()
    frame = card_frame(page)
    error = page.locator("#card-element-error")
    status = page.locator("#form-status")

    frame.get_by_label(NUMBER_LABEL).fill(INVALID_CARD)
    expect(error).to_have_text("Your card number is invalid.")
    expect(error).to_be_visible()
    expect(status).to_have_text("Your card number is invalid.")
    expect(page.locator(".field").filter(has=page.locator("#card-element"))).to_have_class(re.compile(r"\bhas-error\b"))
    expect(frame.get_by_label(NUMBER_LABEL)).to_have_attribute("aria-invalid", "true")
    screenshot(page, "stripe-02-stripe-js-error")
    assert_accessible(page)

    # Paying anyway: Stripe.js makes no PaymentMethod, the error stays beside the field and is said again.
    pay_button(page).click()
    expect(pay_button(page)).to_be_enabled()
    expect(error).to_have_text("Your card number is invalid.")
    expect(frame.get_by_label(NUMBER_LABEL)).to_be_focused()

    # An incomplete card is Stripe.js's complaint too, on submit.
    frame.get_by_label(NUMBER_LABEL).fill("4242 4242")
    pay_button(page).click()
    expect(error).to_have_text("Your card number is incomplete.")
    expect(status).to_have_text("Your card number is incomplete.")

    fill_card(page, SUCCESS_CARD, expiry="01 / 20")
    expect(error).to_have_text("Your card's expiration year is in the past.")
    frame.get_by_label(EXPIRY_LABEL).fill("12 / 34")
    expect(error).to_be_hidden()
    expect(page.locator("#card-element")).to_have_class(re.compile(r"\bStripeElement--complete\b"))

    # None of it reached Kassa's confirmation or Stripe's API.
    assert not [url for url, _ in posted_to_kassa[confirmations:] if url.endswith("/confirm")]
    assert len(fake_stripe.requests) == before


def test_the_label_and_the_keyboard_reach_the_card_frame(page, checkout, fake_stripe):
    answer_authorized(fake_stripe, "pi_browser_keyboard")
    session = checkout()
    frame = card_frame(page)
    page.get_by_text("Card details", exact=True).click()
    expect(frame.get_by_label(NUMBER_LABEL)).to_be_focused()

    page.goto(session["url"])
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    page.keyboard.press("Tab")
    expect(card_frame(page).get_by_label(NUMBER_LABEL)).to_be_focused()
    page.keyboard.type(SUCCESS_CARD)  # the frame moves on to the expiry, then to the CVC, like Stripe's
    expect(card_frame(page).get_by_label(EXPIRY_LABEL)).to_be_focused()
    page.keyboard.type("1234")
    expect(card_frame(page).get_by_label(CVC_LABEL)).to_be_focused()
    page.keyboard.type("123")
    page.keyboard.press("Tab")
    expect(pay_button(page)).to_be_focused()
    page.keyboard.press("Enter")
    expect_success_then_shop(page, session)


def test_stripe_three_d_secure_goes_to_stripe_and_back(page, context, checkout, fake_stripe):
    intent = "pi_browser_3ds"
    action = f"{STRIPE_HOOKS}/redirect/authenticate/src_1Kassa3ds?client_secret=src_client_secret_3ds"
    fake_stripe.answer(*CREATE, (200, payment_intent(id=intent, amount=AMOUNT)))
    fake_stripe.answer("POST", f"/v1/payment_intents/{intent}/confirm", (200, payment_intent(
        id=intent, amount=AMOUNT, status="requires_action",
        next_action={"type": "redirect_to_url", "redirect_to_url": {"url": action, "return_url": None}})))
    fake_stripe.answer("GET", f"/v1/payment_intents/{intent}",
                       (200, payment_intent(id=intent, amount=AMOUNT, status="requires_action")))

    def stripe_challenge(route):
        # Stripe's page sends the shopper to the return_url Kassa's server gave when confirming.
        [confirm] = requests_to(fake_stripe, 0, "POST", f"/v1/payment_intents/{intent}/confirm")
        back = f"{confirm.fields['return_url']}?payment_intent={intent}&redirect_status=succeeded"
        route.fulfill(status=200, content_type="text/html; charset=utf-8", body=(
            "<!doctype html><html lang='en'><head><title>3D Secure 2 Test Page</title></head><body><main>"
            f"<h1>3D Secure 2 Test Page</h1><a href='{back}'>Complete authentication</a></main></body></html>"))

    context.route(f"{STRIPE_HOOKS}/**", stripe_challenge)
    session = checkout()
    fill_card(page, SUCCESS_CARD)
    pay_button(page).click()
    page.wait_for_url(re.compile(re.escape(action)))
    screenshot(page, "stripe-03-3ds-challenge")
    # Back on the page before answering: it offers the bank's check again (no new payment).
    page.goto(session["url"])
    expect(page.get_by_role("heading", name="Confirm the payment with your bank")).to_be_visible()
    expect(page.get_by_role("link", name="Continue to your bank's check")).to_have_attribute("href", action)
    page.get_by_role("link", name="Continue to your bank's check").click()

    # The shopper authenticates: Stripe's PaymentIntent is authorized, and the status query will say so.
    fake_stripe.answer("GET", f"/v1/payment_intents/{intent}",
                       (200, payment_intent(id=intent, amount=AMOUNT, status="requires_capture")))
    fake_stripe.answer("POST", f"/v1/payment_intents/{intent}/capture",
                       (200, payment_intent(id=intent, amount=AMOUNT, status="succeeded", amount_received=AMOUNT)))
    page.get_by_role("link", name="Complete authentication").click()
    expect_success_then_shop(page, session)
    assert len(requests_to(fake_stripe, 0, "POST", f"/v1/payment_intents/{intent}/confirm")) == 1
    returned = dict(parse_qsl(urlsplit(page.url).query))
    assert returned["session_id"] == session["id"]


def test_phone_sized_stripe_form(page, checkout):
    page.set_viewport_size({"width": 360, "height": 740})
    checkout()
    expect(card_frame(page).get_by_label(CVC_LABEL)).to_be_visible()
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0
    box = page.locator("#card-element").bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= 360 and box["height"] >= 44
    screenshot(page, "stripe-04-phone-form")
    assert_accessible(page)


def test_without_stripe_js_the_page_says_so_and_takes_nothing(page, context, checkout, stripe_js):
    context.route(f"{stripe_js.url}/v3/", lambda route: route.abort())
    checkout()
    alert = page.get_by_role("alert")
    expect(alert).to_have_text("The card form could not be loaded, so nothing was charged. Please reload the page.")
    expect(pay_button(page)).to_be_disabled()
    assert page.locator("#card-element iframe").count() == 0


def test_csp_allows_exactly_the_configured_stripe_js_origin(page, checkout, live, stripe_js, fake_stripe):
    checkout()
    response = page.goto(page.url)
    header = response.headers["content-security-policy"]
    csp = dict(part.strip().split(" ", 1) for part in header.split(";"))
    nonce = re.search(r"'nonce-([^']+)'", header).group(1)
    assert set(re.findall(r"https?://[^\s;']+", header)) == {stripe_js.url}
    assert csp["script-src"] == f"'nonce-{nonce}' {stripe_js.url}"
    assert csp["frame-src"] == stripe_js.url
    assert csp["connect-src"] == f"'self' {stripe_js.url}"
    assert live.sandbox_url not in header and "stripe.com" not in header
    # The configured origin works: Stripe.js ran and its card frame loaded.
    expect(card_frame(page).get_by_label(NUMBER_LABEL)).to_be_visible()

    # Any other origin is refused, for scripts, frames and connections alike (another local server's).
    refused = page.evaluate("""async ([allowed, other]) => {
        const seen = [];
        document.addEventListener("securitypolicyviolation", e => seen.push([e.effectiveDirective, e.blockedURI]));
        const load = (src) => new Promise(resolve => {
            const s = document.createElement("script");
            s.src = src; s.onload = () => resolve("loaded"); s.onerror = () => resolve("refused");
            document.head.appendChild(s);
        });
        const results = {allowed: await load(allowed + "/v3/"), other: await load(other + "/v3/")};
        const frame = document.createElement("iframe");
        frame.src = other + "/frame"; document.body.appendChild(frame);
        try { await fetch(other + "/v1/payment_methods", {method: "POST"}); results.fetch = "sent"; }
        catch (e) { results.fetch = "refused"; }
        await new Promise(resolve => setTimeout(resolve, 300));
        results.violations = seen.map(([directive, uri]) => directive + " " + uri.replace(other, "OTHER"));
        return results;
    }""", [stripe_js.url, fake_stripe.url])
    assert refused["allowed"] == "loaded" and refused["other"] == "refused" and refused["fetch"] == "refused"
    # (Chromium reports a refused frame by its origin only.)
    assert sorted(refused["violations"]) == ["connect-src OTHER/v1/payment_methods", "frame-src OTHER",
                                             "script-src-elem OTHER/v3/"]


def test_no_card_number_reached_kassa(database, live, posted_to_kassa):
    """Runs last: the card numbers typed above appear nowhere on Kassa's side."""
    numbers = [SUCCESS_CARD, INVALID_CARD]
    spaced = [" ".join(n[i:i + 4] for i in range(0, len(n), 4)) for n in numbers]
    assert posted_to_kassa, "no request to Kassa was recorded"
    for url, body in posted_to_kassa:
        for number in numbers:
            assert number not in body and number not in url, f"card number sent to Kassa: {url}"
    with admin_connect(database) as connection:
        for table, column in text_columns(connection):
            hits = connection.execute(
                sql.SQL("SELECT count(*) FROM {} WHERE {}::text ~ %s").format(
                    sql.Identifier(table), sql.Identifier(column)),
                ("|".join(numbers),)).fetchone()[0]
            assert hits == 0, f"card number in {table}.{column}"
        tokens = connection.execute("SELECT count(*) FROM payments WHERE payment_method_token LIKE 'pm_%%'"
                                    ).fetchone()[0]
        assert tokens >= 2
    for name in ("web", "worker"):
        log = (live.log_dir / f"{name}.log").read_text(errors="replace")
        assert log, f"{name} log is empty"
        for number in numbers + spaced:
            assert number not in log, f"card number {number} found in the {name} log"
