"""Re-authentication before sensitive actions, by request: each action is refused without a recent confirmation
and sent through the confirmation page, works after it, and asks again once the window has passed; the typed
form comes back filled in (never a password, code or card number); platform admins confirm with the code."""
from datetime import timedelta

import pyotp
import pytest
from sqlalchemy import select

from app.accounts.api_keys import create_key
from app.accounts.models import Membership
from app.accounts.sessions import UserSession
from app.api.auth import hmac_key
from app.models_base import utcnow
from app.scoping import Scope
from app.webhooks import service as webhooks
from app.webhooks.settings import settings_for
from tests import factories
from tests.accounts.conftest import PASSWORD, audit_rows, csrf, csrf_from, dash, login_as

WINDOW = timedelta(seconds=300)  # REAUTH_WINDOW_SECONDS' default
CONFIRM = "/dashboard/account/confirm"


def age_reauth(db_session, session_id: str, by: timedelta) -> None:
    """Move the session's last confirmation into the past (the clock of this test)."""
    db_session.rollback()
    db_session.get(UserSession, session_id).reauthenticated_at = utcnow() - by
    db_session.commit()


def confirm_with_password(client, next_url: str, password: str = PASSWORD):
    page = client.get(f"{CONFIRM}?next={next_url}")
    return client.post(CONFIRM, data={"method": "password", "password": password, "next": next_url,
                                      "csrf_token": csrf_from(page.get_data(as_text=True))})


@pytest.fixture
def owner_shop(app, db_session, team_of):
    """A merchant with an owner and an analyst, a secret API key and a webhook endpoint."""
    merchant, users = team_of("owner", "analyst")
    scope = Scope(merchant.id, False)
    key = create_key(db_session, scope, "secret", hmac_key=hmac_key()).row
    endpoint, _secret = webhooks.create_endpoint(db_session, scope, settings_for(app),
                                                 url="https://hooks.example.com/kassa", enabled_events=["*"])
    analyst = db_session.scalars(select(Membership).where(Membership.user_id == users["analyst"].id)).one()
    db_session.commit()
    return merchant, users["owner"], key, endpoint, analyst


def sensitive_actions(merchant, key, endpoint, analyst):
    """(name, method, URL, form fields, the page the form is on)."""
    m = merchant.id
    return [
        ("create secret key", "POST", dash(m, "developers/api-keys/create"),
         {"kind": "secret", "name": "Server", "form_token": "t" * 20}, dash(m, "developers/api-keys")),
        ("roll key", "GET", dash(m, f"developers/api-keys/{key.id}/roll"), {}, dash(m, f"developers/api-keys/{key.id}/roll")),
        ("roll key", "POST", dash(m, f"developers/api-keys/{key.id}/roll"), {"grace": "1h", "form_token": "r" * 20},
         dash(m, f"developers/api-keys/{key.id}/roll")),
        ("reveal webhook secret", "POST", dash(m, f"developers/webhooks/{endpoint.id}/secret"), {},
         dash(m, f"developers/webhooks/{endpoint.id}")),
        ("rotate webhook secret", "POST", dash(m, f"developers/webhooks/{endpoint.id}/rotate"), {"grace": "1h"},
         dash(m, f"developers/webhooks/{endpoint.id}")),
        ("change a role", "POST", dash(m, f"settings/team/members/{analyst.id}/role"),
         {f"{analyst.id}-role": "developer"}, dash(m, "settings/team")),
        ("invite", "POST", dash(m, "settings/team/invite"), {"email": "new@example.com", "role": "admin"},
         dash(m, "settings/team")),
        ("security settings", "POST", dash(m, "settings/security"),
         {"refund_threshold": "20.00", "refund_currency": "EUR"}, dash(m, "settings/security")),
    ]


def test_each_sensitive_action_needs_a_recent_confirmation(app, client, db_session, owner_shop):
    merchant, owner, key, endpoint, analyst = owner_shop
    session_id = login_as(client, db_session, owner)
    token = csrf(client, "/dashboard/account/password")
    for name, method, url, data, form_page in sensitive_actions(merchant, key, endpoint, analyst):
        age_reauth(db_session, session_id, WINDOW + timedelta(seconds=1))
        audited = len(audit_rows(db_session, merchant.id))
        response = client.open(url, method=method, data={"csrf_token": token, **data} if method == "POST" else None)
        assert response.status_code == 303, name
        assert response.headers["Location"] == f"{CONFIRM}?next={form_page}", name
        # Nothing happened (every one of these actions is audited when it happens).
        assert len(audit_rows(db_session, merchant.id)) == audited, name
        assert confirm_with_password(client, form_page).headers["Location"] == form_page, name
        # Confirmed: the same request goes through now.
        response = client.open(url, method=method, data={"csrf_token": token, **data} if method == "POST" else None)
        assert not response.headers.get("Location", "").startswith(CONFIRM), name
        assert response.status_code in (200, 201, 303), (name, response.status_code)
    assert len(audit_rows(db_session, merchant.id, "user.reauthenticated")) == 8


def test_the_confirmation_lasts_the_window_and_then_expires(client, db_session, owner_shop):
    merchant, owner, key, *_ = owner_shop
    session_id = login_as(client, db_session, owner)
    roll = dash(merchant.id, f"developers/api-keys/{key.id}/roll")
    age_reauth(db_session, session_id, WINDOW - timedelta(seconds=5))
    assert client.get(roll).status_code == 200
    age_reauth(db_session, session_id, WINDOW)
    assert client.get(roll).headers["Location"].startswith(CONFIRM)
    # Logging in counts as a confirmation.
    login_as(client, db_session, owner)
    assert client.get(roll).status_code == 200


def test_the_window_is_configurable(app, client, db_session, owner_shop):
    merchant, owner, key, *_ = owner_shop
    session_id = login_as(client, db_session, owner)
    roll = dash(merchant.id, f"developers/api-keys/{key.id}/roll")
    age_reauth(db_session, session_id, timedelta(seconds=90))
    app.config["REAUTH_WINDOW_SECONDS"] = 60
    try:
        assert client.get(roll).headers["Location"].startswith(CONFIRM)
    finally:
        app.config["REAUTH_WINDOW_SECONDS"] = 300
    assert client.get(roll).status_code == 200


def test_the_form_comes_back_filled_in_without_secrets_or_card_numbers(client, db_session, owner_shop):
    merchant, owner, _key, _endpoint, analyst = owner_shop
    session_id = login_as(client, db_session, owner)
    age_reauth(db_session, session_id, WINDOW * 2)
    team = dash(merchant.id, "settings/team")
    token = csrf(client, team)
    client.post(dash(merchant.id, "settings/team/invite"), data={
        "csrf_token": token, "email": "colleague@example.com", "role": "admin", "password": "not kept",
        "note": "4242 4242 4242 4242"})
    db_session.rollback()
    kept = db_session.get(UserSession, session_id).pending_form
    assert kept["path"] == team
    assert kept["fields"] == [["email", "colleague@example.com"], ["role", "admin"]]  # no CSRF token either
    confirm_with_password(client, team)
    html = client.get(team).get_data(as_text=True)
    assert 'value="colleague@example.com"' in html and '<option selected value="admin">' in html
    assert audit_rows(db_session, merchant.id, "team.member_invited") == []  # shown again, not sent
    db_session.rollback()
    assert db_session.get(UserSession, session_id).pending_form is None  # used once
    assert 'value="colleague@example.com"' not in client.get(team).get_data(as_text=True)

    # A role change, posted by htmx from the member's row: the whole page goes to the confirmation.
    age_reauth(db_session, session_id, WINDOW * 2)
    response = client.post(dash(merchant.id, f"settings/team/members/{analyst.id}/role"),
                           data={"csrf_token": token, f"{analyst.id}-role": "developer"}, headers={"HX-Request": "true"})
    assert response.status_code == 200 and response.headers["HX-Redirect"].startswith(CONFIRM)
    confirm_with_password(client, team)
    row = client.get(team).get_data(as_text=True).split(f'id="{analyst.id}-role"')[1].split("</select>")[0]
    assert '<option selected value="developer">' in row
    assert db_session.get(Membership, analyst.id).role == "analyst"


def test_a_wrong_password_is_refused_and_counts_against_the_account(app, client, db_session, owner_shop):
    merchant, owner, key, *_ = owner_shop
    session_id = login_as(client, db_session, owner)
    age_reauth(db_session, session_id, WINDOW * 2)
    roll = dash(merchant.id, f"developers/api-keys/{key.id}/roll")
    app.config["LOGIN_RATE_LIMIT_PER_ACCOUNT"] = "2 per 15 minutes"  # the sign-in limit of the account
    try:
        response = confirm_with_password(client, roll, password="not the password")
        assert response.status_code == 422 and "This password is not correct." in response.get_data(as_text=True)
        assert client.get(roll).headers["Location"].startswith(CONFIRM)
        assert audit_rows(db_session, merchant.id, "user.reauthentication_failed")[-1].details == {
            "reason": "wrong_password"}
        confirm_with_password(client, roll, password="still wrong")
        response = confirm_with_password(client, roll)  # even the right one, once the limit is used up
        assert response.status_code == 429 and "Too many wrong attempts" in response.get_data(as_text=True)
    finally:
        app.config["LOGIN_RATE_LIMIT_PER_ACCOUNT"] = "1000 per minute"
        app.extensions["redis"].flushdb()


def test_a_user_with_a_second_factor_may_confirm_with_a_code(client, db_session, owner_shop):
    merchant, owner, key, *_ = owner_shop
    secret = factories.second_factor(db_session, owner)
    session_id = login_as(client, db_session, owner)
    age_reauth(db_session, session_id, WINDOW * 2)
    roll = dash(merchant.id, f"developers/api-keys/{key.id}/roll")
    html = client.get(f"{CONFIRM}?next={roll}").get_data(as_text=True)
    assert 'name="password"' in html and 'name="code"' in html
    response = client.post(CONFIRM, data={"method": "code", "code": pyotp.TOTP(secret).now(), "next": roll,
                                          "csrf_token": csrf_from(html)})
    assert response.headers["Location"] == roll
    assert audit_rows(db_session, merchant.id, "user.reauthenticated")[-1].details == {"method": "totp"}


def test_admins_confirm_with_the_second_factor_for_every_console_action(app, client, db_session):
    admin = factories.user(db_session, is_platform_admin=True)
    secret = factories.totp_secret(db_session, admin)
    session_id = login_as(client, db_session, admin)
    age_reauth(db_session, session_id, WINDOW * 2)
    token = csrf(client, "/admin/psp")
    for path, data in (("/admin/psp/sandbox/breaker", {"action": "force_open"}), ("/admin/ledger/verify", {})):
        response = client.post(path, data={"csrf_token": token, **data}, headers={"Referer": "http://localhost/admin/psp"})
        assert response.status_code == 303 and response.headers["Location"] == f"{CONFIRM}?next=/admin/psp", path
    html = client.get(f"{CONFIRM}?next=/admin/psp").get_data(as_text=True)
    assert 'name="code"' in html and 'name="password"' not in html  # the password is not enough
    response = client.post(CONFIRM, data={"method": "password", "password": PASSWORD, "next": "/admin/psp",
                                          "csrf_token": csrf_from(html)})
    assert response.status_code == 422  # a password sent anyway is not looked at: the code is required
    response = client.post(CONFIRM, data={"method": "code", "code": pyotp.TOTP(secret).now(), "next": "/admin/psp",
                                          "csrf_token": csrf_from(html)})
    assert response.headers["Location"] == "/admin/psp"
    response = client.post("/admin/psp/sandbox/breaker", data={"csrf_token": token, "action": "force_open"})
    assert response.status_code == 302 and response.headers["Location"] == "/admin/psp"  # the override happened
