"""Posting to the ledger: ``post_transaction(session, scope, business_key, kind, legs, hmac_key=...)``.

A posting is validated here first (friendly LedgerError subclasses, nothing touched), then done by the
database function ``ledger_post`` in a single round trip (migrations/versions/0005_ledger.py, replaced by
0015_ledger_account_rules.py): seal the transaction and claim its business key, open missing accounts,
lock the accounts in id order, update balances and versions, insert the entries with their chained HMACs.

Why one round trip: an account's row lock is held from the moment it is taken until the transaction
ends. Sent as separate statements, a posting holds it across several client/server round trips and, in a
busy Python process, across waits for the GIL between them; a hot account (the platform's revenue account
is credited by every capture) then serializes every posting on those waits. Inside one function the lock
is taken microseconds before the function returns. What remains in the lock window is the COMMIT: the
caller's, one more round trip (and GIL wait) later, or, with ``commit=True``, sent in the same network
flight as the call so that the server commits the moment the function ends. bench/ledger.py measures
both against the statement-by-statement baseline. Either way: post last in your transaction, and never
make a network call between posting and committing (STYLE.md rule 7).

The HMAC is computed where the lock is held, in the function, from the key's HMAC pads passed as bind
parameters with every call (kept out of SQLAlchemy's error messages here; PostgreSQL does not log bind
parameters unless configured to). The database never stores the key: its tables, a dump or a backup are
not enough to forge an entry that ``verify`` accepts.

Services never import Flask and do not commit on their own: the caller owns the transaction (and may
hand its end over with ``commit=True``), which must run at READ COMMITTED (PostgreSQL's default), and
should post once per transaction; two postings in one transaction hold the first one's locks while
taking the second one's, outside the global lock order.
"""
import re
from dataclasses import dataclass

import psycopg
from psycopg.rows import namedtuple_row
from sqlalchemy import inspect, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, make_transient_to_detached

from app.ids import new_id
from app.ledger.accounts import AccountSpec, parse_account_code
from app.ledger.chain import key_pads, require_key
from app.ledger.errors import (
    BusinessKeyConflict,
    CurrencyMismatch,
    InsufficientBalance,
    InvalidPosting,
    UnbalancedTransaction,
)
from app.ledger.models import JournalTransaction, LedgerAccount
from app.money import Money, MoneyError, format_money, normalize_currency
from app.scoping import Scope

DEBIT = "debit"
CREDIT = "credit"
DIRECTIONS = (DEBIT, CREDIT)

# One posting locks one account per distinct code; a hundred legs is far more than any money flow in
# ARCHITECTURE.md needs and keeps the lock set (and the time it is held) small.
MAX_LEGS = 100
# 10^15 minor units (ten trillion dollars) per leg: far above any real amount, and sums of a billion such
# legs still fit PostgreSQL's bigint, so an overflow cannot come from legitimate postings.
MAX_AMOUNT = 10**15
_KEY = re.compile(r"^[\x21-\x7e]{1,200}$")  # printable ASCII, no spaces: keys end up in logs and URLs
_KIND = re.compile(r"^[a-z][a-z0-9_.]{0,39}$")
MAX_DESCRIPTION = 500
MAX_REFERENCE = 200

_POST_CALL = (
    "SELECT outcome, transaction_id, posted_at, account_code, balance_after FROM ledger_post("
    ":merchant_id, :livemode, :transaction_id, :business_key, :kind, :description, :reference, "
    "CAST(:entry_ids AS text[]), CAST(:codes AS text[]), CAST(:directions AS text[]), "
    "CAST(:amounts AS bigint[]), CAST(:currencies AS text[]), CAST(:account_ids AS text[]), "
    "CAST(:account_types AS text[]), CAST(:subjects AS text[]), :mac_inner, :mac_outer{strict})"
)
# Refusals come back as a result row: the caller's transaction stays usable.
_POST = text(_POST_CALL.format(strict=""))
# Refusals raise (and abort the transaction): used when the COMMIT travels with the call. psycopg syntax.
_POST_STRICT_PSYCOPG = re.sub(r":(\w+)", r"%(\1)s", _POST_CALL.format(strict=", true"))
INSUFFICIENT_BALANCE = "KL001"  # SQLSTATEs raised by ledger_post in strict mode
BUSINESS_KEY_CONFLICT = "KL002"


@dataclass(frozen=True)
class Leg:
    """One side of a posting: ``amount`` minor units debited or credited to the account ``account_code``."""

    account_code: str
    direction: str  # "debit" | "credit"
    amount: int
    currency: str

    @property
    def money(self) -> Money:
        return Money(self.amount, self.currency)


def debit(account_code: str, money: Money) -> Leg:
    """A debit leg of ``money`` on an account."""
    return Leg(account_code, DEBIT, money.amount, money.currency)


def credit(account_code: str, money: Money) -> Leg:
    """A credit leg of ``money`` on an account."""
    return Leg(account_code, CREDIT, money.amount, money.currency)


@dataclass(frozen=True)
class _CheckedLeg:
    leg: Leg
    spec: AccountSpec
    currency: str


def _check_text(name: str, value, pattern: re.Pattern, rule: str) -> str:
    if not isinstance(value, str) or not pattern.match(value):
        raise InvalidPosting(f"{name} must be {rule}, got {value!r}")
    return value


def validate_legs(legs) -> list[_CheckedLeg]:
    """The legs checked and normalized, or an InvalidPosting subclass saying what is wrong.

    Checks: 2 to MAX_LEGS legs; each a Leg with a direction, a positive integer amount, a supported
    currency equal to its account code's; debits equal credits in every currency.
    """
    legs = list(legs) if isinstance(legs, (list, tuple)) else None
    if legs is None or not 2 <= len(legs) <= MAX_LEGS:
        raise InvalidPosting(f"a posting needs a list of 2 to {MAX_LEGS} legs")
    checked = []
    totals: dict[str, list[int]] = {}
    for index, leg in enumerate(legs):
        if not isinstance(leg, Leg):
            raise InvalidPosting(f"leg {index} is not a Leg: {leg!r}")
        if leg.direction not in DIRECTIONS:
            raise InvalidPosting(f"leg {index}: direction must be 'debit' or 'credit', got {leg.direction!r}")
        if isinstance(leg.amount, bool) or not isinstance(leg.amount, int):
            raise InvalidPosting(f"leg {index}: amount must be an integer number of minor units, got {leg.amount!r}")
        if not 0 < leg.amount <= MAX_AMOUNT:
            raise InvalidPosting(f"leg {index}: amount must be positive and at most {MAX_AMOUNT}, got {leg.amount}")
        try:
            currency = normalize_currency(leg.currency)
        except MoneyError as exc:
            raise InvalidPosting(f"leg {index}: {exc}") from None
        spec = parse_account_code(leg.account_code)
        if spec.currency != currency:
            raise CurrencyMismatch(f"leg {index}: {currency} amount on {leg.account_code}, "
                                   f"an account in {spec.currency}")
        totals.setdefault(currency, [0, 0])[0 if leg.direction == DEBIT else 1] += leg.amount
        checked.append(_CheckedLeg(leg, spec, currency))
    for currency, (debits, credits) in sorted(totals.items()):
        if debits != credits:
            raise UnbalancedTransaction(
                f"the posting does not balance in {currency}: debits {format_money(debits, currency)} "
                f"!= credits {format_money(credits, currency)}",
                currency=currency, debits=debits, credits=credits)
    return checked


def _entry_ids(count: int) -> list[str]:
    """Entry ids that sort in the order of the legs (python-ulid is monotonic within a process, across threads)."""
    return [new_id("lent") for _ in range(count)]


def post_transaction(
    session: Session,
    scope: Scope,
    business_key: str,
    kind: str,
    legs: list[Leg],
    *,
    hmac_key: bytes,
    description: str = "",
    reference: str | None = None,
    commit: bool = False,
) -> JournalTransaction:
    """Post a balanced journal transaction in the scope's book, at most once per business key.

    Returns the new JournalTransaction, or the existing one when the key was already posted with the
    same kind and legs (in any order). Raises InvalidPosting (and subclasses) before touching the
    database; BusinessKeyConflict when the key was posted with other legs; InsufficientBalance when an
    account that forbids it would go negative. After any LedgerError nothing was written and the
    caller's transaction is still usable.

    Never commits unless asked: with ``commit=True`` the caller hands over the end of its transaction
    (the posting must be its last statement) and the COMMIT is sent in the same round trip, so that the
    account locks are held only while the server works; that is what keeps a hot account fast. Then a
    refusal rolls back the caller's whole transaction before raising, and other database errors arrive
    as the same SQLAlchemy exceptions as without it.
    """
    hmac_key = require_key(hmac_key)
    _check_text("business_key", business_key, _KEY, "1-200 printable ASCII characters without spaces")
    _check_text("kind", kind, _KIND, "a lower-case identifier of at most 40 characters")
    if not isinstance(description, str) or len(description) > MAX_DESCRIPTION:
        raise InvalidPosting(f"description must be a string of at most {MAX_DESCRIPTION} characters")
    if reference is not None and (not isinstance(reference, str) or not 0 < len(reference) <= MAX_REFERENCE):
        raise InvalidPosting(f"reference must be None or 1-{MAX_REFERENCE} characters")
    checked = validate_legs(legs)

    transaction_id = new_id("ltxn")
    inner, outer = key_pads(hmac_key)
    params = {
        "merchant_id": scope.merchant_id,
        "livemode": scope.livemode,
        "transaction_id": transaction_id,
        "business_key": business_key,
        "kind": kind,
        "description": description,
        "reference": reference,
        "entry_ids": _entry_ids(len(checked)),
        "codes": [c.spec.code for c in checked],
        "directions": [c.leg.direction for c in checked],
        "amounts": [c.leg.amount for c in checked],
        "currencies": [c.currency for c in checked],
        # Ids for accounts opened by this posting; the function ignores those of accounts that exist.
        "account_ids": [new_id("lacc") for _ in checked],
        # A new account takes its kind and overdraft rule from its type's row in ledger_account_types.
        "account_types": [c.spec.type.name for c in checked],
        "subjects": [c.spec.subject for c in checked],
        "mac_inner": inner,
        "mac_outer": outer,
    }
    if commit:
        row = _post_and_commit(session, params, business_key)
    else:
        try:
            row = session.execute(_POST, params).one()
        except DBAPIError as exc:
            exc.hide_parameters = True  # the parameters hold the HMAC key's pads: keep them out of logs
            raise
        if row.outcome == "insufficient_balance":
            raise _insufficient(row.account_code, row.balance_after)
        if row.outcome == "conflict":
            raise _conflict(business_key, row.transaction_id)
    if row.outcome == "replayed":
        return scope.get(session, JournalTransaction, row.transaction_id)

    transaction = JournalTransaction(
        id=transaction_id, merchant_id=scope.merchant_id, livemode=scope.livemode, business_key=business_key,
        kind=kind, description=description, reference=reference, posted_at=row.posted_at)
    _expire_accounts(session, scope, {c.spec.code for c in checked})
    # The function inserted the row; let the ORM see it without reading it back (no extra round trip
    # while the account locks are held).
    make_transient_to_detached(transaction)
    session.add(transaction)
    return transaction


def _insufficient(account_code: str, balance_after: int) -> InsufficientBalance:
    currency = parse_account_code(account_code).currency
    return InsufficientBalance(
        f"{account_code} may not go negative: this posting would leave it at {format_money(balance_after, currency)}",
        account_code=account_code, balance_after=balance_after)


def _conflict(business_key: str, existing_id: str) -> BusinessKeyConflict:
    return BusinessKeyConflict(
        f"business key {business_key!r} was already posted (transaction {existing_id}) with another kind or other legs",
        business_key=business_key, existing_transaction_id=existing_id)


def _post_and_commit(session: Session, params: dict, business_key: str):
    """Call ledger_post in strict mode and COMMIT in the same network flight (a psycopg pipeline).

    The server runs the COMMIT right after the function, so the account locks are released without
    waiting for this process to read the result and send COMMIT (a round trip, and with many threads a
    wait for the GIL). A refusal raises inside the function, which turns the COMMIT into a rollback of
    the whole transaction.
    """
    session.flush()
    raw = session.connection().connection.driver_connection  # the psycopg connection under the session
    try:
        with raw.pipeline():
            cursor = raw.cursor(row_factory=namedtuple_row)
            cursor.execute(_POST_STRICT_PSYCOPG, params)
            raw.commit()
        row = cursor.fetchone()
    except psycopg.Error as exc:
        session.rollback()
        if exc.sqlstate == INSUFFICIENT_BALANCE:
            raise _insufficient(exc.diag.message_detail, int(exc.diag.message_hint)) from None
        if exc.sqlstate == BUSINESS_KEY_CONFLICT:
            raise _conflict(business_key, exc.diag.message_detail) from None
        # As SQLAlchemy would have wrapped it (OperationalError, IntegrityError, ...), parameters hidden.
        raise DBAPIError.instance(_POST_STRICT_PSYCOPG, None, exc, psycopg.Error, hide_parameters=True) from exc
    if raw.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        raw.commit()  # never expected; a commit that did not happen must not pass silently
    session.commit()  # the connection is idle: this only closes the Session's transaction (psycopg sends nothing)
    return row


def _expire_accounts(session: Session, scope: Scope, codes: set[str]) -> None:
    """Account rows this session loaded before the posting are stale now: reload them on next access."""
    for obj in list(session.identity_map.values()):
        if isinstance(obj, LedgerAccount):
            loaded = inspect(obj).dict  # what is loaded: reading attributes could emit a query
            if (loaded.get("code") in codes and loaded.get("merchant_id") == scope.merchant_id
                    and loaded.get("livemode") == scope.livemode):
                session.expire(obj)
