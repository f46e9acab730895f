"""The dashboard shell: landing redirect, mode switch, banners, empty states, error pages, branding."""
from sqlalchemy import select

from app.accounts.models import Merchant
from tests.accounts.conftest import audit_rows, csrf, dash, login_as


def test_dashboard_root_sends_strangers_to_login_and_members_to_their_first_merchant(client, db_session, team_of):
    response = client.get("/dashboard/")
    assert response.status_code == 302 and response.headers["Location"] == "/login?next=%2Fdashboard%2F"
    merchant, users = team_of("analyst")
    login_as(client, db_session, users["analyst"])
    assert client.get("/dashboard/").headers["Location"] == dash(merchant.id)


def test_mode_switch_keeps_the_page_and_is_audited(client, db_session, team_of):
    merchant, users = team_of("owner")
    login_as(client, db_session, users["owner"])
    token = csrf(client, dash(merchant.id, "settings/team"))
    response = client.post(dash(merchant.id, "switch-mode"), data={"csrf_token": token,
                                                                   "next_endpoint": "dashboard.team"})
    assert response.status_code == 303 and response.headers["Location"] == dash(merchant.id, "settings/team", "live")
    response = client.post(dash(merchant.id, "switch-mode", "live"),
                           data={"csrf_token": token, "next_endpoint": "dashboard.no_such_page"})
    assert response.headers["Location"] == dash(merchant.id)
    response = client.post(dash(merchant.id, "switch-mode"), data={"csrf_token": token, "next_endpoint": "admin.x"})
    assert response.headers["Location"] == dash(merchant.id, "", "live")
    switches = [row.details for row in audit_rows(db_session, merchant.id, "dashboard.mode_switched")]
    assert switches == [{"from": "test", "to": "live"}, {"from": "live", "to": "test"}, {"from": "test", "to": "live"}]


def test_banners_for_test_mode_and_a_live_mode_not_yet_enabled(client, db_session, team_of):
    merchant, users = team_of("owner")
    login_as(client, db_session, users["owner"])
    test_page = client.get(dash(merchant.id, "settings/team")).get_data(as_text=True)
    assert "You are viewing <strong>test data</strong>" in test_page and "Switch to live mode" in test_page
    live_page = client.get(dash(merchant.id, "settings/team", "live")).get_data(as_text=True)
    assert "test data" not in live_page and "Live mode is not enabled" in live_page
    assert "Switch to test mode" in live_page
    db_session.get(Merchant, merchant.id).live_enabled = True
    db_session.commit()
    live_page = client.get(dash(merchant.id, "settings/team", "live")).get_data(as_text=True)
    assert "Live mode is not enabled" not in live_page and "test data" not in live_page


def test_empty_audit_log_says_what_will_appear(client, db_session, team_of):
    merchant, users = team_of("owner")
    login_as(client, db_session, users["owner"])
    html = client.get(dash(merchant.id, "settings/audit-log")).get_data(as_text=True)
    assert "Nothing recorded yet" in html and 'class="empty-state"' in html


def test_error_pages_render_in_the_shell(client, db_session, team_of):
    merchant, users = team_of("analyst")
    login_as(client, db_session, users["analyst"])
    forbidden = client.get(dash(merchant.id, "settings/team"))
    html = forbidden.get_data(as_text=True)
    assert forbidden.status_code == 403 and "You don't have access to this page" in html
    assert 'aria-label="Dashboard"' in html  # the merchant's navigation is still there
    missing = client.get("/no/such/page")
    html = missing.get_data(as_text=True)
    assert missing.status_code == 404 and "Page not found" in html and 'class="topbar' in html
    assert users["analyst"].email in html  # the account menu, so the way back is obvious


def test_csrf_failure_page_for_anonymous_visitors(client):
    response = client.post("/login", data={})
    assert response.status_code == 400 and "This form has expired" in response.get_data(as_text=True)


def test_branding_validates_and_saves(client, db_session, team_of):
    merchant, users = team_of("admin")
    login_as(client, db_session, users["admin"])
    url = dash(merchant.id, "settings/branding")
    page = client.get(url).get_data(as_text=True)
    assert 'value="Team Shop"' in page and 'value="#4f46e5"' in page
    bad = [
        ({"display_name": "", "accent_color": "#123456"}, "Enter the name shoppers see."),
        ({"display_name": "Shop", "accent_color": "red"}, "Use a hex colour with six digits"),
        ({"display_name": "Shop", "accent_color": "#12345"}, "Use a hex colour with six digits"),
        ({"display_name": "Shop", "accent_color": "#123456", "logo_url": "http://example.com/logo.png"},
         "Use an https:// address"),
        ({"display_name": "Shop", "accent_color": "#123456", "logo_url": "javascript:alert(1)"},
         "Use an https:// address"),
        ({"display_name": "x" * 201, "accent_color": "#123456"}, "Use at most 200 characters."),
    ]
    for data, message in bad:
        response = client.post(url, data={**data, "csrf_token": csrf(client, url)})
        assert response.status_code == 422 and message in response.get_data(as_text=True), data
        assert 'aria-invalid="true"' in response.get_data(as_text=True)
    db_session.rollback()
    assert db_session.get(Merchant, merchant.id).accent_color == "#4f46e5"

    response = client.post(url, data={"display_name": " Shiny Shop ", "accent_color": "#AABBCC",
                                      "logo_url": "https://cdn.example.com/logo.png", "csrf_token": csrf(client, url)})
    assert response.status_code == 303
    db_session.rollback()
    row = db_session.get(Merchant, merchant.id)
    assert (row.display_name, row.accent_color, row.logo_url) == ("Shiny Shop", "#aabbcc",
                                                                  "https://cdn.example.com/logo.png")
    assert "Branding saved." in client.get(url).get_data(as_text=True)
    [entry] = audit_rows(db_session, merchant.id, "merchant.branding_updated")
    assert set(entry.details) == {"display_name", "accent_color", "logo_url"}


def test_signup_creates_merchant_owner_and_membership_and_refuses_duplicates(client, db_session):
    from app.accounts.models import Membership, User

    data = {"name": "Sam", "business_name": "Sam's Socks", "email": "Sam@Socks.test",
            "password": "long enough password", "confirm": "long enough password"}
    response = client.post("/signup", data={**data, "csrf_token": csrf(client, "/signup")})
    assert response.status_code == 303
    user = db_session.scalars(select(User).where(User.email == "sam@socks.test")).one()
    [membership] = db_session.scalars(select(Membership).where(Membership.user_id == user.id)).all()
    assert membership.role == "owner" and db_session.get(Merchant, membership.merchant_id).name == "Sam's Socks"
    assert response.headers["Location"] == dash(membership.merchant_id)
    assert [row.action for row in audit_rows(db_session, membership.merchant_id)] == ["user.signed_up"]

    other = client.application.test_client()
    response = other.post("/signup", data={**data, "email": "sam@socks.test", "csrf_token": csrf(other, "/signup")})
    assert response.status_code == 422 and "An account with this email already exists" in response.get_data(as_text=True)
    assert db_session.scalars(select(Merchant).where(Merchant.name == "Sam's Socks")).all().__len__() == 1


def test_500_page_renders_a_minimal_shell_without_touching_the_database(app, client, db_session, team_of):
    from flask import render_template

    _merchant, users = team_of("owner")
    login_as(client, db_session, users["owner"])
    with app.test_request_context("/"):
        html = render_template("errors/500.html", error=None)
    assert "Something went wrong" in html and 'class="brand"' in html
    assert "Log in" not in html and "sidenav" not in html
