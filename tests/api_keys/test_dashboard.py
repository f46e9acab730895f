"""Developers › API keys in the dashboard: permissions by role, tenancy, create/roll/revoke, secrets shown once."""
import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from app.accounts.api_keys import PUBLISHABLE, SECRET, ApiKey
from app.accounts.audit import AuditEntry
from app.models_base import utcnow
from tests import factories
from tests.api_keys.conftest import login_as, mint


def _url(merchant_id, suffix="", mode="test"):
    return f"/dashboard/{merchant_id}/{mode}/developers/api-keys{suffix}"


def _csrf(html: str) -> str:
    return re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html).group(1)


def _form_token(html: str) -> str:
    return re.search(r'name="form_token"[^>]*value="([^"]+)"', html).group(1)


@pytest.fixture
def member(db_session, client, merchant):
    """Log the client in as a member of `merchant` with the requested role."""

    def make(role: str):
        user = factories.member(db_session, merchant, role=role)
        db_session.commit()
        login_as(client, db_session, user)
        return user

    return make


def _keys(db_session, merchant_id):
    db_session.rollback()
    return list(db_session.scalars(select(ApiKey).where(ApiKey.merchant_id == merchant_id)))


@pytest.mark.parametrize("role", ["owner", "admin", "developer"])
def test_owner_admin_developer_may_manage_keys(client, member, merchant, role):
    member(role)
    response = client.get(_url(merchant.id))
    assert response.status_code == 200
    assert b"Create secret key" in response.data


def test_analyst_cannot_see_or_manage_keys(client, db_session, member, merchant):
    key = mint(db_session, merchant.id)
    member("analyst")
    assert client.get(_url(merchant.id)).status_code == 403
    assert client.get(_url(merchant.id, f"/{key.row.id}/roll")).status_code == 403
    assert client.get(_url(merchant.id, f"/{key.row.id}/revoke")).status_code == 403
    # Even with a valid CSRF token (from a page the analyst may see), POSTs are refused.
    token = _csrf(client.get(f"/dashboard/{merchant.id}/test/").get_data(as_text=True))
    assert client.post(_url(merchant.id, "/create"), data={"csrf_token": token, "kind": "secret",
                                                           "form_token": "x"}).status_code == 403
    assert client.post(_url(merchant.id, f"/{key.row.id}/revoke"), data={"csrf_token": token}).status_code == 403
    assert _keys(db_session, merchant.id)[0].revoked_at is None


def test_other_merchants_member_gets_404(client, db_session, merchant, other_merchant):
    key = mint(db_session, merchant.id)
    outsider = factories.member(db_session, other_merchant, role="owner")
    db_session.commit()
    login_as(client, db_session, outsider)
    assert client.get(_url(merchant.id)).status_code == 404
    assert client.get(_url(merchant.id, f"/{key.row.id}/revoke")).status_code == 404
    # Guessing the key id under one's own merchant does not reach it either.
    assert client.get(_url(other_merchant.id, f"/{key.row.id}/revoke")).status_code == 404
    token = _csrf(client.get(_url(other_merchant.id)).get_data(as_text=True))
    assert client.post(_url(other_merchant.id, f"/{key.row.id}/revoke"),
                       data={"csrf_token": token}).status_code == 404
    assert _keys(db_session, merchant.id)[0].revoked_at is None


def test_keys_of_the_other_mode_are_not_listed_or_reachable(client, db_session, member, merchant):
    live = mint(db_session, merchant.id, livemode=True)
    test = mint(db_session, merchant.id, livemode=False)
    member("developer")
    page = client.get(_url(merchant.id)).get_data(as_text=True)
    assert test.row.masked in page and live.row.masked not in page
    assert client.get(_url(merchant.id, f"/{live.row.id}/roll", mode="test")).status_code == 404
    assert client.get(_url(merchant.id, f"/{live.row.id}/roll", mode="live")).status_code == 200


def test_create_reveals_the_secret_once(client, db_session, member, merchant):
    user = member("developer")
    page = client.get(_url(merchant.id)).get_data(as_text=True)
    form = {"csrf_token": _csrf(page), "kind": "secret", "name": "Production server",
            "form_token": _form_token(page)}
    response = client.post(_url(merchant.id, "/create"), data=form)
    assert response.status_code == 201
    assert response.headers["Cache-Control"] == "no-store"
    plaintext = re.search(r'value="(sk_test_[A-Za-z0-9]{32})"', response.get_data(as_text=True)).group(1)

    [key] = _keys(db_session, merchant.id)
    assert key.kind == SECRET and key.name == "Production server" and key.created_by_user_id == user.id
    listing = client.get(_url(merchant.id)).get_data(as_text=True)
    assert plaintext not in listing and key.masked in listing

    # Re-posting the same form (a reload of the result page) does not mint a second key.
    again = client.post(_url(merchant.id, "/create"), data=form)
    assert again.status_code == 303
    assert len(_keys(db_session, merchant.id)) == 1

    entry = db_session.scalars(select(AuditEntry).where(AuditEntry.target == key.id)).one()
    assert entry.action == "api_key.created" and entry.actor_user_id == user.id
    assert plaintext not in str(entry.details)


def test_create_publishable_key_stays_visible(client, db_session, member, merchant):
    member("admin")
    page = client.get(_url(merchant.id)).get_data(as_text=True)
    response = client.post(_url(merchant.id, "/create"), data={
        "csrf_token": _csrf(page), "kind": PUBLISHABLE, "form_token": _form_token(page)})
    assert response.status_code == 201
    [key] = _keys(db_session, merchant.id)
    assert key.publishable_token.startswith("pk_test_")
    assert key.publishable_token in client.get(_url(merchant.id)).get_data(as_text=True)


def test_create_validates_the_name(client, db_session, member, merchant):
    member("owner")
    page = client.get(_url(merchant.id)).get_data(as_text=True)
    response = client.post(_url(merchant.id, "/create"), data={
        "csrf_token": _csrf(page), "kind": "secret", "name": "x" * 101, "form_token": _form_token(page)})
    assert response.status_code == 422
    assert b"at most 100 characters" in response.data
    assert _keys(db_session, merchant.id) == []


def test_post_without_csrf_token_is_refused(client, db_session, member, merchant):
    member("owner")
    response = client.post(_url(merchant.id, "/create"), data={"kind": "secret", "form_token": "abc"})
    assert response.status_code == 400
    assert _keys(db_session, merchant.id) == []


def test_roll_with_grace_period(client, db_session, member, merchant):
    old = mint(db_session, merchant.id)
    user = member("developer")
    confirm = client.get(_url(merchant.id, f"/{old.row.id}/roll"))
    assert confirm.status_code == 200 and b"When should the old key stop working?" in confirm.data
    html = confirm.get_data(as_text=True)
    before = utcnow()
    response = client.post(_url(merchant.id, f"/{old.row.id}/roll"), data={
        "csrf_token": _csrf(html), "form_token": _form_token(html), "grace": "1h"})
    assert response.status_code == 201
    new_plaintext = re.search(r'value="(sk_test_[A-Za-z0-9]{32})"', response.get_data(as_text=True)).group(1)
    assert new_plaintext != old.plaintext

    keys = {k.id: k for k in _keys(db_session, merchant.id)}
    rolled = keys[old.row.id]
    assert rolled.status() == "expiring"
    assert before + timedelta(hours=1) <= rolled.expires_at <= utcnow() + timedelta(hours=1)
    new = keys[rolled.replaced_by_id]
    assert new.rolled_from_id == old.row.id and new.status() == "active"
    entry = db_session.scalars(select(AuditEntry).where(AuditEntry.action == "api_key.rolled")).one()
    assert entry.target == old.row.id and entry.actor_user_id == user.id
    assert entry.details["new_key_id"] == new.id


def test_roll_rejects_an_unknown_grace_period(client, db_session, member, merchant):
    old = mint(db_session, merchant.id)
    member("developer")
    html = client.get(_url(merchant.id, f"/{old.row.id}/roll")).get_data(as_text=True)
    response = client.post(_url(merchant.id, f"/{old.row.id}/roll"), data={
        "csrf_token": _csrf(html), "form_token": _form_token(html), "grace": "forever"})
    assert response.status_code == 422
    assert _keys(db_session, merchant.id)[0].expires_at is None


def test_revoke_needs_the_confirmation_step(client, db_session, member, merchant):
    key = mint(db_session, merchant.id)
    user = member("developer")
    # htmx loads the confirmation in place (a fragment); without htmx it is a full page.
    fragment = client.get(_url(merchant.id, f"/{key.row.id}/revoke"), headers={"HX-Request": "true"})
    assert fragment.status_code == 200 and b"<html" not in fragment.data and b"Revoke key" in fragment.data
    page = client.get(_url(merchant.id, f"/{key.row.id}/revoke"))
    assert b"<html" in page.data
    response = client.post(_url(merchant.id, f"/{key.row.id}/revoke"),
                           data={"csrf_token": _csrf(page.get_data(as_text=True))})
    assert response.status_code == 303
    [row] = _keys(db_session, merchant.id)
    assert row.status() == "revoked"
    entry = db_session.scalars(select(AuditEntry).where(AuditEntry.action == "api_key.revoked")).one()
    assert entry.target == key.row.id and entry.actor_user_id == user.id


def test_page_shows_last_used_and_never_a_secret(client, db_session, member, merchant):
    key = mint(db_session, merchant.id)
    member("developer")

    def row_html():
        page = client.get(_url(merchant.id)).get_data(as_text=True)
        assert key.plaintext not in page
        return page.split(f'id="key-{key.row.id}"', 1)[1].split("</tr>", 1)[0]

    row = row_html()
    assert f"{key.row.prefix}…{key.row.last4}" in row
    assert row.count("<time") == 1 and row.count("Never") == 2  # created; never used, never expires
    client.get("/v1/account", headers={"Authorization": f"Bearer {key.plaintext}"}, buffered=True)
    row = row_html()
    assert row.count("<time") == 2 and row.count("Never") == 1  # now with a last-used time
