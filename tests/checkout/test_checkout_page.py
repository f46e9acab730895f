"""The hosted page in-process: headers, what the HTML contains (and does not), states, idempotent
confirmation with attempt numbers, card-testing limits, and the sweep. The browser tests
(test_checkout_browser.py) cover the same page end to end."""
import re
import time
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from app.checkout import flow, service
from app.checkout.limits import CardTestingGuard, Limits, Subject
from app.checkout.models import CheckoutSession
from app.checkout.page import branding, contrast
from app.events import Event
from app.models_base import utcnow
from app.money import negotiate_locale
from app.payments.deps import deps_from_app
from app.payments.models import IdempotencyKey, Payment, PaymentAttempt
from app.payments.processing import apply_attempt_result
from app.psp.interfaces import Outcome, PspResult
from app.scoping import Scope
from tests import factories
from tests.conftest import app_config

pytestmark = pytest.mark.usefixtures("clear_limits")


@pytest.fixture(scope="module")
def app(database):
    from app import create_app
    from app.extensions import db

    # No worker runs here: confirmations answer at once (processing) instead of waiting 2 s for one.
    application = create_app(app_config(database, CONFIRM_WAIT_SECONDS=0))
    with application.app_context():
        application.extensions["redis"].flushdb()
    yield application
    with application.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def deps(app):
    return deps_from_app(app)


def new_session(db_session, scope, **values) -> CheckoutSession:
    params = {"currency": "EUR", "line_items": [{"name": "Shoes", "quantity": 1, "unit_amount": 12900},
                                                {"name": "Socks", "quantity": 2, "unit_amount": 1450}],
              "success_url": "https://shop.example/thanks?order=7", "cancel_url": "https://shop.example/cart"}
    params.update(values)
    cs = service.create_session(db_session, scope, **params)
    db_session.commit()
    return cs


def confirm(client, cs, token="tok_test", fingerprint="fp_1"):
    """What checkout.js posts once the vault has answered."""
    return client.post(f"/c/{cs.id}/confirm", json={"token": token, "card": {"fingerprint": fingerprint}})


def test_security_headers_and_nonces(client, db_session, scope):
    cs = new_session(db_session, scope)
    response = client.get(f"/c/{cs.id}")
    assert response.status_code == 200
    csp = response.headers["Content-Security-Policy"]
    nonce = re.search(r"'nonce-([^']+)'", csp).group(1)
    directives = dict(part.strip().split(" ", 1) for part in csp.split(";"))
    assert directives["script-src"] == f"'nonce-{nonce}'"
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert directives["frame-ancestors"] == "'none'"
    vault = client.application.config["SANDBOX_PSP_URL"].rstrip("/")
    assert directives["connect-src"] == f"'self' {vault}"  # the vault (SANDBOX_PSP_URL)
    assert directives["default-src"] == "'none'"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    html = response.get_data(as_text=True)
    scripts = re.findall(r"<script\b[^>]*>", html)
    assert scripts and all(f'nonce="{nonce}"' in tag and "src=" in tag for tag in scripts)
    assert re.findall(r"<style\b[^>]*>", html) == [f'<style nonce="{nonce}">']
    assert " on" not in " ".join(re.findall(r"<[^>]+>", html)).replace(" one", "")  # no onclick= etc.
    # A fresh nonce per response.
    again = client.get(f"/c/{cs.id}").headers["Content-Security-Policy"]
    assert re.search(r"'nonce-([^']+)'", again).group(1) != nonce


def test_card_fields_are_never_named(client, db_session, scope):
    cs = new_session(db_session, scope)
    html = client.get(f"/c/{cs.id}").get_data(as_text=True)
    inputs = re.findall(r"<input\b[^>]*>", html)
    assert len(inputs) == 3
    for tag in inputs:
        assert " name=" not in tag
        assert "aria-describedby=" in tag
    for field in ("cc-number", "cc-exp", "cc-csc"):
        assert f'autocomplete="{field}"' in html
    for label in ("Card number", "Expiry date", "Security code"):
        assert f">{label}</label>" in html
    assert 'role="alert"' in html and 'aria-live="polite"' in html


def test_order_summary_in_the_shoppers_locale(client, db_session, scope):
    cs = new_session(db_session, scope)
    german = client.get(f"/c/{cs.id}", headers={"Accept-Language": "de-DE,de;q=0.9,en;q=0.5"}).get_data(as_text=True)
    assert "158,00\xa0€" in german and "14,50\xa0€" in german and "29,00\xa0€" in german
    english = client.get(f"/c/{cs.id}", headers={"Accept-Language": "en-US"}).get_data(as_text=True)
    assert "€158.00" in english
    yen = new_session(db_session, scope, currency="JPY", line_items=None, amount=1500)
    assert "￥1,500" in client.get(f"/c/{yen.id}", headers={"Accept-Language": "ja-JP"}).get_data(as_text=True)
    dinar = new_session(db_session, scope, currency="KWD", line_items=None, amount=1500)
    assert "1.500" in client.get(f"/c/{dinar.id}", headers={"Accept-Language": "en-US"}).get_data(as_text=True)


def test_test_mode_banner_and_branding(client, db_session):
    merchant = factories.merchant(db_session, name="Yellow Ltd", display_name="Yellow Shop",
                                  accent_color="#ffeb3b", logo_url="https://cdn.example.com/logo.png")
    db_session.commit()
    test_cs = new_session(db_session, Scope(merchant.id, False))
    live_cs = new_session(db_session, Scope(merchant.id, True), success_url="https://shop.example/ok",
                          cancel_url=None)
    test_page = client.get(f"/c/{test_cs.id}")
    html = test_page.get_data(as_text=True)
    assert "Test mode" in html and "Yellow Shop" in html
    assert 'src="https://cdn.example.com/logo.png"' in html
    assert "img-src 'self' data: https://cdn.example.com" in test_page.headers["Content-Security-Policy"]
    # A light accent gets dark text on the button and a darkened shade for links.
    assert "--on-accent:#000000" in html
    live_page = client.get(f"/c/{live_cs.id}")
    assert "Test mode" not in live_page.get_data(as_text=True)
    # Live mode never tokenizes at the sandbox; without a Stripe publishable key it takes no card.
    assert live_page.status_code == 503 and b"not available" in live_page.data and b"pay-form" not in live_page.data
    assert client.application.config["SANDBOX_PSP_URL"] not in live_page.headers["Content-Security-Policy"]


def test_branding_keeps_text_readable():
    class M:
        name, display_name, logo_url = "M", None, "javascript:alert(1)"

    for colour in ("#ffffff", "#ffeb3b", "#000000", "#4f46e5", "#0f766e", "bogus", None):
        M.accent_color = colour
        brand = branding(M)
        assert contrast(brand.accent, brand.on_accent) >= 4.5 or contrast(brand.accent, brand.on_accent) >= \
            max(contrast(brand.accent, "#ffffff"), contrast(brand.accent, "#000000")) - 1e-9
        assert contrast(brand.accent_text, "#ffffff") >= 4.5
        assert brand.logo_url is None


def test_locale_negotiation():
    assert negotiate_locale([("de-CH", 1.0)]) == "de_CH"
    assert negotiate_locale([("xx-YY", 1.0), ("fr", 0.8)]) == "fr"
    assert negotiate_locale([("*", 1.0)]) == "en_US"
    assert negotiate_locale([]) == "en_US"


def test_unknown_and_malformed_ids_are_404_with_headers(client):
    for path in ("/c/cs_01JAAAAAAAAAAAAAAAAAAAAAAAxxxxxxxxxxxxxxxxxxxxxxxx", "/c/nonsense", "/c/cs_'<script>"):
        response = client.get(path)
        assert response.status_code == 404
        assert b"Payment page not found" in response.data
        assert response.headers["Cache-Control"] == "no-store"


def test_confirm_needs_a_token_and_no_cookie(client, db_session, scope):
    cs = new_session(db_session, scope)
    page = client.get(f"/c/{cs.id}")
    assert "Set-Cookie" not in page.headers  # the session id is the only credential
    response = client.post(f"/c/{cs.id}/confirm", json={"card": {}})
    assert response.status_code == 400 and response.json["error"]["param"] == "card"
    assert client.post(f"/c/{cs.id}/confirm", data="token=tok_x").status_code == 400
    # JSON nested too deeply for the parser is unreadable JSON like any other, not a server error.
    deep = client.post(f"/c/{cs.id}/confirm", data='{"token": ' + "[" * 100_000 + "]" * 100_000 + "}",
                       content_type="application/json")
    assert deep.status_code == 400 and deep.json["error"]["param"] == "card"


def test_double_confirmation_makes_one_payment_and_one_attempt(client, db_session, scope, deps):
    cs = new_session(db_session, scope)
    first = confirm(client, cs, token="tok_a")
    second = confirm(client, cs, token="tok_b")  # a second tab, a double click that slipped through
    assert first.status_code == 200 and second.status_code == 200
    assert first.json == {"redirect": f"/c/{cs.id}"} == second.json
    db_session.refresh(cs)
    assert cs.payment_id is not None and cs.attempt_number == 1
    attempts = db_session.scalars(select(PaymentAttempt).where(PaymentAttempt.payment_id == cs.payment_id)).all()
    assert len(attempts) == 1 and attempts[0].payment_method_token == "tok_a"
    keys = db_session.scalars(select(IdempotencyKey.key).where(IdempotencyKey.merchant_id == scope.merchant_id)).all()
    assert f"checkout:{cs.id}:1" in keys
    # Processing: the page polls, and the poll answers 204 until something changes.
    page = client.get(f"/c/{cs.id}").get_data(as_text=True)
    assert "Processing your payment" in page and 'hx-trigger="every 1s"' in page
    assert client.get(f"/c/{cs.id}/status").status_code == 204


def test_a_decline_raises_the_attempt_number_then_success_completes(client, db_session, scope, deps):
    cs = new_session(db_session, scope)
    confirm(client, cs, token="tok_declined", fingerprint="fp_declined")
    db_session.refresh(cs)
    attempt = db_session.scalars(select(PaymentAttempt).where(PaymentAttempt.payment_id == cs.payment_id)).one()
    apply_attempt_result(db_session, attempt.id, PspResult(
        outcome=Outcome.DECLINED, connector="sandbox", decline_code="insufficient_funds",
        raw={"card": {"brand": "visa", "last4": "9995", "fingerprint": "fp_declined"}}), deps)
    db_session.commit()
    poll = client.get(f"/c/{cs.id}/status")
    assert poll.status_code == 200 and poll.headers["HX-Refresh"] == "true"
    html = client.get(f"/c/{cs.id}").get_data(as_text=True)
    assert "Your card has insufficient funds. Please try another card." in html
    assert 'id="pay-form"' in html
    db_session.refresh(cs)
    assert cs.attempt_number == 2
    # The decline counted against the session and the card (the PSP's fingerprint).
    redis = _redis(client)
    assert redis.get(_counter("declines", "session", cs.id)) == b"1"
    assert redis.get(_counter("declines", "fingerprint", "fp_declined")) == b"1"
    # Reloading does not raise it again.
    client.get(f"/c/{cs.id}")
    db_session.refresh(cs)
    assert cs.attempt_number == 2

    confirm(client, cs, token="tok_good")
    attempts = db_session.scalars(select(PaymentAttempt).where(PaymentAttempt.payment_id == cs.payment_id)
                                  .order_by(PaymentAttempt.id)).all()
    assert [a.payment_method_token for a in attempts] == ["tok_declined", "tok_good"]
    keys = db_session.scalars(select(IdempotencyKey.key).where(IdempotencyKey.key.like(f"checkout:{cs.id}:%"))).all()
    assert sorted(keys) == [f"checkout:{cs.id}:1", f"checkout:{cs.id}:2"]
    # The worker would authorize and capture; here the payment is marked paid the way the worker's
    # outcome leaves it, and the page completes the session.
    db_session.execute(update(Payment).where(Payment.id == cs.payment_id).values(
        status="succeeded", card_brand="visa", card_last4="4242"))
    db_session.commit()
    html = client.get(f"/c/{cs.id}").get_data(as_text=True)
    assert "Payment successful" in html and "Visa ending in 4242" in html
    assert 'data-redirect-url="https://shop.example/thanks?order=7&amp;session_id=' + cs.id + '"' in html
    db_session.refresh(cs)
    assert cs.status == "complete"
    events = db_session.scalars(select(Event.type).where(Event.object_id == cs.id)).all()
    assert events == ["checkout.session.completed"]
    # Completed: no form, and another confirmation changes nothing.
    assert 'id="pay-form"' not in html
    assert confirm(client, cs, token="tok_again").json == {"redirect": f"/c/{cs.id}"}
    assert db_session.scalar(select(func.count()).select_from(PaymentAttempt)
                             .where(PaymentAttempt.payment_id == cs.payment_id)) == 2


def _redis(client):
    return client.application.extensions["redis"]


def _counter(kind, subject, value):
    limits = Limits()
    return f"kassa:checkout:{kind}:{subject}:{value}:{int(time.time() // limits.window_seconds)}"


def test_three_d_secure_return_shows_processing_until_the_outcome(client, db_session, scope, deps):
    cs = new_session(db_session, scope)
    confirm(client, cs, token="tok_3ds")
    db_session.refresh(cs)
    attempt = db_session.scalars(select(PaymentAttempt).where(PaymentAttempt.payment_id == cs.payment_id)).one()
    apply_attempt_result(db_session, attempt.id, PspResult(
        outcome=Outcome.REQUIRES_ACTION, connector="sandbox", psp_reference="auth_1",
        action_url="https://sandbox.example/challenge/auth_1"), deps)
    db_session.commit()
    # Confirming again sends the shopper to the challenge, without a new attempt.
    assert confirm(client, cs, token="tok_other").json == {"redirect": "https://sandbox.example/challenge/auth_1"}
    html = client.get(f"/c/{cs.id}").get_data(as_text=True)
    assert 'href="https://sandbox.example/challenge/auth_1"' in html
    back = client.get(f"/c/{cs.id}/return")
    assert back.status_code == 303 and back.headers["Location"] == f"/c/{cs.id}?returned=1"
    waiting = client.get(back.headers["Location"]).get_data(as_text=True)
    assert "Processing your payment" in waiting and f"/c/{cs.id}/status?returned=1" in waiting
    assert client.get(f"/c/{cs.id}/status?returned=1").status_code == 204
    # The challenge failed: back to the form with a message.
    apply_attempt_result(db_session, attempt.id, PspResult(
        outcome=Outcome.DECLINED, connector="sandbox", psp_reference="auth_1",
        decline_code="authentication_failed"), deps)
    db_session.commit()
    assert client.get(f"/c/{cs.id}/status?returned=1").headers["HX-Refresh"] == "true"
    html = client.get(f"/c/{cs.id}?returned=1").get_data(as_text=True)
    assert "Your bank could not confirm that it is you" in html and 'id="pay-form"' in html


def test_card_testing_limits_refuse_politely(app, client, db_session, scope):
    cs = new_session(db_session, scope)
    app.config["CHECKOUT_LIMITS"] = "session_confirmations=2,fingerprint_declines=1"
    try:
        assert confirm(client, cs, token="tok_1").status_code == 200
        # The first attempt is still processing, so the second request only shows the page; count it anyway
        # the way a tester's second page would: a confirmation against the same session.
        guard = CardTestingGuard(_redis(client), Limits.from_config(app.config["CHECKOUT_LIMITS"]))
        guard.count_confirmation(Subject(cs.id, "127.0.0.1", None), time.time())
        db_session.execute(update(Payment).where(Payment.id == cs.payment_id).values(status="requires_payment_method"))
        db_session.commit()
        refused = confirm(client, cs, token="tok_2")
        assert refused.status_code == 429
        assert refused.json["error"]["code"] == "too_many_attempts"
        assert "try again later" in refused.json["error"]["message"]
        page = client.get(f"/c/{cs.id}")
        assert page.status_code == 429 and b"paused payment attempts" in page.data and b"pay-form" not in page.data

        # Per card fingerprint, across sessions: one declined card is refused on another page too.
        other = new_session(db_session, scope)
        guard.count_declines(Subject("cs_elsewhere", "10.0.0.9", "fp_stolen"), time.time())
        assert confirm(client, other, token="tok_3", fingerprint="fp_stolen").status_code == 429
        assert confirm(client, other, token="tok_4", fingerprint="fp_fine").status_code == 200
    finally:
        app.config.pop("CHECKOUT_LIMITS")


def test_limits_per_ip(redis):
    guard = CardTestingGuard(redis, Limits(ip_declines=2, window_seconds=60))
    now = 1_000_000.0
    a, b = Subject("cs_a", "203.0.113.5", "fp_a"), Subject("cs_b", "203.0.113.5", "fp_b")
    assert guard.refused(a, now) is None
    guard.count_declines(a, now)
    guard.count_declines(b, now)
    assert guard.refused(Subject("cs_c", "203.0.113.5", "fp_c"), now) == "ip_declines"
    assert guard.refused(Subject("cs_c", "198.51.100.1", "fp_c"), now) is None
    # A new window starts afresh.
    assert guard.refused(Subject("cs_c", "203.0.113.5", "fp_c"), now + 60) is None


def test_a_browser_lying_about_the_card_is_stopped(app, client, db_session, scope, deps):
    """The per-card limit uses the fingerprint the browser relays from the vault; a page that sends another
    one than the PSP then reports has been doctored, and its session and address are stopped."""
    cs = new_session(db_session, scope)
    confirm(client, cs, token="tok_lie", fingerprint="fp_made_up")
    db_session.refresh(cs)
    attempt = db_session.scalars(select(PaymentAttempt).where(PaymentAttempt.payment_id == cs.payment_id)).one()
    apply_attempt_result(db_session, attempt.id, PspResult(
        outcome=Outcome.DECLINED, connector="sandbox", decline_code="stolen_card",
        raw={"card": {"fingerprint": "fp_real"}}), deps)
    db_session.commit()
    page = client.get(f"/c/{cs.id}")
    assert page.status_code == 429 and b"paused payment attempts" in page.data
    other = new_session(db_session, scope)
    assert confirm(client, other, token="tok_next", fingerprint="fp_other").status_code == 429  # same address
    redis = _redis(client)
    assert redis.get(_counter("declines", "fingerprint", "fp_real")) == b"1"


def test_limits_configuration():
    limits = Limits.from_config("session_declines=2, ip_confirmations=7")
    assert limits.session_declines == 2 and limits.ip_confirmations == 7 and limits.window_seconds == 3600
    assert Limits.from_config({"window_seconds": "10"}).window_seconds == 10
    with pytest.raises(ValueError):
        Limits.from_config("bogus=1")


def test_sweep_expires_due_sessions_and_completes_paid_ones(app, db_session, scope, deps):
    due = new_session(db_session, scope)
    fresh = new_session(db_session, scope)
    paid = new_session(db_session, scope)
    processing = new_session(db_session, scope)
    for cs in (paid, processing, due):
        flow._ensure_payment(db_session, cs, deps, None)
    db_session.execute(update(Payment).where(Payment.id == paid.payment_id).values(status="succeeded"))
    db_session.execute(update(Payment).where(Payment.id == processing.payment_id).values(status="processing"))
    past = utcnow() - timedelta(seconds=1)
    db_session.execute(update(CheckoutSession).where(CheckoutSession.id.in_([due.id, processing.id]))
                       .values(expires_at=past))
    db_session.commit()
    counts = flow.sweep(db_session, deps=deps)
    assert counts == {"completed": 1, "expired": 1}
    statuses = {cs.id: db_session.get(CheckoutSession, cs.id, populate_existing=True).status
                for cs in (due, fresh, paid, processing)}
    assert statuses == {due.id: "expired", fresh.id: "open", paid.id: "complete", processing.id: "open"}
    # The abandoned payment is canceled with the session.
    assert db_session.get(Payment, due.payment_id, populate_existing=True).status == "canceled"
    types = db_session.scalars(select(Event.type).where(Event.object_id.in_([due.id, paid.id]))
                               .order_by(Event.id)).all()
    assert sorted(types) == ["checkout.session.completed", "checkout.session.expired"]
    # Running it again changes nothing.
    assert flow.sweep(db_session, deps=deps) == {"completed": 0, "expired": 0}


def test_sweep_job_is_scheduled():
    from app.jobs.schedule import PERIODIC

    assert any(p.func == "app.jobs.checkout.sweep_checkout_sessions" for p in PERIODIC)
