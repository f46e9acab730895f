"""Team: invitations (new and existing users), role changes, removals, the owner rule, merchant switching."""
import re
from datetime import timedelta

from sqlalchemy import select

from app.accounts.mail import MailMessage
from app.accounts.models import Membership, User
from app.accounts.team import Invitation
from app.models_base import utcnow
from tests import factories
from tests.accounts.conftest import PASSWORD, audit_rows, csrf, dash, login_as


def _membership(db_session, merchant, user) -> Membership:
    db_session.rollback()
    return db_session.scalars(select(Membership).where(Membership.merchant_id == merchant.id,
                                                       Membership.user_id == user.id)).one_or_none()


def _invite(client, merchant, email, role="developer"):
    return client.post(dash(merchant.id, "settings/team/invite"), data={
        "email": email, "role": role, "csrf_token": csrf(client, dash(merchant.id, "settings/team"))})


def _invitation_link(db_session, email) -> str:
    db_session.rollback()
    mail = db_session.scalars(select(MailMessage).where(MailMessage.to_address == email, MailMessage.kind == "invitation")
                              .order_by(MailMessage.created_at.desc())).first()
    return re.search(r"http://localhost(/invitations/\S+)", mail.body_text).group(1)


def test_invite_a_new_person_who_signs_up_from_the_link(app, client, db_session, team_of):
    merchant, users = team_of("owner")
    login_as(client, db_session, users["owner"])
    response = _invite(client, merchant, "Newbie@Example.com", "analyst")
    assert response.status_code == 303
    assert "Invitation sent to newbie@example.com." in client.get(response.headers["Location"]).get_data(as_text=True)
    link = _invitation_link(db_session, "newbie@example.com")

    stranger = app.test_client()
    page = stranger.get(link).get_data(as_text=True)
    assert "Join Team Shop" in page and "Create account and join" in page and "newbie@example.com" in page
    response = stranger.post(link, data={"name": "", "password": "short", "confirm": "x",
                                         "csrf_token": csrf(stranger, link)})
    assert response.status_code == 422 and "Enter your name." in response.get_data(as_text=True)
    assert db_session.scalars(select(User).where(User.email == "newbie@example.com")).first() is None
    response = stranger.post(link, data={"name": "Nina New", "password": "a fine long password",
                                         "confirm": "a fine long password", "csrf_token": csrf(stranger, link)})
    assert response.status_code == 303 and response.headers["Location"] == dash(merchant.id)
    newbie = db_session.scalars(select(User).where(User.email == "newbie@example.com")).one()
    assert _membership(db_session, merchant, newbie).role == "analyst"
    assert stranger.get("/dashboard/account/password").status_code == 200  # signed in as the new user
    assert stranger.get(dash(merchant.id, "settings/team")).status_code == 403  # an analyst there
    # Single use.
    assert app.test_client().get(link).status_code == 404
    assert [row.action for row in audit_rows(db_session, merchant.id)][-2:] == ["team.member_invited",
                                                                               "team.invitation_accepted"]


def test_invite_an_existing_user_who_logs_in_and_joins(app, client, db_session, team_of):
    shop_a, users_a = team_of("owner", name="Shop A")
    shop_b, users_b = team_of("owner", name="Shop B")
    login_as(client, db_session, users_a["owner"])
    _invite(client, shop_a, users_b["owner"].email, "admin")
    link = _invitation_link(db_session, users_b["owner"].email)

    invitee = app.test_client()
    page = invitee.get(link).get_data(as_text=True)
    assert "Log in to accept" in page
    login_url = re.search(r'href="(/login\?next=[^"]+)"', page).group(1).replace("&amp;", "&")
    response = invitee.post("/login", data={"email": users_b["owner"].email, "password": PASSWORD,
                                            "next": link, "csrf_token": csrf(invitee, login_url)})
    assert response.headers["Location"] == link
    assert "Join Shop A" in invitee.get(link).get_data(as_text=True)
    response = invitee.post(link, data={"csrf_token": csrf(invitee, link)})
    assert response.status_code == 303 and response.headers["Location"] == dash(shop_a.id)
    assert _membership(db_session, shop_a, users_b["owner"]).role == "admin"

    # Now in two merchants: /dashboard/ opens the first one, the switcher offers both.
    assert invitee.get("/dashboard/").headers["Location"] == dash(shop_b.id)
    html = invitee.get(dash(shop_b.id, "settings/team")).get_data(as_text=True)
    switcher = html[html.index("merchant-switcher"):html.index("</details>", html.index("merchant-switcher"))]
    assert f'href="{dash(shop_a.id)}"' in switcher and f'href="{dash(shop_b.id)}"' in switcher
    assert 'aria-current="true">Shop B<' in switcher
    assert invitee.get(dash(shop_a.id, "settings/team")).status_code == 200  # admin there
    assert invitee.get(dash(shop_b.id, "settings/team")).status_code == 200  # owner here


def test_invitation_for_someone_else_is_refused(app, client, db_session, team_of):
    merchant, users = team_of("owner", "analyst")
    login_as(client, db_session, users["owner"])
    _invite(client, merchant, "someone@example.com")
    link = _invitation_link(db_session, "someone@example.com")
    other = app.test_client()
    login_as(other, db_session, users["analyst"])
    response = other.get(link)
    assert response.status_code == 403 and "This invitation is for someone@example.com" in response.get_data(as_text=True)
    assert other.post(link, data={"csrf_token": csrf(other, "/dashboard/account/password")}).status_code == 403
    db_session.rollback()
    assert db_session.scalars(select(Invitation).where(Invitation.email == "someone@example.com")).one().accepted_at is None


def test_expired_and_withdrawn_invitations_are_dead(app, client, db_session, team_of):
    merchant, users = team_of("owner")
    login_as(client, db_session, users["owner"])
    _invite(client, merchant, "late@example.com")
    late_link = _invitation_link(db_session, "late@example.com")
    invitation = db_session.scalars(select(Invitation).where(Invitation.email == "late@example.com")).one()
    invitation.expires_at = utcnow() - timedelta(seconds=1)
    db_session.commit()
    assert app.test_client().get(late_link).status_code == 404

    _invite(client, merchant, "withdrawn@example.com")
    link = _invitation_link(db_session, "withdrawn@example.com")
    invitation = db_session.scalars(select(Invitation).where(Invitation.email == "withdrawn@example.com")).one()
    page = client.get(dash(merchant.id, "settings/team")).get_data(as_text=True)
    assert "withdrawn@example.com" in page and "late@example.com" not in page  # expired ones are not pending
    response = client.post(dash(merchant.id, f"settings/team/invitations/{invitation.id}/revoke"),
                           data={"csrf_token": csrf(client, dash(merchant.id, "settings/team"))})
    assert response.status_code == 303
    assert app.test_client().get(link).status_code == 404
    assert "team.invitation_revoked" in [row.action for row in audit_rows(db_session, merchant.id)]


def test_inviting_again_replaces_the_pending_invitation(app, client, db_session, team_of):
    merchant, users = team_of("owner")
    login_as(client, db_session, users["owner"])
    _invite(client, merchant, "twice@example.com", "analyst")
    first = _invitation_link(db_session, "twice@example.com")
    _invite(client, merchant, "twice@example.com", "developer")
    second = _invitation_link(db_session, "twice@example.com")
    assert first != second
    assert app.test_client().get(first).status_code == 404
    assert "as <strong>developer</strong>" in app.test_client().get(second).get_data(as_text=True)


def test_bad_invitations_change_nothing(client, db_session, team_of):
    merchant, users = team_of("owner", "developer")
    login_as(client, db_session, users["owner"])
    cases = [
        ({"email": "not an email", "role": "analyst"}, "Enter a valid email address"),
        ({"email": "", "role": "analyst"}, "Enter your email address."),
        ({"email": "x@example.com", "role": "owner"}, "Not a valid choice"),
        ({"email": users["developer"].email.upper(), "role": "analyst"}, "already a member"),
    ]
    for data, message in cases:
        response = client.post(dash(merchant.id, "settings/team/invite"),
                               data={**data, "csrf_token": csrf(client, dash(merchant.id, "settings/team"))})
        assert response.status_code == 422 and message in response.get_data(as_text=True), data
    db_session.rollback()
    assert db_session.scalars(select(Invitation).where(Invitation.merchant_id == merchant.id)).all() == []
    assert db_session.scalars(select(MailMessage).where(MailMessage.merchant_id == merchant.id)).all() == []


def test_admins_cannot_change_or_remove_the_owner(client, db_session, team_of):
    merchant, users = team_of("owner", "admin", "analyst")
    owner = _membership(db_session, merchant, users["owner"])
    admin = _membership(db_session, merchant, users["admin"])
    analyst = _membership(db_session, merchant, users["analyst"])
    login_as(client, db_session, users["admin"])
    page = client.get(dash(merchant.id, "settings/team")).get_data(as_text=True)
    owner_row = page[page.index(f'id="member-{owner.id}"'):page.index("</tr>", page.index(f'id="member-{owner.id}"'))]
    assert "<select" not in owner_row and "Remove" not in owner_row  # no controls for the owner
    token = csrf(client, dash(merchant.id, "settings/team"))
    for role in ("admin", "analyst"):
        response = client.post(dash(merchant.id, f"settings/team/members/{owner.id}/role"),
                               data={f"{owner.id}-role": role, "csrf_token": token}, follow_redirects=True)
        assert "Only an owner can change the owner" in response.get_data(as_text=True)
    response = client.post(dash(merchant.id, f"settings/team/members/{owner.id}/remove"),
                           data={"csrf_token": token}, follow_redirects=True)
    assert "Only an owner can remove the owner." in response.get_data(as_text=True)
    # Nor change themselves; but other members, yes.
    response = client.post(dash(merchant.id, f"settings/team/members/{admin.id}/role"),
                           data={f"{admin.id}-role": "analyst", "csrf_token": token}, follow_redirects=True)
    assert "You cannot change your own role." in response.get_data(as_text=True)
    response = client.post(dash(merchant.id, f"settings/team/members/{analyst.id}/role"),
                           data={f"{analyst.id}-role": "developer", "csrf_token": token})
    assert response.status_code == 303
    assert _membership(db_session, merchant, users["owner"]).role == "owner"
    assert _membership(db_session, merchant, users["admin"]).role == "admin"
    assert _membership(db_session, merchant, users["analyst"]).role == "developer"


def test_owner_manages_admins_and_keeps_ownership(client, db_session, team_of):
    merchant, users = team_of("owner", "admin")
    owner = _membership(db_session, merchant, users["owner"])
    admin = _membership(db_session, merchant, users["admin"])
    login_as(client, db_session, users["owner"])
    token = csrf(client, dash(merchant.id, "settings/team"))
    response = client.post(dash(merchant.id, f"settings/team/members/{owner.id}/remove"),
                           data={"csrf_token": token}, follow_redirects=True)
    assert "You cannot remove yourself." in response.get_data(as_text=True)
    assert client.post(dash(merchant.id, f"settings/team/members/{admin.id}/role"),
                       data={f"{admin.id}-role": "developer", "csrf_token": token}).status_code == 303
    assert client.post(dash(merchant.id, f"settings/team/members/{admin.id}/remove"),
                       data={"csrf_token": token}).status_code == 303
    assert _membership(db_session, merchant, users["admin"]) is None
    assert _membership(db_session, merchant, users["owner"]).role == "owner"


def test_last_owner_cannot_be_demoted_even_by_another_owner_leaving_none(db_session, team_of):
    from app.accounts import team

    merchant, users = team_of("owner")
    second = factories.member(db_session, merchant, role="owner")
    db_session.commit()
    first = _membership(db_session, merchant, users["owner"])
    other = _membership(db_session, merchant, second)
    team.change_role(db_session, first, other.id, "admin")  # two owners: fine
    db_session.commit()
    assert _membership(db_session, merchant, second).role == "admin"


def test_role_change_with_htmx_returns_the_row(client, db_session, team_of):
    merchant, users = team_of("owner", "analyst")
    analyst = _membership(db_session, merchant, users["analyst"])
    login_as(client, db_session, users["owner"])
    token = csrf(client, dash(merchant.id, "settings/team"))
    response = client.post(dash(merchant.id, f"settings/team/members/{analyst.id}/role"),
                           data={f"{analyst.id}-role": "bogus"}, headers={"HX-Request": "true", "X-CSRFToken": token})
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert html.lstrip().startswith("<tr") and "Not a valid choice" in html
    assert _membership(db_session, merchant, users["analyst"]).role == "analyst"
