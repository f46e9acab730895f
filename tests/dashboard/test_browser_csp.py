"""The dashboard, admin and login pages in Chromium under their Content-Security-Policy (app/headers.py): pages
load and their htmx interactions work with no console error and no CSP violation, and the behaviour that
used to sit in inline handlers (static/kassa.js) still works. (Headers per audience: tests/test_security_headers.py.)
"""
import pytest
from playwright.sync_api import expect

from tests import factories
from tests.browser import csp_violations, record_csp_violations
from tests.dashboard.conftest import T, browser_login, paid, stored_payment


@pytest.fixture
def watched(page):
    """The page, recording console errors, uncaught exceptions and CSP violations; ``check()`` asserts none."""
    problems = []
    record_csp_violations(page)
    page.on("console", lambda m: (m.type == "error" or "Content Security Policy" in m.text)
            and problems.append(f"console {m.type}: {m.text}"))
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))

    def check():
        assert (problems, csp_violations(page)) == ([], []), page.url

    page.check = check
    page.forget_console = problems.clear  # after an error the test caused on purpose
    return page


def sign_in(app, page, db_session, live_server, user) -> None:
    browser_login(app, page.context, db_session, user, live_server.url("/"))


def test_login_page(watched, live_server, db_session, shop):
    page = watched
    s = shop()
    response = page.goto(live_server.url("/login"))
    assert "script-src 'self'" in response.headers["content-security-policy"]
    expect(page.get_by_role("heading", name="Log in to Kassa")).to_be_visible()
    page.check()
    page.get_by_label("Email").fill(s.users["owner"].email)
    page.get_by_label("Password").fill(factories.PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(live_server.url(s.url()))
    page.check()


def test_dashboard_pages_and_htmx(app, watched, live_server, db_session, shop, jobs):
    page = watched
    s = shop()
    for i in range(3):
        stored_payment(db_session, s.scope, created_at=T(i), amount=1000 + i, customer_email=f"csp{i}@example.com")
    payment_id = paid(db_session, s.scope, jobs, amount=4000)
    db_session.commit()
    sign_in(app, page, db_session, live_server, s.users["owner"])

    response = page.goto(live_server.url(s.url()))
    assert "script-src 'self'" in response.headers["content-security-policy"]
    expect(page.get_by_role("heading", level=1).first).to_be_visible()
    page.check()

    # Filters load the results through htmx, in place (hx-get on the form, swapped into the results).
    page.goto(live_server.url(s.url("payments")))
    page.evaluate("window.__sameDocument = true")
    with page.expect_request(lambda r: "/payments/updates" in r.url):  # the poller runs in a visible tab
        pass
    page.get_by_label("Search").fill("csp1@example.com")
    page.get_by_label("Search").press("Enter")
    expect(page.locator("[data-payment-id]")).to_have_count(1)
    assert page.evaluate("window.__sameDocument") is True
    page.check()

    # A failed htmx request shows the list's error message; the next request hides it (kassa.js).
    page.route("**/payments?*", lambda route: route.abort())
    page.get_by_label("Search").fill("csp2@example.com")
    page.get_by_label("Search").press("Enter")
    expect(page.locator("#list-error")).to_be_visible()
    page.unroute("**/payments?*")
    page.forget_console()  # the failed request, logged by the browser and by htmx
    page.check()
    page.get_by_label("Search").fill("csp2@example.com")
    page.get_by_label("Search").press("Enter")
    expect(page.locator("#list-error")).to_be_hidden()
    expect(page.locator("[data-payment-id]")).to_have_count(1)

    page.check()

    for path in (f"payments/{payment_id}", "refunds", "balances", "settings/branding", "settings/team",
                 "settings/audit-log", "developers/api-keys", "developers/webhooks", "developers/logs",
                 "developers/api-reference"):
        response = page.goto(live_server.url(s.url(path)))
        assert response.status == 200, path
        expect(page.get_by_role("heading", level=1).first).to_be_visible()
        page.check()


def test_new_secret_key_is_selected_on_focus(app, watched, live_server, db_session, shop):
    page = watched
    s = shop()
    sign_in(app, page, db_session, live_server, s.users["owner"])
    page.goto(live_server.url(s.url("developers/api-keys")))
    page.get_by_role("button", name="Create secret key").click()
    key = page.get_by_label("Secret key (test mode)")
    page.wait_for_load_state("domcontentloaded")  # deferred scripts (kassa.js) have run by then
    key.focus()
    assert page.evaluate("""() => { const i = document.activeElement;
        return i.selectionStart === 0 && i.selectionEnd === i.value.length && i.value.startsWith("sk_test_"); }""")
    page.check()


def test_admin_pages(app, watched, live_server, db_session):
    page = watched
    admin = factories.user(db_session, is_platform_admin=True)
    db_session.commit()
    sign_in(app, page, db_session, live_server, admin)
    for path, heading in (("/admin/", "Platform overview"), ("/admin/psp", "PSP connectors"),
                          ("/admin/ledger", "Ledger")):
        response = page.goto(live_server.url(path))
        assert response.status == 200, path
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
        expect(page.get_by_role("heading", level=1, name=heading)).to_be_visible()
        page.check()
