"""Property-based: any sequence of postings keeps the books balanced and every balance equal to its entries;
refused postings (invalid, overdrawing, conflicting) change nothing."""
from collections import defaultdict

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from app.ledger.errors import (
    BusinessKeyConflict,
    CurrencyMismatch,
    InsufficientBalance,
    InvalidPosting,
    UnbalancedTransaction,
    UnknownAccountCode,
)
from app.ledger.integration import run_verify
from app.ledger.models import Entry, JournalTransaction, LedgerAccount
from app.ledger.queries import trial_balance
from app.ledger.service import Leg, post_transaction
from app.scoping import Scope
from tests import factories

ACCOUNTS = {
    "USD": ["psp_receivable:sandbox:USD", "seller_payable:A:USD", "seller_payable:B:USD", "merchant_revenue:USD",
            "cash:USD", "psp_fees:USD", "dispute_fees:USD"],
    "JPY": ["psp_receivable:sandbox:JPY", "seller_payable:A:JPY", "cash:JPY"],
}


@st.composite
def transfers(draw):
    """One or more (currency, debit account, credit account, amount): balanced per currency by construction."""
    result = []
    for _ in range(draw(st.integers(1, 3))):
        currency = draw(st.sampled_from(sorted(ACCOUNTS)))
        source, target = draw(st.lists(st.sampled_from(ACCOUNTS[currency]), min_size=2, max_size=2, unique=True))
        result.append((currency, source, target, draw(st.integers(1, 50_000))))
    return result


def legs_of(transfer_list) -> list[Leg]:
    legs = []
    for currency, source, target, amount in transfer_list:
        legs += [Leg(source, "debit", amount, currency), Leg(target, "credit", amount, currency)]
    return legs


def spoil(legs: list[Leg], how: str) -> tuple[list[Leg], type]:
    """An invalid variant of valid legs, and the error it must raise."""
    first = legs[0]
    if how == "unbalanced":
        bigger = Leg(first.account_code, first.direction, first.amount + 1, first.currency)
        return [bigger, *legs[1:]], UnbalancedTransaction
    if how == "currency":
        other = "JPY" if first.currency == "USD" else "USD"
        return [Leg(first.account_code, first.direction, first.amount, other), *legs[1:]], CurrencyMismatch
    if how == "amount":
        return [Leg(leg.account_code, leg.direction, 0, leg.currency) for leg in legs], InvalidPosting
    unknown = Leg("vault:" + first.currency, first.direction, first.amount, first.currency)
    return [unknown, *legs[1:]], UnknownAccountCode


operations = st.lists(
    st.one_of(
        st.tuples(st.just("post"), transfers()),
        st.tuples(st.just("invalid"), transfers(), st.sampled_from(["unbalanced", "currency", "amount", "code"])),
        st.tuples(st.just("replay"), st.integers(0, 100)),
        st.tuples(st.just("conflict"), st.integers(0, 100)),
    ),
    min_size=1, max_size=12,
)


def snapshot(session, scope):
    """Balances and versions of the book's accounts, and how many transactions and entries it holds."""
    session.rollback()
    accounts = {code: (balance, version) for code, balance, version in session.execute(
        select(LedgerAccount.code, LedgerAccount.balance, LedgerAccount.version)
        .where(LedgerAccount.merchant_id == scope.merchant_id, LedgerAccount.livemode == scope.livemode))}
    n_txn = len(session.scalars(scope.select(JournalTransaction)).all())
    n_entries = len(session.scalars(scope.select(Entry)).all())
    return accounts, n_txn, n_entries


# A new merchant (book) per example makes the function-scoped session fixture safe to share.
@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=operations)
def test_any_sequence_of_postings_keeps_the_books_balanced(db_session, hmac_key, ops):
    merchant = factories.merchant(db_session)
    db_session.commit()
    scope = Scope(merchant.id, False)
    posted: list[tuple[str, list[Leg]]] = []
    for n, op in enumerate(ops):
        before = snapshot(db_session, scope)
        if op[0] == "post":
            legs = legs_of(op[1])
            try:
                post_transaction(db_session, scope, f"k:{n}", "transfer", legs, hmac_key=hmac_key)
            except InsufficientBalance:
                db_session.rollback()
                assert snapshot(db_session, scope) == before
                continue
            db_session.commit()
            posted.append((f"k:{n}", legs))
        elif op[0] == "invalid":
            legs, error = spoil(legs_of(op[1]), op[2])
            try:
                post_transaction(db_session, scope, f"k:{n}", "transfer", legs, hmac_key=hmac_key)
            except error:
                pass
            else:
                raise AssertionError(f"{op[2]} posting was accepted")
            db_session.commit()
            assert snapshot(db_session, scope) == before
        elif posted:
            key, legs = posted[op[1] % len(posted)]
            if op[0] == "replay":
                post_transaction(db_session, scope, key, "transfer", list(reversed(legs)), hmac_key=hmac_key)
            else:
                changed = [Leg(leg.account_code, leg.direction, leg.amount + 1, leg.currency) for leg in legs[:2]]
                changed += legs[2:]
                try:
                    post_transaction(db_session, scope, key, "transfer", changed, hmac_key=hmac_key)
                except BusinessKeyConflict:
                    pass
                else:
                    raise AssertionError("a conflicting replay was accepted")
            db_session.commit()
            assert snapshot(db_session, scope) == before

    # The trial balance is zero per currency.
    assert trial_balance(db_session, scope).balanced
    # Every balance and version is what its entries say.
    sums: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for account_id, normal, direction, amount in db_session.execute(
            select(Entry.account_id, LedgerAccount.normal_balance, Entry.direction, Entry.amount)
            .join(LedgerAccount, LedgerAccount.id == Entry.account_id)
            .where(Entry.merchant_id == scope.merchant_id)):
        sums[account_id][0] += amount if direction == normal else -amount
        sums[account_id][1] += 1
    for account in db_session.scalars(scope.select(LedgerAccount)):
        assert [account.balance, account.version] == sums[account.id]
        assert account.allow_negative or account.balance >= 0
    assert len(db_session.scalars(scope.select(JournalTransaction)).all()) == len(posted)
    assert run_verify(db_session, hmac_key, scope).ok
