"""``verify``: recompute every account's hash chain and balance from its entries, and check every transaction.

What it catches: an entry altered in any field the HMAC covers, removed or inserted in the middle of an
account's history (the version sequence and the chain break), an account row whose balance or version
disagrees with its entries, an account whose kind or overdraft flag is not its type's (the rules are taken
from app/ledger/accounts.py, not from the database being checked), an entry in the wrong currency or book,
a transaction altered in any column (its seal), a transaction that does not balance or lacks a side.
Transactions posted before migration 0015 have no seal (the key never reaches the database, so the
migration could not add one): they are counted as ``unsealed_transactions``, and only their business key
is covered, through their entries.

What a hash chain alone cannot catch: the *last* entries of every touched account removed together with
their transactions and the account rows rolled back to match; anchoring the chain heads outside the
database (e.g. exporting them with each verify) would close that gap.

Run it in a transaction of its own: the CLI and the job use REPEATABLE READ, so that accounts and entries
come from one snapshot while postings go on.
"""
import hmac as hmac_module
from dataclasses import asdict, dataclass, field
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.ledger.accounts import ACCOUNT_TYPES
from app.ledger.chain import entry_hmac, require_key, transaction_hmac
from app.ledger.models import Entry, JournalTransaction, LedgerAccount
from app.models_base import utcnow
from app.scoping import Scope

# How many discrepancies to keep after the first: enough to see a pattern, bounded on a wrecked ledger.
MAX_DISCREPANCIES = 50
# Entries fetched per round trip while streaming (server-side cursor): memory stays flat on any size.
STREAM_BATCH = 2000


@dataclass(frozen=True)
class Discrepancy:
    """One thing verify found wrong."""

    problem: str  # a short code: hmac_mismatch, version_gap, balance_mismatch, ...
    message: str
    account_id: str | None = None
    account_code: str | None = None
    entry_id: str | None = None
    transaction_id: str | None = None


@dataclass
class VerifyReport:
    """What verify checked and the discrepancies it found (the first one first)."""

    started_at: datetime
    accounts: int = 0
    entries: int = 0
    transactions: int = 0
    unsealed_transactions: int = 0  # posted before migration 0015: kind, description, reference not covered
    discrepancies: list[Discrepancy] = field(default_factory=list)
    discrepancy_count: int = 0
    finished_at: datetime | None = None
    scope: str = "platform"

    @property
    def ok(self) -> bool:
        return self.discrepancy_count == 0

    @property
    def first(self) -> Discrepancy | None:
        return self.discrepancies[0] if self.discrepancies else None

    def add(self, discrepancy: Discrepancy) -> None:
        self.discrepancy_count += 1
        if len(self.discrepancies) < MAX_DISCREPANCIES:
            self.discrepancies.append(discrepancy)

    def to_dict(self) -> dict:
        """JSON-ready form (for the last-result store and the admin page)."""
        return {
            "ok": self.ok, "scope": self.scope,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "accounts": self.accounts, "entries": self.entries, "transactions": self.transactions,
            "unsealed_transactions": self.unsealed_transactions,
            "discrepancy_count": self.discrepancy_count,
            "discrepancies": [asdict(d) for d in self.discrepancies],
        }


def _book_filter(model, scope: Scope | None):
    return () if scope is None else (model.merchant_id == scope.merchant_id, model.livemode == scope.livemode)


def verify(session: Session, hmac_key: bytes, scope: Scope | None = None) -> VerifyReport:
    """Check the whole ledger (or one book) and report every discrepancy, the first one first.

    Accounts in id order, each account's entries in version order; then the transactions. Reads only.
    """
    hmac_key = require_key(hmac_key)
    report = VerifyReport(started_at=utcnow(),
                          scope="platform" if scope is None else f"{scope.merchant_id}/{scope.mode}")
    accounts = session.execute(
        select(LedgerAccount.id, LedgerAccount.code, LedgerAccount.merchant_id, LedgerAccount.livemode,
               LedgerAccount.account_type, LedgerAccount.kind, LedgerAccount.currency, LedgerAccount.normal_balance,
               LedgerAccount.allow_negative, LedgerAccount.balance, LedgerAccount.version, LedgerAccount.last_hmac)
        .where(*_book_filter(LedgerAccount, scope)).order_by(LedgerAccount.id)
    ).all()
    report.accounts = len(accounts)
    entries = session.execute(
        select(Entry.id, Entry.transaction_id, Entry.account_id, Entry.merchant_id, Entry.livemode,
               Entry.direction, Entry.amount, Entry.currency, Entry.balance_after, Entry.version_after,
               Entry.posted_at, Entry.hmac, JournalTransaction.business_key,
               JournalTransaction.hmac.label("transaction_hmac"))
        .join(JournalTransaction, JournalTransaction.id == Entry.transaction_id, isouter=True)
        .where(*_book_filter(Entry, scope)).order_by(Entry.account_id, Entry.version_after),
        execution_options={"yield_per": STREAM_BATCH},
    )
    account_index = {a.id: a for a in accounts}
    seen_accounts: set[str] = set()
    current = None
    balance = version = 0
    previous: bytes | None = None

    def close(account) -> None:
        head = bytes(account.last_hmac) if account.last_hmac is not None else None
        if account.balance != balance or account.version != version or head != previous:
            report.add(Discrepancy(
                "account_mismatch",
                f"account {account.code} says balance {account.balance} at version {account.version}"
                f"{'' if head == previous else ' with another chain head'}, "
                f"its entries add up to {balance} at version {version}",
                account_id=account.id, account_code=account.code))
        rule = ACCOUNT_TYPES.get(account.account_type)
        if rule is None or (account.kind, account.allow_negative) != (rule.kind, rule.allow_negative):
            says = f"{rule.kind}, may{'' if rule.allow_negative else ' not'} go negative" if rule else "no such type"
            report.add(Discrepancy(
                "account_rule_mismatch",
                f"account {account.code} is {account.kind} and may{'' if account.allow_negative else ' not'} go "
                f"negative, but the code's rule for {account.account_type} is: {says}",
                account_id=account.id, account_code=account.code))
        may_go_negative = rule.allow_negative if rule else account.allow_negative
        if not may_go_negative and account.balance < 0:
            report.add(Discrepancy("negative_balance", f"account {account.code} forbids a negative balance "
                                   f"but is at {account.balance}", account_id=account.id, account_code=account.code))

    for e in entries:
        report.entries += 1
        if current is None or e.account_id != current.id:
            if current is not None:
                close(current)
            current = account_index.get(e.account_id)
            if current is None:  # only reachable when the foreign key was bypassed
                report.add(Discrepancy("orphan_entry", f"entry {e.id} names unknown account {e.account_id}",
                                       entry_id=e.id, account_id=e.account_id))
                current = None
                continue
            seen_accounts.add(current.id)
            balance, version, previous = 0, 0, None
        where = {"account_id": current.id, "account_code": current.code, "entry_id": e.id,
                 "transaction_id": e.transaction_id}
        if e.version_after != version + 1:
            report.add(Discrepancy("version_gap", f"account {current.code}: entry {e.id} has version "
                                   f"{e.version_after}, expected {version + 1}", **where))
        if e.currency != current.currency or e.merchant_id != current.merchant_id or e.livemode != current.livemode:
            report.add(Discrepancy("wrong_account", f"entry {e.id} ({e.currency}) does not belong to account "
                                   f"{current.code}'s book and currency", **where))
        delta = e.amount if e.direction == current.normal_balance else -e.amount
        if e.balance_after != balance + delta:
            report.add(Discrepancy("balance_mismatch", f"account {current.code}: entry {e.id} says balance "
                                   f"{e.balance_after}, the entries before it give {balance + delta}", **where))
        seal = bytes(e.transaction_hmac) if e.transaction_hmac is not None else None
        expected = entry_hmac(
            hmac_key, entry_id=e.id, transaction_id=e.transaction_id, transaction_hmac=seal,
            business_key=e.business_key or "", merchant_id=e.merchant_id, livemode=e.livemode,
            account_id=e.account_id, direction=e.direction, amount=e.amount, currency=e.currency,
            balance_after=e.balance_after, version_after=e.version_after, posted_at=e.posted_at,
            previous_hmac=previous)
        if not hmac_module.compare_digest(expected, bytes(e.hmac)):
            unsealed = "" if seal else (" (checked as posted before migration 0015: its transaction has no seal, "
                                        "or its seal was removed)")
            report.add(Discrepancy("hmac_mismatch", f"account {current.code}: entry {e.id} (version "
                                   f"{e.version_after}) does not match its HMAC: altered, or a previous "
                                   f"entry was{unsealed}", **where))
        # Carry on from what the entry claims, so one bad entry is reported once, not on every later one.
        balance, version, previous = e.balance_after, e.version_after, bytes(e.hmac)
    if current is not None:
        close(current)
    for account in accounts:
        if account.id not in seen_accounts and (account.balance != 0 or account.version != 0
                                                or account.last_hmac is not None):
            balance, version, previous = 0, 0, None
            close(account)

    _check_seals(session, hmac_key, scope, report)
    _check_transactions(session, scope, report)
    report.finished_at = utcnow()
    return report


def _check_seals(session: Session, hmac_key: bytes, scope: Scope | None, report: VerifyReport) -> None:
    """Every transaction's columns match its seal; those posted before migration 0015 are counted, unsealed."""
    transactions = session.execute(
        select(JournalTransaction.id, JournalTransaction.merchant_id, JournalTransaction.livemode,
               JournalTransaction.business_key, JournalTransaction.kind, JournalTransaction.description,
               JournalTransaction.reference, JournalTransaction.posted_at, JournalTransaction.hmac)
        .where(*_book_filter(JournalTransaction, scope)).order_by(JournalTransaction.id),
        execution_options={"yield_per": STREAM_BATCH},
    )
    for t in transactions:
        report.transactions += 1
        if t.hmac is None:
            report.unsealed_transactions += 1
            continue
        expected = transaction_hmac(
            hmac_key, transaction_id=t.id, merchant_id=t.merchant_id, livemode=t.livemode,
            business_key=t.business_key, kind=t.kind, description=t.description, reference=t.reference,
            posted_at=t.posted_at)
        if not hmac_module.compare_digest(expected, bytes(t.hmac)):
            report.add(Discrepancy(
                "transaction_altered",
                f"transaction {t.id} ({t.business_key}, {t.kind}) does not match its seal: its kind, description, "
                "reference, business key, book or time was changed after posting, or its seal was",
                transaction_id=t.id))


def _check_transactions(session: Session, scope: Scope | None, report: VerifyReport) -> None:
    """Every transaction balances per currency and has a debit and a credit; entries share its book."""
    debits = func.coalesce(func.sum(Entry.amount).filter(Entry.direction == "debit"), 0)
    credits = func.coalesce(func.sum(Entry.amount).filter(Entry.direction == "credit"), 0)
    unbalanced = session.execute(
        select(Entry.transaction_id, Entry.currency, debits, credits)
        .where(*_book_filter(Entry, scope))
        .group_by(Entry.transaction_id, Entry.currency)
        .having(debits != credits)
        .order_by(Entry.transaction_id, Entry.currency)
        .limit(MAX_DISCREPANCIES))
    for transaction_id, currency, d, c in unbalanced:
        report.add(Discrepancy("unbalanced_transaction", f"transaction {transaction_id} does not balance in "
                               f"{currency}: debits {d} != credits {c}", transaction_id=transaction_id))
    one_sided = session.execute(
        select(JournalTransaction.id, JournalTransaction.business_key)
        .where(*_book_filter(JournalTransaction, scope))
        .where(~select(Entry.id).where(Entry.transaction_id == JournalTransaction.id,
                                       Entry.direction == "debit").exists()
               | ~select(Entry.id).where(Entry.transaction_id == JournalTransaction.id,
                                         Entry.direction == "credit").exists())
        .order_by(JournalTransaction.id)
        .limit(MAX_DISCREPANCIES))
    for transaction_id, key in one_sided:
        report.add(Discrepancy("one_sided_transaction", f"transaction {transaction_id} ({key}) lacks a debit "
                               "or a credit entry", transaction_id=transaction_id))
    orphans = session.execute(
        select(Entry.id, Entry.transaction_id)
        .outerjoin(JournalTransaction, JournalTransaction.id == Entry.transaction_id)
        .where(*_book_filter(Entry, scope), JournalTransaction.id.is_(None)).limit(MAX_DISCREPANCIES))
    for entry_id, transaction_id in orphans:
        report.add(Discrepancy("orphan_entry", f"entry {entry_id} names unknown transaction {transaction_id}",
                               entry_id=entry_id, transaction_id=transaction_id))
