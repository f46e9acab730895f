"""Fixtures of the operator console's tests: an app without a worker (payments run inline against a scripted
PSP, as in the dashboard tests), a signed-in platform admin, merchants with API keys, and the browser."""
import re

import pytest
from sqlalchemy import select, update

from app import create_app
from app.accounts.api_keys import SECRET, create_key
from app.accounts.audit import AuditEntry
from app.accounts.sessions import start_session
from app.api.auth import hmac_key
from app.psp import callbacks
from app.psp.callbacks import CallbackScope
from app.psp.interfaces import CallbackEvent
from app.psp.models import PspCallback
from app.extensions import db as _db
from app.scoping import Scope
from tests import factories
from tests.browser import browser, live_server, page  # noqa: F401  (pytest fixtures)
from tests.conftest import app_config
from tests.dashboard.conftest import Jobs, jobs  # noqa: F401  (pytest fixture)

_CSRF = re.compile(r'name="[^"]*csrf_token"[^>]*value="([^"]+)"')


@pytest.fixture(scope="module")
def app(database):
    """The shared app with the confirm wait off (no worker here) and no rate limit in the way."""
    application = create_app(app_config(database, CONFIRM_WAIT_SECONDS=0, API_RATE_LIMIT="1000000/second",
                                         LOGIN_RATE_LIMIT_PER_IP="1000 per minute",
                                         LOGIN_RATE_LIMIT_PER_ACCOUNT="1000 per minute"))
    with application.app_context():
        application.extensions["redis"].flushdb()
    yield application
    with application.app_context():
        _db.session.remove()
        _db.engine.dispose()


def login_as(client, session, user) -> str:
    """Sign the test client in with a real server-side session of a complete login (password and second
    factor, so re-authenticated just now); returns the session row's id."""
    row, token = start_session(session, user, second_factor_passed=True)
    session.commit()
    with client.session_transaction() as cookie:
        cookie.clear()
        cookie["sid"] = token
    return row.id


def csrf_of(client, path: str = "/admin/") -> str:
    """The CSRF token of the client's session, read from a page with a form."""
    html = client.get(path).get_data(as_text=True)
    match = _CSRF.search(html)
    assert match, f"no csrf_token on {path}"
    return match.group(1)


def act(client, path: str, prefix: str, reason: str = "Checked with the merchant by phone", **fields):
    """POST an operator action form: its fields carry the form's prefix (several forms share a page)."""
    data = {"csrf_token": csrf_of(client), f"{prefix}-reason": reason}
    data.update({f"{prefix}-{name}": value for name, value in fields.items()})
    return client.post(path, data=data)


def audit_rows(session, action: str, merchant_id: str | None = None) -> list[AuditEntry]:
    """Committed audit entries of an action (of one merchant when given), oldest first."""
    session.rollback()
    statement = select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.created_at, AuditEntry.id)
    if merchant_id is not None:
        statement = statement.where(AuditEntry.merchant_id == merchant_id)
    return list(session.scalars(statement))


def mint_key(session, merchant_id: str, livemode: bool = False) -> dict:
    """An Authorization header with a new secret key of the merchant."""
    new = create_key(session, Scope(merchant_id, livemode), SECRET, hmac_key=hmac_key())
    session.commit()
    return {"Authorization": f"Bearer {new.plaintext}"}


def failed_callback(session, event: CallbackEvent, scope: CallbackScope | None = None) -> str:
    """A callback whose processing failed until Kassa gave up (the sweep's last record_failure)."""
    row_id, _new = callbacks.store_callback(session, scope or CallbackScope("sandbox", False, callbacks.PLATFORM),
                                            event)
    session.execute(update(PspCallback).where(PspCallback.id == row_id)
                    .values(attempts=callbacks.MAX_ATTEMPTS - 1))
    callbacks.record_failure(session, row_id, "RuntimeError: handler crashed")
    session.commit()
    return row_id


@pytest.fixture
def admin(db_session):
    """A committed platform admin."""
    user = factories.user(db_session, is_platform_admin=True, name="Opal Operator")
    db_session.commit()
    return user


@pytest.fixture
def admin_client(client, db_session, admin):
    """The test client signed in as the platform admin."""
    login_as(client, db_session, admin)
    return client


@pytest.fixture
def shop(db_session):
    """A merchant with an owner and a developer: (merchant, owner, developer)."""
    merchant = factories.merchant(db_session, name="Corner Shop")
    owner = factories.member(db_session, merchant, role="owner")
    developer = factories.member(db_session, merchant, role="developer")
    db_session.commit()
    return merchant, owner, developer
