"""Account › Sessions: each user sees their signed-in browsers (device from the user agent, IP, created, last
used) and ends any of them or all others; a password change ends the others; sessions end after the configured
inactivity and maximum age."""
from datetime import timedelta

from sqlalchemy import select

from app.accounts.sessions import UserSession, start_session
from app.models_base import utcnow
from tests.accounts.conftest import PASSWORD, audit_rows, csrf, csrf_from, dash

SESSIONS = "/dashboard/account/sessions"
MAC_CHROME = ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
              "Chrome/120.0.0.0 Safari/537.36")
IPHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
          "Version/17.1 Mobile/15E148 Safari/604.1")


def browser(app, db_session, user, *, user_agent: str, ip: str):
    """A test client signed in as the user from the given device and address; returns (client, session id)."""
    client = app.test_client()
    row, token = start_session(db_session, user, ip=ip, user_agent=user_agent, second_factor_passed=True)
    db_session.commit()
    with client.session_transaction() as cookie:
        cookie["sid"] = token
    return client, row.id


def test_sessions_are_listed_and_ended(app, db_session, team_of):
    merchant, users = team_of("owner", "analyst")
    owner = users["owner"]
    laptop, laptop_id = browser(app, db_session, owner, user_agent=MAC_CHROME, ip="203.0.113.7")
    phone, phone_id = browser(app, db_session, owner, user_agent=IPHONE, ip="198.51.100.23")
    tablet, _tablet_id = browser(app, db_session, owner, user_agent="", ip="192.0.2.1")
    _other, someone_elses = browser(app, db_session, users["analyst"], user_agent=MAC_CHROME, ip="192.0.2.9")

    html = laptop.get(SESSIONS).get_data(as_text=True)
    assert "Chrome 120 on Mac OS X" in html and "Mobile Safari 17 on iOS 17" in html and "Unknown device" in html
    assert "203.0.113.7" in html and "198.51.100.23" in html and "192.0.2.9" not in html  # only their own
    assert html.count("This browser") == 1 and html.index("This browser") < html.index("Mobile Safari")
    assert "Sessions end after 30 minutes without use, and 12 hours after signing in." in html

    token = csrf_from(html)
    response = laptop.post(f"{SESSIONS}/{phone_id}/end", data={"csrf_token": token})
    assert response.status_code == 303
    assert phone.get(dash(merchant.id)).status_code == 302  # the phone is signed out
    assert audit_rows(db_session, merchant.id, "user.session_ended")[-1].details == {"session": phone_id}
    # Another user's session looks like no session; this browser's own ends with Log out.
    assert laptop.post(f"{SESSIONS}/{someone_elses}/end", data={"csrf_token": token}).status_code == 404
    assert db_session.get(UserSession, someone_elses).revoked_at is None
    assert laptop.post(f"{SESSIONS}/{laptop_id}/end", data={"csrf_token": token}).status_code == 400

    response = laptop.post(f"{SESSIONS}/end-others", data={"csrf_token": token})
    assert response.status_code == 303
    assert "1 other session was ended." in laptop.get(SESSIONS).get_data(as_text=True)
    assert tablet.get(dash(merchant.id)).status_code == 302
    assert laptop.get(dash(merchant.id)).status_code == 200
    assert "Mobile Safari" not in laptop.get(SESSIONS).get_data(as_text=True)


def test_a_password_change_ends_every_other_session(app, client, db_session, team_of):
    merchant, users = team_of("owner")
    owner = users["owner"]
    others = [browser(app, db_session, owner, user_agent=IPHONE, ip=f"198.51.100.{n}")[0] for n in (1, 2)]
    client.post("/login", data={"email": owner.email, "password": PASSWORD, "csrf_token": csrf(client, "/login")})
    assert "198.51.100.2" in client.get(SESSIONS).get_data(as_text=True)
    response = client.post("/dashboard/account/password", data={
        "current_password": PASSWORD, "new_password": "another long password", "confirm": "another long password",
        "csrf_token": csrf(client, "/dashboard/account/password")})
    assert response.status_code == 303
    assert all(other.get(dash(merchant.id)).status_code == 302 for other in others)
    html = client.get(SESSIONS).get_data(as_text=True)
    assert "198.51.100" not in html and html.count('id="session-') == 1


def test_sessions_expire_after_the_configured_inactivity_and_age(app, db_session, team_of):
    merchant, users = team_of("owner")
    client, session_id = browser(app, db_session, users["owner"], user_agent=MAC_CHROME, ip="203.0.113.7")
    row = db_session.get(UserSession, session_id)
    row.last_seen_at = utcnow() - timedelta(minutes=31)
    db_session.commit()
    app.config["SESSION_IDLE_TIMEOUT_SECONDS"] = 3600
    try:
        assert client.get(dash(merchant.id)).status_code == 200  # an hour allowed: still signed in
    finally:
        app.config["SESSION_IDLE_TIMEOUT_SECONDS"] = 1800
    row = db_session.get(UserSession, session_id)
    db_session.refresh(row)
    row.last_seen_at = utcnow() - timedelta(minutes=31)
    db_session.commit()
    assert client.get(dash(merchant.id)).status_code == 302  # the default: 30 minutes

    client, session_id = browser(app, db_session, users["owner"], user_agent=MAC_CHROME, ip="203.0.113.7")
    db_session.get(UserSession, session_id).created_at = utcnow() - timedelta(hours=12, seconds=1)
    db_session.commit()
    assert client.get(dash(merchant.id)).status_code == 302  # busy, but older than 12 hours
    listed = db_session.scalars(select(UserSession).where(UserSession.user_id == users["owner"].id)).all()
    assert len(listed) == 2  # rows stay (the audit trail); they are simply no longer active
