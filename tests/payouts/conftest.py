"""Fixtures of the payouts tests: the disputes tests' in-process app (scripted PSP, the app's own ledger key), and
a bank account for every subject until payouts-banks' bank accounts land (service.destination_lookup)."""
from datetime import datetime

import pytest

from app.payouts import service
from tests.disputes.conftest import app, auth, shop  # noqa: F401  (fixtures shared as they are)
# The sandbox as a subprocess, for the payout rail's tests over HTTP (tests/payouts/test_rail.py).
from tests.sandbox_psp.conftest import hook_receiver, sandbox_process  # noqa: F401,E402


class Destination:
    """What app/payouts/bank_accounts.py's PayoutDestination carries (the contract)."""

    def __init__(self, bank_account_id="ba_test", account_number="000123456789", cooling_until: datetime | None = None,
                 flagged=False):
        self.bank_account_id = bank_account_id
        self.holder_name = "Test Holder"
        self.country = "US"
        self.currency = "USD"
        self.iban = None
        self.bic = None
        self.account_number = account_number
        self.routing_code = "110000000"
        self.cooling_until = cooling_until
        self.flagged = flagged


@pytest.fixture
def destinations(monkeypatch):
    """Every subject has a bank account (tests change entries by seller id; None: the merchant)."""
    table: dict = {}

    def lookup(session, scope, seller_id):
        return table.get(seller_id, Destination())

    monkeypatch.setattr(service, "destination_lookup", lookup)
    return table
