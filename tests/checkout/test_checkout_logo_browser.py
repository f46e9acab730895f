"""The merchant's branding logo on the hosted checkout, in Chromium: the page's CSP admits exactly the logo's
origin, the image loads, and nothing is blocked. The page is served in-process (tests/browser.py live_server);
the logo comes from another local origin, as from a merchant's CDN."""
import pytest
from playwright.sync_api import expect

from app.checkout import service
from app.scoping import Scope
from tests import factories
from tests.browser import browser, csp_violations, live_server, record_csp_violations  # noqa: F401  (fixtures)
from tests.checkout.conftest import PageServer, serving

LOGO = (b'<svg xmlns="http://www.w3.org/2000/svg" width="120" height="40">'
        b'<rect width="120" height="40" fill="#0f766e"/></svg>')


@pytest.fixture(scope="module")
def cdn():
    """The merchant's image host: /logo.svg, 404 for anything else."""
    yield from serving(PageServer(lambda path: ("image/svg+xml", LOGO if path == "/logo.svg" else b"")))


def test_the_logo_loads_under_the_checkout_policy(page, live_server, db_session, cdn):
    merchant = factories.merchant(db_session, display_name="Logo Shop", logo_url=f"{cdn.url}/logo.svg")
    cs = service.create_session(db_session, Scope(merchant.id, False), currency="EUR", amount=2500,
                                success_url="https://shop.example/thanks", cancel_url="https://shop.example/cart")
    db_session.commit()
    record_csp_violations(page)

    response = page.goto(live_server.url(f"/c/{cs.id}"))
    assert f"img-src 'self' data: {cdn.url};" in response.headers["content-security-policy"]
    logo = page.get_by_role("img", name="Logo Shop logo")
    expect(logo).to_be_visible()
    page.wait_for_function("document.querySelector('img.merchant-logo').complete")
    assert logo.evaluate("img => img.naturalWidth") == 120  # loaded, not a broken image
    assert csp_violations(page) == []
    assert page.console_errors == []
