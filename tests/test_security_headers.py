"""Security headers per audience (app/headers.py, app/checkout/routes.py): pages of the dashboard, admin and
login get a strict Content-Security-Policy without inline script, no framing, nosniff and a Referrer-Policy;
the checkout keeps its own policy, which admits the merchant's logo; the JSON API gets nosniff and no
framing; HSTS only in production. The templates those pages come from carry no inline script, event handler,
style or evaluated htmx attribute, which the policy would block (the browser proof: tests/dashboard/
test_browser_csp.py)."""
import re
from pathlib import Path

import pytest

from app import create_app
from app.checkout import service
from app.extensions import db as _db
from app.scoping import Scope
from tests import factories
from tests.accounts.conftest import login_as
from tests.conftest import app_config

TEMPLATES = Path(__file__).resolve().parents[1] / "templates"


def directives(response) -> dict[str, str]:
    policy = response.headers["Content-Security-Policy"]
    return dict((part.strip() + " ").split(" ", 1) for part in policy.split(";"))


def assert_strict_page_headers(response) -> None:
    csp = directives(response)
    assert csp["default-src"].strip() == "'none'"
    assert csp["script-src"].strip() == "'self'"  # no 'unsafe-inline', no nonce, no 'unsafe-eval'
    assert csp["style-src"].strip() == "'self'"
    assert csp["frame-ancestors"].strip() == "'none'"
    assert csp["base-uri"].strip() == "'none'"
    assert csp["form-action"].strip() == "'self'"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Referrer-Policy"] == "same-origin"


def checkout_session(db_session, merchant):
    cs = service.create_session(db_session, Scope(merchant.id, False), currency="EUR", amount=1500,
                                success_url="https://shop.example/thanks", cancel_url="https://shop.example/cart")
    db_session.commit()
    return cs


def test_login_page(client):
    response = client.get("/login")
    assert response.status_code == 200
    assert_strict_page_headers(response)
    assert "Strict-Transport-Security" not in response.headers  # not in test or development


def test_dashboard_page(client, db_session, merchant):
    owner = factories.member(db_session, merchant, role="owner")
    login_as(client, db_session, owner)
    response = client.get(f"/dashboard/{merchant.id}/test/")
    assert response.status_code == 200
    assert_strict_page_headers(response)


def test_admin_page(client, db_session):
    admin = factories.user(db_session, is_platform_admin=True)
    login_as(client, db_session, admin)
    response = client.get("/admin/")
    assert response.status_code == 200
    assert_strict_page_headers(response)


def test_error_pages_outside_any_blueprint(client):
    response = client.get("/no-such-page")
    assert response.status_code == 404
    assert_strict_page_headers(response)


def test_checkout_keeps_its_own_policy_and_admits_the_logo(client, db_session):
    merchant = factories.merchant(db_session, logo_url="https://cdn.example.com:8443/brand/logo.png")
    cs = checkout_session(db_session, merchant)
    response = client.get(f"/c/{cs.id}")
    assert response.status_code == 200
    csp = directives(response)
    assert csp["script-src"].startswith("'nonce-")
    assert csp["img-src"].split() == ["'self'", "data:", "https://cdn.example.com:8443"]
    assert csp["frame-ancestors"].strip() == "'none'"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize("logo_url, origin", [
    ("https://user:secret@cdn.example.com/logo.png", None),  # credentials would be shown to every shopper
    ("https://cdn.example.com:99999/logo.png", None),
    ("https://CDN.Example.com/logo.png", "https://cdn.example.com"),
    ("http://[::1]:8000/logo.png", "http://[::1]:8000"),
])
def test_logo_origin_is_a_valid_source(client, db_session, logo_url, origin):
    merchant = factories.merchant(db_session, logo_url=logo_url)
    cs = checkout_session(db_session, merchant)
    response = client.get(f"/c/{cs.id}")
    img_src = directives(response)["img-src"].split()
    assert img_src == ["'self'", "data:", *([origin] if origin else [])]
    assert (logo_url in response.get_data(as_text=True)) == bool(origin)


def test_api_gets_nosniff_and_no_framing_and_stays_json(client):
    response = client.get("/v1/account")
    assert response.status_code == 401
    assert response.headers["Content-Type"] == "application/json"
    assert response.get_json()["error"]["type"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert directives(response)["frame-ancestors"].strip() == "'none'"
    assert directives(response)["default-src"].strip() == "'none'"
    assert "Strict-Transport-Security" not in response.headers


@pytest.fixture
def production_client(database):
    application = create_app(app_config(database, KASSA_ENV="production", TESTING=False))
    yield application.test_client()
    with application.app_context():
        _db.session.remove()
        _db.engine.dispose()


def test_hsts_in_production_on_every_audience(production_client, db_session, merchant):
    cs = checkout_session(db_session, merchant)
    for path in ("/login", "/admin/", f"/c/{cs.id}", "/v1/account", "/no-such-page"):
        response = production_client.get(path)
        assert response.headers["Strict-Transport-Security"] == "max-age=31536000", path
        assert response.headers["X-Content-Type-Options"] == "nosniff", path


# What a page's CSP blocks: inline scripts, inline event handlers (onclick=...), htmx's hx-on (evaluated), trigger
# filters in brackets and js:/javascript: values (evaluated), style attributes and <style> elements.
FORBIDDEN = {
    "inline script": re.compile(r"<script\b(?![^>]*\bsrc=)[^>]*>", re.I),
    "event handler attribute": re.compile(r"<[a-z][^>]*\son[a-z]+\s*=", re.I),
    "hx-on": re.compile(r"\b(?:data-)?hx-on", re.I),
    "htmx trigger filter": re.compile(r"hx-trigger=\"[^\"]*\[", re.I),
    "evaluated htmx value": re.compile(r"hx-(?:vals|vars|headers)=['\"]\s*(?:js|javascript):", re.I),
    "style attribute": re.compile(r"<[a-z][^>]*\sstyle\s*=", re.I),
    "style element": re.compile(r"<style\b", re.I),
}


def test_page_templates_need_nothing_the_policy_blocks():
    """Every template outside the checkout (which nonces its own) runs under the page policy."""
    found = []
    for path in sorted(TEMPLATES.rglob("*.html")):
        if path.relative_to(TEMPLATES).parts[0] == "checkout":
            continue
        text = re.sub(r"\{#.*?#\}", "", path.read_text(), flags=re.S)  # comments may name what they avoid
        found += [f"{path.relative_to(TEMPLATES)}: {what}" for what, pattern in FORBIDDEN.items()
                  if pattern.search(text)]
    assert found == []
