"""Sign-up, log out and log in in real headless Chromium, plus axe checks of the login page and Home."""
import re

from playwright.sync_api import expect
from sqlalchemy import select

from app.accounts.models import Membership, User
from tests.browser import assert_accessible


def _sign_up(page, live_server, email: str) -> None:
    page.goto(live_server.url("/signup"))
    page.get_by_label("Your name").fill("Bea Browser")
    page.get_by_label("Business name").fill("Browser Bakery")
    page.get_by_label("Work email").fill(email)
    page.get_by_label("Password", exact=True).fill("a long enough password")
    page.get_by_label("Repeat the password").fill("a long enough password")
    page.get_by_role("button", name="Create account").click()


def test_sign_up_log_out_log_in(page, live_server, db_session):
    _sign_up(page, live_server, "bea@browser.test")
    expect(page).to_have_url(re.compile(r"/dashboard/mer_[0-9A-Z]+/test/$"))
    expect(page.locator(".merchant-switcher summary")).to_contain_text("Browser Bakery")
    expect(page.get_by_text("You are viewing test data")).to_be_visible()
    expect(page.get_by_role("navigation", name="Dashboard").get_by_role("link", name="Home")) \
        .to_have_attribute("aria-current", "page")

    user = db_session.scalars(select(User).where(User.email == "bea@browser.test")).one()
    assert [m.role for m in db_session.scalars(select(Membership).where(Membership.user_id == user.id))] == ["owner"]

    page.get_by_text("bea@browser.test").click()  # the account menu
    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(live_server.url("/login"))
    expect(page.get_by_text("You have been logged out.")).to_be_visible()

    page.goto(live_server.url("/dashboard/"))
    expect(page).to_have_url(re.compile(r"/login\?next="))

    page.get_by_label("Email").fill("bea@browser.test")
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_have_text("The email or password is not correct.")
    assert_accessible(page)  # the form in its error state too

    page.get_by_label("Password").fill("a long enough password")
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(r"/dashboard/mer_[0-9A-Z]+/test/$"))


def test_sign_up_with_bad_input_shows_messages_per_field(page, live_server, db_session):
    page.goto(live_server.url("/signup"))
    page.get_by_label("Work email").fill("not-an-email")
    page.get_by_label("Password", exact=True).fill("short")
    page.get_by_label("Repeat the password").fill("different")
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_text("Enter your name.")).to_be_visible()
    expect(page.get_by_text("Enter a valid email address")).to_be_visible()
    expect(page.get_by_text("Use at least 10 characters")).to_be_visible()
    expect(page.get_by_text("The two passwords do not match.")).to_be_visible()
    expect(page.get_by_label("Work email")).to_have_attribute("aria-invalid", "true")
    assert_accessible(page)
    assert db_session.scalars(select(User).where(User.email == "not-an-email")).first() is None


def test_login_page_and_home_are_accessible(page, live_server):
    page.goto(live_server.url("/login"))
    assert_accessible(page)
    _sign_up(page, live_server, "axe@browser.test")
    expect(page.get_by_role("heading", level=1)).to_be_visible()
    assert_accessible(page)  # Home
    base = page.url
    for path in ("settings/team", "settings/branding", "settings/audit-log"):
        page.goto(base + path)
        assert_accessible(page)
    page.goto(live_server.url("/signup"))
    assert_accessible(page)


def test_dashboard_works_at_360_px(page, live_server):
    _sign_up(page, live_server, "narrow@browser.test")
    page.set_viewport_size({"width": 360, "height": 740})
    for path in ("", "settings/team", "settings/branding", "settings/audit-log"):
        page.goto(re.sub(r"/test/.*$", "/test/", page.url) + path)
        # Nothing wider than the screen: no sideways scrolling of the page.
        assert page.evaluate("document.documentElement.scrollWidth") <= 360, path
        expect(page.get_by_role("navigation", name="Dashboard").get_by_role("link", name="Payments")).to_be_visible()


def test_keyboard_reaches_skip_link_then_navigation(page, live_server):
    _sign_up(page, live_server, "keys@browser.test")
    page.goto(page.url)  # a fresh load: keyboard focus starts at the top of the document
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    page.keyboard.press("Enter")
    assert page.evaluate("location.hash") == "#main"
    # Focus order follows the visual order: the top bar (brand, merchant switcher, mode switch, account
    # menu) comes before the side navigation.
    page.goto(page.url.split("#")[0])
    names = []
    for _ in range(6):
        page.keyboard.press("Tab")
        names.append(page.evaluate("document.activeElement.textContent.trim()"))
    assert names[:2] == ["Skip to content", "Kassa"]
    assert names.index("Switch to live mode") < names.index("Home")
