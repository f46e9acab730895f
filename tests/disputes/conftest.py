"""Fixtures of the disputes tests.

In-process: the shared ``app`` (confirm wait off: no worker), API keys, and payments captured through the real
payments service with a scripted PSP (tests/payments/helpers.py), booked with the app's own ledger key so that
``flask ledger verify`` checks them. Dispute notices go through the real callback path (stored, scoped,
processed), as a PSP's callbacks do.
"""
import pytest

from app.scoping import Scope
from tests import factories
from tests.payments.conftest import mint_key


@pytest.fixture(scope="module")
def app(database):
    """The shared app fixture, with the confirm wait off: in-process tests have no worker to wait for."""
    from app import create_app
    from app.extensions import db
    from tests.conftest import app_config

    application = create_app(app_config(database, CONFIRM_WAIT_SECONDS=0, API_RATE_LIMIT="1000000/second"))
    with application.app_context():
        application.extensions["redis"].flushdb()
    yield application
    with application.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def shop(db_session):
    """A fresh merchant with an owner, its test-mode scope and a secret key."""
    merchant = factories.merchant(db_session, name="Disputed Shop")
    owner = factories.member(db_session, merchant, "owner", email=f"owner-{merchant.id.lower()}@example.com")
    db_session.commit()
    return {"merchant": merchant, "owner": owner, "scope": Scope(merchant.id, False),
            "key": mint_key(db_session, merchant.id)}


@pytest.fixture
def auth(shop) -> dict:
    return {"Authorization": f"Bearer {shop['key']}"}
