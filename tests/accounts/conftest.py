"""Fixtures and helpers for the accounts, sessions, team and dashboard shell tests."""
import re

import pytest
from sqlalchemy import select

from app import create_app
from app.accounts.audit import AuditEntry
from app.accounts.sessions import start_session
from app.extensions import db as _db
from tests import factories
from tests.browser import browser, live_server, page  # noqa: F401  (pytest fixtures)
from tests.conftest import app_config

PASSWORD = factories.PASSWORD
_CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


def csrf_from(html: str) -> str:
    """The CSRF token of the first form in a page."""
    match = _CSRF.search(html)
    assert match, "no csrf_token in the page"
    return match.group(1)


def csrf(client, path: str) -> str:
    """GET a page with the client and return its form's CSRF token (tied to the client's cookie session)."""
    response = client.get(path)
    assert response.status_code in (200, 422), (path, response.status_code)
    return csrf_from(response.get_data(as_text=True))


def login_as(client, session, user) -> str:
    """Sign the test client in as the user with a real server-side session (no argon2, no rate limit).

    Returns the session row's id."""
    row, token = start_session(session, user, second_factor_passed=True)
    session.commit()
    with client.session_transaction() as cookie:
        cookie.clear()
        cookie["sid"] = token
    return row.id


def audit_rows(session, merchant_id: str | None = None, action: str | None = None) -> list[AuditEntry]:
    """Audit entries, oldest first, optionally filtered (reads committed data)."""
    session.rollback()
    statement = select(AuditEntry).order_by(AuditEntry.created_at, AuditEntry.id)
    if merchant_id is not None:
        statement = statement.where(AuditEntry.merchant_id == merchant_id)
    if action is not None:
        statement = statement.where(AuditEntry.action == action)
    return list(session.scalars(statement))


def dash(merchant_id: str, path: str = "", mode: str = "test") -> str:
    return f"/dashboard/{merchant_id}/{mode}/{path}"


@pytest.fixture
def team_of(db_session):
    """Build a merchant with one member per requested role: team_of("owner", "admin") -> (merchant, {role: user})."""

    def make(*roles: str, name: str = "Team Shop"):
        merchant = factories.merchant(db_session, name=name)
        users = {role: factories.member(db_session, merchant, role=role) for role in roles}
        db_session.commit()
        return merchant, users

    return make


# Generous sign-in limits for this package's tests, which log in and sign up many times from 127.0.0.1;
# test_rate_limits.py overrides them with small ones.
RELAXED_LIMITS = {
    "LOGIN_RATE_LIMIT_PER_IP": "1000 per minute",
    "LOGIN_RATE_LIMIT_PER_ACCOUNT": "1000 per minute",
    "SIGNUP_RATE_LIMIT_PER_IP": "1000 per minute",
    "RESET_RATE_LIMIT_PER_IP": "1000 per minute",
    "SECOND_FACTOR_RATE_LIMIT_PER_IP": "1000 per minute",
    "SECOND_FACTOR_RATE_LIMIT_PER_ACCOUNT": "1000 per minute",
}


def make_app(database, **overrides):
    """A Kassa app on the module's database with the given config overrides, and an empty Redis."""
    application = create_app(app_config(database, **{**RELAXED_LIMITS, **overrides}))
    with application.app_context():
        application.extensions["redis"].flushdb()
    return application


@pytest.fixture(scope="module")
def app(database):
    """tests/conftest.py's app, with RELAXED_LIMITS."""
    application = make_app(database)
    yield application
    with application.app_context():
        _db.session.remove()
        _db.engine.dispose()
