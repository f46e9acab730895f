"""post_transaction: the money flows of ARCHITECTURE.md, idempotency, validation, overdrafts, the chain."""
import pytest
from sqlalchemy import func, select, text

from app.ledger import accounts, chain
from app.ledger.errors import (
    BusinessKeyConflict,
    CurrencyMismatch,
    InsufficientBalance,
    InvalidPosting,
    LedgerConfigurationError,
    UnbalancedTransaction,
    UnknownAccountCode,
)
from app.ledger.models import Entry, JournalTransaction, LedgerAccount
from app.ledger.queries import account_balance, account_by_code
from app.ledger.service import Leg, credit, debit, post_transaction
from app.money import Money
from app.scoping import Scope
from tests.ledger.conftest import capture_legs, cr, dr, post


def balances(session, scope) -> dict[str, int]:
    session.rollback()
    return dict(session.execute(select(LedgerAccount.code, LedgerAccount.balance).where(
        LedgerAccount.merchant_id == scope.merchant_id, LedgerAccount.livemode == scope.livemode)).all())


def counts(session, scope) -> tuple[int, int, int]:
    session.rollback()
    return tuple(session.scalar(select(func.count()).select_from(model).where(
        model.merchant_id == scope.merchant_id, model.livemode == scope.livemode))
        for model in (LedgerAccount, JournalTransaction, Entry))


def test_the_money_flows_of_the_architecture(db_session, book, hmac_key):
    """Capture, settlement, refund, dispute opened and won, payout: the table in ARCHITECTURE.md."""
    post(db_session, book, "capture:pay_1", capture_legs(), hmac_key, kind="capture")
    assert balances(db_session, book) == {
        "psp_receivable:sandbox:USD": 10000, "seller_payable:A:USD": 5820, "seller_payable:B:USD": 3880,
        "merchant_revenue:USD": 300}
    post(db_session, book, "settlement:s1", [dr("cash:USD", 9710), dr("psp_fees:USD", 290),
                                             cr("psp_receivable:sandbox:USD", 10000)], hmac_key, kind="settlement")
    post(db_session, book, "refund:re_1", [dr("seller_payable:A:USD", 2910), dr("merchant_revenue:USD", 90),
                                           cr("psp_receivable:sandbox:USD", 3000)], hmac_key, kind="refund")
    # A refund after settlement takes the receivable below zero: we owe the PSP until it nets it.
    assert balances(db_session, book)["psp_receivable:sandbox:USD"] == -3000
    dispute = [dr("seller_payable:A:USD", 5820), dr("seller_payable:B:USD", 3880), dr("merchant_revenue:USD", 210),
               dr("dispute_fees:USD", 1500), cr("psp_receivable:sandbox:USD", 11410)]
    post(db_session, book, "dispute:dp_1", dispute, hmac_key, kind="dispute")
    assert balances(db_session, book)["seller_payable:A:USD"] == 5820 - 2910 - 5820  # the seller owes us now
    won = [Leg(leg.account_code, "credit" if leg.direction == "debit" else "debit", leg.amount, leg.currency)
           for leg in dispute]
    post(db_session, book, "dispute_won:dp_1", won, hmac_key, kind="dispute_won")
    post(db_session, book, "payout:po_1", [dr("seller_payable:B:USD", 3880), cr("cash:USD", 3880)], hmac_key,
         kind="payout")
    assert balances(db_session, book) == {
        "psp_receivable:sandbox:USD": -3000, "seller_payable:A:USD": 2910, "seller_payable:B:USD": 0,
        "merchant_revenue:USD": 210, "psp_fees:USD": 290, "dispute_fees:USD": 0, "cash:USD": 9710 - 3880}


def test_accounts_open_on_first_use_with_the_codes_rules(db_session, book, hmac_key):
    post(db_session, book, "capture:pay_1", capture_legs(), hmac_key, kind="capture")
    post(db_session, book, "settlement:s1", [dr("cash:USD", 9710), dr("psp_fees:USD", 290),
                                             cr("psp_receivable:sandbox:USD", 10000)], hmac_key)
    rows = {a.code: (a.kind, a.normal_balance, a.allow_negative, a.account_type, a.subject, a.currency)
            for a in db_session.scalars(book.select(LedgerAccount))}
    assert rows == {
        "psp_receivable:sandbox:USD": ("asset", "debit", True, "psp_receivable", "sandbox", "USD"),
        "seller_payable:A:USD": ("liability", "credit", True, "seller_payable", "A", "USD"),
        "seller_payable:B:USD": ("liability", "credit", True, "seller_payable", "B", "USD"),
        "merchant_revenue:USD": ("revenue", "credit", False, "merchant_revenue", None, "USD"),
        "cash:USD": ("asset", "debit", False, "cash", None, "USD"),
        "psp_fees:USD": ("expense", "debit", True, "psp_fees", None, "USD"),
    }


def test_the_accounts_later_issues_post_to_open_from_their_rows(db_session, book, hmac_key):
    """Settlement, deposit, payout and suspense (ARCHITECTURE.md): the types are there, with their rules."""
    post(db_session, book, "capture:pay_1", capture_legs(), hmac_key, kind="capture")
    post(db_session, book, "settlement:s1", [dr(accounts.psp_clearing("sandbox", "USD"), 9710),
                                             dr("psp_fees:USD", 290), cr("psp_receivable:sandbox:USD", 10000)],
         hmac_key)
    post(db_session, book, "deposit:d1", [dr("cash:USD", 9710), cr("psp_clearing:sandbox:USD", 9710)], hmac_key)
    post(db_session, book, "payout:po_1", [dr("seller_payable:A:USD", 5820),
                                           cr(accounts.payouts_in_transit("USD"), 5820)], hmac_key)
    post(db_session, book, "deposit:d2", [dr("cash:USD", 5), cr(accounts.suspense("sandbox", "USD"), 5)], hmac_key)
    rows = {a.code: (a.kind, a.allow_negative, a.subject, a.balance)
            for a in db_session.scalars(book.select(LedgerAccount)) if a.account_type in
            ("psp_clearing", "payouts_in_transit", "suspense")}
    assert rows == {"psp_clearing:sandbox:USD": ("asset", True, "sandbox", 0),
                    "payouts_in_transit:USD": ("liability", False, None, 5820),
                    "suspense:sandbox:USD": ("liability", True, "sandbox", 5)}
    with pytest.raises(InsufficientBalance, match="payouts_in_transit:USD may not go negative"):
        post_transaction(db_session, book, "payout_paid:po_1", "payout_paid",
                         [dr("payouts_in_transit:USD", 5821), cr("cash:USD", 5821)], hmac_key=hmac_key)


def test_the_returned_transaction_is_a_usable_orm_object(db_session, book, hmac_key):
    txn = post_transaction(db_session, book, "capture:pay_1", "capture", capture_legs(), hmac_key=hmac_key,
                           description="Capture of pay_1", reference="pay_1")
    assert (txn.business_key, txn.kind, txn.description, txn.reference) == ("capture:pay_1", "capture",
                                                                            "Capture of pay_1", "pay_1")
    assert [(e.account.code, e.direction, e.amount) for e in txn.entries] == [
        (leg.account_code, leg.direction, leg.amount) for leg in capture_legs()]
    stored = db_session.execute(text("SELECT posted_at FROM ledger_transactions WHERE id = :id"), {"id": txn.id})
    assert txn.posted_at == stored.scalar_one()  # the transaction's own time (its seal covers it), not its entries'
    db_session.commit()


def test_each_entry_records_balance_version_and_a_chained_hmac(db_session, book, hmac_key):
    first = post(db_session, book, "t:1", [dr("seller_payable:A:USD", 500), cr("seller_payable:B:USD", 500)], hmac_key)
    second = post(db_session, book, "t:2", [dr("seller_payable:A:USD", 200), cr("seller_payable:B:USD", 200)], hmac_key)
    a = account_by_code(db_session, book, "seller_payable:A:USD")
    entries = list(db_session.scalars(select(Entry).where(Entry.account_id == a.id).order_by(Entry.version_after)))
    assert [(e.transaction_id, e.balance_after, e.version_after) for e in entries] == [
        (first, -500, 1), (second, -700, 2)]
    previous = None
    for e in entries:
        expected = chain.entry_hmac(
            hmac_key, entry_id=e.id, transaction_id=e.transaction_id, transaction_hmac=e.transaction.hmac,
            business_key=e.transaction.business_key, merchant_id=e.merchant_id, livemode=e.livemode,
            account_id=e.account_id, direction=e.direction,
            amount=e.amount, currency=e.currency, balance_after=e.balance_after, version_after=e.version_after,
            posted_at=e.posted_at, previous_hmac=previous)
        assert e.hmac == expected  # the database's HMAC is exactly Python's
        previous = e.hmac
    assert (a.balance, a.version) == (-700, 2)


def test_the_database_hmac_matches_python_for_a_long_key_and_separators_in_the_key(db_session, book):
    key = "ключ-".encode() * 30  # longer than SHA-256's block: hashed first, as RFC 2104 says
    txn = post_transaction(db_session, book, "t:a|3:b|1", "transfer",
                           [dr("psp_receivable:sandbox:EUR", 7, "EUR"), cr("seller_payable:A:EUR", 7, "EUR")],
                           hmac_key=key)
    db_session.commit()
    for e in txn.entries:
        assert e.hmac == chain.entry_hmac(
            key, entry_id=e.id, transaction_id=txn.id, transaction_hmac=txn.hmac, business_key="t:a|3:b|1",
            merchant_id=book.merchant_id, livemode=False, account_id=e.account_id, direction=e.direction,
            amount=e.amount, currency="EUR", balance_after=e.balance_after, version_after=1,
            posted_at=e.posted_at, previous_hmac=None)


@pytest.mark.parametrize("description, reference", [
    ("", None), ("Remboursement « partiel » |3:a|-", "|-"), ("-", "ré|f"),
])
def test_the_database_seal_of_a_transaction_matches_python(db_session, book, hmac_key, description, reference):
    """Every column, a NULL reference (b"|-") distinct from the text "|-", non-ASCII counted in bytes."""
    txn = post_transaction(db_session, book, "refund:re_1", "refund",
                           [dr("seller_payable:A:USD", 7), cr("psp_receivable:sandbox:USD", 7)], hmac_key=hmac_key,
                           description=description, reference=reference)
    db_session.commit()
    assert txn.hmac == chain.transaction_hmac(
        hmac_key, transaction_id=txn.id, merchant_id=book.merchant_id, livemode=False, business_key="refund:re_1",
        kind="refund", description=description, reference=reference, posted_at=txn.posted_at)


def test_same_key_same_legs_returns_the_existing_transaction_and_changes_nothing(db_session, book, hmac_key):
    first = post(db_session, book, "capture:pay_1", capture_legs(), hmac_key, kind="capture")
    before = (balances(db_session, book), counts(db_session, book))
    again = post_transaction(db_session, book, "capture:pay_1", "capture", list(reversed(capture_legs())),
                             hmac_key=hmac_key)
    assert again.id == first
    db_session.commit()
    assert (balances(db_session, book), counts(db_session, book)) == before


@pytest.mark.parametrize("legs, kind", [
    ([dr("psp_receivable:sandbox:USD", 10000), cr("seller_payable:A:USD", 10000)], "capture"),  # other legs
    (capture_legs(20000), "capture"),  # other amounts
    (capture_legs(), "refund"),  # same legs, other kind
])
def test_same_key_different_posting_is_a_conflict(db_session, book, hmac_key, legs, kind):
    first = post(db_session, book, "capture:pay_1", capture_legs(), hmac_key, kind="capture")
    before = (balances(db_session, book), counts(db_session, book))
    with pytest.raises(BusinessKeyConflict, match="already posted") as caught:
        post_transaction(db_session, book, "capture:pay_1", kind, legs, hmac_key=hmac_key)
    assert caught.value.existing_transaction_id == first
    db_session.execute(text("SELECT 1"))  # the caller's transaction is still usable
    db_session.commit()
    assert (balances(db_session, book), counts(db_session, book)) == before


def test_business_keys_are_per_book(db_session, book, hmac_key):
    other = Scope(book.merchant_id, True)
    a = post(db_session, book, "capture:pay_1", capture_legs(), hmac_key)
    b = post(db_session, other, "capture:pay_1", capture_legs(), hmac_key)
    assert a != b
    assert account_balance(db_session, book, "merchant_revenue:USD") == Money(300, "USD")
    assert account_balance(db_session, other, "merchant_revenue:USD") == Money(300, "USD")


@pytest.mark.parametrize("legs, error, message", [
    ([], InvalidPosting, "2 to 100 legs"),
    ([dr("cash:USD", 5)], InvalidPosting, "2 to 100 legs"),
    ([dr("cash:USD", 0), cr("psp_receivable:sandbox:USD", 0)], InvalidPosting, "must be positive"),
    ([dr("cash:USD", -5), cr("psp_receivable:sandbox:USD", -5)], InvalidPosting, "must be positive"),
    ([dr("cash:USD", 1.5), cr("psp_receivable:sandbox:USD", 1.5)], InvalidPosting, "integer number of minor units"),
    ([dr("cash:USD", True), cr("psp_receivable:sandbox:USD", True)], InvalidPosting, "integer number"),
    ([Leg("cash:USD", "up", 5, "USD"), cr("psp_receivable:sandbox:USD", 5)], InvalidPosting, "direction"),
    ([dr("cash:USD", 5), cr("psp_receivable:sandbox:USD", 4)], UnbalancedTransaction,
     r"debits \$0.05 != credits \$0.04"),
    ([dr("cash:USD", 5), cr("cash:EUR", 5, "EUR")], UnbalancedTransaction, "does not balance in EUR"),
    ([dr("cash:USD", 5, "EUR"), cr("psp_receivable:sandbox:EUR", 5, "EUR")], CurrencyMismatch, "an account in USD"),
    ([dr("cash:usd", 5), cr("psp_receivable:sandbox:USD", 5)], UnknownAccountCode, "upper-case ISO 4217"),
    ([dr("bank:USD", 5), cr("psp_receivable:sandbox:USD", 5)], UnknownAccountCode, "must start with one of"),
    ([dr("seller_payable:USD", 5), cr("psp_receivable:sandbox:USD", 5)], UnknownAccountCode,
     "seller_payable:<seller>:<CUR>"),
    ([dr("seller_payable:a:b:USD", 5), cr("psp_receivable:sandbox:USD", 5)], UnknownAccountCode, "must look like"),
    ([dr("cash:XXX", 5, "XXX"), cr("psp_receivable:sandbox:XXX", 5, "XXX")], InvalidPosting, "unsupported currency"),
    ([dr("cash:USD", 10**16), cr("psp_receivable:sandbox:USD", 10**16)], InvalidPosting, "at most"),
    ([("cash:USD", "debit", 5, "USD"), cr("psp_receivable:sandbox:USD", 5)], InvalidPosting, "is not a Leg"),
])
def test_invalid_legs_are_refused_before_touching_the_database(db_session, book, hmac_key, legs, error, message):
    with pytest.raises(error, match=message):
        post_transaction(db_session, book, "bad:1", "transfer", legs, hmac_key=hmac_key)
    assert counts(db_session, book) == (0, 0, 0)


@pytest.mark.parametrize("arguments, message", [
    ({"business_key": ""}, "business_key"),
    ({"business_key": "has space"}, "business_key"),
    ({"business_key": "x" * 201}, "business_key"),
    ({"kind": "Capture!"}, "kind"),
    ({"description": "x" * 501}, "description"),
    ({"reference": ""}, "reference"),
])
def test_invalid_keys_kinds_and_texts_are_refused(db_session, book, hmac_key, arguments, message):
    values = {"business_key": "ok:1", "kind": "transfer", **arguments}
    extra = {k: v for k, v in values.items() if k in ("description", "reference")}
    with pytest.raises(InvalidPosting, match=message):
        post_transaction(db_session, book, values["business_key"], values["kind"], capture_legs(),
                         hmac_key=hmac_key, **extra)


@pytest.mark.parametrize("key", [b"", "a string", None])
def test_a_missing_hmac_key_is_a_configuration_error(db_session, book, key):
    with pytest.raises(LedgerConfigurationError, match="LEDGER_HMAC_KEY"):
        post_transaction(db_session, book, "k:1", "transfer", capture_legs(), hmac_key=key)


def test_an_overdraft_is_refused_and_changes_nothing(db_session, book, hmac_key):
    post(db_session, book, "capture:pay_1", capture_legs(), hmac_key)
    post(db_session, book, "settlement:s1", [dr("cash:USD", 10000), cr("psp_receivable:sandbox:USD", 10000)], hmac_key)
    before = (balances(db_session, book), counts(db_session, book))
    with pytest.raises(InsufficientBalance, match=r"cash:USD may not go negative: .* -\$0.01") as caught:
        post_transaction(db_session, book, "payout:po_1", "payout",
                         [dr("seller_payable:A:USD", 10001), cr("cash:USD", 10001)], hmac_key=hmac_key)
    assert (caught.value.account_code, caught.value.balance_after) == ("cash:USD", -1)
    # Nothing was written, and the caller's transaction goes on: the key is still free.
    post_transaction(db_session, book, "payout:po_1", "payout",
                     [dr("seller_payable:A:USD", 10000), cr("cash:USD", 10000)], hmac_key=hmac_key)
    db_session.commit()
    after = balances(db_session, book)
    assert after["cash:USD"] == 0 and after["seller_payable:A:USD"] == 5820 - 10000
    assert counts(db_session, book)[1] == before[1][1] + 1


def test_an_overdraft_on_a_new_account_does_not_open_it(db_session, book, hmac_key):
    with pytest.raises(InsufficientBalance, match="cash:EUR"):
        post_transaction(db_session, book, "payout:1", "payout",
                         [dr("seller_payable:A:EUR", 1, "EUR"), cr("cash:EUR", 1, "EUR")], hmac_key=hmac_key)
    db_session.commit()
    assert counts(db_session, book) == (0, 0, 0)


def test_an_account_in_several_legs_gets_one_entry_per_leg(db_session, book, hmac_key):
    txn = post(db_session, book, "split:1", [dr("psp_receivable:sandbox:USD", 100), cr("seller_payable:A:USD", 60),
                                             cr("seller_payable:A:USD", 40)], hmac_key)
    a = account_by_code(db_session, book, "seller_payable:A:USD")
    rows = db_session.execute(select(Entry.amount, Entry.balance_after, Entry.version_after)
                              .where(Entry.transaction_id == txn).where(Entry.account_id == a.id)
                              .order_by(Entry.version_after)).all()
    assert rows == [(60, 60, 1), (40, 100, 2)]
    assert (a.balance, a.version) == (100, 2)


def test_a_multi_currency_posting_balances_per_currency(db_session, book, hmac_key):
    post(db_session, book, "fx:1", [dr("psp_receivable:sandbox:USD", 100), cr("seller_payable:A:USD", 100),
                                    dr("psp_receivable:sandbox:JPY", 15000, "JPY"),
                                    cr("seller_payable:A:JPY", 15000, "JPY")], hmac_key)
    assert account_balance(db_session, book, "seller_payable:A:JPY") == Money(15000, "JPY")


def test_debit_and_credit_helpers_take_money(db_session, book, hmac_key):
    amount = Money(1234, "KWD")
    post(db_session, book, "kwd:1",
         [debit("psp_receivable:sandbox:KWD", amount), credit("seller_payable:s1:KWD", amount)], hmac_key)
    assert account_balance(db_session, book, "seller_payable:s1:KWD") == amount


def test_loaded_account_rows_are_refreshed_after_a_posting(db_session, book, hmac_key):
    post(db_session, book, "t:1", [dr("seller_payable:A:USD", 5), cr("seller_payable:B:USD", 5)], hmac_key)
    a = account_by_code(db_session, book, "seller_payable:A:USD")
    assert a.balance == -5
    post_transaction(db_session, book, "t:2", "transfer",
                     [dr("seller_payable:A:USD", 5), cr("seller_payable:B:USD", 5)], hmac_key=hmac_key)
    assert a.balance == -10  # reloaded, not the stale -5


@pytest.mark.parametrize("commit", [False, True])
def test_posting_needs_read_committed_and_errors_never_show_the_key(app, book, hmac_key, commit):
    from sqlalchemy.exc import DBAPIError
    from sqlalchemy.orm import Session

    from app.extensions import db

    with Session(db.engine) as session:
        session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        with pytest.raises(DBAPIError, match="needs READ COMMITTED") as caught:
            post_transaction(session, book, "rr:1", "transfer", capture_legs(), hmac_key=hmac_key, commit=commit)
    message = str(caught.value)
    inner, outer = chain.key_pads(hmac_key)
    assert "[parameters:" not in message  # hidden (or never attached, in commit mode)
    assert inner.hex() not in message and repr(inner)[2:22] not in message and repr(outer)[2:22] not in message


# commit=True: the COMMIT travels with the call (the design answer for hot accounts).

def _other_connection_sees(database, scope) -> int:
    import psycopg

    from tests.conftest import _libpq

    with psycopg.connect(_libpq(database["app_url"])) as conn:
        return conn.execute("SELECT count(*) FROM ledger_transactions WHERE merchant_id = %s",
                            (scope.merchant_id,)).fetchone()[0]


def test_commit_true_posts_and_commits_in_one_go(database, db_session, book, hmac_key):
    txn = post_transaction(db_session, book, "capture:pay_1", "capture", capture_legs(), hmac_key=hmac_key,
                           commit=True)
    assert _other_connection_sees(database, book) == 1  # committed, without a session.commit()
    assert db_session.get(JournalTransaction, txn.id).business_key == "capture:pay_1"
    assert account_balance(db_session, book, "merchant_revenue:USD") == Money(300, "USD")
    again = post_transaction(db_session, book, "capture:pay_1", "capture", capture_legs(), hmac_key=hmac_key,
                             commit=True)
    assert again.id == txn.id


def test_commit_true_commits_the_callers_earlier_work_with_the_posting(database, db_session, book, hmac_key):
    from tests import factories

    other = factories.merchant(db_session, name="Made in the same transaction")
    post_transaction(db_session, book, "capture:pay_1", "capture", capture_legs(), hmac_key=hmac_key, commit=True)
    db_session.rollback()  # nothing left to roll back
    from app.accounts.models import Merchant

    assert db_session.get(Merchant, other.id) is not None


@pytest.mark.parametrize("refusal", ["overdraft", "conflict"])
def test_commit_true_refusal_rolls_back_the_whole_transaction(database, db_session, book, hmac_key, refusal):
    from app.accounts.models import Merchant
    from tests import factories

    post(db_session, book, "capture:pay_1", capture_legs(), hmac_key)
    before = (balances(db_session, book), counts(db_session, book))
    other_id = factories.merchant(db_session, name="Made in the refused transaction").id
    if refusal == "overdraft":
        with pytest.raises(InsufficientBalance, match=r"cash:USD may not go negative: .* -\$1.00") as caught:
            post_transaction(db_session, book, "payout:1", "payout",
                             [dr("seller_payable:A:USD", 100), cr("cash:USD", 100)], hmac_key=hmac_key, commit=True)
        assert (caught.value.account_code, caught.value.balance_after) == ("cash:USD", -100)
    else:
        with pytest.raises(BusinessKeyConflict, match="already posted") as caught:
            post_transaction(db_session, book, "capture:pay_1", "capture", capture_legs(20000), hmac_key=hmac_key,
                             commit=True)
        assert caught.value.existing_transaction_id == db_session.scalar(
            select(JournalTransaction.id).where(JournalTransaction.merchant_id == book.merchant_id))
    assert db_session.get(Merchant, other_id) is None  # the caller's own work went with it
    assert (balances(db_session, book), counts(db_session, book)) == before
