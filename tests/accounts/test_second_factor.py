"""Two-step sign-in: enrolment, login with a code and with a recovery code, replayed and expired codes refused,
throttling, turning it off, an operator's reset, and who must have one (platform admins; a merchant's members
when its owner requires it). Codes come from pyotp with the enrolled secret; time is passed as ``now``/``for_time``.
"""
import re
from datetime import timedelta

import pyotp
import pytest
from sqlalchemy import select

from app.accounts import second_factor as service
from app.accounts.mail import MailMessage
from app.accounts.second_factor import RecoveryCode, SecondFactor, SecondFactorError, SessionStep
from app.accounts.service import find_user_by_email
from app.accounts.sessions import UserSession, start_session
from app.crypto import SecretBox
from app.models_base import utcnow
from app.seed import DEMO_ADMIN_TOTP_SECRET, seed_demo
from tests import factories
from tests.accounts.conftest import PASSWORD, audit_rows, csrf, csrf_from, dash, login_as


def box(app) -> SecretBox:
    return SecretBox(app.config["KASSA_ENCRYPTION_KEYS"])


def code(secret: str, when=None) -> str:
    return pyotp.TOTP(secret).at(when or utcnow())


def password_login(client, email: str, next_url: str | None = None):
    data = {"email": email, "password": PASSWORD, "csrf_token": csrf(client, "/signup")}
    if next_url:
        data["next"] = next_url
    return client.post("/login", data=data)


def submit_code(client, value: str, next_url: str = ""):
    page = client.get("/login/second-factor")
    return client.post("/login/second-factor", data={"code": value, "next": next_url,
                                                     "csrf_token": csrf_from(page.get_data(as_text=True))})


def mails(db_session, to: str, kind: str) -> list[MailMessage]:
    db_session.rollback()
    return list(db_session.scalars(select(MailMessage).where(MailMessage.to_address == to, MailMessage.kind == kind)))


@pytest.fixture
def enrolled(db_session, team_of):
    """An owner with a confirmed authenticator: (merchant, user, secret)."""
    merchant, users = team_of("owner")
    secret = factories.second_factor(db_session, users["owner"])
    db_session.commit()
    return merchant, users["owner"], secret


# --- enrolment ----------------------------------------------------------------------------------------------

def test_enrolment_shows_a_local_qr_code_and_is_confirmed_by_a_first_code(app, client, db_session, team_of):
    merchant, users = team_of("owner")
    user = users["owner"]
    login_as(client, db_session, user)
    assert "Set up two-step sign-in" in client.get("/dashboard/account/security").get_data(as_text=True)

    page = client.get("/dashboard/account/second-factor/setup")
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"
    html = page.get_data(as_text=True)
    assert '<svg role="img" aria-label="QR code to scan with your authenticator app"' in html  # inline: no network
    assert "<img" not in html.split('class="qr"')[1].split("</div>")[0]
    db_session.rollback()
    row = db_session.get(SecondFactor, user.id)
    secret = factories.totp_secret(db_session, user)
    assert row.confirmed_at is None and secret not in row.secret_encrypted  # sealed at rest, not yet confirmed
    assert row.secret_encrypted.split("$")[0] == app.config["KASSA_ENCRYPTION_KEYS"].split(":")[0]
    assert " ".join(secret[i:i + 4] for i in range(0, 32, 4)) in html  # the key, for typing by hand
    # A reload shows the same secret: the person may have scanned it already.
    client.get("/dashboard/account/second-factor/setup")
    assert factories.totp_secret(db_session, user) == secret

    token = csrf_from(html)
    wrong = client.post("/dashboard/account/second-factor/setup", data={"code": "000000", "csrf_token": token})
    assert wrong.status_code == 422 and "This code is not correct" in wrong.get_data(as_text=True)
    response = client.post("/dashboard/account/second-factor/setup", data={"code": code(secret), "csrf_token": token})
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    shown = re.findall(r"<code>([0-9a-z]{5}-[0-9a-z]{5})</code>", response.get_data(as_text=True))
    assert len(shown) == 10 and len(set(shown)) == 10
    db_session.rollback()
    assert db_session.get(SecondFactor, user.id).confirmed_at is not None
    hashes = [r.code_hash for r in db_session.scalars(select(RecoveryCode).where(RecoveryCode.user_id == user.id))]
    assert len(hashes) == 10 and all(h.startswith("$argon2id$") for h in hashes)
    assert not any(c.replace("-", "") in h for c in shown for h in hashes)
    assert [r.action for r in audit_rows(db_session, merchant.id, "user.second_factor_enabled")]
    assert mails(db_session, user.email, "second_factor_enabled")
    # This browser passed the second factor by confirming it; it is still signed in.
    assert client.get(dash(merchant.id)).status_code == 200
    html = client.get("/dashboard/account/security").get_data(as_text=True)
    assert "10 recovery codes left." in html


def test_a_signed_in_user_re_authenticates_before_setting_up(client, db_session, team_of):
    """A stolen session must not tie the account to another phone."""
    _merchant, users = team_of("owner")
    session_id = login_as(client, db_session, users["owner"])
    db_session.get(UserSession, session_id).reauthenticated_at = utcnow() - timedelta(minutes=6)
    db_session.commit()
    response = client.get("/dashboard/account/second-factor/setup")
    assert response.status_code == 303
    assert response.headers["Location"].startswith("/dashboard/account/confirm?next=")
    assert db_session.get(SecondFactor, users["owner"].id) is None


# --- signing in ---------------------------------------------------------------------------------------------

def test_login_with_a_code(app, client, db_session, enrolled):
    merchant, user, secret = enrolled
    response = password_login(client, user.email, next_url=dash(merchant.id, "settings/team"))
    assert response.status_code == 303
    assert response.headers["Location"].startswith("/login/second-factor?next=")
    cookie_before = client.get_cookie("session").value
    # Halfway through: the dashboard sends to the second-factor page, which names the account.
    page = client.get(dash(merchant.id))
    assert page.status_code == 302 and page.headers["Location"].startswith("/login/second-factor")
    assert user.email in client.get("/login/second-factor").get_data(as_text=True)

    response = submit_code(client, code(secret), next_url=dash(merchant.id, "settings/team"))
    assert response.status_code == 303 and response.headers["Location"] == dash(merchant.id, "settings/team")
    assert client.get(dash(merchant.id, "settings/team")).status_code == 200
    passed = audit_rows(db_session, merchant.id, "user.second_factor_passed")
    assert passed[-1].details == {"method": "totp", "purpose": "sign_in"}
    # The session's token changed when its privilege did: the cookie from before the code opens nothing.
    replay = app.test_client()
    replay.set_cookie("session", cookie_before)
    assert replay.get(dash(merchant.id)).status_code == 302


def test_login_with_a_recovery_code_says_how_many_remain_and_emails(app, client, db_session, enrolled):
    merchant, user, _secret = enrolled
    codes = service.regenerate_recovery_codes(db_session, user)
    db_session.commit()
    password_login(client, user.email)
    response = submit_code(client, codes[3].upper().replace("-", " "))  # as people type them
    assert response.status_code == 303
    html = client.get(response.headers["Location"], follow_redirects=True).get_data(as_text=True)
    assert "You signed in with a recovery code. 9 recovery codes left." in html
    mail = mails(db_session, user.email, "recovery_code_used")
    assert len(mail) == 1 and "You have 9 recovery codes left." in mail[0].body_text
    assert audit_rows(db_session, merchant.id, "user.second_factor_passed")[-1].details == {
        "method": "recovery_code", "purpose": "sign_in", "recovery_codes_left": 9}
    # A recovery code works once.
    other = app.test_client()
    password_login(other, user.email)
    again = submit_code(other, codes[3])
    assert again.status_code == 422
    assert "This recovery code is not correct, or it was already used." in again.get_data(as_text=True)


def test_a_replayed_code_is_refused(app, client, db_session, enrolled):
    merchant, user, secret = enrolled
    value = code(secret)
    password_login(client, user.email)
    assert submit_code(client, value).status_code == 303
    thief = app.test_client()  # saw the code over the shoulder, has the password
    password_login(thief, user.email)
    response = submit_code(thief, value)
    assert response.status_code == 422
    assert "This code was already used." in response.get_data(as_text=True)
    assert thief.get(dash(merchant.id)).status_code == 302
    assert audit_rows(db_session, merchant.id, "user.second_factor_failed")[-1].details == {
        "reason": "replayed_code", "purpose": "sign_in"}


def test_an_expired_code_is_refused(client, db_session, enrolled):
    merchant, user, secret = enrolled
    password_login(client, user.email)
    for stale in (utcnow() - timedelta(seconds=60), utcnow() + timedelta(seconds=60)):  # two steps away
        response = submit_code(client, code(secret, stale))
        assert response.status_code == 422 and "or it has expired" in response.get_data(as_text=True)
    assert client.get(dash(merchant.id)).status_code == 302


def test_verify_accepts_one_step_either_side_and_each_step_once(app, db_session, enrolled):
    """The domain function with an injected clock: codes of the neighbouring 30-second steps pass, once."""
    _merchant, user, secret = enrolled
    now = utcnow().replace(microsecond=0)
    totp = pyotp.TOTP(secret)
    assert service.verify(db_session, user, box(app), totp.at(now - timedelta(seconds=30)), purpose="sign_in",
                          now=now).method == "totp"
    for refused in (now - timedelta(seconds=30), now - timedelta(seconds=60)):  # used, then older than used
        with pytest.raises(SecondFactorError):
            service.verify(db_session, user, box(app), totp.at(refused), purpose="sign_in", now=now)
    service.verify(db_session, user, box(app), totp.at(now + timedelta(seconds=30)), purpose="sign_in", now=now)
    with pytest.raises(SecondFactorError) as error:  # the current step is older than the one just used
        service.verify(db_session, user, box(app), totp.at(now), purpose="sign_in", now=now)
    assert error.value.reason == "replayed_code"
    later = now + timedelta(minutes=5)
    with pytest.raises(SecondFactorError) as error:
        service.verify(db_session, user, box(app), totp.at(now), purpose="sign_in", now=later)
    assert error.value.reason == "wrong_code"  # expired
    service.verify(db_session, user, box(app), totp.at(later), purpose="sign_in", now=later)
    db_session.rollback()


def test_a_session_cannot_skip_the_second_factor_by_setting_one_up(client, db_session, enrolled):
    """The set-up page would otherwise replace the authenticator of someone who knows only the password."""
    merchant, user, _secret = enrolled
    password_login(client, user.email)
    response = client.get("/dashboard/account/second-factor/setup")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login/second-factor")
    page = client.get("/login/second-factor")
    response = client.post("/dashboard/account/second-factor/setup",
                           data={"code": "123456", "csrf_token": csrf_from(page.get_data(as_text=True))})
    assert response.status_code == 302 and response.headers["Location"].startswith("/login/second-factor")
    assert client.get("/login").headers["Location"].startswith("/login/second-factor")
    assert client.get(dash(merchant.id)).status_code == 302


def test_logging_out_halfway_ends_the_session(client, db_session, enrolled):
    _merchant, user, _secret = enrolled
    password_login(client, user.email)
    page = client.get("/login/second-factor")
    assert 'action="/logout"' in page.get_data(as_text=True)
    client.post("/logout", data={"csrf_token": csrf_from(page.get_data(as_text=True))})
    db_session.rollback()
    rows = db_session.scalars(select(UserSession).where(UserSession.user_id == user.id)).all()
    assert rows and all(row.revoked_at is not None for row in rows)
    assert client.get("/login/second-factor").headers["Location"] == "/login"


# --- who must have one --------------------------------------------------------------------------------------

def test_a_platform_admin_without_a_second_factor_must_set_one_up_first(app, client, db_session):
    admin = factories.user(db_session, is_platform_admin=True)
    db_session.query(SecondFactor).filter_by(user_id=admin.id).delete()
    db_session.commit()
    response = password_login(client, admin.email, next_url="/admin/")
    assert response.status_code == 303
    assert response.headers["Location"].startswith("/dashboard/account/second-factor/setup?next=")
    for path in ("/admin/", "/admin/psp", "/dashboard/", "/dashboard/account/security"):
        answer = client.get(path)
        assert answer.status_code == 302, path
        assert answer.headers["Location"].startswith("/dashboard/account/second-factor/setup"), path
    page = client.get("/dashboard/account/second-factor/setup?next=/admin/")
    assert "every platform admin does" in page.get_data(as_text=True)
    secret = factories.totp_secret(db_session, admin)
    response = client.post("/dashboard/account/second-factor/setup?next=/admin/",
                           data={"code": code(secret), "csrf_token": csrf_from(page.get_data(as_text=True))})
    assert response.status_code == 200 and 'href="/admin/"' in response.get_data(as_text=True)
    assert client.get("/admin/").status_code == 200


def test_an_owner_requires_it_for_every_member(client, db_session, team_of):
    merchant, users = team_of("owner", "developer")
    owner, developer = users["owner"], users["developer"]
    signed_in_before = client.application.test_client()  # the developer's browser, signed in with the password
    _row, token = start_session(db_session, developer)
    db_session.commit()
    with signed_in_before.session_transaction() as cookie:
        cookie["sid"] = token
    assert signed_in_before.get(dash(merchant.id)).status_code == 200
    login_as(client, db_session, owner)
    settings = dash(merchant.id, "settings/security")
    # Not before the owner has one: their own next click would otherwise be the set-up page.
    response = client.post(settings, data={"require_second_factor": "y", "refund_currency": "EUR",
                                           "csrf_token": csrf(client, settings)})
    assert response.status_code == 422 and "Set up two-step sign-in for your own account first" in \
        response.get_data(as_text=True)
    factories.second_factor(db_session, owner)
    db_session.commit()
    response = client.post(settings, data={"require_second_factor": "y", "refund_currency": "EUR",
                                           "csrf_token": csrf(client, settings)})
    assert response.status_code == 303
    row = audit_rows(db_session, merchant.id, "merchant.security_updated")[-1]
    assert row.details == {"require_second_factor": {"from": False, "to": True}} and row.actor_user_id == owner.id

    # The developer's open session goes to set-up at the next click; a new login right after the password.
    assert "/second-factor/setup" in signed_in_before.get(dash(merchant.id)).headers["Location"]
    member = client.application.test_client()
    assert "/second-factor/setup" in password_login(member, developer.email).headers["Location"]
    for path in (dash(merchant.id), dash(merchant.id, "developers/api-keys"), "/dashboard/account/sessions"):
        answer = member.get(path)
        assert answer.status_code == 302 and "/second-factor/setup" in answer.headers["Location"], path
    page = member.get("/dashboard/account/second-factor/setup")
    assert "your team's owner requires it" in page.get_data(as_text=True)
    secret = factories.totp_secret(db_session, developer)
    member.post("/dashboard/account/second-factor/setup", data={
        "code": code(secret), "csrf_token": csrf_from(page.get_data(as_text=True))})
    assert member.get(dash(merchant.id, "developers/api-keys")).status_code == 200
    # Required: it cannot be turned off.
    html = member.get("/dashboard/account/security").get_data(as_text=True)
    assert "cannot be turned off" in html and "Turn off two-step sign-in" not in html
    response = member.post("/dashboard/account/second-factor/disable", data={"csrf_token": csrf_from(html)})
    assert response.status_code == 303
    assert "cannot be turned off" in member.get("/dashboard/account/security").get_data(as_text=True)
    assert service.confirmed_factor(db_session, developer.id) is not None


def test_only_owners_change_security_settings(client, db_session, team_of):
    merchant, users = team_of("owner", "admin")
    login_as(client, db_session, users["admin"])
    assert client.get(dash(merchant.id, "settings/security")).status_code == 403
    login_as(client, db_session, users["owner"])
    assert client.get(dash(merchant.id, "settings/security")).status_code == 200


# --- turning it off, new codes, the operator's reset --------------------------------------------------------

def test_turning_it_off_ends_the_other_sessions(app, client, db_session, enrolled):
    merchant, user, _secret = enrolled
    other = app.test_client()
    login_as(other, db_session, user)
    login_as(client, db_session, user)
    html = client.get("/dashboard/account/security").get_data(as_text=True)
    response = client.post("/dashboard/account/second-factor/disable", data={"csrf_token": csrf_from(html)})
    assert response.status_code == 303
    assert "1 other session was signed out." in client.get("/dashboard/account/security").get_data(as_text=True)
    assert other.get(dash(merchant.id)).status_code == 302
    assert client.get(dash(merchant.id)).status_code == 200
    assert service.confirmed_factor(db_session, user.id) is None
    assert mails(db_session, user.email, "second_factor_disabled")


def test_new_recovery_codes_replace_the_old_ones(app, client, db_session, enrolled):
    _merchant, user, _secret = enrolled
    old = service.regenerate_recovery_codes(db_session, user)
    db_session.commit()
    login_as(client, db_session, user)
    html = client.get("/dashboard/account/security").get_data(as_text=True)
    response = client.post("/dashboard/account/second-factor/recovery-codes", data={"csrf_token": csrf_from(html)})
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    new = re.findall(r"<code>([0-9a-z]{5}-[0-9a-z]{5})</code>", response.get_data(as_text=True))
    assert len(new) == 10 and not set(new) & set(old)
    with pytest.raises(SecondFactorError):
        service.verify(db_session, user, box(app), old[0], purpose="sign_in")
    assert service.verify(db_session, user, box(app), new[0], purpose="sign_in").recovery_codes_left == 9
    db_session.rollback()


def test_an_operator_resets_a_second_factor(app, client, db_session, enrolled):
    merchant, user, _secret = enrolled
    operator = factories.user(db_session, is_platform_admin=True)
    login_as(client, db_session, user)
    with pytest.raises(SecondFactorError):
        service.reset_second_factor(db_session, user, actor=operator, reason="  ")
    ended = service.reset_second_factor(db_session, user, actor=operator, reason="Lost phone, ticket #4711")
    db_session.commit()
    assert ended == 1 and client.get(dash(merchant.id)).status_code == 302  # every session ended
    assert db_session.get(SecondFactor, user.id) is None
    row = audit_rows(db_session, merchant.id, "user.second_factor_reset")[-1]
    assert row.actor_user_id == operator.id and row.target == user.id
    assert row.details == {"user": user.email, "reason": "Lost phone, ticket #4711", "sessions_ended": 1}
    mail = mails(db_session, user.email, "second_factor_reset")
    assert len(mail) == 1 and "Lost phone, ticket #4711" in mail[0].body_text
    # Not required for this owner: the password alone signs in now, and a new authenticator can be set up.
    assert password_login(client, user.email).headers["Location"] == "/dashboard/"
    with pytest.raises(SecondFactorError):
        service.reset_second_factor(db_session, user, actor=operator, reason="again")


def test_session_steps(db_session, team_of):
    merchant, users = team_of("owner")
    user = users["owner"]
    row, _token = start_session(db_session, user)
    assert service.session_step(db_session, row) == SessionStep.COMPLETE
    factories.second_factor(db_session, user)
    assert service.session_step(db_session, row) == SessionStep.SECOND_FACTOR
    row.second_factor_passed_at = utcnow()
    assert service.session_step(db_session, row) == SessionStep.COMPLETE
    db_session.rollback()


def test_the_command_line_resets_a_second_factor(app, db_session, enrolled):
    merchant, user, _secret = enrolled
    runner = app.test_cli_runner()
    result = runner.invoke(args=["second-factor", "reset", "--email", user.email.upper(), "--reason", "Lost phone"])
    assert result.exit_code == 0, result.output
    assert "was reset; 0 session(s) ended" in result.output
    row = audit_rows(db_session, merchant.id, "user.second_factor_reset")[-1]
    assert row.actor_label == "command line" and row.details["reason"] == "Lost phone"
    result = runner.invoke(args=["second-factor", "reset", "--email", user.email, "--reason", "again"])
    assert result.exit_code != 0 and "has no second factor to reset" in result.output


def test_the_demo_admin_has_the_documented_second_factor(app, db_session):
    _merchant, lines = seed_demo(db_session)
    seed_demo(db_session)  # idempotent
    db_session.commit()
    admin = find_user_by_email(db_session, "admin@kassa.test")
    assert factories.totp_secret(db_session, admin) == DEMO_ADMIN_TOTP_SECRET
    assert service.confirmed_factor(db_session, admin.id) is not None
    assert any("admin@kassa.test" in line and DEMO_ADMIN_TOTP_SECRET in line for line in lines)
    assert service.verify(db_session, admin, box(app), pyotp.TOTP(DEMO_ADMIN_TOTP_SECRET).now(), purpose="sign_in")
    db_session.rollback()
