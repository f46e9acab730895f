"""Reading the ledger: balances, seller balances, statements with running balances, trial balances."""
from datetime import timedelta

from sqlalchemy import select

from app.ledger.models import Entry
from app.ledger.queries import (
    account_balance,
    account_by_code,
    all_seller_balances,
    journal_totals,
    seller_balances,
    statement,
    trial_balance,
)
from app.money import Money
from app.scoping import Scope
from tests.ledger.conftest import capture_legs, cr, dr, post


def test_an_unused_account_has_a_zero_balance(db_session, book):
    assert account_balance(db_session, book, "seller_payable:nobody:JPY") == Money(0, "JPY")


def test_a_sellers_balances_by_currency(db_session, book, hmac_key):
    post(db_session, book, "capture:usd", capture_legs(), hmac_key)
    post(db_session, book, "capture:eur", capture_legs(20000, "EUR"), hmac_key)
    assert seller_balances(db_session, book, "A") == {"EUR": Money(11640, "EUR"), "USD": Money(5820, "USD")}
    assert seller_balances(db_session, book, "nobody") == {}
    assert [(b.seller_id, b.balance) for b in all_seller_balances(db_session, book)] == [
        ("A", Money(11640, "EUR")), ("A", Money(5820, "USD")), ("B", Money(7760, "EUR")), ("B", Money(3880, "USD"))]
    # Another mode of the same merchant is another book.
    assert seller_balances(db_session, Scope(book.merchant_id, True), "A") == {}


def _transfers(db_session, book, hmac_key, count):
    for n in range(count):
        legs = [dr("psp_receivable:sandbox:USD", 100 + n), cr("seller_payable:A:USD", 100 + n)]
        post(db_session, book, f"t:{n}", legs, hmac_key, description=f"transfer {n}")
    return account_by_code(db_session, book, "seller_payable:A:USD")


def test_a_statement_pages_through_entries_with_running_balances(db_session, book, hmac_key):
    account = _transfers(db_session, book, hmac_key, 7)
    pages, after = [], None
    while True:
        page = statement(db_session, book, account.id, after_version=after, limit=3)
        pages.append([line.version for line in page.lines])
        if page.next_after is None:
            break
        after = page.next_after
    assert pages == [[1, 2, 3], [4, 5, 6], [7]]
    lines = statement(db_session, book, account.id, limit=10).lines
    running = 0
    for n, line in enumerate(lines):
        assert line.amount == Money(100 + n, "USD") and line.description == f"transfer {n}"
        assert line.balance_before == Money(running, "USD")
        running += 100 + n
        assert line.balance_after == Money(running, "USD") and line.signed_amount == line.amount
        assert line.business_key == f"t:{n}" and line.kind == "transfer"


def test_a_statement_over_a_date_range(db_session, book, hmac_key):
    account = _transfers(db_session, book, hmac_key, 5)
    times = list(db_session.scalars(select(Entry.posted_at).where(Entry.account_id == account.id)
                                    .order_by(Entry.version_after)))
    page = statement(db_session, book, account.id, start=times[1], end=times[4])
    assert [line.version for line in page.lines] == [2, 3, 4]
    assert page.opening_balance == Money(100, "USD") and page.closing_balance == Money(100 + 101 + 102 + 103, "USD")
    empty = statement(db_session, book, account.id, start=times[4] + timedelta(days=1))
    assert empty.lines == [] and empty.next_after is None and empty.opening_balance is None


def test_a_debit_reduces_a_liabilitys_running_balance(db_session, book, hmac_key):
    post(db_session, book, "capture:1", capture_legs(), hmac_key)
    post(db_session, book, "payout:1", [dr("seller_payable:A:USD", 5000), cr("psp_receivable:sandbox:USD", 5000)],
         hmac_key)
    account = account_by_code(db_session, book, "seller_payable:A:USD")
    lines = statement(db_session, book, account.id).lines
    assert [(line.direction, line.signed_amount.amount, line.balance_after.amount) for line in lines] == [
        ("credit", 5820, 5820), ("debit", -5000, 820)]


def test_a_statement_of_another_books_account_is_none(db_session, book, hmac_key):
    account = _transfers(db_session, book, hmac_key, 1)
    assert statement(db_session, Scope(book.merchant_id, True), account.id) is None
    assert statement(db_session, book, "lacc_missing") is None


def test_trial_balance_per_book_and_for_the_platform(db_session, book, hmac_key):
    post(db_session, book, "capture:1", capture_legs(), hmac_key)
    post(db_session, book, "settle:1", [dr("cash:USD", 9710), dr("psp_fees:USD", 290),
                                        cr("psp_receivable:sandbox:USD", 10000)], hmac_key)
    post(db_session, book, "refund:1", [dr("seller_payable:A:USD", 2910), dr("merchant_revenue:USD", 90),
                                        cr("psp_receivable:sandbox:USD", 3000)], hmac_key)
    post(db_session, book, "jpy:1",
         [dr("psp_receivable:sandbox:JPY", 500, "JPY"), cr("seller_payable:A:JPY", 500, "JPY")], hmac_key)
    tb = trial_balance(db_session, book)
    lines = {line.currency: (line.debits, line.credits, line.accounts) for line in tb.lines}
    # Debit balances: cash 97.10 + fees 2.90; credit balances: sellers 29.10 + 38.80, revenue 2.10, and the
    # receivable's negative 30.00 (a debit-normal account with a credit balance).
    assert lines == {"USD": (10000, 10000, 6), "JPY": (500, 500, 2)}
    assert tb.balanced
    assert journal_totals(db_session, book)[(False, "USD")] == (10000 + 10000 + 3000, 10000 + 10000 + 3000)
    platform = trial_balance(db_session)
    assert platform.balanced and {line.currency for line in platform.lines} >= {"USD", "JPY"}
