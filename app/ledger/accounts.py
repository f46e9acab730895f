"""Account codes: what an account is, read from its code. Accounts open on first use from the code alone.

The rules of a type (its kind and whether its accounts may go negative) live in the database table
``ledger_account_types`` (migrations/versions/0015_ledger_account_rules.py): every account row refers to
its type's row with its own kind and overdraft flag (a composite foreign key), so no writer, the
application role included, can open a ``cash`` account that may go negative. ACCOUNT_TYPES below says the
same thing in Python (tests/ledger/test_db_rules.py compares them), for the friendly checks before
posting and for verify, which takes its rules from the code rather than from the database it checks.

Which accounts may go negative, and why ("negative" is in the account's normal direction: an asset's
balance is debits minus credits, a liability's or revenue's credits minus debits):

* ``psp_receivable:<connector>:<CUR>`` (asset) may: the PSP reports refunds, disputes and settlements in
  its own order, so a refund or a dispute debit can be booked before the capture it belongs to is settled,
  or after a settlement that netted it. Below zero means we owe the PSP, which nets it from the next
  settlement.
* ``seller_payable:<seller>:<CUR>`` (liability) may: a seller refunded after a payout owes the merchant,
  recovered from later payouts (ARCHITECTURE.md).
* ``psp_fees:<CUR>`` (expense) may: PSP fees and their rebates (fees returned on refunds) arrive in PSP
  reports in any order.
* ``merchant_revenue:<CUR>`` (revenue) may not: the platform fee only shrinks by reversing fees that an
  earlier capture in the same book credited; below zero is an over-reversal bug.
* ``dispute_fees:<CUR>`` (expense) may not: a dispute fee is charged when the dispute opens and can only
  be returned (dispute won) after that.
* ``cash:<CUR>`` (asset) may not: it is money actually received; a payout larger than what was settled
  would pay out money that does not exist.
* ``psp_clearing:<connector>:<CUR>`` (asset: reported settled by the PSP, not yet in the bank) may: a
  settlement batch whose refunds, disputes and fees exceed its captures is a net debit that the PSP
  collects from the bank, and refund and dispute lines are booked when they happened, possibly before
  the captures of the same batch; until the bank movement is booked, below zero means we owe the PSP.
* ``payouts_in_transit:<CUR>`` (liability: paid out of a seller's payable, not yet left the bank; credited
  when a payout is created, debited when it is paid) may not: a payout is paid only after it was created,
  and a failed one is reversed paid-first; below zero would be a payout paid twice or never created.
* ``suspense:<connector>:<CUR>`` (liability, in a platform book per mode: what belongs to no merchant, a
  PSP line that matches nothing or a deposit that differs from its batch, per PSP) may: a deposit can be
  short of its batch as well as over it, and both wait there until an operator moves them.
"""
import re
from dataclasses import dataclass

from app.ledger.errors import UnknownAccountCode
from app.money import CURRENCY_EXPONENTS

KINDS = ("asset", "liability", "equity", "revenue", "expense")
# Assets and expenses grow with debits; liabilities, equity and revenue with credits.
NORMAL_BALANCE = {"asset": "debit", "expense": "debit", "liability": "credit", "equity": "credit",
                  "revenue": "credit"}

# A connector name or a seller id inside a code: no ':' (the separator), nothing a person would misread.
_SUBJECT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$")


@dataclass(frozen=True)
class AccountType:
    """One family of accounts: the code's first part, the subject it is per (if any), kind and overdraft rule."""

    name: str
    kind: str
    allow_negative: bool
    subject: str | None = None  # "connector" or "seller": the code's middle part

    @property
    def normal_balance(self) -> str:
        return NORMAL_BALANCE[self.kind]


ACCOUNT_TYPES: dict[str, AccountType] = {
    t.name: t
    for t in (
        AccountType("psp_receivable", "asset", allow_negative=True, subject="connector"),
        AccountType("seller_payable", "liability", allow_negative=True, subject="seller"),
        AccountType("psp_fees", "expense", allow_negative=True),
        AccountType("merchant_revenue", "revenue", allow_negative=False),
        AccountType("dispute_fees", "expense", allow_negative=False),
        AccountType("cash", "asset", allow_negative=False),
        # Opened by the reconciliation and payout issues; their rows are already in ledger_account_types.
        AccountType("psp_clearing", "asset", allow_negative=True, subject="connector"),
        AccountType("payouts_in_transit", "liability", allow_negative=False),
        AccountType("suspense", "liability", allow_negative=True, subject="connector"),
    )
}


@dataclass(frozen=True)
class AccountSpec:
    """What an account code says: its type, subject (connector or seller id) and currency."""

    code: str
    type: AccountType
    subject: str | None
    currency: str

    @property
    def kind(self) -> str:
        return self.type.kind

    @property
    def normal_balance(self) -> str:
        return self.type.normal_balance

    @property
    def allow_negative(self) -> bool:
        return self.type.allow_negative


def parse_account_code(code: str) -> AccountSpec:
    """The AccountSpec of a code such as ``seller_payable:sel_123:EUR``, or UnknownAccountCode."""
    if not isinstance(code, str):
        raise UnknownAccountCode(f"account code must be a string, got {code!r}")
    parts = code.split(":")
    account_type = ACCOUNT_TYPES.get(parts[0])
    if account_type is None:
        raise UnknownAccountCode(f"unknown account code {code!r}: it must start with one of "
                                 f"{', '.join(sorted(ACCOUNT_TYPES))}")
    expected = 3 if account_type.subject else 2
    if len(parts) != expected:
        middle = f"<{account_type.subject}>:" if account_type.subject else ""
        shape = f"{account_type.name}:{middle}<CUR>"
        raise UnknownAccountCode(f"account code {code!r} must look like {shape}")
    currency = parts[-1]
    # Exactly the upper-case ISO code, so that "usd" and "USD" can never open two accounts.
    if currency not in CURRENCY_EXPONENTS:
        raise UnknownAccountCode(f"account code {code!r} must end in a supported upper-case ISO 4217 code")
    subject = parts[1] if account_type.subject else None
    if subject is not None and not _SUBJECT.match(subject):
        raise UnknownAccountCode(f"account code {code!r}: the {account_type.subject} part must be 1-100 "
                                 "letters, digits, '_', '.' or '-'")
    return AccountSpec(code=code, type=account_type, subject=subject, currency=currency)


def psp_receivable(connector: str, currency: str) -> str:
    """Code of what a PSP owes the book in a currency."""
    return f"psp_receivable:{connector}:{currency}"


def seller_payable(seller_id: str, currency: str) -> str:
    """Code of what the book owes a seller in a currency."""
    return f"seller_payable:{seller_id}:{currency}"


def merchant_revenue(currency: str) -> str:
    """Code of the marketplace's own commission (the platform fee)."""
    return f"merchant_revenue:{currency}"


def psp_fees(currency: str) -> str:
    """Code of the fees the PSPs charge."""
    return f"psp_fees:{currency}"


def dispute_fees(currency: str) -> str:
    """Code of the fees charged for disputes."""
    return f"dispute_fees:{currency}"


def cash(currency: str) -> str:
    """Code of the money settled into the bank."""
    return f"cash:{currency}"


def psp_clearing(connector: str, currency: str) -> str:
    """Code of what a PSP reported settled and has not yet paid into the bank."""
    return f"psp_clearing:{connector}:{currency}"


def payouts_in_transit(currency: str) -> str:
    """Code of the payouts created and not yet paid out of the bank."""
    return f"payouts_in_transit:{currency}"


def suspense(connector: str, currency: str) -> str:
    """Code of what a PSP's reports or deposits hold that belongs to no merchant yet (a platform book's)."""
    return f"suspense:{connector}:{currency}"
