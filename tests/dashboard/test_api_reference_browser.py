"""Developers › API reference in headless Chromium: code formatting, examples, "Copy as curl" puts the command
in the clipboard, no console errors, and axe finds no serious violation."""
import pytest
from playwright.sync_api import expect

from app.dashboard.api_reference import reference
from tests.browser import assert_accessible
from tests.dashboard.conftest import browser_login
from tests.dashboard.test_browser import ARTIFACTS, shot


@pytest.fixture
def tab(browser, live_server):
    """A page whose context may use the clipboard, recording console errors and failed requests."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url())
    context.set_default_timeout(15_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("response", lambda response: errors.append(f"{response.status} {response.url}")
            if response.status >= 400 else None)
    page.console_errors = errors
    yield page
    context.close()


def test_the_api_reference_renders_and_copies_curl(app, tab, live_server, db_session, shop):
    s = shop()
    browser_login(app, tab.context, db_session, s.users["developer"], live_server.url("/"))
    tab.goto(live_server.url(s.url("developers/api-reference")))
    expect(tab.get_by_role("heading", name="API reference", level=1)).to_be_visible()

    confirm = tab.locator("section#confirmPayment")
    expect(confirm.locator("p code", has_text="processing")).to_be_visible()  # `processing` rendered as code
    create = tab.locator("section#createPayment")
    expect(create.get_by_role("heading", name="Response 200")).to_be_visible()
    expect(create.locator("pre").filter(has_text='"object": "payment"')).to_be_visible()
    currencies = create.locator("details.enum-values").first
    currencies.locator("summary").click()
    expect(currencies.locator("code", has_text="JPY")).to_be_visible()

    expected = next(op["curl"] for op in reference(live_server.url("/"))["operations"] if op["id"] == "createPayment")
    create.get_by_role("button", name="Copy as curl").click()
    expect(create.get_by_role("status")).to_have_text("Copied to the clipboard.")
    assert tab.evaluate("navigator.clipboard.readText()") == expected
    assert expected.startswith(f"curl {live_server.url('/v1/payments')}") and "-u sk_test_...:" in expected

    shot(tab, "api-reference")
    create.screenshot(path=str(ARTIFACTS / "api-reference-create-payment.png"))
    assert tab.console_errors == []
    assert_accessible(tab)
