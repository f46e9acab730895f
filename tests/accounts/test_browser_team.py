"""The team in Chromium: invite through the form, follow the link from the development mail outbox, join
as a new user; change a role with htmx (the row updates in place)."""
import re

from playwright.sync_api import expect
from sqlalchemy import select

from app.accounts.models import Membership
from tests.accounts.conftest import PASSWORD, dash
from tests.browser import assert_accessible


def _log_in(page, live_server, email, password=PASSWORD):
    page.goto(live_server.url("/login"))
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(r"/dashboard/mer_"))


def test_invite_and_join_through_the_mail_outbox(browser, page, live_server, db_session, team_of):
    merchant, users = team_of("owner")
    _log_in(page, live_server, users["owner"].email)
    page.goto(live_server.url(dash(merchant.id, "settings/team")))
    page.get_by_label("Email of the person to invite").fill("joiner@example.com")
    page.get_by_label("Role").select_option("analyst")
    page.get_by_role("button", name="Send invitation").click()
    expect(page.get_by_role("status").filter(has_text="Invitation sent to joiner@example.com.")).to_be_visible()
    expect(page.get_by_text("joiner@example.com as analyst")).to_be_visible()

    # The invitee, in another browser context: the mail outbox (development page), then the link.
    other = browser.new_context()
    invitee = other.new_page()
    invitee.goto(live_server.url("/dashboard/dev/mail"))
    invitee.locator("a[href*='/invitations/']").first.click()
    expect(invitee.get_by_role("heading", name="Join Team Shop")).to_be_visible()
    assert_accessible(invitee)
    invitee.get_by_label("Your name").fill("Jo Joiner")
    invitee.get_by_label("Password", exact=True).fill("joiner password 1")
    invitee.get_by_label("Repeat the password").fill("joiner password 1")
    invitee.get_by_role("button", name="Create account and join").click()
    expect(invitee).to_have_url(live_server.url(dash(merchant.id)))
    expect(invitee.get_by_text("You joined Team Shop as analyst.")).to_be_visible()
    other.close()


def test_role_change_with_htmx_updates_the_row_in_place(page, live_server, db_session, team_of):
    merchant, users = team_of("owner", "analyst")
    analyst = db_session.scalars(select(Membership).where(Membership.user_id == users["analyst"].id)).one()
    _log_in(page, live_server, users["owner"].email)
    page.goto(live_server.url(dash(merchant.id, "settings/team")))
    page.evaluate("window.__sameDocument = true")  # gone if the page reloads
    row = page.locator(f"#member-{analyst.id}")
    row.get_by_label(f"Role of {users['analyst'].email}").select_option("developer")
    row.get_by_role("button", name="Change role").click()
    expect(page.locator(f"#member-status-{analyst.id}")).to_have_text("Role changed to developer.")
    assert page.evaluate("window.__sameDocument") is True  # htmx swapped the row; no full page load
    db_session.rollback()
    assert db_session.get(Membership, analyst.id).role == "developer"
