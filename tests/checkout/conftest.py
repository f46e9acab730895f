"""Fixtures for the hosted checkout tests.

In-process tests use the shared ``app``/``client`` fixtures. Browser tests need the real thing: the
sandbox PSP, gunicorn web and the RQ worker started by launcher/processes.py against this module's
database, a merchant's shop (a tiny local HTTP server that success_url and cancel_url point at), and
headless Chromium driven by Playwright (the ``browser`` fixture and axe checks of tests/browser.py;
``page`` here adds a locale and collects console errors). Screenshots go to test-artifacts/checkout/.
"""
import http.server
import os
import threading
from pathlib import Path

import pytest
import requests

from app.accounts.api_keys import SECRET, create_key
from app.api.auth import hmac_key
from app.scoping import Scope
from launcher.processes import Ports, Services
from tests import factories
from tests.psp.fake_stripe import FakeStripe

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "checkout"
# Limits for the live processes: the per-session decline limit is low enough for one test to reach it;
# per IP and card they are high, because every test pays from 127.0.0.1 with the same test cards
# (those limits are tested in-process, test_checkout_page.py).
LIVE_LIMITS = ("session_confirmations=6,session_declines=3,ip_confirmations=10000,ip_declines=10000,"
               "fingerprint_confirmations=10000,fingerprint_declines=10000")
# Playwright waits (milliseconds): bounds on a hang, not timing assertions. A payment takes a job run
# and two PSP calls (well under a second locally); the htmx poll runs every second.
PAGE_TIMEOUT_MS = 20_000

SUCCESS_CARD = "4242424242424242"
MASTERCARD = "5555555555554444"
DECLINE_CARD = "4000000000009995"       # insufficient_funds
THREE_DS_CARD = "4000000000003220"
TEST_CARDS = (SUCCESS_CARD, MASTERCARD, DECLINE_CARD, THREE_DS_CARD)


class PageServer(http.server.ThreadingHTTPServer):
    """A tiny local website: ``answer(path)`` gives (content type, body) for each GET, 404 when the body is empty."""

    daemon_threads = True

    def __init__(self, answer):
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's naming
                content_type, body = answer(self.path)
                self.send_response(200 if body else 404)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"


def serving(server: PageServer):
    """Run ``server`` in a thread for a fixture's lifetime (use with ``yield from``)."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def shop_page(path: str) -> tuple[str, bytes]:
    """The merchant's website: a small page naming the path it was asked for."""
    return "text/html; charset=utf-8", (
        f"<!doctype html><html lang='en'><head><title>Shop</title></head><body><main>"
        f"<h1>Shop page</h1><p id='path'>{path}</p></main></body></html>").encode()


@pytest.fixture(scope="module")
def shop():
    yield from serving(PageServer(shop_page))


@pytest.fixture(scope="module")
def live(app, database, tmp_path_factory):
    """Sandbox PSP + web + worker (with the scheduler) on this module's database.

    Depends on ``app`` so that its start-of-module Redis flush happens before the worker registers.
    """
    yield from live_services(database, tmp_path_factory.mktemp("checkout-live"))


def live_services(database, base: Path, **env_overrides):
    """Start sandbox PSP, web and worker on ``database`` (logs under ``base``) for a fixture's lifetime
    (use with ``yield from``); ``env_overrides`` adds to their environment."""
    env = dict(os.environ)
    env.update(DATABASE_URL=database["app_url"], DATABASE_OWNER_URL=database["owner_url"],
               CHECKOUT_LIMITS=LIVE_LIMITS, LOG_LEVEL="DEBUG", **env_overrides)
    services = Services(env, Ports.pick(), base / "data", log_dir=base / "logs", web_workers=1, web_threads=8)
    services.start()
    try:
        yield services
    finally:
        services.stop()


@pytest.fixture(scope="module")
def fake_stripe():
    """The Stripe API stand-in (tests/psp/fake_stripe.py) for a module."""
    server = FakeStripe()
    yield server
    server.close()


@pytest.fixture(scope="module")
def live_merchant(app, live):
    """A merchant with branding and a secret test key, committed to the database the live web uses."""
    from app.extensions import db

    with app.app_context():
        merchant = factories.merchant(db.session, name="Acme Outfitters", display_name="Acme Outfitters",
                                      accent_color="#0f766e")
        key = create_key(db.session, Scope(merchant.id, False), SECRET, hmac_key=hmac_key())
        db.session.commit()
        info = {"id": merchant.id, "secret": key.plaintext}
        db.session.remove()
    return info


class Api:
    """The merchant's server talking to the live Kassa API."""

    def __init__(self, base_url: str, secret: str):
        self.base_url = base_url
        self.http = requests.Session()
        self.http.trust_env = False  # straight to 127.0.0.1, never through a proxy from the environment
        self.http.headers["Authorization"] = f"Bearer {secret}"

    def post(self, path: str, **json):
        # 10 s: a local API call answers in milliseconds (confirm waits 2 s at most); this bounds a hang.
        return self.http.post(self.base_url + path, json=json, timeout=10)

    def get(self, path: str, **params):
        return self.http.get(self.base_url + path, params=params, timeout=10)

    def create_session(self, shop_url: str, **overrides) -> dict:
        body = {
            "currency": "eur",
            "line_items": [{"name": "Trail running shoes", "quantity": 1, "unit_amount": 12900},
                           {"name": "Merino socks", "quantity": 2, "unit_amount": 1450}],
            "success_url": f"{shop_url}/thanks?order=42",
            "cancel_url": f"{shop_url}/cart",
            "customer_email": "shopper@example.com",
            "client_reference_id": "order-42",
        }
        body.update(overrides)
        response = self.post("/v1/checkout/sessions", **body)
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture(scope="module")
def api(live, live_merchant):
    return Api(live.web_url, live_merchant["secret"])


def sandbox_stats(live, idempotency_key: str | None = None) -> dict:
    params = {"idempotency_key": idempotency_key} if idempotency_key else {}
    return requests.get(f"{live.sandbox_url}/_admin/stats", params=params, timeout=10,
                        proxies={"http": None, "https": None}).json()


def authorizations(live, idempotency_key: str | None = None) -> int:
    stats = sandbox_stats(live, idempotency_key)
    return sum(acquirer["authorizations"] for acquirer in stats.values() if isinstance(acquirer, dict))


@pytest.fixture
def clear_limits(redis):
    """Card-testing counters start at zero for each test (only those: the worker's RQ keys stay)."""
    for key in redis.scan_iter("kassa:checkout:*"):
        redis.delete(key)
    yield


@pytest.fixture
def context(browser):
    """A fresh browser context per test (no cookies, no storage), US English."""
    ctx = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-US")
    ctx.set_default_timeout(PAGE_TIMEOUT_MS)
    yield ctx
    ctx.close()


@pytest.fixture
def page(context):
    """A page that records console errors in ``page.console_errors``."""
    page = context.new_page()
    page.console_errors = []
    page.on("console", lambda message: message.type == "error" and page.console_errors.append(message.text))
    return page


def screenshot(page, name: str) -> Path:
    """Save the page as test-artifacts/checkout/<name>.png (the issue's artifacts)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def text_columns(connection) -> list[tuple[str, str]]:
    """Every text-like column (text, varchar, json, jsonb) of every table in the public schema."""
    return connection.execute("""
        SELECT c.table_name, c.column_name FROM information_schema.columns c
        JOIN information_schema.tables t USING (table_schema, table_name)
        WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE'
          AND c.data_type IN ('text', 'character varying', 'json', 'jsonb', 'character')
    """).fetchall()
