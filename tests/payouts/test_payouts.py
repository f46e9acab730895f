"""Payouts in-process: balances from capture to paid for both fee bearers, schedules, negative balances, races,
failed payouts reversed once, a payout's transactions adding up to its amount.

Each test has its own days and merchant; the sandbox's own code writes the settlement reports and statements
(tests/reconciliation/helpers.FakeSandbox), and dates stand in for the sandbox clock.
"""
import datetime as dt
import itertools
import threading

import pytest
from sqlalchemy import select

from app.extensions import db
from app.ledger import accounts
from app.payouts import balances, service
from app.payouts.models import Payout, PayoutItem
from app.payouts.state import InvalidPayoutTransition
from app.scoping import Scope
from tests.disputes.helpers import seller, verify_ledger
from tests.payouts.conftest import Destination
from tests.payouts.helpers import key, split_capture
from tests.reconciliation.helpers import FakeSandbox, balance, deposit, reconcile

_days = itertools.count()


@pytest.fixture
def sandbox():
    return FakeSandbox(dt.date(2032, 1, 5) + dt.timedelta(days=40 * next(_days)))


def usd(session, scope, seller_id, today) -> balances.Balance:
    found = [b for b in balances.seller_balances(session, scope, seller_id, today) if b.currency == "USD"]
    session.commit()
    return found[0] if found else balances.Balance("USD", 0, 0, 0)


def parts(b: balances.Balance) -> tuple[int, int, int]:
    return b.pending, b.available, b.in_transit


def scheduled(session, scope, seller_id, today, currency="USD") -> service.Created:
    result = service.create_payout(session, scope, seller_id=seller_id, currency=currency, hmac_key=key(),
                                   today=today, business_key=service.period_key(seller_id, currency, today),
                                   period=today)
    session.commit()
    return result


def test_platform_bearer_money_from_capture_to_paid(app, db_session, shop, sandbox, destinations):
    scope = shop["scope"]
    a, b = seller(db_session, scope, "A"), seller(db_session, scope, "B")
    day, next_day = sandbox.day, sandbox.day + dt.timedelta(days=1)
    split_capture(db_session, scope, sandbox, a, b)
    # Captured: pending, nothing available.
    assert parts(usd(db_session, scope, a, day)) == (5820, 0, 0)
    assert parts(usd(db_session, scope, None, day)) == (300, 0, 0)
    assert scheduled(db_session, scope, a, day).reason == "nothing_available"

    reconcile(db_session, sandbox)
    # Settled and reconciled, not deposited: still pending; the platform bears the PSP fee (3.20).
    assert parts(usd(db_session, scope, a, day)) == (5820, 0, 0)
    assert balance(db_session, scope, accounts.psp_fees("USD")) == 320
    assert balance(db_session, scope, accounts.seller_payable(a, "USD")) == 5820

    deposit(db_session, sandbox, next_day)
    assert parts(usd(db_session, scope, a, next_day)) == (0, 5820, 0)
    assert parts(usd(db_session, scope, b, next_day)) == (0, 3880, 0)
    # The merchant's own net revenue: 3.00 of platform fees less the 3.20 PSP fee it bears.
    assert parts(usd(db_session, scope, None, next_day)) == (0, -20, 0)

    created = scheduled(db_session, scope, a, next_day)
    payout = created.payout
    assert created.created and payout.amount == 5820 and payout.status == "pending"
    assert parts(usd(db_session, scope, a, next_day)) == (0, 0, 5820)
    assert balance(db_session, scope, accounts.payouts_in_transit("USD")) == 5820
    items = service.payout_items(db_session, scope, payout.id)
    assert sum(t.net for t in items) == payout.amount and [t.type for t in items] == ["charge"]
    assert items[0].fee == 180 and items[0].amount == 6000
    csv_text = service.reconciliation_csv(db_session, scope, payout.id)
    assert csv_text.splitlines()[0].startswith("balance_transaction,type") and len(csv_text.splitlines()) == 2
    # The same period again pays nothing more.
    again = scheduled(db_session, scope, a, next_day)
    assert not again.created and again.payout.id == payout.id

    row = scope.get(db_session, Payout, payout.id, for_update=True)
    service.mark_in_transit(db_session, row, rail_reference="tr_1", arrival_date=next_day, next_check=row.created_at)
    db_session.commit()
    row = scope.get(db_session, Payout, payout.id, for_update=True)
    service.mark_paid(db_session, row, hmac_key=key())
    service.mark_paid(db_session, row, hmac_key=key())  # a repeated outcome changes nothing
    db_session.commit()
    assert parts(usd(db_session, scope, a, next_day)) == (0, 0, 0)
    assert balance(db_session, scope, accounts.payouts_in_transit("USD")) == 0
    assert balance(db_session, scope, accounts.cash("USD")) == 9680 - 5820
    verify_ledger(app)


def test_seller_bearer_pays_out_what_the_psp_paid(app, db_session, shop, sandbox, destinations):
    """A merchant without sellers of its own: its default seller bears the fee, so its payout equals the deposit."""
    scope = shop["scope"]
    day, next_day = sandbox.day, sandbox.day + dt.timedelta(days=1)
    payment = sandbox.capture(db_session, scope, 10000)
    from app.payments.models import PaymentOrder
    default = db_session.scalars(select(PaymentOrder.seller_id).where(PaymentOrder.payment_id == payment.id)).one()
    db_session.commit()
    assert parts(usd(db_session, scope, default, day)) == (10000, 0, 0)
    reconcile(db_session, sandbox)
    assert balance(db_session, scope, accounts.psp_fees("USD")) == 0
    assert balance(db_session, scope, accounts.seller_payable(default, "USD")) == 9680
    deposit(db_session, sandbox, next_day)
    assert parts(usd(db_session, scope, default, next_day)) == (0, 9680, 0)
    assert balance(db_session, scope, accounts.cash("USD")) == 9680
    payout = scheduled(db_session, scope, default, next_day).payout
    assert payout.amount == 9680
    items = service.payout_items(db_session, scope, payout.id)
    assert sorted(t.type for t in items) == ["charge", "fee"] and sum(t.net for t in items) == 9680
    verify_ledger(app)


def test_seller_bearer_setting_with_sellers_debits_each_seller_its_share(app, db_session, shop, sandbox,
                                                                         destinations):
    scope = shop["scope"]
    shop["merchant"].fee_bearer = "seller"
    db_session.commit()
    a, b = seller(db_session, scope, "A"), seller(db_session, scope, "B")
    split_capture(db_session, scope, sandbox, a, b)
    reconcile(db_session, sandbox)
    # The 3.20 fee split 60/40: 1.92 and 1.28.
    assert balance(db_session, scope, accounts.seller_payable(a, "USD")) == 5820 - 192
    assert balance(db_session, scope, accounts.seller_payable(b, "USD")) == 3880 - 128
    assert balance(db_session, scope, accounts.psp_fees("USD")) == 0
    deposit(db_session, sandbox, sandbox.day + dt.timedelta(days=1))
    assert parts(usd(db_session, scope, None, sandbox.day + dt.timedelta(days=1))) == (0, 300, 0)
    verify_ledger(app)


def test_refund_after_payout_is_carried_negative_and_recovered_by_the_next_payout(app, db_session, shop, sandbox,
                                                                                  destinations):
    scope = shop["scope"]
    a, b = seller(db_session, scope, "A"), seller(db_session, scope, "B")
    payment = split_capture(db_session, scope, sandbox, a, b)
    reconcile(db_session, sandbox)
    day2 = sandbox.day + dt.timedelta(days=1)
    deposit(db_session, sandbox, day2)
    first = scheduled(db_session, scope, a, day2).payout
    assert first.amount == 5820
    # Refund 30.00 of A's part after the payout: A owes 29.10.
    from tests.disputes.helpers import refund
    refund(db_session, scope, payment.id, 3000, sellers=[(a, 3000)])
    assert usd(db_session, scope, a, day2).available == -2910
    day3 = day2 + dt.timedelta(days=1)
    assert scheduled(db_session, scope, a, day3).reason == "nothing_available"  # never pays a negative balance
    # The next capture is recovered from: A's 58.20 less the 29.10 owed.
    sandbox.day = day3
    split_capture(db_session, scope, sandbox, a, b)
    reconcile(db_session, sandbox, day3)
    day4 = day3 + dt.timedelta(days=1)
    deposit(db_session, sandbox, day4)
    second = scheduled(db_session, scope, a, day4).payout
    assert second.amount == 5820 - 2910
    items = service.payout_items(db_session, scope, second.id)
    assert sum(t.net for t in items) == second.amount and {t.type for t in items} == {"charge", "refund"}
    assert usd(db_session, scope, a, day4).available == 0
    verify_ledger(app)


def _ready(db_session, scope, sandbox):
    """A seller with 58.20 available the day after the deposit."""
    a, b = seller(db_session, scope, "A"), seller(db_session, scope, "B")
    split_capture(db_session, scope, sandbox, a, b)
    reconcile(db_session, sandbox)
    day2 = sandbox.day + dt.timedelta(days=1)
    deposit(db_session, sandbox, day2)
    return a, day2


def test_failed_before_paid_is_reversed_once(app, db_session, shop, sandbox, destinations):
    scope = shop["scope"]
    a, day2 = _ready(db_session, scope, sandbox)
    payout = scheduled(db_session, scope, a, day2).payout
    row = scope.get(db_session, Payout, payout.id, for_update=True)
    service.mark_failed(db_session, row, failure_code="account_closed", hmac_key=key())
    service.mark_failed(db_session, row, failure_code="account_closed", hmac_key=key())
    db_session.commit()
    assert row.status == "failed" and row.failure_message
    assert balance(db_session, scope, accounts.seller_payable(a, "USD")) == 5820
    assert balance(db_session, scope, accounts.payouts_in_transit("USD")) == 0
    assert parts(usd(db_session, scope, a, day2)) == (0, 5820, 0)
    # The reversal is paid by the next payout, which lists it.
    nxt = scheduled(db_session, scope, a, day2 + dt.timedelta(days=1)).payout
    items = service.payout_items(db_session, scope, nxt.id)
    assert nxt.amount == 5820 and [t.type for t in items] == ["payout_reversal"]
    verify_ledger(app)


def test_failed_after_paid_is_reversed_once(app, db_session, shop, sandbox, destinations):
    scope = shop["scope"]
    a, day2 = _ready(db_session, scope, sandbox)
    payout = scheduled(db_session, scope, a, day2).payout
    row = scope.get(db_session, Payout, payout.id, for_update=True)
    service.mark_in_transit(db_session, row, rail_reference="tr", arrival_date=day2, next_check=row.created_at)
    service.mark_paid(db_session, row, hmac_key=key())
    db_session.commit()
    cash_after_paid = balance(db_session, scope, accounts.cash("USD"))
    row = scope.get(db_session, Payout, payout.id, for_update=True)
    service.mark_failed(db_session, row, failure_code="no_account", hmac_key=key())
    service.mark_failed(db_session, row, failure_code="no_account", hmac_key=key())
    db_session.commit()
    assert balance(db_session, scope, accounts.cash("USD")) == cash_after_paid + 5820
    assert balance(db_session, scope, accounts.seller_payable(a, "USD")) == 5820
    assert balance(db_session, scope, accounts.payouts_in_transit("USD")) == 0
    types = [e.type for e in db_session.execute(select(db.text("type")).select_from(db.text("events")).where(
        db.text("object_id = :p")), {"p": payout.id})]
    assert types.count("payout.failed") == 1 and types.count("payout.paid") == 1 and "payout.created" in types
    verify_ledger(app)


def test_cancel_only_while_pending(app, db_session, shop, sandbox, destinations):
    scope = shop["scope"]
    a, day2 = _ready(db_session, scope, sandbox)
    payout = scheduled(db_session, scope, a, day2).payout
    service.cancel_payout(db_session, scope, payout.id, hmac_key=key())
    db_session.commit()
    assert balance(db_session, scope, accounts.seller_payable(a, "USD")) == 5820
    paid = service.create_payout(db_session, scope, seller_id=a, currency="USD", hmac_key=key(), today=day2,
                                 amount=1000).payout
    row = scope.get(db_session, Payout, paid.id, for_update=True)
    service.mark_in_transit(db_session, row, rail_reference="tr", arrival_date=day2, next_check=row.created_at)
    db_session.commit()
    with pytest.raises(InvalidPayoutTransition):
        service.cancel_payout(db_session, scope, paid.id, hmac_key=key())
    db_session.rollback()


def test_manual_payout_at_most_available_and_lists_nothing(app, db_session, shop, sandbox, destinations):
    scope = shop["scope"]
    a, day2 = _ready(db_session, scope, sandbox)
    with pytest.raises(service.PayoutRefused):
        service.create_payout(db_session, scope, seller_id=a, currency="USD", hmac_key=key(), today=day2, amount=5821)
    db_session.rollback()
    manual = service.create_payout(db_session, scope, seller_id=a, currency="USD", hmac_key=key(), today=day2,
                                   amount=2000).payout
    db_session.commit()
    assert manual.kind == "manual" and service.payout_items(db_session, scope, manual.id) == []
    # The scheduled payout then pays the rest, and its items (charge less the manual payout) add up to it.
    rest = scheduled(db_session, scope, a, day2).payout
    assert rest.amount == 3820
    assert sum(t.net for t in service.payout_items(db_session, scope, rest.id)) == 3820


def test_no_bank_account_flagged_or_cooling(app, db_session, shop, sandbox, destinations):
    scope = shop["scope"]
    a, day2 = _ready(db_session, scope, sandbox)
    destinations[a] = Destination(flagged=True)
    assert scheduled(db_session, scope, a, day2).reason == "bank_account_flagged"
    until = dt.datetime(2099, 1, 1, tzinfo=dt.UTC)
    destinations[a] = Destination(cooling_until=until)
    held = scheduled(db_session, scope, a, day2).payout
    assert held.held_until == until and held.hold_reason == "cooling_period" and held.next_attempt_at == until


def test_two_schedulers_racing_pay_once(app, db_session, shop, sandbox, destinations):
    scope = shop["scope"]
    a, day2 = _ready(db_session, scope, sandbox)
    results, errors = [], []
    barrier = threading.Barrier(3)

    def run(manual: bool):
        with app.app_context():
            try:
                barrier.wait()
                kwargs = {"amount": 5820} if manual else {"business_key": service.period_key(a, "USD", day2)}
                results.append(service.create_payout(db.session, scope, seller_id=a, currency="USD", hmac_key=key(),
                                                     today=day2, **kwargs))
                db.session.commit()
            except service.PayoutRefused as exc:
                errors.append(exc)
                db.session.rollback()
            finally:
                db.session.remove()

    threads = [threading.Thread(target=run, args=(m,)) for m in (False, False, True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    payouts = db_session.scalars(scope.select(Payout)).all()
    db_session.commit()
    assert sum(p.amount for p in payouts) == 5820 and len(payouts) == 1
    assert balance(db_session, scope, accounts.seller_payable(a, "USD")) == 0
    items = db_session.scalars(select(PayoutItem).where(PayoutItem.merchant_id == scope.merchant_id)).all()
    db_session.commit()
    assert sum(i.amount for i in items) in (0, 5820)


@pytest.mark.parametrize("interval,anchor,due,not_due", [
    ({"interval": "daily"}, None, dt.date(2032, 3, 3), None),
    ({"interval": "weekly", "weekly_anchor": "friday"}, None, dt.date(2032, 3, 5), dt.date(2032, 3, 4)),
    ({"interval": "monthly", "monthly_anchor": 31}, None, dt.date(2032, 2, 29), dt.date(2032, 2, 28)),
    ({"interval": "manual"}, None, None, dt.date(2032, 3, 3)),
])
def test_schedules(app, db_session, shop, interval, anchor, due, not_due):
    scope = shop["scope"]
    schedule = service.set_schedule(db_session, scope, None, interval)
    db_session.commit()
    assert service.get_schedule(db_session, scope, None) == schedule
    if due:
        assert service.is_due(schedule, due)
    if not_due:
        assert not service.is_due(schedule, not_due)


def test_scheduler_on_a_weekly_schedule_pays_only_on_its_day(app, db_session, shop, sandbox, destinations):
    scope = shop["scope"]
    a, day2 = _ready(db_session, scope, sandbox)
    # B is paid daily; the platform bearing 3.20 of fees on 3.00 of revenue leaves cash 0.20 short of paying A too
    # (cash less what is in transit must cover a payout): B waits, on a manual schedule.
    b = [s for s, _ in service.subjects_of(db_session, scope) if s not in (None, a)][0]
    service.set_schedule(db_session, scope, b, {"interval": "manual"})
    weekday = service.WEEKDAYS[(day2.weekday() + 1) % 7]
    service.set_schedule(db_session, scope, a, {"interval": "weekly", "weekly_anchor": weekday})
    db_session.commit()
    service.run_schedules(lambda: db.session, scope, today=day2, hmac_key=key(), commit=db.session.commit)
    assert db_session.scalars(scope.select(Payout, Payout.seller_id == a)).all() == []
    day3 = day2 + dt.timedelta(days=1)
    service.run_schedules(lambda: db.session, scope, today=day3, hmac_key=key(), commit=db.session.commit)
    service.run_schedules(lambda: db.session, scope, today=day3, hmac_key=key(), commit=db.session.commit)
    rows = db_session.scalars(scope.select(Payout, Payout.seller_id == a)).all()
    db_session.commit()
    assert [(p.amount, p.period) for p in rows] == [(5820, day3)]


def test_reserve_and_delay_hold_money_back(app, db_session, shop, sandbox, destinations):
    scope = shop["scope"]
    a, day2 = _ready(db_session, scope, sandbox)
    service.set_schedule(db_session, scope, a, {"delay_days": 2})
    db_session.commit()
    assert parts(usd(db_session, scope, a, day2)) == (5820, 0, 0)
    day4 = day2 + dt.timedelta(days=2)
    assert parts(usd(db_session, scope, a, day4)) == (0, 5820, 0)
    service.set_schedule(db_session, scope, a, {"delay_days": 0, "reserve_minimum": 1000})
    db_session.commit()
    b = usd(db_session, scope, a, day4)
    assert (b.available, b.reserved) == (4820, 1000)
    with pytest.raises(service.PayoutRefused):
        service.create_payout(db_session, scope, seller_id=a, currency="USD", hmac_key=key(), today=day4, amount=5000)
    db_session.rollback()


def test_tenancy_other_merchant_sees_nothing(app, db_session, shop, sandbox, destinations):
    from tests import factories
    from app.payments.errors import NotFound

    scope = shop["scope"]
    a, day2 = _ready(db_session, scope, sandbox)
    payout = scheduled(db_session, scope, a, day2).payout
    other = factories.merchant(db_session, name="Other")
    db_session.commit()
    other_scope = Scope(other.id, False)
    with pytest.raises(NotFound):
        service.get_payout(db_session, other_scope, payout.id)
    with pytest.raises(NotFound):
        service.cancel_payout(db_session, other_scope, payout.id, hmac_key=key())
    db_session.rollback()
    assert balances.seller_balances(db_session, other_scope, a) == []
    assert balances.balance_transactions(db_session, other_scope, a) == []


def test_inbox_shows_failed_and_held_payouts_until_resolved(app, db_session, shop, sandbox, destinations):
    from app.inbox import InboxFilters, collect

    scope = shop["scope"]
    a, day2 = _ready(db_session, scope, sandbox)
    payout = scheduled(db_session, scope, a, day2).payout
    row = scope.get(db_session, Payout, payout.id, for_update=True)
    service.mark_failed(db_session, row, failure_code="no_account", hmac_key=key())
    db_session.commit()
    mine = InboxFilters(merchant_id=scope.merchant_id)
    items, counts = collect(db_session, mine)
    assert [(i.kind, i.id) for i in items] == [("payout_failed", payout.id)] and counts["payout_held"] == 0
    # Paid out again (held by the new account's cooling period): the failure leaves, the hold shows.
    destinations[a] = Destination(bank_account_id="ba_new", cooling_until=dt.datetime(2099, 1, 1, tzinfo=dt.UTC))
    held = scheduled(db_session, scope, a, day2 + dt.timedelta(days=1)).payout
    items, counts = collect(db_session, mine)
    db_session.commit()
    assert [(i.kind, i.id) for i in items] == [("payout_held", held.id)] and counts["payout_failed"] == 0


def test_with_real_bank_accounts_cooling_is_honoured_and_a_failure_flags_the_account(app, db_session, shop,
                                                                                    sandbox):
    """payouts-banks' bank accounts (no stub): a new account's cooling period holds the payout, sending waits for
    it, and a failed payout flags the account, after which no payout is made to it."""
    from app.payouts.bank_account_models import BankAccount
    from app.payouts.bank_accounts import Actor, set_bank_account

    scope = shop["scope"]
    a, day2 = _ready(db_session, scope, sandbox)
    account = set_bank_account(db_session, scope, seller_id=a, holder_name="Ann Seller", country="DE",
                               currency="EUR", iban="DE89370400440532013000", actor=Actor(None, "owner@example.com"))
    db_session.commit()
    assert account.cooling_until is not None
    held = scheduled(db_session, scope, a, day2).payout
    assert (held.held_until, held.hold_reason, held.bank_account_last4) == (account.cooling_until, "cooling_period",
                                                                           "3000")

    class NeverCalled:
        def send(self, *args):
            raise AssertionError("a held payout must not be sent")

    now = account.cooling_until - dt.timedelta(hours=1)
    assert service.process_payout(db_session, scope, held.id, NeverCalled(), hmac_key=key(),
                                  commit=db_session.commit, now=now) == "held"
    row = scope.get(db_session, Payout, held.id, for_update=True)
    service.mark_failed(db_session, row, failure_code="account_closed", hmac_key=key())
    db_session.commit()
    flagged = db_session.scalars(scope.select(BankAccount, BankAccount.id == account.id)).one()
    db_session.commit()
    assert flagged.flagged_at is not None and flagged.flag_code == "account_closed"
    assert scheduled(db_session, scope, a, day2 + dt.timedelta(days=1)).reason == "bank_account_flagged"


def test_a_pending_payout_to_a_replaced_account_fails_without_flagging_it(app, db_session, shop, sandbox):
    """The owners replaced A's bank account while a payout to the old one waited: Kassa fails the payout (money back
    in the balance) and never sends it; no bank refused the old account, so nothing flags it or mails about it."""
    from app.accounts.mail import MailMessage
    from app.payouts.bank_account_models import BankAccount
    from app.payouts.bank_accounts import Actor, set_bank_account

    scope = shop["scope"]
    a, day2 = _ready(db_session, scope, sandbox)
    old = set_bank_account(db_session, scope, seller_id=a, holder_name="Ann Seller", country="DE", currency="EUR",
                           iban="DE89370400440532013000", actor=Actor(None, "owner@example.com"),
                           cooling=dt.timedelta(0))
    db_session.commit()
    payout = scheduled(db_session, scope, a, day2).payout
    assert payout.bank_account_id == old.id
    set_bank_account(db_session, scope, seller_id=a, holder_name="Ann Seller", country="FR", currency="EUR",
                     iban="FR1420041010050500013M02606", actor=Actor(None, "owner@example.com"),
                     cooling=dt.timedelta(0))
    db_session.commit()

    class NeverCalled:
        def send(self, *args):
            raise AssertionError("a payout to a replaced account must not be sent")

    assert service.process_payout(db_session, scope, payout.id, NeverCalled(), hmac_key=key(),
                                  commit=db_session.commit) == "failed"
    failed = scope.get(db_session, Payout, payout.id)
    assert (failed.status, failed.failure_code) == ("failed", "bank_account_changed")
    kept = db_session.scalars(scope.select(BankAccount, BankAccount.id == old.id)).one()
    assert kept.flagged_at is None
    assert db_session.scalars(select(MailMessage).where(MailMessage.merchant_id == scope.merchant_id,
                                                        MailMessage.kind == "bank_account_flagged")).all() == []
    assert usd(db_session, scope, a, day2).available == payout.amount
    verify_ledger(app)


def test_dispute_after_payout_is_carried_negative_and_recovered(app, db_session, shop, sandbox, destinations):
    """A dispute opened after A was paid out takes A's share back (the platform bears the dispute fee): A owes it,
    nothing is paid while A owes, and A's next charge pays it back first."""
    from tests.disputes.helpers import deliver, dispute_data

    scope = shop["scope"]
    a, b = seller(db_session, scope, "A"), seller(db_session, scope, "B")
    payment = split_capture(db_session, scope, sandbox, a, b)
    reconcile(db_session, sandbox)
    day2 = sandbox.day + dt.timedelta(days=1)
    deposit(db_session, sandbox, day2)
    assert scheduled(db_session, scope, a, day2).payout.amount == 5820
    deliver(db_session, {"id": payment.id}, f"cb_{payment.id}", "dispute.created",
            dispute_data(f"dp_{payment.id}", "needs_response", 10000))
    assert usd(db_session, scope, a, day2).available == -5820
    assert balance(db_session, scope, accounts.dispute_fees("USD")) == 1500  # the platform bears it
    disputes = [t for t in balances.balance_transactions(db_session, scope, a) if t.type == "dispute"]
    db_session.commit()
    assert [t.net for t in disputes] == [-5820]
    day3 = day2 + dt.timedelta(days=1)
    assert scheduled(db_session, scope, a, day3).reason == "nothing_available"
    # Two more charges: the first pays back what A owes, the second is paid out.
    sandbox.day = day3
    split_capture(db_session, scope, sandbox, a, b)
    split_capture(db_session, scope, sandbox, a, b)
    reconcile(db_session, sandbox, day3)
    day4 = day3 + dt.timedelta(days=1)
    deposit(db_session, sandbox, day4)
    recovered = scheduled(db_session, scope, a, day4).payout
    assert recovered.amount == 5820
    items = service.payout_items(db_session, scope, recovered.id)
    assert sum(t.net for t in items) == 5820 and "dispute" in {t.type for t in items}
    verify_ledger(app)


def test_the_periodic_scheduler_pays_live_mode_books_too(app, db_session, shop, monkeypatch):
    """The periodic sweep calls the job with no argument: it must visit the live books as well as the test ones
    (a live seller whose payouts are never scheduled is never paid)."""
    from app.jobs.payouts import run_payout_schedules

    visited = []
    real = service.books_with_payables

    def spy(session, livemode):
        visited.append(livemode)
        return [b for b in real(session, livemode) if b == shop["merchant"].id]

    monkeypatch.setattr(service, "books_with_payables", spy)
    result = run_payout_schedules()
    assert sorted(visited) == [False, True] and set(result) == {"test", "live"}
