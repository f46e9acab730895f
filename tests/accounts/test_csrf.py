"""CSRF: every cookie-authenticated form refuses a POST without a valid token with a clean 400 page."""
import pytest
from sqlalchemy import select

from app.accounts.models import Membership, Merchant
from tests.accounts.conftest import PASSWORD, csrf, dash, login_as


def test_csrf_protection_is_on(app):
    assert app.config.get("WTF_CSRF_ENABLED", True) is True


@pytest.mark.parametrize("path", ["/login", "/signup", "/password/forgot", "/logout"])
def test_public_forms_refuse_posts_without_a_token(client, team_of, path):
    _merchant, users = team_of("owner")
    response = client.post(path, data={"email": users["owner"].email, "password": PASSWORD})
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert "This form has expired" in html and "Nothing was changed" in html


def test_dashboard_forms_refuse_missing_or_foreign_tokens(app, client, db_session, team_of):
    merchant, users = team_of("owner", "analyst")
    analyst = db_session.scalars(select(Membership).where(Membership.user_id == users["analyst"].id)).one()
    login_as(client, db_session, users["owner"])
    # A token from another browser's session is as good as none.
    other = app.test_client()
    login_as(other, db_session, users["analyst"])
    foreign = csrf(other, "/dashboard/account/password")
    for token in (None, foreign, "garbage"):
        data = {} if token is None else {"csrf_token": token}
        posts = [
            ("settings/branding", {"display_name": "X", "accent_color": "#000000"}),
            ("settings/team/invite", {"email": "a@example.com", "role": "admin"}),
            (f"settings/team/members/{analyst.id}/role", {f"{analyst.id}-role": "admin"}),
            (f"settings/team/members/{analyst.id}/remove", {}),
            ("switch-mode", {}),
        ]
        for path, fields in posts:
            response = client.post(dash(merchant.id, path), data={**data, **fields})
            assert response.status_code == 400, (token, path)
        response = client.post("/dashboard/account/password", data={
            **data, "current_password": PASSWORD, "new_password": "x" * 12, "confirm": "x" * 12})
        assert response.status_code == 400
        # htmx requests carry the token in a header; a wrong header is refused too.
        response = client.post(dash(merchant.id, f"settings/team/members/{analyst.id}/role"),
                               data={f"{analyst.id}-role": "admin"},
                               headers={"HX-Request": "true", "X-CSRFToken": token or ""})
        assert response.status_code == 400
    db_session.rollback()
    assert db_session.get(Membership, analyst.id).role == "analyst"
    assert db_session.get(Merchant, merchant.id).display_name != "X"


def test_htmx_header_token_is_accepted(client, db_session, team_of):
    merchant, users = team_of("owner", "analyst")
    analyst = db_session.scalars(select(Membership).where(Membership.user_id == users["analyst"].id)).one()
    login_as(client, db_session, users["owner"])
    token = csrf(client, dash(merchant.id, "settings/team"))
    response = client.post(dash(merchant.id, f"settings/team/members/{analyst.id}/role"),
                           data={f"{analyst.id}-role": "developer"},
                           headers={"HX-Request": "true", "X-CSRFToken": token})
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert html.lstrip().startswith(f'<tr id="member-{analyst.id}"') and "Role changed to developer." in html
