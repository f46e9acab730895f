"""Fixtures for the ledger tests: the HMAC key, a fresh book, posting helpers."""
import pytest

from app.ledger.integration import ledger_hmac_key
from app.ledger.service import Leg, post_transaction
from app.scoping import Scope
from tests import factories


@pytest.fixture(scope="module")
def hmac_key(app) -> bytes:
    return ledger_hmac_key(app)


@pytest.fixture
def book(db_session) -> Scope:
    """A committed merchant's test-mode book, empty."""
    merchant = factories.merchant(db_session)
    db_session.commit()
    return Scope(merchant.id, False)


def dr(code: str, amount: int, currency: str = "USD") -> Leg:
    return Leg(code, "debit", amount, currency)


def cr(code: str, amount: int, currency: str = "USD") -> Leg:
    return Leg(code, "credit", amount, currency)


def capture_legs(amount: int = 10000, currency: str = "USD") -> list[Leg]:
    """ARCHITECTURE.md's capture: 100.00 split A 60.00 (fee 1.80) / B 40.00 (fee 1.20)."""
    scale = amount // 10000 or 1
    return [
        dr(f"psp_receivable:sandbox:{currency}", 10000 * scale, currency),
        cr(f"seller_payable:A:{currency}", 5820 * scale, currency),
        cr(f"seller_payable:B:{currency}", 3880 * scale, currency),
        cr(f"merchant_revenue:{currency}", 300 * scale, currency),
    ]


def post(session, scope, key, legs, hmac_key, kind="transfer", commit=True, **kwargs):
    """Post and (by default) commit; returns the transaction's id."""
    txn = post_transaction(session, scope, key, kind, legs, hmac_key=hmac_key, **kwargs)
    txn_id = txn.id
    if commit:
        session.commit()
    return txn_id
