"""Account security in headless Chromium: setting up two-step sign-in, logging in with a code and with a
recovery code, re-authentication demanded (and asked again once it expired) before each sensitive action with
the typed form kept, the sessions page, and axe on every new page."""
import re
from datetime import timedelta

import pyotp
from playwright.sync_api import expect
from sqlalchemy import select

from app.accounts.models import Membership
from app.accounts.sessions import UserSession, start_session
from app.models_base import utcnow
from app.scoping import Scope
from app.webhooks import service as webhooks
from app.webhooks.settings import settings_for
from tests import factories
from tests.accounts.conftest import PASSWORD, dash
from tests.browser import assert_accessible


def sign_in(app, page, db_session, live_server, user) -> str:
    """Give the browser the cookie of a fresh, complete session (as after a login); returns its id."""
    row, token = start_session(db_session, user, user_agent="Chromium under test", ip="127.0.0.1",
                               second_factor_passed=True)
    db_session.commit()
    value = app.session_interface.get_signing_serializer(app).dumps({"sid": token})
    page.context.add_cookies([{"name": "session", "value": value, "url": live_server.url("/")}])
    return row.id


def expire_reauth(db_session, session_id: str) -> None:
    """The last confirmation was 10 minutes ago (the window is 5)."""
    db_session.rollback()
    db_session.get(UserSession, session_id).reauthenticated_at = utcnow() - timedelta(minutes=10)
    db_session.commit()


def confirm_with_password(page, check_accessible: bool = False) -> None:
    expect(page.get_by_role("heading", name="Confirm it is you")).to_be_visible()
    if check_accessible:
        assert_accessible(page)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Confirm with password").click()


def login_with_password(page, live_server, email: str) -> None:
    page.goto(live_server.url("/login"))
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()


def test_set_up_two_step_sign_in_then_log_in_with_a_code_and_a_recovery_code(page, live_server, db_session, team_of):
    merchant, users = team_of("owner")
    owner = users["owner"]
    login_with_password(page, live_server, owner.email)
    expect(page).to_have_url(re.compile(rf"/dashboard/{merchant.id}/test/$"))
    page.locator(".account-menu summary").click()  # the account menu
    page.get_by_role("link", name="Account security").click()
    assert_accessible(page)
    page.get_by_role("link", name="Set up two-step sign-in").click()
    expect(page.get_by_role("img", name="QR code to scan with your authenticator app")).to_be_visible()
    assert_accessible(page)
    secret = factories.totp_secret(db_session, owner)
    page.get_by_label("Code from your authenticator app").fill("123 456")
    page.get_by_role("button", name="Turn on two-step sign-in").click()
    expect(page.get_by_text("This code is not correct")).to_be_visible()
    assert_accessible(page)  # the error state too
    page.get_by_label("Code from your authenticator app").fill(pyotp.TOTP(secret).now())
    page.get_by_role("button", name="Turn on two-step sign-in").click()
    expect(page.get_by_role("heading", name="Two-step sign-in is on")).to_be_visible()
    codes = page.get_by_role("list", name="Recovery codes").locator("code").all_inner_texts()
    assert len(codes) == 10
    assert_accessible(page)
    page.get_by_role("link", name="I have saved my recovery codes").click()
    expect(page.get_by_text("10 recovery codes left.")).to_be_visible()

    # Log out and in: the password alone leads to the code, nowhere else.
    page.locator(".account-menu summary").click()
    page.get_by_role("button", name="Log out").click()
    login_with_password(page, live_server, owner.email)
    expect(page.get_by_role("heading", name="Two-step sign-in")).to_be_visible()
    assert_accessible(page)
    page.goto(live_server.url(dash(merchant.id, "settings/team")))
    expect(page).to_have_url(re.compile(r"/login/second-factor\?next="))
    # The code of the next 30-second step: the set-up already used this one, and a code counts once.
    page.get_by_label("Authentication code").fill(pyotp.TOTP(secret).at(utcnow() + timedelta(seconds=30)))
    page.get_by_role("button", name="Verify").click()
    expect(page).to_have_url(live_server.url(dash(merchant.id, "settings/team")))

    page.locator(".account-menu summary").click()
    page.get_by_role("button", name="Log out").click()
    login_with_password(page, live_server, owner.email)
    page.get_by_label("Authentication code").fill(codes[0])
    page.get_by_role("button", name="Verify").click()
    expect(page.get_by_text("You signed in with a recovery code. 9 recovery codes left.")).to_be_visible()


def test_api_keys_ask_again_and_keep_the_name(app, page, live_server, db_session, team_of):
    merchant, users = team_of("owner")
    session_id = sign_in(app, page, db_session, live_server, users["owner"])
    expire_reauth(db_session, session_id)
    page.goto(live_server.url(dash(merchant.id, "developers/api-keys")))
    page.get_by_label("Name (optional)").fill("Production server")
    page.get_by_role("button", name="Create secret key").click()
    confirm_with_password(page, check_accessible=True)
    expect(page).to_have_url(live_server.url(dash(merchant.id, "developers/api-keys")))
    expect(page.get_by_label("Name (optional)")).to_have_value("Production server")  # kept, not yet created
    expect(page.get_by_text("No test-mode API keys yet")).to_be_visible()
    page.get_by_role("button", name="Create secret key").click()
    expect(page.get_by_label("Secret key (test mode)")).to_be_visible()

    # The confirmation expires: rolling the key asks again.
    expire_reauth(db_session, session_id)
    page.goto(live_server.url(dash(merchant.id, "developers/api-keys")))
    page.get_by_role("link", name=re.compile(r"^Roll sk_test_")).click()
    confirm_with_password(page)
    page.get_by_label("In 1 hour").check()
    page.get_by_role("button", name="Roll key").click()
    expect(page.get_by_label("Secret key (test mode)")).to_be_visible()


def test_webhook_secret_reveal_and_rotation_ask_again(app, page, live_server, db_session, team_of):
    merchant, users = team_of("owner")
    endpoint, secret = webhooks.create_endpoint(db_session, Scope(merchant.id, False), settings_for(app),
                                                url="https://hooks.example.com/kassa", enabled_events=["*"])
    db_session.commit()
    session_id = sign_in(app, page, db_session, live_server, users["owner"])
    endpoint_page = live_server.url(dash(merchant.id, f"developers/webhooks/{endpoint.id}"))
    expire_reauth(db_session, session_id)
    page.goto(endpoint_page)
    page.get_by_role("button", name="Reveal secret").click()  # an htmx request: the whole page goes to confirm
    confirm_with_password(page)
    expect(page).to_have_url(endpoint_page)
    page.get_by_role("button", name="Reveal secret").click()
    expect(page.locator("#signing-secret")).to_have_value(secret)

    expire_reauth(db_session, session_id)
    page.goto(endpoint_page)
    page.get_by_label("Keep signing with the old secret").select_option("1h")
    page.get_by_role("button", name="Rotate secret").click()
    confirm_with_password(page)
    expect(page.get_by_label("Keep signing with the old secret")).to_have_value("1h")  # the choice kept
    page.get_by_role("button", name="Rotate secret").click()
    expect(page.get_by_text("Secret rotated.")).to_be_visible()


def test_team_changes_ask_again_and_keep_the_choice(app, page, live_server, db_session, team_of):
    merchant, users = team_of("owner", "analyst")
    analyst = db_session.scalars(select(Membership).where(Membership.user_id == users["analyst"].id)).one()
    session_id = sign_in(app, page, db_session, live_server, users["owner"])
    team = live_server.url(dash(merchant.id, "settings/team"))
    expire_reauth(db_session, session_id)
    page.goto(team)
    role = page.get_by_label(f"Role of {users['analyst'].email}")
    role.select_option("developer")
    page.locator(f"#member-{analyst.id}").get_by_role("button", name="Change role").click()
    confirm_with_password(page)
    expect(page).to_have_url(team)
    expect(role).to_have_value("developer")
    db_session.rollback()
    assert db_session.get(Membership, analyst.id).role == "analyst"
    page.locator(f"#member-{analyst.id}").get_by_role("button", name="Change role").click()
    expect(page.get_by_text("Role changed to developer.")).to_be_visible()

    expire_reauth(db_session, session_id)
    page.get_by_label("Email of the person to invite").fill("colleague@example.com")
    page.get_by_label("Role", exact=True).select_option("admin")
    page.get_by_role("button", name="Send invitation").click()
    confirm_with_password(page)
    expect(page.get_by_label("Email of the person to invite")).to_have_value("colleague@example.com")
    expect(page.get_by_label("Role", exact=True)).to_have_value("admin")
    page.get_by_role("button", name="Send invitation").click()
    expect(page.get_by_text("Invitation sent to colleague@example.com.")).to_be_visible()


def test_security_settings_ask_again_and_are_accessible(app, page, live_server, db_session, team_of):
    merchant, users = team_of("owner")
    factories.second_factor(db_session, users["owner"])
    db_session.commit()
    session_id = sign_in(app, page, db_session, live_server, users["owner"])
    settings = live_server.url(dash(merchant.id, "settings/security"))
    page.goto(settings)
    assert_accessible(page)
    expire_reauth(db_session, session_id)
    page.get_by_label("Every member must use two-step sign-in").check()
    page.get_by_label("Refunds up to this amount need no re-authentication").fill("50.00")
    page.get_by_label("Currency of that amount").select_option("USD")
    page.get_by_role("button", name="Save security settings").click()
    expect(page.get_by_label("Authentication code")).to_be_visible()  # password or code: the owner has one
    confirm_with_password(page)
    expect(page.get_by_label("Every member must use two-step sign-in")).to_be_checked()
    expect(page.get_by_label("Refunds up to this amount need no re-authentication")).to_have_value("50.00")
    page.get_by_role("button", name="Save security settings").click()
    expect(page.get_by_text("Security settings saved.")).to_be_visible()
    db_session.rollback()
    db_session.refresh(merchant)
    assert merchant.require_second_factor
    assert (merchant.refund_reauth_threshold, merchant.refund_reauth_currency) == (5000, "USD")


def test_admin_actions_ask_for_the_code(app, page, live_server, db_session):
    admin = factories.user(db_session, is_platform_admin=True)
    db_session.commit()
    secret = factories.totp_secret(db_session, admin)
    session_id = sign_in(app, page, db_session, live_server, admin)
    expire_reauth(db_session, session_id)
    page.goto(live_server.url("/admin/psp"))
    page.get_by_role("button", name="Force open").first.click()
    expect(page.get_by_role("heading", name="Confirm it is you")).to_be_visible()
    expect(page.get_by_label("Password")).to_have_count(0)  # admins confirm with the second factor
    assert_accessible(page)
    page.get_by_label("Authentication code").fill(pyotp.TOTP(secret).now())
    page.get_by_role("button", name="Confirm with code").click()
    expect(page).to_have_url(live_server.url("/admin/psp"))
    page.get_by_role("button", name="Force open").first.click()
    expect(page.get_by_text(re.compile(r"forced open"))).to_be_visible()


def test_sessions_page_lists_and_ends_sessions(app, page, live_server, db_session, team_of):
    _merchant, users = team_of("owner")
    owner = users["owner"]
    start_session(db_session, owner, ip="198.51.100.23", user_agent=(
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/17.1 Mobile/15E148 Safari/604.1"))
    sign_in(app, page, db_session, live_server, owner)
    page.goto(live_server.url("/dashboard/account/sessions"))
    expect(page.get_by_role("row", name=re.compile("This browser"))).to_be_visible()
    phone = page.get_by_role("row", name=re.compile("Mobile Safari 17 on iOS 17"))
    expect(phone).to_contain_text("198.51.100.23")
    assert_accessible(page)
    phone.get_by_role("button", name=re.compile("^End the session")).click()
    expect(page.get_by_text("That session was ended")).to_be_visible()
    expect(page.get_by_role("row", name=re.compile("Mobile Safari"))).to_have_count(0)
