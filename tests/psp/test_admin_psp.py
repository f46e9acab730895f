"""/admin/psp: platform admins see every connector's breaker and can override it (CSRF-protected form);
everyone else gets 404."""
import re

import pytest
from sqlalchemy import select

from app.accounts.audit import AuditEntry
from app.accounts.sessions import start_session
from app.psp.breaker import BreakerState
from app.psp.router import router_for_app
from tests import factories

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def login_as(client, session, user) -> None:
    """A real server-side session for the user, as the login view makes."""
    _row, token = start_session(session, user)
    session.commit()
    with client.session_transaction() as cookie:
        cookie["sid"] = token


@pytest.fixture
def admin_user(db_session):
    user = factories.user(db_session, is_platform_admin=True)
    db_session.commit()
    return user


@pytest.fixture
def breakers_reset(app):
    router = router_for_app(app)
    for name in router.connector_names():
        router.breaker(name).reset()
    yield router
    for name in router.connector_names():
        router.breaker(name).reset()


def test_anonymous_users_are_sent_to_log_in(client):
    response = client.get("/admin/psp")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_non_admins_get_404(client, db_session, merchant):
    owner = factories.member(db_session, merchant, role="owner")
    db_session.commit()
    login_as(client, db_session, owner)
    assert client.get("/admin/psp").status_code == 404
    assert client.post("/admin/psp/sandbox/breaker", data={"action": "force_open"}).status_code in (400, 404)


def test_admin_sees_each_connector_and_forces_the_breaker(client, db_session, admin_user, breakers_reset):
    router = breakers_reset
    router.breaker("sandbox_b").record_failure()
    login_as(client, db_session, admin_user)
    page = client.get("/admin/psp")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    for name in ("sandbox", "sandbox_b", "stripe"):
        assert f'data-connector="{name}"' in html
    assert html.count('data-state="closed"') == 3
    assert re.search(r'data-connector="sandbox_b".*?class="breaker-failures">1<', html, re.S)

    token = _CSRF.search(html).group(1)
    response = client.post("/admin/psp/sandbox/breaker", data={"action": "force_open", "csrf_token": token})
    assert response.status_code == 302
    assert router.breaker("sandbox").state() == BreakerState.OPEN
    html = client.get("/admin/psp").get_data(as_text=True)
    assert re.search(r'data-connector="sandbox".*?data-state="open"', html, re.S) and "forced" in html
    audit = db_session.scalars(select(AuditEntry).where(AuditEntry.action == "psp.breaker.force_open")).one()
    assert audit.target == "sandbox" and audit.actor_user_id == admin_user.id

    client.post("/admin/psp/sandbox/breaker", data={"action": "force_close", "csrf_token": token})
    snap = router.breaker("sandbox").snapshot()
    assert snap.state == BreakerState.CLOSED and snap.forced == "closed"
    client.post("/admin/psp/sandbox/breaker", data={"action": "reset", "csrf_token": token})
    assert router.breaker("sandbox").snapshot().forced is None


def test_override_needs_a_csrf_token_and_a_known_action(client, db_session, admin_user, breakers_reset):
    login_as(client, db_session, admin_user)
    assert client.post("/admin/psp/sandbox/breaker", data={"action": "force_open"}).status_code == 400
    assert breakers_reset.breaker("sandbox").state() == BreakerState.CLOSED
    token = _CSRF.search(client.get("/admin/psp").get_data(as_text=True)).group(1)
    assert client.post("/admin/psp/sandbox/breaker", data={"action": "explode", "csrf_token": token}).status_code == 404
    assert client.post("/admin/psp/nope/breaker", data={"action": "reset", "csrf_token": token}).status_code == 404
