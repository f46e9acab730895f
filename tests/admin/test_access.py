"""No one but a platform admin reaches the console: every admin URL, read or action, is a 404 for a merchant's
members (even an owner with a valid CSRF token) and sends anonymous visitors to the login page."""
import re

import pytest
from sqlalchemy import select

from app.accounts.audit import AuditEntry
from app.accounts.models import Merchant
from tests.admin.conftest import csrf_of, login_as


def admin_urls(app) -> list[tuple[str, str]]:
    """(method, path) of every /admin route, its arguments filled with plausible ids."""
    urls = []
    for rule in app.url_map.iter_rules():
        if not rule.endpoint.startswith("admin."):
            continue
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", lambda m: {"kind": "psp_callback"}.get(m.group(1), "x_1"), rule.rule)
        urls.extend((method, path) for method in sorted(rule.methods - {"HEAD", "OPTIONS"}))
    return urls


def test_the_console_has_the_issues_pages(app):
    paths = {path for _method, path in admin_urls(app)}
    for page in ("/admin/inbox", "/admin/merchants", "/admin/users", "/admin/payments"):
        assert page in paths


@pytest.mark.parametrize("role", ["owner", "developer"])
def test_merchant_members_get_404_on_every_admin_page_and_action(app, client, db_session, shop, role):
    merchant, owner, developer = shop
    member = owner if role == "owner" else developer
    login_as(client, db_session, member)
    token = csrf_of(client, f"/dashboard/{merchant.id}/test/")
    for method, path in admin_urls(app):
        path = path.replace("x_1", merchant.id) if "/merchants/" in path else path
        response = client.open(path, method=method, data={"csrf_token": token, "reason": "x"})
        assert response.status_code == 404, (method, path, response.status_code)
    db_session.rollback()
    assert db_session.get(Merchant, merchant.id).suspended_at is None
    assert db_session.scalars(select(AuditEntry).where(AuditEntry.actor_user_id == member.id,
                                                       AuditEntry.action.like("merchant.%"))).all() == []


def test_anonymous_visitors_are_sent_to_login(app, client):
    for method, path in admin_urls(app):
        response = client.open(path, method=method)
        assert response.status_code in (302, 400), (method, path)  # 400: a POST without a CSRF token
        if method == "GET":
            assert "/login" in response.headers["Location"], path


def test_text_postgresql_cannot_store_is_a_client_error_on_every_admin_url(app, admin_client):
    """A NUL (``%00``) in a path or query value, or a form field, is refused (404 for a path id, else 400)
    before any query: PostgreSQL text cannot hold it, and a query with it failed with a 500."""
    token = csrf_of(admin_client)
    for method, path in admin_urls(app):
        path = path.replace("x_1", "x_%00")
        response = admin_client.open(path + "?q=%00&merchant=%00&reference=%00", method=method,
                                     data={"csrf_token": token, "reason": "a\x00b"})
        assert response.status_code in (400, 404), (method, path, response.status_code)
    for query in ("q=%00", "merchant=%00", "reference=%00", "email=%00"):
        for page in ("/admin/merchants", "/admin/users", "/admin/inbox", "/admin/payments"):
            assert admin_client.get(f"{page}?{query}").status_code == 400, (page, query)
