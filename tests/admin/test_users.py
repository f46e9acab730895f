"""Users in the console: find one, see their memberships, lock and unlock, force a password reset; each
audited on every team they belong to."""
import re

from sqlalchemy import select

from app.accounts.mail import MailMessage
from app.accounts.models import User
from app.accounts.sessions import UserSession
from tests import factories
from tests.admin.conftest import act, audit_rows, csrf_of, login_as


def _sign_in(client, email: str, password: str = factories.PASSWORD):
    with client.session_transaction() as cookie:
        cookie.clear()
    token = csrf_of(client, "/login")
    return client.post("/login", data={"email": email, "password": password, "csrf_token": token})


def test_users_are_found_by_email_with_their_memberships(client, db_session, admin, shop):
    merchant, owner, _developer = shop
    login_as(client, db_session, admin)
    listing = client.get("/admin/users", query_string={"q": owner.email[:8].upper()}).get_data(as_text=True)
    assert f'data-user-id="{owner.id}"' in listing
    page = client.get(f"/admin/users/{owner.id}").get_data(as_text=True)
    assert merchant.name in page and "owner" in page and "1 active session" not in page


def test_a_locked_user_cannot_sign_in_and_their_sessions_end(app, db_session, admin, shop):
    merchant, owner, _developer = shop
    users_browser = app.test_client()
    login_as(users_browser, db_session, owner)
    assert users_browser.get(f"/dashboard/{merchant.id}/test/").status_code == 200

    operator = app.test_client()
    login_as(operator, db_session, admin)
    assert "1 active session" in operator.get(f"/admin/users/{owner.id}").get_data(as_text=True)
    assert act(operator, f"/admin/users/{owner.id}/lock", "lock", reason="").status_code == 422
    assert act(operator, f"/admin/users/{owner.id}/lock", "lock", reason="Account taken over").status_code == 303

    assert users_browser.get(f"/dashboard/{merchant.id}/test/").status_code == 302  # the session is gone
    refused = _sign_in(users_browser, owner.email)
    assert refused.status_code == 422 and "This account is locked" in refused.get_data(as_text=True)
    [entry] = audit_rows(db_session, "user.locked", merchant.id)  # the owner's team sees it
    assert (entry.actor_user_id, entry.target, entry.details["reason"]) == (admin.id, owner.id, "Account taken over")
    assert entry.details["sessions_ended"] == 1
    oneself = act(operator, f"/admin/users/{admin.id}/lock", "lock", reason="oops")
    assert oneself.status_code == 422 and "cannot lock your own account" in oneself.get_data(as_text=True)

    assert act(operator, f"/admin/users/{owner.id}/unlock", "unlock", reason="Owner verified by phone").status_code == 303
    assert _sign_in(users_browser, owner.email).status_code == 303
    assert [e.details["reason"] for e in audit_rows(db_session, "user.unlocked", merchant.id)] == \
        ["Owner verified by phone"]


def test_a_forced_password_reset_voids_the_password_ends_sessions_and_mails_a_link(app, db_session, admin, shop):
    merchant, _owner, developer = shop
    users_browser = app.test_client()
    login_as(users_browser, db_session, developer)
    operator = app.test_client()
    login_as(operator, db_session, admin)
    response = act(operator, f"/admin/users/{developer.id}/reset-password", "reset_password", reason="Leaked password")
    assert response.status_code == 303

    db_session.rollback()
    assert db_session.scalars(select(UserSession).where(UserSession.user_id == developer.id,
                                                        UserSession.revoked_at.is_(None))).all() == []
    assert _sign_in(users_browser, developer.email).status_code == 422  # the old password is dead
    [mail] = db_session.scalars(select(MailMessage).where(MailMessage.to_address == developer.email,
                                                          MailMessage.kind == "password_reset")).all()
    link = re.search(r"http\S+/password/reset/\S+", mail.body_text).group(0)
    path = "/" + link.split("/", 3)[3]
    token = csrf_of(users_browser, path)
    done = users_browser.post(path, data={"password": "a brand new secret", "confirm": "a brand new secret",
                                          "csrf_token": token})
    assert done.status_code == 303
    assert _sign_in(users_browser, developer.email, "a brand new secret").status_code == 303
    [entry] = audit_rows(db_session, "user.password_reset_forced", merchant.id)
    assert entry.details["reason"] == "Leaked password" and entry.actor_user_id == admin.id
    assert db_session.get(User, developer.id).locked_at is None


def test_an_operator_resets_a_lost_second_factor(app, db_session, admin, shop):
    merchant, owner, _developer = shop
    factories.second_factor(db_session, owner)
    db_session.commit()
    users_browser = app.test_client()
    login_as(users_browser, db_session, owner)
    operator = app.test_client()
    login_as(operator, db_session, admin)
    assert "Reset the second factor" in operator.get(f"/admin/users/{owner.id}").get_data(as_text=True)
    assert act(operator, f"/admin/users/{owner.id}/reset-second-factor", "reset_second_factor",
               reason="").status_code == 422
    response = act(operator, f"/admin/users/{owner.id}/reset-second-factor", "reset_second_factor",
                   reason="Lost phone, identity checked by video call")
    assert response.status_code == 303

    db_session.rollback()
    assert db_session.get(factories.SecondFactor, owner.id) is None
    assert users_browser.get(f"/dashboard/{merchant.id}/test/").status_code == 302  # every session ended
    [entry] = audit_rows(db_session, "user.second_factor_reset", merchant.id)  # the owner's team sees it
    assert (entry.actor_user_id, entry.details["reason"]) == (admin.id, "Lost phone, identity checked by video call")
    [mail] = db_session.scalars(select(MailMessage).where(MailMessage.to_address == owner.email,
                                                          MailMessage.kind == "second_factor_reset")).all()
    assert "Lost phone" in mail.body_text
    page = operator.get(f"/admin/users/{owner.id}").get_data(as_text=True)
    assert "Reset the second factor" not in page  # nothing left to reset
    again = act(operator, f"/admin/users/{owner.id}/reset-second-factor", "reset_second_factor", reason="twice")
    assert again.status_code == 422 and "has no second factor to reset" in again.get_data(as_text=True)


def test_the_first_platform_admin_is_made_from_the_command_line(app, client, db_session, shop):
    """A production install has no demo admin: `flask platform-admin grant` creates the operator's account
    (asking for its password) or grants an existing one, audited; `revoke` takes the console away again."""
    merchant, owner, _developer = shop
    runner = app.test_cli_runner()
    created = runner.invoke(args=["platform-admin", "grant", "Ops@Example.com", "--name", "Olga Ops"],
                            input="a-long-enough-password\na-long-enough-password\n")
    assert created.exit_code == 0, created.output
    db_session.rollback()
    operator = db_session.scalars(select(User).where(User.email == "ops@example.com")).one()
    assert operator.is_platform_admin and operator.name == "Olga Ops"
    assert _sign_in(client, "ops@example.com", "a-long-enough-password").status_code == 303
    # Platform admins must have a second factor: the new operator enrols before reaching anything.
    assert "/account/second-factor/setup" in client.get("/dashboard/").headers["Location"]

    short = runner.invoke(args=["platform-admin", "grant", "new@example.com"], input="short\nshort\n")
    assert short.exit_code != 0 and "at least 10 characters" in short.output
    assert runner.invoke(args=["platform-admin", "grant", "not-an-email"]).exit_code != 0
    assert runner.invoke(args=["platform-admin", "grant", owner.email]).exit_code == 0  # no password asked
    db_session.rollback()
    assert db_session.get(User, owner.id).is_platform_admin
    assert runner.invoke(args=["platform-admin", "revoke", owner.email]).exit_code == 0
    assert runner.invoke(args=["platform-admin", "revoke", "nobody@example.com"]).exit_code != 0
    db_session.rollback()
    assert not db_session.get(User, owner.id).is_platform_admin
    assert [e.target for e in audit_rows(db_session, "user.platform_admin_granted")] == [operator.id, owner.id]
    assert [(e.target, e.merchant_id) for e in audit_rows(db_session, "user.platform_admin_revoked")] == \
        [(owner.id, merchant.id)]
