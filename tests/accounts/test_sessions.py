"""Server-side sessions: the cookie holds only a token, login makes a fresh one, logout and password changes
end them, idle and old sessions expire, cookie flags are right."""
from datetime import timedelta

from flask.sessions import SecureCookieSessionInterface
from sqlalchemy import select

from app.accounts.sessions import (
    ABSOLUTE_LIFETIME,
    IDLE_TIMEOUT,
    UserSession,
    resolve_session,
    start_session,
)
from app.config import load_config
from app.models_base import utcnow
from tests import factories
from tests.accounts.conftest import PASSWORD, csrf, dash, login_as


def _cookie_value(client) -> str | None:
    cookie = client.get_cookie("session")
    return cookie.value if cookie else None


def _decode(app, value: str) -> dict:
    return SecureCookieSessionInterface().get_signing_serializer(app).loads(value)


def _login(client, email, password=PASSWORD):
    return client.post("/login", data={"email": email, "password": password, "csrf_token": csrf(client, "/login")})


def test_login_puts_only_a_session_token_in_the_cookie(app, client, db_session, team_of):
    merchant, users = team_of("owner")
    response = _login(client, users["owner"].email)
    assert response.status_code == 303
    contents = _decode(app, _cookie_value(client))
    # The session id and Flask-WTF's CSRF token; no user id, no Flask-Login keys.
    assert set(contents) <= {"sid", "csrf_token"} and "sid" in contents
    row = db_session.scalars(select(UserSession).where(UserSession.user_id == users["owner"].id)).one()
    assert row.token_hash != contents["sid"] and len(row.token_hash) == 64  # stored hashed
    assert row.ip == "127.0.0.1" and row.revoked_at is None
    assert client.get(dash(merchant.id, "settings/team")).status_code == 200


def test_login_creates_a_fresh_session_each_time(app, client, db_session, team_of):
    _merchant, users = team_of("owner")
    client.get("/login")
    before = _decode(app, _cookie_value(client))
    _login(client, users["owner"].email)
    first = _decode(app, _cookie_value(client))["sid"]
    assert first != before.get("sid") and before.get("csrf_token") != _decode(app, _cookie_value(client)).get("csrf_token")
    # Logging in again while signed in (another tab) still makes a new session.
    again = client.post("/login", data={"email": users["owner"].email, "password": PASSWORD,
                                        "csrf_token": csrf(client, "/dashboard/account/password")})
    assert again.status_code == 303, again.get_data(as_text=True)
    second = _decode(app, _cookie_value(client))["sid"]
    assert second != first
    db_session.rollback()
    rows = db_session.scalars(select(UserSession).where(UserSession.user_id == users["owner"].id)
                              .order_by(UserSession.created_at)).all()
    assert [row.revoked_at is not None for row in rows] == [True, False]  # the replaced one ended
    client.post("/logout", data={"csrf_token": csrf(client, "/dashboard/account/password")})
    _login(client, users["owner"].email)
    assert _decode(app, _cookie_value(client))["sid"] not in (first, second)


def test_logout_kills_every_copy_of_the_cookie(client, app, db_session, team_of):
    merchant, users = team_of("owner")
    _login(client, users["owner"].email)
    stolen = _cookie_value(client)
    assert client.get(dash(merchant.id, "settings/team")).status_code == 200

    response = client.post("/logout", data={"csrf_token": csrf(client, dash(merchant.id, "settings/team"))})
    assert response.status_code == 303 and response.headers["Location"] == "/login"
    db_session.rollback()
    assert db_session.scalars(select(UserSession).where(UserSession.user_id == users["owner"].id)).one().revoked_at

    # Replaying the old cookie (say, copied from the browser before logout) gets the login page.
    replay = app.test_client()
    replay.set_cookie("session", stolen)
    response = replay.get(dash(merchant.id, "settings/team"))
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")


def test_password_change_ends_other_sessions_but_not_this_one(app, client, db_session, team_of):
    merchant, users = team_of("owner")
    other_browser = app.test_client()
    login_as(other_browser, db_session, users["owner"])
    _login(client, users["owner"].email)
    response = client.post("/dashboard/account/password", data={
        "current_password": PASSWORD, "new_password": "another long password", "confirm": "another long password",
        "csrf_token": csrf(client, "/dashboard/account/password")})
    assert response.status_code == 303
    assert "1 other session was signed out" in client.get("/dashboard/account/password").get_data(as_text=True)
    assert client.get(dash(merchant.id, "settings/team")).status_code == 200
    assert other_browser.get(dash(merchant.id, "settings/team")).status_code == 302
    # The new password works, the old one does not.
    fresh = app.test_client()
    assert _login(fresh, users["owner"].email, PASSWORD).status_code == 422
    assert _login(fresh, users["owner"].email, "another long password").status_code == 303


def test_password_change_validates_and_changes_nothing_on_bad_input(client, db_session, team_of):
    _merchant, users = team_of("owner")
    login_as(client, db_session, users["owner"])
    old_hash = users["owner"].password_hash
    token = csrf(client, "/dashboard/account/password")
    response = client.post("/dashboard/account/password", data={
        "current_password": "wrong password!", "new_password": "another long password",
        "confirm": "another long password", "csrf_token": token})
    assert response.status_code == 422
    assert "Your current password is not correct." in response.get_data(as_text=True)
    response = client.post("/dashboard/account/password", data={
        "current_password": PASSWORD, "new_password": "short", "confirm": "different", "csrf_token": token})
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert "Use at least 10 characters" in html and "The two passwords do not match." in html
    db_session.rollback()
    db_session.refresh(users["owner"])
    assert users["owner"].password_hash == old_hash


def test_sessions_expire_when_idle_or_too_old(db_session):
    user = factories.user(db_session)
    now = utcnow()
    row, token = start_session(db_session, user, now=now)
    db_session.commit()
    assert resolve_session(db_session, token, now=now + IDLE_TIMEOUT - timedelta(seconds=1)) is row
    assert resolve_session(db_session, token, now=now + IDLE_TIMEOUT) is None
    row.last_seen_at = now + ABSOLUTE_LIFETIME - timedelta(minutes=1)  # kept busy, but still too old
    assert resolve_session(db_session, token, now=now + ABSOLUTE_LIFETIME) is None
    assert resolve_session(db_session, "not-a-token") is None
    assert resolve_session(db_session, "") is None


def test_activity_is_recorded_at_most_once_a_minute(client, db_session, team_of):
    merchant, users = team_of("owner")
    session_id = login_as(client, db_session, users["owner"])
    row = db_session.get(UserSession, session_id)
    row.last_seen_at = utcnow() - timedelta(minutes=5)
    db_session.commit()
    client.get(dash(merchant.id, "settings/team"))
    db_session.rollback()
    seen = db_session.get(UserSession, session_id).last_seen_at
    assert utcnow() - seen < timedelta(minutes=1)
    client.get(dash(merchant.id, "settings/team"))
    db_session.rollback()
    assert db_session.get(UserSession, session_id).last_seen_at == seen


def test_cookie_flags(client, team_of):
    _merchant, users = team_of("owner")
    response = _login(client, users["owner"].email)
    header = next(h for h in response.headers.getlist("Set-Cookie") if h.startswith("session="))
    assert "HttpOnly" in header and "SameSite=Lax" in header
    assert "Secure" not in header  # the test app runs on http; production sets Secure:
    assert load_config({"KASSA_ENV": "production", "SECRET_KEY": "x"})["SESSION_COOKIE_SECURE"] is True
    assert load_config({"KASSA_ENV": "development"})["SESSION_COOKIE_SECURE"] is False


def test_login_redirects_only_to_this_site(client, team_of):
    _merchant, users = team_of("owner")
    for target, expected in [("/dashboard/account/password", "/dashboard/account/password"),
                             ("https://evil.example/", "/dashboard/"), ("//evil.example/", "/dashboard/"),
                             ("/\\evil.example", "/dashboard/")]:
        client.post("/logout", data={"csrf_token": csrf(client, "/signup")})
        response = client.post("/login", data={"email": users["owner"].email, "password": PASSWORD,
                                                "next": target, "csrf_token": csrf(client, "/login")})
        assert response.headers["Location"] == expected, target
