"""Roles: the permission table, and every dashboard page of this area for every role, by request.

Also tenancy: a member of merchant A cannot read or change merchant B's team, branding or audit log by
guessing URLs (404, as for a merchant that does not exist).
"""
import pytest
from sqlalchemy import select

from app.accounts.models import Membership, Merchant
from app.accounts.permissions import (
    PERMISSIONS,
    Action,
    Role,
    can,
    can_assign_role,
    can_manage_member,
)
from app.accounts.team import Invitation, invite
from tests.accounts.conftest import audit_rows, csrf, dash, login_as

ROLES = [r.value for r in Role]

# The table of the issue, written out independently of app/accounts/permissions.py.
ISSUE_TABLE = {
    Action.VIEW: {"owner", "admin", "developer", "analyst"},
    Action.MOVE_MONEY: {"owner", "admin"},
    Action.MANAGE_DEVELOPERS: {"owner", "admin", "developer"},
    Action.MANAGE_TEAM: {"owner", "admin"},
    Action.MANAGE_SETTINGS: {"owner", "admin"},
    Action.VIEW_AUDIT_LOG: {"owner", "admin"},
}

# The GET pages of this area (Settings), and the action each needs.
PAGES = [
    ("settings/team", Action.MANAGE_TEAM), ("settings/branding", Action.MANAGE_SETTINGS),
    ("settings/audit-log", Action.VIEW_AUDIT_LOG),
]
ACCOUNT_PAGE = "/dashboard/account/password"  # every signed-in user may open it (a source of CSRF tokens)
# Every page in the navigation (some belong to other areas), for the tenancy and navigation checks.
NAV_PAGES = ["", "payments", "balances", "developers/api-keys", "developers/webhooks", "developers/logs",
             "settings/team", "settings/branding", "settings/audit-log"]


def test_the_permission_table_is_the_issues():
    """The rows of issue 2 as written there (later issues add rows of their own)."""
    assert {action: {r.value for r in PERMISSIONS[action]} for action in ISSUE_TABLE} == ISSUE_TABLE
    for action, roles in ISSUE_TABLE.items():
        for role in ROLES:
            assert can(role, action) is (role in roles)
    assert not can(None, Action.VIEW) and not can("superuser", Action.VIEW)


def test_team_rules():
    assert can_manage_member("owner", "owner") and can_manage_member("owner", "admin")
    assert not can_manage_member("admin", "owner") and can_manage_member("admin", "admin")
    assert not can_manage_member("developer", "analyst") and not can_manage_member("analyst", "analyst")
    for actor in ("owner", "admin"):
        assert {r for r in ROLES if can_assign_role(actor, r)} == {"admin", "developer", "analyst"}
    for actor in ("developer", "analyst", None, "bogus"):
        assert not any(can_assign_role(actor, r) for r in ROLES)


@pytest.fixture
def shop(team_of):
    return team_of(*ROLES)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("path,action", PAGES, ids=[p or "home" for p, _ in PAGES])
def test_every_page_for_every_role(client, db_session, shop, role, path, action):
    merchant, users = shop
    login_as(client, db_session, users[role])
    for mode in ("test", "live"):
        response = client.get(dash(merchant.id, path, mode))
        assert response.status_code == (200 if can(role, action) else 403), (mode, response.status_code)


@pytest.mark.parametrize("role", ROLES)
def test_navigation_shows_exactly_what_the_role_may_open(client, db_session, shop, role):
    merchant, users = shop
    login_as(client, db_session, users[role])
    html = client.get(dash(merchant.id, "settings/team")).get_data(as_text=True)  # the nav shows on 403 too
    nav = html[html.index('<nav class="sidenav"'):html.index("</nav>", html.index('<nav class="sidenav"'))]
    for path in NAV_PAGES:
        opens = client.get(dash(merchant.id, path)).status_code == 200
        assert (f'href="{dash(merchant.id, path)}"' in nav) is opens, path
    if can(role, Action.MANAGE_TEAM):
        assert 'aria-current="page"' in nav.split(f'href="{dash(merchant.id, "settings/team")}"')[1].split(">")[0]


@pytest.mark.parametrize("role", ROLES)
def test_every_change_for_every_role(client, db_session, shop, role):
    """The POSTs of team and settings, with a valid CSRF token: allowed roles succeed, others get 403."""
    merchant, users = shop
    analyst_membership = db_session.scalars(select(Membership).where(
        Membership.merchant_id == merchant.id, Membership.user_id == users["analyst"].id)).one()
    owner_membership = db_session.scalars(select(Membership).where(
        Membership.merchant_id == merchant.id, Membership.user_id == users["owner"].id)).one()
    invitation = invite(db_session, owner_membership, "pending@example.com", "analyst", lambda t: t)
    db_session.commit()
    login_as(client, db_session, users[role])
    token = csrf(client, ACCOUNT_PAGE)
    allowed_team = can(role, Action.MANAGE_TEAM)
    allowed_settings = can(role, Action.MANAGE_SETTINGS)
    requests = [
        ("switch-mode", {"next_endpoint": "dashboard.home"}, True),
        ("settings/team/invite", {"email": f"new-{role}@example.com", "role": "analyst"}, allowed_team),
        (f"settings/team/members/{analyst_membership.id}/role", {f"{analyst_membership.id}-role": "developer"},
         allowed_team and role != "analyst"),
        (f"settings/team/invitations/{invitation.id}/revoke", {}, allowed_team),
        ("settings/branding", {"display_name": "Renamed", "accent_color": "#112233", "logo_url": ""},
         allowed_settings),
    ]
    for path, data, allowed in requests:
        response = client.post(dash(merchant.id, path), data={"csrf_token": token, **data})
        assert response.status_code == (303 if allowed else 403), (path, response.status_code)
    response = client.post(dash(merchant.id, f"settings/team/members/{analyst_membership.id}/remove"),
                           data={"csrf_token": token})
    assert response.status_code == (303 if allowed_team and role != "analyst" else 403)
    db_session.rollback()
    still_member = db_session.get(Membership, analyst_membership.id) is not None
    assert still_member is not (allowed_team and role != "analyst")
    assert (db_session.get(Merchant, merchant.id).display_name == "Renamed") is allowed_settings


def test_member_of_a_cannot_reach_merchant_b_by_url(client, db_session, team_of):
    shop_a, users_a = team_of("owner", name="Shop A")
    shop_b, _users_b = team_of("owner", "analyst", name="Shop B")
    owner_b = db_session.scalars(select(Membership).where(Membership.merchant_id == shop_b.id,
                                                          Membership.role == "owner")).one()
    analyst_b = db_session.scalars(select(Membership).where(Membership.merchant_id == shop_b.id,
                                                            Membership.role == "analyst")).one()
    invitation_b = invite(db_session, owner_b, "b-invitee@example.com", "developer", lambda t: t)
    db_session.commit()
    login_as(client, db_session, users_a["owner"])
    token = csrf(client, dash(shop_a.id, "settings/team"))

    for path in NAV_PAGES:
        for mode in ("test", "live"):
            assert client.get(dash(shop_b.id, path, mode)).status_code == 404, path
    assert client.get(dash("mer_doesnotexist", "settings/team")).status_code == 404
    assert client.get(f"/dashboard/{shop_a.id}/staging/").status_code == 404  # unknown mode

    # B's ids under B's URLs, and under A's URLs (where the merchant is A's but the rows are B's).
    for base in (shop_b.id, shop_a.id):
        posts = [
            (f"settings/team/members/{analyst_b.id}/role", {f"{analyst_b.id}-role": "admin"}),
            (f"settings/team/members/{analyst_b.id}/remove", {}),
            (f"settings/team/members/{owner_b.id}/remove", {}),
            (f"settings/team/invitations/{invitation_b.id}/revoke", {}),
        ]
        if base == shop_b.id:
            posts += [("settings/team/invite", {"email": "intruder@example.com", "role": "admin"}),
                      ("settings/branding", {"display_name": "Hacked", "accent_color": "#000000"}),
                      ("switch-mode", {})]
        for path, data in posts:
            response = client.post(dash(base, path), data={"csrf_token": token, **data})
            assert response.status_code == 404, (base, path, response.status_code)

    db_session.rollback()
    assert db_session.get(Membership, analyst_b.id).role == "analyst"
    assert db_session.get(Merchant, shop_b.id).display_name != "Hacked"
    assert db_session.get(Invitation, invitation_b.id).revoked_at is None
    assert not [row for row in audit_rows(db_session, shop_b.id) if row.actor_user_id == users_a["owner"].id]


def test_removed_member_loses_access_at_once(client, db_session, team_of):
    merchant, users = team_of("owner", "developer")
    login_as(client, db_session, users["developer"])
    assert client.get(dash(merchant.id, "settings/team")).status_code == 403
    membership = db_session.scalars(select(Membership).where(Membership.user_id == users["developer"].id)).one()
    db_session.delete(membership)
    db_session.commit()
    assert client.get(dash(merchant.id, "settings/team")).status_code == 404
    assert "not part of any team" in client.get("/dashboard/").get_data(as_text=True)
