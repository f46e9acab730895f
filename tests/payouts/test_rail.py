"""Payouts through the sandbox's payout rail over HTTP (the sandbox as a real subprocess): sent once, in transit,
paid after the transfer days on the sandbox clock (ledger and balance parts checked at each step), the transfer
matched on the bank statement; a failing account and a return after paid each reversed once."""
import datetime as dt
import itertools

import pytest

from app.ledger import accounts
from app.payouts import service
from app.payouts.rail import SandboxRail
from app.reconciliation import service as reconciliation
from app.reconciliation.models import BankEntry
from tests.disputes.helpers import verify_ledger
from tests.payouts.conftest import Destination
from tests.payouts.test_payouts import _ready, key, parts, usd
from tests.reconciliation.helpers import FakeSandbox, balance
from tests.sandbox_psp.conftest import hook_receiver, sandbox_process  # noqa: F401  (the sandbox subprocess)
from sbx_helpers import SECRET

DAY = 86400
_days = itertools.count()


@pytest.fixture
def sandbox():
    return FakeSandbox(dt.date(2036, 1, 5) + dt.timedelta(days=40 * next(_days)))


@pytest.fixture
def rail(sandbox_process, sandbox):  # noqa: F811
    sandbox_process.admin("/_admin/reset")
    start = int(dt.datetime(sandbox.day.year, sandbox.day.month, sandbox.day.day, tzinfo=dt.UTC).timestamp())
    sandbox_process.admin("/_admin/clock", {"now": start + DAY + 3600})  # the day after the capture
    yield SandboxRail({"SANDBOX_PSP_URL": sandbox_process.public_url, "SANDBOX_PSP_SECRET": SECRET})
    sandbox_process.admin("/_admin/reset")


def step(db_session, scope, payout_id, rail):
    return service.process_payout(db_session, scope, payout_id, rail, hmac_key=key(), commit=db_session.commit)


def test_paid_through_the_sandbox_rail_and_matched_on_the_statement(app, db_session, shop, sandbox, destinations,
                                                                    rail, sandbox_process):  # noqa: F811
    scope = shop["scope"]
    a, day2 = _ready(db_session, scope, sandbox)
    payout = service.create_payout(db_session, scope, seller_id=a, currency="USD", hmac_key=key(), today=day2,
                                   business_key=service.period_key(a, "USD", day2), period=day2).payout
    db_session.commit()
    assert step(db_session, scope, payout.id, rail) == "in_transit"
    assert step(db_session, scope, payout.id, rail) == "in_transit"  # asked again: the same transfer, still going
    assert parts(usd(db_session, scope, a, day2)) == (0, 0, 5820)
    assert balance(db_session, scope, accounts.cash("USD")) == 9680

    sandbox_process.admin("/_admin/clock", {"advance_seconds": 2 * DAY})
    assert step(db_session, scope, payout.id, rail) == "paid"
    assert parts(usd(db_session, scope, a, day2)) == (0, 0, 0)
    assert balance(db_session, scope, accounts.cash("USD")) == 9680 - 5820
    assert balance(db_session, scope, accounts.payouts_in_transit("USD")) == 0

    paid_day = day2 + dt.timedelta(days=2)
    statement = sandbox_process.public.get(f"{sandbox_process.public_url}/v1/bank_statements/{paid_day}.xml",
                                           headers={"Authorization": f"Bearer {SECRET}"}).content
    result = reconciliation.reconcile_statement(db_session, livemode=False, report_date=paid_day, content=statement,
                                                hmac_key=key())
    db_session.commit()
    entries = db_session.query(BankEntry).filter(BankEntry.file_id == result.file_id,
                                                 BankEntry.batch_id == payout.id).all()
    assert [(e.amount, e.status) for e in entries] == [(-5820, "matched")] and not result.breaks_opened
    db_session.commit()

    # The receiving bank returns it: failed after paid, reversed once.
    sandbox_process.admin(f"/_admin/bank_transfers/{payout.id}/return", {"failure_code": "account_closed"})
    assert step(db_session, scope, payout.id, rail) == "failed"
    assert balance(db_session, scope, accounts.seller_payable(a, "USD")) == 5820
    assert balance(db_session, scope, accounts.cash("USD")) == 9680
    assert parts(usd(db_session, scope, a, paid_day)) == (0, 5820, 0)
    verify_ledger(app)


def test_a_closed_account_fails_and_is_reversed_once(app, db_session, shop, sandbox, destinations, rail,
                                                     sandbox_process):  # noqa: F811
    scope = shop["scope"]
    a, day2 = _ready(db_session, scope, sandbox)
    destinations[a] = Destination(account_number="000111111113")
    payout = service.create_payout(db_session, scope, seller_id=a, currency="USD", hmac_key=key(), today=day2,
                                   amount=5000).payout
    db_session.commit()
    assert step(db_session, scope, payout.id, rail) == "in_transit"
    sandbox_process.admin("/_admin/clock", {"advance_seconds": 2 * DAY})
    assert step(db_session, scope, payout.id, rail) == "failed"
    row = service.get_payout(db_session, scope, payout.id)
    assert (row.status, row.failure_code) == ("failed", "account_closed")
    db_session.commit()
    assert balance(db_session, scope, accounts.seller_payable(a, "USD")) == 5820
    assert balance(db_session, scope, accounts.payouts_in_transit("USD")) == 0
    assert parts(usd(db_session, scope, a, day2)) == (0, 5820, 0)
    verify_ledger(app)
