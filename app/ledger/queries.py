"""Reading the ledger: balances, seller balances, account statements, trial balances.

Balances are in each account's normal direction (see app/ledger/accounts.py): a seller payable of +58.20
is owed to the seller, an asset of +100.00 is held. Everything here reads only; nothing locks.
"""
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from app.ledger.accounts import parse_account_code
from app.ledger.models import Entry, JournalTransaction, LedgerAccount
from app.money import Money
from app.scoping import Scope

# A statement page long enough to read, short enough to render fast; callers may ask for up to MAX.
STATEMENT_PAGE = 50
STATEMENT_PAGE_MAX = 500


def get_account(session: Session, scope: Scope, account_id: str) -> LedgerAccount | None:
    """An account of the scope's book by id, or None (also for another merchant's or mode's account)."""
    return scope.get(session, LedgerAccount, account_id)


def account_by_code(session: Session, scope: Scope, code: str) -> LedgerAccount | None:
    """An account of the scope's book by code, or None when it was never used."""
    return session.scalars(scope.select(LedgerAccount, LedgerAccount.code == code)).one_or_none()


def account_balance(session: Session, scope: Scope, code: str) -> Money:
    """Balance of an account by code; zero in the code's currency when the account was never used."""
    currency = parse_account_code(code).currency
    balance = session.scalar(
        select(LedgerAccount.balance).where(
            LedgerAccount.merchant_id == scope.merchant_id, LedgerAccount.livemode == scope.livemode,
            LedgerAccount.code == code))
    return Money(balance or 0, currency)


def book_accounts(session: Session, scope: Scope) -> list[LedgerAccount]:
    """Every account of the book, by code."""
    return list(session.scalars(scope.select(LedgerAccount).order_by(LedgerAccount.code)))


def seller_balances(session: Session, scope: Scope, seller_id: str) -> dict[str, Money]:
    """A seller's payable balance per currency (only currencies the seller has an account in)."""
    rows = session.execute(
        select(LedgerAccount.currency, LedgerAccount.balance).where(
            LedgerAccount.merchant_id == scope.merchant_id, LedgerAccount.livemode == scope.livemode,
            LedgerAccount.account_type == "seller_payable", LedgerAccount.subject == seller_id)
        .order_by(LedgerAccount.currency))
    return {currency: Money(balance, currency) for currency, balance in rows}


@dataclass(frozen=True)
class SellerBalance:
    """A seller's payable in one currency."""

    seller_id: str
    account_id: str
    balance: Money


def all_seller_balances(session: Session, scope: Scope) -> list[SellerBalance]:
    """Every seller's payable balance per currency in the book, by seller then currency."""
    rows = session.execute(
        select(LedgerAccount.subject, LedgerAccount.id, LedgerAccount.currency, LedgerAccount.balance).where(
            LedgerAccount.merchant_id == scope.merchant_id, LedgerAccount.livemode == scope.livemode,
            LedgerAccount.account_type == "seller_payable")
        .order_by(LedgerAccount.subject, LedgerAccount.currency))
    return [SellerBalance(subject, account_id, Money(balance, currency))
            for subject, account_id, currency, balance in rows]


@dataclass(frozen=True)
class StatementLine:
    """One entry on an account's statement, with the journal transaction it came from."""

    entry_id: str
    version: int
    posted_at: datetime
    direction: str
    amount: Money
    balance_before: Money
    balance_after: Money  # the running balance
    transaction_id: str
    business_key: str
    kind: str
    description: str
    reference: str | None

    @property
    def signed_amount(self) -> Money:
        """The entry's effect on the balance (negative when it reduces it)."""
        return self.balance_after - self.balance_before


@dataclass(frozen=True)
class Statement:
    """A page of an account's entries over a date range, oldest first, with running balances."""

    account: LedgerAccount
    lines: list[StatementLine]
    next_after: int | None  # pass as ``after_version`` for the next page; None on the last page

    @property
    def opening_balance(self) -> Money | None:
        """The balance before this page's first line (None for an empty page)."""
        return self.lines[0].balance_before if self.lines else None

    @property
    def closing_balance(self) -> Money | None:
        """The balance after this page's last line (None for an empty page)."""
        return self.lines[-1].balance_after if self.lines else None


def statement(session: Session, scope: Scope, account_id: str, *, start: datetime | None = None,
              end: datetime | None = None, after_version: int | None = None,
              limit: int = STATEMENT_PAGE) -> Statement | None:
    """Entries of an account posted in [start, end), oldest first, ``limit`` per page, or None if no such account.

    Keyset pagination on the account's version (the order the account lock gave its entries): a page
    costs the same however deep it is, and entries posted meanwhile never shift the pages.
    """
    account = get_account(session, scope, account_id)
    if account is None:
        return None
    limit = max(1, min(int(limit), STATEMENT_PAGE_MAX))
    query = (
        select(Entry.id, Entry.version_after, Entry.posted_at, Entry.direction, Entry.amount, Entry.currency,
               Entry.balance_after, JournalTransaction.id, JournalTransaction.business_key,
               JournalTransaction.kind, JournalTransaction.description, JournalTransaction.reference)
        .join(JournalTransaction, JournalTransaction.id == Entry.transaction_id)
        .where(Entry.account_id == account.id, Entry.merchant_id == scope.merchant_id,
               Entry.livemode == scope.livemode)
        .order_by(Entry.version_after)
        .limit(limit + 1)
    )
    if start is not None:
        query = query.where(Entry.posted_at >= start)
    if end is not None:
        query = query.where(Entry.posted_at < end)
    if after_version is not None:
        query = query.where(Entry.version_after > after_version)
    rows = session.execute(query).all()
    lines = []
    for row in rows[:limit]:
        (entry_id, version, posted_at, direction, amount, currency, balance_after, txn_id, key, kind,
         description, reference) = row
        delta = amount if direction == account.normal_balance else -amount
        lines.append(StatementLine(
            entry_id=entry_id, version=version, posted_at=posted_at, direction=direction,
            amount=Money(amount, currency), balance_before=Money(balance_after - delta, currency),
            balance_after=Money(balance_after, currency), transaction_id=txn_id, business_key=key, kind=kind,
            description=description, reference=reference))
    next_after = lines[-1].version if len(rows) > limit else None
    return Statement(account=account, lines=lines, next_after=next_after)


@dataclass(frozen=True)
class TrialBalanceLine:
    """Debit-side and credit-side balances of a mode and currency; they are equal when the books balance."""

    livemode: bool
    currency: str
    debits: int
    credits: int
    accounts: int

    @property
    def balanced(self) -> bool:
        return self.debits == self.credits


@dataclass(frozen=True)
class TrialBalance:
    """A trial balance: per mode and currency, the sum of debit balances and of credit balances."""

    lines: list[TrialBalanceLine]

    @property
    def balanced(self) -> bool:
        return all(line.balanced for line in self.lines)


def trial_balance(session: Session, scope: Scope | None = None) -> TrialBalance:
    """The trial balance of one book, or of the whole platform (every book, per mode) when scope is None.

    Each account's balance goes to the debit column when it is a debit balance (a positive asset or
    expense, a negative liability, equity or revenue) and to the credit column otherwise.
    """
    # The balance as debits minus credits, whatever the account's normal side.
    debit_balance = case((LedgerAccount.normal_balance == "debit", LedgerAccount.balance),
                         else_=-LedgerAccount.balance)
    query = (
        select(LedgerAccount.livemode, LedgerAccount.currency,
               func.coalesce(func.sum(func.greatest(debit_balance, 0)), 0),
               func.coalesce(func.sum(func.greatest(-debit_balance, 0)), 0),
               func.count())
        .group_by(LedgerAccount.livemode, LedgerAccount.currency)
        .order_by(LedgerAccount.livemode, LedgerAccount.currency)
    )
    if scope is not None:
        query = query.where(LedgerAccount.merchant_id == scope.merchant_id,
                            LedgerAccount.livemode == scope.livemode)
    return TrialBalance([TrialBalanceLine(livemode, currency, int(debits), int(credits), count)
                         for livemode, currency, debits, credits, count in session.execute(query)])


def journal_totals(session: Session, scope: Scope | None = None) -> dict[tuple[bool, str], tuple[int, int]]:
    """Sum of all debit and all credit entries per (livemode, currency), straight from the entries."""
    query = (
        select(Entry.livemode, Entry.currency,
               func.coalesce(func.sum(Entry.amount).filter(Entry.direction == "debit"), 0),
               func.coalesce(func.sum(Entry.amount).filter(Entry.direction == "credit"), 0))
        .group_by(Entry.livemode, Entry.currency)
    )
    if scope is not None:
        query = query.where(Entry.merchant_id == scope.merchant_id, Entry.livemode == scope.livemode)
    return {(livemode, currency): (int(d), int(c)) for livemode, currency, d, c in session.execute(query)}


@dataclass(frozen=True)
class TransactionLeg:
    """One entry of a journal transaction, with its account's code."""

    account_id: str
    code: str
    direction: str
    amount: Money


def transaction_legs(session: Session, scope: Scope, transaction_ids) -> dict[str, list[TransactionLeg]]:
    """The entries of some journal transactions of the book, in posting order, by transaction id."""
    legs: dict[str, list[TransactionLeg]] = {}
    ids = list(transaction_ids)
    if not ids:
        return legs
    rows = session.execute(
        select(Entry.transaction_id, Entry.account_id, LedgerAccount.code, Entry.direction, Entry.amount,
               Entry.currency)
        .join(LedgerAccount, LedgerAccount.id == Entry.account_id)
        .where(Entry.merchant_id == scope.merchant_id, Entry.livemode == scope.livemode,
               Entry.transaction_id.in_(ids))
        .order_by(Entry.transaction_id, Entry.id))
    for transaction_id, account_id, code, direction, amount, currency in rows:
        legs.setdefault(transaction_id, []).append(TransactionLeg(account_id, code, direction, Money(amount, currency)))
    return legs
