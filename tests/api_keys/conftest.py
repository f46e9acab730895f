"""Fixtures for the API key tests: keys minted through the service, login via a server-side session."""
import base64

import pytest

from app.accounts.api_keys import PUBLISHABLE, SECRET, create_key
from app.accounts.sessions import start_session
from app.api.auth import hmac_key
from app.scoping import Scope
from tests import factories


def mint(session, merchant_id: str, *, livemode: bool = False, kind: str = SECRET):
    """Create and commit a key; returns NewKey (row + plaintext)."""
    new = create_key(session, Scope(merchant_id, livemode), kind, hmac_key=hmac_key())
    session.commit()
    return new


def bearer(plaintext: str) -> dict:
    return {"Authorization": f"Bearer {plaintext}"}


def basic(plaintext: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{plaintext}:".encode()).decode()}


def login_as(client, session, user) -> None:
    """Sign the test client in as the user (a real server-side session, as the login view makes)."""
    _row, token = start_session(session, user, second_factor_passed=True)
    session.commit()
    with client.session_transaction() as cookie:
        cookie["sid"] = token


@pytest.fixture
def secret_key(db_session, merchant):
    return mint(db_session, merchant.id)


@pytest.fixture
def publishable_key(db_session, merchant):
    return mint(db_session, merchant.id, kind=PUBLISHABLE)


@pytest.fixture
def other_merchant(db_session):
    row = factories.merchant(db_session, name="Other Shop")
    db_session.commit()
    return row
