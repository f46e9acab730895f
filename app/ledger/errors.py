"""The ledger's exceptions: every refusal of a posting is a LedgerError subclass with a readable message.

Python validates a posting before it touches the database and raises the friendly errors below; the
database enforces the same rules again (migrations/versions/0005_ledger.py), so a bug or a raw-SQL write
that slips past Python fails loudly instead of corrupting the books.
"""


class LedgerError(Exception):
    """Base class: the ledger refused to do what was asked."""


class InvalidPosting(LedgerError):
    """The posting is malformed (no legs, a non-positive or non-integer amount, a bad direction, key or kind)."""


class UnknownAccountCode(InvalidPosting):
    """An account code does not follow one of the known patterns (see app/ledger/accounts.py)."""


class CurrencyMismatch(InvalidPosting):
    """A leg's currency differs from the currency its account code names."""


class UnbalancedTransaction(InvalidPosting):
    """Debits and credits of the posting differ in at least one currency."""

    def __init__(self, message: str, *, currency: str, debits: int, credits: int):
        super().__init__(message)
        self.currency = currency
        self.debits = debits
        self.credits = credits


class BusinessKeyConflict(LedgerError):
    """The business key was already posted in this book with different legs or another kind."""

    def __init__(self, message: str, *, business_key: str, existing_transaction_id: str):
        super().__init__(message)
        self.business_key = business_key
        self.existing_transaction_id = existing_transaction_id


class InsufficientBalance(LedgerError):
    """The posting would take an account that forbids negative balances below zero; nothing was written."""

    def __init__(self, message: str, *, account_code: str, balance_after: int):
        super().__init__(message)
        self.account_code = account_code
        self.balance_after = balance_after


class LedgerConfigurationError(LedgerError):
    """The ledger cannot work as configured (e.g. LEDGER_HMAC_KEY is missing)."""
