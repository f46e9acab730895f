"""Password reset by emailed link: the mail outbox, single use, expiry, hashed storage, sessions ended."""
import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from app.accounts import recovery
from app.accounts.mail import MailMessage
from app.accounts.recovery import PasswordResetToken
from app.accounts.sessions import UserSession
from app.accounts.tokens import hash_token
from app.models_base import utcnow
from tests.accounts.conftest import (
    PASSWORD,
    audit_rows,
    csrf,
    csrf_from,
    dash,
    login_as,
)

NEW_PASSWORD = "a brand new password"


def _mails(db_session, to):
    db_session.rollback()
    return list(db_session.scalars(select(MailMessage).where(MailMessage.to_address == to)
                                   .order_by(MailMessage.created_at)))


def _link(mail) -> str:
    return re.search(r"http://localhost(/password/reset/\S+)", mail.body_text).group(1)


def _request_reset(client, email):
    return client.post("/password/forgot", data={"email": email, "csrf_token": csrf(client, "/password/forgot")})


def test_reset_by_emailed_link_works_once(app, client, db_session, team_of):
    merchant, users = team_of("owner")
    user = users["owner"]
    elsewhere = app.test_client()
    login_as(elsewhere, db_session, user)

    response = _request_reset(client, user.email.upper())
    assert response.status_code == 200 and "Check your email" in response.get_data(as_text=True)
    [mail] = _mails(db_session, user.email)
    assert mail.kind == "password_reset" and mail.subject == "Reset your Kassa password"
    link = _link(mail)
    token = link.rsplit("/", 1)[1]
    stored = db_session.scalars(select(PasswordResetToken).where(PasswordResetToken.user_id == user.id)).one()
    assert stored.token_hash == hash_token(token) and token not in stored.token_hash  # only the hash is kept

    assert client.get(link).status_code == 200
    response = client.post(link, data={"password": "short", "confirm": "nope", "csrf_token": csrf(client, link)})
    assert response.status_code == 422  # bad input: messages, and the link still works
    response = client.post(link, data={"password": NEW_PASSWORD, "confirm": NEW_PASSWORD,
                                       "csrf_token": csrf(client, link)})
    assert response.status_code == 303 and response.headers["Location"] == "/login"

    # Used: the link is dead, with a page that says what to do.
    response = client.get(link)
    assert response.status_code == 404 and "Ask for a new reset link" in response.get_data(as_text=True)
    assert client.post(link, data={"password": NEW_PASSWORD, "confirm": NEW_PASSWORD,
                                   "csrf_token": csrf(client, "/login")}).status_code == 404
    # Every session of the user ended; the new password works, the old one not.
    assert elsewhere.get(dash(merchant.id)).status_code == 302
    db_session.rollback()
    assert all(row.revoked_at for row in db_session.scalars(select(UserSession).where(UserSession.user_id == user.id)))
    login = {"email": user.email, "csrf_token": csrf(client, "/login")}
    assert client.post("/login", data={**login, "password": PASSWORD}).status_code == 422
    assert client.post("/login", data={**login, "password": NEW_PASSWORD}).status_code == 303
    actions = [row.action for row in audit_rows(db_session, merchant.id)]
    assert "user.password_reset_requested" in actions and "user.password_reset" in actions


def test_unknown_email_gets_the_same_answer_and_no_mail(client, db_session):
    response = _request_reset(client, "nobody@example.com")
    assert response.status_code == 200 and "If an account exists" in response.get_data(as_text=True)
    assert _mails(db_session, "nobody@example.com") == []


def test_forgot_form_validates(client):
    response = client.post("/password/forgot", data={"email": "nope", "csrf_token": csrf(client, "/password/forgot")})
    assert response.status_code == 422 and "Enter a valid email address" in response.get_data(as_text=True)


def test_links_expire_after_an_hour(client, db_session, team_of):
    _merchant, users = team_of("owner")
    now = utcnow()
    links = []
    recovery.request_password_reset(db_session, users["owner"].email, links.append, now=now)
    db_session.commit()
    token = links[0]
    assert recovery.find_reset_token(db_session, token, now=now + timedelta(minutes=59)) is not None
    assert recovery.find_reset_token(db_session, token, now=now + recovery.RESET_TOKEN_LIFETIME) is None
    with pytest.raises(recovery.InvalidResetToken):
        recovery.reset_password(db_session, token, NEW_PASSWORD, now=now + timedelta(hours=1, seconds=1))
    db_session.rollback()
    # Over HTTP, with the clock of the database row moved back.
    row = db_session.scalars(select(PasswordResetToken).where(PasswordResetToken.token_hash == hash_token(token))).one()
    row.expires_at = utcnow() - timedelta(seconds=1)
    db_session.commit()
    assert client.get(f"/password/reset/{token}").status_code == 404


def test_a_new_reset_voids_older_links_once_used(db_session, team_of):
    _merchant, users = team_of("owner")
    links = []
    for _ in range(2):
        recovery.request_password_reset(db_session, users["owner"].email, links.append)
    db_session.commit()
    recovery.reset_password(db_session, links[1], NEW_PASSWORD)
    db_session.commit()
    assert recovery.find_reset_token(db_session, links[0]) is None
    with pytest.raises(recovery.InvalidResetToken):
        recovery.reset_password(db_session, links[0], "yet another password")


def test_dev_mail_page_lists_mail_with_working_links(app, client, db_session, team_of):
    _merchant, users = team_of("owner")
    _request_reset(client, users["owner"].email)
    html = client.get("/dashboard/dev/mail").get_data(as_text=True)
    assert "Reset your Kassa password" in html and users["owner"].email in html
    href = re.search(r'<a href="(http://localhost/password/reset/[^"]+)"', html).group(1)
    assert client.get(href.replace("http://localhost", "")).status_code == 200
    message_id = _mails(db_session, users["owner"].email)[0].id
    assert client.get(f"/dashboard/dev/mail/{message_id}").status_code == 200
    assert client.get("/dashboard/dev/mail/mail_unknown").status_code == 404


def test_dev_mail_page_does_not_exist_in_production(app, client):
    app.config["KASSA_ENV"] = "production"
    try:
        assert client.get("/dashboard/dev/mail").status_code == 404
        assert "Mail outbox" not in client.get("/login").get_data(as_text=True)
    finally:
        app.config["KASSA_ENV"] = "test"


def test_links_use_the_configured_public_address_not_the_host_header(app, client, db_session, team_of):
    _merchant, users = team_of("owner")
    app.config["PUBLIC_BASE_URL"] = "https://pay.example.com/"
    try:
        evil = "http://evil.example"
        token = csrf_from(client.get("/password/forgot", base_url=evil).get_data(as_text=True))
        response = client.post("/password/forgot", base_url=evil, data={"email": users["owner"].email, "csrf_token": token})
        assert response.status_code == 200
    finally:
        app.config["PUBLIC_BASE_URL"] = ""
    [mail] = _mails(db_session, users["owner"].email)
    assert "https://pay.example.com/password/reset/" in mail.body_text and "evil.example" not in mail.body_text
