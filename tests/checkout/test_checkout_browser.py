"""The hosted checkout end to end in headless Chromium: live sandbox PSP, gunicorn web and RQ worker.

Each test creates a session through the live API as a merchant's server would, opens its URL in a
fresh browser context and pays with the sandbox's test cards. Screenshots of every page state go to
test-artifacts/checkout/. The last test checks that no full card number reached the database or the
logs of the web and worker processes.
"""
import importlib.util
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from playwright.sync_api import expect
from psycopg import sql
from sqlalchemy import select, update

from app.checkout.models import CheckoutSession
from app.events import Event
from app.models_base import utcnow
from app.payments.models import Payment, PaymentAttempt
from app.scoping import Scope
from tests.browser import assert_accessible, browser  # noqa: F401  (pytest fixture)
from tests.checkout.conftest import (
    DECLINE_CARD,
    MASTERCARD,
    SUCCESS_CARD,
    TEST_CARDS,
    THREE_DS_CARD,
    authorizations,
    screenshot,
    text_columns,
)
from tests.conftest import admin_connect

pytestmark = pytest.mark.usefixtures("clear_limits")

EXPIRY = "12 / 34"


@pytest.fixture(scope="module")
def posted_to_kassa():
    """Every request body the browser sent to Kassa during the module (to prove no card number was among them)."""
    return []


@pytest.fixture
def checkout(page, api, shop, live, posted_to_kassa):
    """Open a new session's page; returns (session, page)."""
    def record(request):
        if request.url.startswith(live.web_url):
            posted_to_kassa.append((request.url, request.post_data or ""))

    page.on("request", record)

    def open_session(**overrides):
        session = api.create_session(shop.url, **overrides)
        page.goto(session["url"])
        return session

    return open_session


def fill_card(page, number: str, expiry: str = EXPIRY, cvc: str = "123") -> None:
    page.get_by_label("Card number").fill(number)
    page.get_by_label("Expiry date").fill(expiry)
    page.get_by_label("Security code").fill(cvc)


def pay_button(page):
    return page.locator("#pay-button")


def expect_success(page, shop, session) -> None:
    expect(page.get_by_role("heading", name="Payment successful")).to_be_visible()


def wait_for_shop(page, shop, session, path="/thanks") -> None:
    page.wait_for_url(re.compile(re.escape(shop.url + path) + r".*"))
    assert f"session_id={session['id']}" in page.url


def session_row(app, session_id: str) -> CheckoutSession:
    from app.extensions import db

    with app.app_context():
        row = db.session.get(CheckoutSession, session_id)
        db.session.expunge_all()
        db.session.remove()
        return row


def attempts_of(app, payment_id: str) -> list[PaymentAttempt]:
    from app.extensions import db

    with app.app_context():
        rows = db.session.scalars(select(PaymentAttempt).where(PaymentAttempt.payment_id == payment_id)
                                  .order_by(PaymentAttempt.id)).all()
        db.session.expunge_all()
        db.session.remove()
        return rows


def test_pay_with_the_success_card_and_land_on_success_url(app, page, checkout, shop, api, live):
    session = checkout()
    expect(page.get_by_role("heading", name="Pay with card")).to_be_visible()
    expect(page.locator(".test-banner")).to_contain_text("Test mode")
    expect(page.locator(".merchant-name")).to_have_text("Acme Outfitters")
    expect(page.locator(".amount-due")).to_have_text("€158.00")
    screenshot(page, "01-form")
    assert_accessible(page)

    fill_card(page, SUCCESS_CARD)
    expect(page.locator("#card-brand")).to_have_text("Visa")
    pay_button(page).click()
    expect_success(page, shop, session)
    expect(page.get_by_text("Visa ending in 4242")).to_be_visible()
    screenshot(page, "05-success")
    assert_accessible(page)
    wait_for_shop(page, shop, session)
    assert "order=42" in page.url

    # The merchant sees the payment and the session's event through the API and the event outbox.
    body = api.get(f"/v1/checkout/sessions/{session['id']}").json()
    assert body["status"] == "complete" and body["payment_status"] == "paid"
    assert body["payment"].startswith("pay_")
    payments = api.get(f"/v1/payments/{body['payment']}")
    if payments.status_code != 404:  # the payments API lives in its own module
        assert payments.json()["status"] == "succeeded"
        assert payments.json()["amount"] == 15800
    from app.extensions import db

    with app.app_context():
        types = db.session.scalars(select(Event.type).where(Event.object_id.in_([session["id"], body["payment"]]))
                                   .order_by(Event.id)).all()
        db.session.remove()
    assert "checkout.session.completed" in types and "payment.succeeded" in types
    assert page.console_errors == []


def test_client_side_checks_show_errors_beside_the_fields(page, checkout, live):
    checkout()
    before = authorizations(live)
    fill_card(page, "4242 4242 4242 4241", "13 / 30", "12")
    pay_button(page).click()
    number = page.get_by_label("Card number")
    expect(number).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#card-number-error")).to_contain_text("not valid")
    expect(page.locator("#card-expiry-error")).to_contain_text("MM / YY")
    expect(page.locator("#card-cvc-error")).to_contain_text("3 digits")
    assert "card-number-error" in number.get_attribute("aria-describedby")
    expect(number).to_be_focused()
    expect(page.locator("#form-status")).to_contain_text("Please correct the 3 highlighted fields.")
    screenshot(page, "02-validation-errors")
    assert_accessible(page)
    # American Express wants a 4-digit code; an expired card is caught before any network call.
    fill_card(page, "378282246310005", "01 / 20", "123")
    expect(page.locator("#card-brand")).to_have_text("American Express")
    pay_button(page).click()
    expect(page.locator("#card-cvc-error")).to_contain_text("4 digits")
    expect(page.locator("#card-expiry-error")).to_contain_text("expired")
    assert authorizations(live) == before


def test_decline_then_succeed_with_another_card(app, page, checkout, shop):
    session = checkout()
    fill_card(page, DECLINE_CARD)
    pay_button(page).click()
    alert = page.get_by_role("alert").filter(has_text="insufficient funds")
    expect(alert).to_be_visible()
    expect(alert).to_have_text("Your card has insufficient funds. Please try another card.")
    expect(alert).to_be_focused()
    expect(page.get_by_role("heading", name="Pay with card")).to_be_visible()
    screenshot(page, "03-declined")
    assert_accessible(page)
    row = session_row(app, session["id"])
    assert row.attempt_number == 2 and row.status == "open"

    fill_card(page, MASTERCARD)
    pay_button(page).click()
    expect_success(page, shop, session)
    expect(page.get_by_text("Mastercard ending in 4444")).to_be_visible()
    wait_for_shop(page, shop, session)
    attempts = [a for a in attempts_of(app, row.payment_id) if a.operation == "authorize"]
    assert [a.status for a in attempts] == ["declined", "succeeded"]


def test_three_d_secure_approve(page, checkout, shop, live):
    session = checkout()
    fill_card(page, THREE_DS_CARD)
    pay_button(page).click()
    page.wait_for_url(re.compile(re.escape(live.sandbox_url) + r"/challenge/.*"))
    screenshot(page, "04-3ds-challenge")
    # Coming back to the page before answering: it offers the bank's check again (no new payment).
    page.goto(session["url"])
    expect(page.get_by_role("heading", name="Confirm the payment with your bank")).to_be_visible()
    screenshot(page, "04-3ds-pending")
    assert_accessible(page)
    page.get_by_role("link", name="Continue to your bank's check").click()
    page.get_by_role("button", name="Approve").click()
    expect_success(page, shop, session)
    wait_for_shop(page, shop, session)


def test_three_d_secure_fail_returns_to_the_form(app, page, checkout, shop, live):
    session = checkout()
    fill_card(page, THREE_DS_CARD)
    pay_button(page).click()
    page.wait_for_url(re.compile(re.escape(live.sandbox_url) + r"/challenge/.*"))
    page.get_by_role("button", name="Fail").click()
    alert = page.get_by_role("alert").filter(has_text="could not confirm")
    expect(alert).to_be_visible()
    assert page.url.startswith(session["url"])
    screenshot(page, "04-3ds-failed")
    assert_accessible(page)
    # And another card still works.
    fill_card(page, SUCCESS_CARD)
    pay_button(page).click()
    expect_success(page, shop, session)


def test_double_click_pays_once(app, page, checkout, shop, live):
    session = checkout()
    before = authorizations(live)
    fill_card(page, SUCCESS_CARD)
    # The button must turn disabled while submitting; the page may already have moved on by the time a
    # locator could look, so the page reports the change itself.
    disabled_seen = []
    page.expose_function("kassaPayButtonDisabled", lambda: disabled_seen.append(True))
    page.evaluate("""() => {
        const button = document.getElementById("pay-button");
        new MutationObserver(() => { if (button.disabled) window.kassaPayButtonDisabled(); })
            .observe(button, {attributes: true, attributeFilter: ["disabled"]});
    }""")
    pay_button(page).dblclick()
    expect_success(page, shop, session)
    assert disabled_seen, "the Pay button was never disabled while submitting"
    row = session_row(app, session["id"])
    attempts = [a for a in attempts_of(app, row.payment_id) if a.operation == "authorize"]
    assert len(attempts) == 1
    assert authorizations(live, attempts[0].idempotency_key) == 1
    assert authorizations(live) == before + 1
    # Reloading the result pays nothing more.
    page.reload()
    expect_success(page, shop, session)
    assert authorizations(live) == before + 1


def test_concurrent_confirmations_bypassing_the_button_pay_once(app, page, checkout, shop, live):
    """Even without the page's own guard (two tabs, a replayed request), the server pays once."""
    session = checkout()
    before = authorizations(live)
    results = page.evaluate("""async () => {
        const form = document.getElementById("pay-form");
        const vault = form.dataset.vaultUrl + "/v1/tokens";
        const token = async () => (await (await fetch(vault, {method: "POST",
            headers: {"Content-Type": "application/json"},
            body: JSON.stringify({number: "4242424242424242", exp_month: 12, exp_year: 2034, cvc: "123"})})).json()).id;
        const confirm = async (tok) => (await fetch(form.dataset.confirmUrl, {method: "POST",
            headers: {"Content-Type": "application/json"},
            body: JSON.stringify({token: tok, card: {}})})).status;
        const [a, b] = await Promise.all([token(), token()]);
        return await Promise.all([confirm(a), confirm(b), confirm(a)]);
    }""")
    assert results == [200, 200, 200]
    page.goto(session["url"])
    expect_success(page, shop, session)
    row = session_row(app, session["id"])
    assert len([a for a in attempts_of(app, row.payment_id) if a.operation == "authorize"]) == 1
    assert authorizations(live) == before + 1


def test_processing_state_polls_until_the_outcome(app, page, api, shop):
    """While the payment is processing the page polls (htmx) and shows the result once it is there.

    The payment's state is driven through its row, so the processing page stays up as long as needed.
    """
    from app.checkout import flow
    from app.extensions import db
    from app.payments.deps import deps_from_app

    session = api.create_session(shop.url)
    with app.app_context():
        cs = db.session.get(CheckoutSession, session["id"])
        payment_id = flow._ensure_payment(db.session, cs, deps_from_app(app), None)
        db.session.execute(update(Payment).where(Payment.id == payment_id).values(status="processing"))
        db.session.commit()
        db.session.remove()
    page.goto(session["url"])
    expect(page.get_by_role("heading", name="Processing your payment")).to_be_visible()
    with page.expect_response(lambda r: "/status" in r.url and r.status == 204):
        pass  # htmx polls and nothing changes yet
    screenshot(page, "05-processing")
    assert_accessible(page)
    with app.app_context():
        db.session.execute(update(Payment).where(Payment.id == payment_id).values(
            status="succeeded", card_brand="visa", card_last4="4242"))
        db.session.commit()
        db.session.remove()
    expect_success(page, shop, session)
    wait_for_shop(page, shop, session)


def test_expired_session_shows_a_clear_page(app, page, api, shop, live):
    expired_by_merchant = api.create_session(shop.url)
    assert api.post(f"/v1/checkout/sessions/{expired_by_merchant['id']}/expire").json()["status"] == "expired"
    page.goto(expired_by_merchant["url"])
    expect(page.get_by_role("heading", name="This payment link has expired")).to_be_visible()
    assert page.locator("#pay-form").count() == 0
    screenshot(page, "06-expired")
    assert_accessible(page)
    page.get_by_role("link", name="Return to Acme Outfitters").click()
    page.wait_for_url(shop.url + "/cart")

    # Past its expiry time (the clock is driven through the row, not by waiting).
    overdue = api.create_session(shop.url)
    from app.extensions import db

    with app.app_context():
        db.session.execute(update(CheckoutSession).where(CheckoutSession.id == overdue["id"])
                           .values(expires_at=utcnow()))
        db.session.commit()
        db.session.remove()
    page.goto(overdue["url"])
    expect(page.get_by_role("heading", name="This payment link has expired")).to_be_visible()
    assert api.get(f"/v1/checkout/sessions/{overdue['id']}").json()["status"] == "expired"


def test_cancel_returns_to_cancel_url(page, checkout, shop):
    session = checkout()
    page.get_by_role("link", name="Cancel and return to Acme Outfitters").click()
    page.wait_for_url(shop.url + "/cart")
    assert session["id"] not in page.url


def test_phone_sized_viewport(page, checkout, shop):
    page.set_viewport_size({"width": 360, "height": 740})
    session = checkout()
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0
    box = pay_button(page).bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= 360 and box["height"] >= 44
    screenshot(page, "07-phone-form")
    assert_accessible(page)
    fill_card(page, SUCCESS_CARD)
    pay_button(page).click()
    expect_success(page, shop, session)
    screenshot(page, "07-phone-success")
    wait_for_shop(page, shop, session)


def test_keyboard_only_checkout(page, checkout, shop):
    session = checkout()
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.get_by_label("Card number")).to_be_focused()
    page.keyboard.type(SUCCESS_CARD)
    page.keyboard.press("Tab")
    expect(page.get_by_label("Expiry date")).to_be_focused()
    page.keyboard.type("1234")
    expect(page.get_by_label("Expiry date")).to_have_value("12 / 34")
    page.keyboard.press("Tab")
    expect(page.get_by_label("Security code")).to_be_focused()
    page.keyboard.type("123")
    page.keyboard.press("Tab")
    expect(pay_button(page)).to_be_focused()
    expect(page.get_by_label("Card number")).to_have_value("4242 4242 4242 4242")
    page.keyboard.press("Enter")
    expect_success(page, shop, session)
    wait_for_shop(page, shop, session)


def test_too_many_declines_refuse_politely(page, checkout, live):
    """The live processes allow 3 declines per session (LIVE_LIMITS in conftest.py)."""
    checkout()
    for _ in range(2):
        fill_card(page, DECLINE_CARD)
        pay_button(page).click()
        expect(page.get_by_role("alert").filter(has_text="insufficient funds")).to_be_visible()
        expect(pay_button(page)).to_be_enabled()
    fill_card(page, DECLINE_CARD)
    pay_button(page).click()
    expect(page.get_by_role("heading", name="We have paused payment attempts")).to_be_visible()
    expect(page.get_by_role("alert")).to_have_text("Your card has insufficient funds.")
    assert page.locator("#pay-form").count() == 0
    screenshot(page, "08-refused")
    assert_accessible(page)
    before = authorizations(live)
    page.reload()
    expect(page.get_by_role("heading", name="We have paused payment attempts")).to_be_visible()
    assert authorizations(live) == before


def test_security_headers_in_the_browser(page, checkout, live):
    checkout()
    response = page.goto(page.url)
    headers = response.headers
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert f"connect-src 'self' {live.sandbox_url}" in headers["content-security-policy"]
    assert headers["cache-control"] == "no-store"
    # An injected inline script does not run.
    blocked = page.evaluate("""() => new Promise(resolve => {
        document.addEventListener("securitypolicyviolation", e => resolve(e.violatedDirective), {once: true});
        const s = document.createElement("script"); s.textContent = "window.injected = true";
        document.body.appendChild(s);
    })""")
    assert blocked.startswith("script-src")
    assert page.evaluate("window.injected === undefined")


def _pg_dumps() -> list[str]:
    """pg_dump binaries to try: the embedded server's own (pgserver, found without importing it), then the system's."""
    candidates = []
    spec = importlib.util.find_spec("pgserver")
    if spec and spec.origin:
        candidates.append(str(Path(spec.origin).parent / "pginstall" / "bin" / "pg_dump"))
    candidates.append(shutil.which("pg_dump") or "/usr/bin/pg_dump")
    return [c for c in candidates if Path(c).exists()]


def _dump(database) -> str:
    """A data-only dump of the module's database, by the first pg_dump whose version fits the server."""
    from tests.conftest import _libpq

    errors = []
    for pg_dump in _pg_dumps():
        # 120 s bounds a hang; dumping a test database takes well under a second.
        result = subprocess.run([pg_dump, "--data-only", "--no-owner", _libpq(database["admin_url"])],
                                capture_output=True, text=True, timeout=120, check=False)
        if result.returncode == 0:
            return result.stdout
        errors.append(f"{pg_dump}: {result.stderr.strip()}")
    raise AssertionError("no pg_dump could dump the database:\n" + "\n".join(errors))


def test_no_card_number_in_the_database_or_the_logs(database, live, posted_to_kassa):
    """Runs last: every card used above must appear nowhere on Kassa's side."""
    numbers = [n for n in TEST_CARDS] + ["4242424242424241", "378282246310005"]
    spaced = [" ".join(n[i:i + 4] for i in range(0, len(n), 4)) for n in numbers]
    dump = _dump(database)
    assert "checkout_sessions" in dump and "tok_" in dump  # the dump has the data, tokens included
    for number in numbers + spaced:
        assert number not in dump, f"card number {number} found in the database dump"
    with admin_connect(database) as connection:
        for table, column in text_columns(connection):
            hits = connection.execute(
                sql.SQL("SELECT count(*) FROM {} WHERE {}::text ~ %s").format(
                    sql.Identifier(table), sql.Identifier(column)),
                ("|".join(numbers),)).fetchone()[0]
            assert hits == 0, f"card number in {table}.{column}"
    for name in ("web", "worker"):
        log = (live.log_dir / f"{name}.log").read_text(errors="replace")
        assert log, f"{name} log is empty"
        for number in numbers + spaced:
            assert number not in log, f"card number {number} found in the {name} log"
    assert posted_to_kassa, "no request to Kassa was recorded"
    for url, body in posted_to_kassa:
        for number in numbers:
            assert number not in body and number not in url, f"card number sent to Kassa: {url}"


def test_a_risk_rule_asking_for_3d_secure_challenges_a_card_that_needs_none(app, page, checkout, shop, live,
                                                                            live_merchant):
    """Issue 19's request_3ds: a merchant rule makes the PSP run 3-D Secure for the success card, which never
    asks for it by itself; the shopper sees the bank's challenge and the payment succeeds after it."""
    from app.extensions import db
    from app.risk import rules

    scope = Scope(live_merchant["id"], False)
    with app.app_context():
        rule = rules.create_rule(db.session, scope, action="request_3ds",
                                 predicate=":amount: > 43.2 and :amount: < 43.22")
        db.session.commit()
        rule_id = rule.id
        db.session.remove()
    try:
        session = checkout(line_items=[{"name": "Gift card", "quantity": 1, "unit_amount": 4321}])
        fill_card(page, SUCCESS_CARD)
        pay_button(page).click()
        page.wait_for_url(re.compile(re.escape(live.sandbox_url) + r"/challenge/.*"))
        page.get_by_role("button", name="Approve").click()
        expect_success(page, shop, session)
        with app.app_context():
            payment = db.session.scalars(select(Payment).where(Payment.merchant_id == scope.merchant_id)
                                         .order_by(Payment.created_at.desc()).limit(1)).one()
            assert payment.amount == 4321 and payment.status == "succeeded"
            assert payment.request_three_d_secure
            db.session.remove()
    finally:
        with app.app_context():
            rules.delete_rule(db.session, scope, rule_id)
            db.session.commit()
            db.session.remove()
