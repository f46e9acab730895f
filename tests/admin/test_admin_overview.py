"""The platform admin area: only platform admins reach it, merchants never do."""
from tests import factories
from tests.accounts.conftest import login_as


def test_platform_admin_sees_the_overview_with_links(client, db_session):
    admin = factories.user(db_session, is_platform_admin=True)
    factories.merchant(db_session)
    login_as(client, db_session, admin)
    response = client.get("/admin/")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert 'id="merchant-count">' in html
    assert 'href="/admin/psp"' in html and 'href="/admin/ledger"' in html


def test_merchant_owner_cannot_reach_admin(client, db_session):
    merchant = factories.merchant(db_session)
    owner = factories.member(db_session, merchant, role="owner")
    login_as(client, db_session, owner)
    for path in ("/admin/", "/admin/psp", "/admin/ledger"):
        assert client.get(path).status_code == 404, path


def test_anonymous_is_sent_to_login(client):
    response = client.get("/admin/")
    assert response.status_code in (302, 401)


def test_an_admin_without_a_team_lands_on_the_console_and_can_log_out(client, db_session):
    admin = factories.user(db_session, is_platform_admin=True)
    login_as(client, db_session, admin)
    for entry in ("/", "/dashboard/"):
        response = client.get(entry, follow_redirects=True)
        assert response.request.path == "/admin/", entry
    html = client.get("/admin/").get_data(as_text=True)
    assert f"Signed in as </span>{admin.email}" in html
    assert 'action="/logout"' in html and ">Log out</button>" in html
    token = html.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    assert client.post("/logout", data={"csrf_token": token}).status_code in (302, 303)
    assert client.get("/admin/").status_code in (302, 401)


def test_the_front_door_sends_visitors_to_login_and_members_to_their_dashboard(client, db_session):
    assert client.get("/").headers["Location"].endswith("/login")
    merchant = factories.merchant(db_session)
    owner = factories.member(db_session, merchant, role="owner")
    login_as(client, db_session, owner)
    response = client.get("/", follow_redirects=True)
    assert response.request.path == f"/dashboard/{merchant.id}/test/"
