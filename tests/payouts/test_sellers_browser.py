"""The Sellers page in headless Chromium: an owner creates a seller, is asked to confirm who they are before the
bank account form, sees an invalid IBAN refused on its field, saves a valid one and sees it masked with its
cooling period; axe finds no serious accessibility problem on any of these pages."""
from datetime import timedelta

from playwright.sync_api import expect

from app.accounts.auth_models import UserSession
from app.accounts.sessions import start_session
from app.models_base import utcnow
from tests import factories
from tests import browser as browser_fixtures
from tests.browser import assert_accessible
from tests.dashboard import conftest as dashboard_fixtures

app, shop = dashboard_fixtures.app, dashboard_fixtures.shop  # the dashboard tests' fixtures
browser, live_server, page = browser_fixtures.browser, browser_fixtures.live_server, browser_fixtures.page
IBAN = "DE89370400440532013000"


def sign_in(app, page, db_session, user, base_url: str) -> str:
    row, token = start_session(db_session, user, second_factor_passed=True)
    db_session.commit()
    value = app.session_interface.get_signing_serializer(app).dumps({"sid": token})
    page.context.add_cookies([{"name": app.config.get("SESSION_COOKIE_NAME", "session"), "value": value,
                               "url": base_url}])
    return row.id


def test_an_owner_adds_a_seller_and_its_bank_account(app, page, live_server, db_session, shop):
    s = shop("Browser Market")
    session_id = sign_in(app, page, db_session, s.users["owner"], live_server.url("/"))
    page.goto(live_server.url(s.url("sellers")))
    expect(page.get_by_role("link", name="Sellers")).to_have_attribute("aria-current", "page")
    expect(page.get_by_role("heading", name="Sellers")).to_be_visible()
    assert_accessible(page)

    page.get_by_label("Name").fill("Clara Ceramics")
    page.get_by_role("button", name="Create seller").click()
    expect(page.get_by_role("heading", name="Clara Ceramics")).to_be_visible()
    expect(page.locator("#bank-account")).to_contain_text("No bank account yet")
    assert_accessible(page)

    # The last confirmation is old: the form waits for the password.
    db_session.rollback()
    db_session.get(UserSession, session_id).reauthenticated_at = utcnow() - timedelta(minutes=10)
    db_session.commit()
    page.get_by_role("link", name="Add a bank account").click()
    expect(page.get_by_role("heading", name="Confirm it is you")).to_be_visible()
    page.get_by_label("Password").fill(factories.PASSWORD)
    page.get_by_role("button", name="Confirm with password").click()

    expect(page.get_by_role("heading", name="Add the payout bank account of Clara Ceramics")).to_be_visible()
    assert_accessible(page)
    page.get_by_label("Country of the account").fill("DE")
    page.get_by_label("IBAN", exact=True).fill("DE89 3704 0044 0532 0130 01")
    page.get_by_role("button", name="Save the bank account").click()
    expect(page.locator("#iban-error")).to_contain_text("check digits do not match")
    assert_accessible(page)
    page.get_by_label("IBAN", exact=True).fill(IBAN)
    page.get_by_role("button", name="Save the bank account").click()
    expect(page.get_by_role("status").filter(has_text="Bank account •••• 3000 saved")).to_be_visible()
    expect(page.locator("#bank-account")).to_contain_text("first payout after")
    assert IBAN not in page.content()
    assert_accessible(page)

    page.get_by_role("link", name="← Sellers").click()
    row = page.locator("tr", has_text="Clara Ceramics")
    expect(row).to_contain_text("•••• 3000")
    assert IBAN not in page.content()
