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
from sbx_helpers import SECRET

DAY = 86400
_days = itertools.count()


@pytest.fixture
def sandbox():
    return FakeSandbox(dt.date(2036, 1, 5) + dt.timedelta(days=40 * next(_days)))


@pytest.fixture
def rail(sandbox_process, sandbox):
    sandbox_process.admin("/_admin/reset")
    start = int(dt.datetime(sandbox.day.year, sandbox.day.month, sandbox.day.day, tzinfo=dt.UTC).timestamp())
    sandbox_process.admin("/_admin/clock", {"now": start + DAY + 3600})  # the day after the capture
    yield SandboxRail({"SANDBOX_PSP_URL": sandbox_process.public_url, "SANDBOX_PSP_SECRET": SECRET})
    sandbox_process.admin("/_admin/reset")


def step(db_session, scope, payout_id, rail):
    return service.process_payout(db_session, scope, payout_id, rail, hmac_key=key(), commit=db_session.commit)


def test_paid_through_the_sandbox_rail_and_matched_on_the_statement(app, db_session, shop, sandbox, destinations,
                                                                    rail, sandbox_process):
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
                                                     sandbox_process):
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


def test_payout_days_follow_the_sandbox_clock(sandbox_process):
    """Schedules, delays and reserves read the sandbox clock's date in test mode, the real date in live mode."""
    from app.models_base import utcnow
    from app.payouts.clock import payout_today

    config = {"SANDBOX_PSP_URL": sandbox_process.public_url}
    sandbox_process.admin("/_admin/clock", {"now": int(dt.datetime(2040, 2, 29, 12, tzinfo=dt.UTC).timestamp())})
    try:
        assert payout_today(config, livemode=False) == dt.date(2040, 2, 29)
        assert payout_today(config, livemode=True) == utcnow().date()
        assert payout_today({"SANDBOX_PSP_URL": "http://127.0.0.1:9"}, livemode=False) == utcnow().date()
    finally:
        sandbox_process.admin("/_admin/reset")


def test_the_jobs_pay_on_the_sandbox_clock_day_once(app, db_session, shop, sandbox, destinations, rail,
                                                   sandbox_process, monkeypatch):
    """The scheduler job reads the day from the sandbox clock (a weekly schedule pays on its weekday only, and twice
    run pays once); the rail job sends the payout and, two sandbox days later, books it paid."""
    from app.jobs.payouts import process_due_payouts, run_payout_schedules
    from app.payouts.models import Payout

    scope = shop["scope"]
    monkeypatch.setitem(app.config, "SANDBOX_PSP_URL", sandbox_process.public_url)
    monkeypatch.setitem(app.config, "SANDBOX_PSP_SECRET", SECRET)
    a, day2 = _ready(db_session, scope, sandbox)  # the sandbox clock is on day2 (the rail fixture)
    others = [s for s, _ in service.subjects_of(db_session, scope) if s not in (None, a)]
    for other in others:
        service.set_schedule(db_session, scope, other, {"interval": "manual"})
    tomorrow = service.WEEKDAYS[(day2.weekday() + 1) % 7]
    service.set_schedule(db_session, scope, a, {"interval": "weekly", "weekly_anchor": tomorrow})
    db_session.commit()
    run_payout_schedules()
    assert db_session.scalars(scope.select(Payout)).all() == []
    db_session.commit()
    sandbox_process.admin("/_admin/clock", {"advance_seconds": DAY})
    run_payout_schedules()
    run_payout_schedules()
    [payout] = db_session.scalars(scope.select(Payout)).all()
    assert (payout.amount, payout.period, payout.status) == (5820, day2 + dt.timedelta(days=1), "pending")
    db_session.commit()

    process_due_payouts()  # (the module's other tests' payouts may be due too: the sweep is platform-wide)
    assert service.get_payout(db_session, scope, payout.id).status == "in_transit"
    db_session.commit()
    sandbox_process.admin("/_admin/clock", {"advance_seconds": 2 * DAY})
    db_session.execute(Payout.__table__.update().where(Payout.id == payout.id).values(next_attempt_at=dt.datetime(
        2000, 1, 1, tzinfo=dt.UTC)))  # its next check is due (the database is the schedule)
    db_session.commit()
    process_due_payouts()
    assert service.get_payout(db_session, scope, payout.id).status == "paid"
    db_session.commit()
    assert parts(usd(db_session, scope, a, day2)) == (0, 0, 0)
