"""The ledger's MACs, byte for byte: each journal transaction's seal and each entry's link in its account's chain.

The database function ``ledger_post`` computes them while it holds the account locks (so that a posting
is one round trip); ``verify`` recomputes them here in Python. Every message is

    <prefix> + for each field: b"|" + <length of the field in UTF-8 bytes> + b":" + field

(a NULL field, which only a transaction's reference can be, as b"|-"), keyed HMAC-SHA256. Length prefixes
make the encoding unambiguous whatever a business key or a description contains.

* A transaction's seal (``ledger_transactions.hmac``, prefix TRANSACTION_PREFIX) covers every column of
  the transaction: TRANSACTION_FIELDS.
* An entry's hmac (prefix ENTRY_PREFIX) covers the entry's columns, its transaction's seal and the
  previous entry's hmac on the same account (hex, empty for an account's first entry): ENTRY_FIELDS, the
  transaction's part first (the database builds that part once per posting). The previous hmac links the
  chain: altering, removing or reordering an entry breaks every later link of its account, and
  recomputing them needs the key. The seal inside the entries means that removing a transaction's seal
  breaks its entries.

Entries of transactions posted before migration 0015 have no seal to include: they were written with
LEGACY_ENTRY_PREFIX over LEGACY_ENTRY_FIELDS (the business key but not the kind, description or reference)
and are verified that way. A seal cannot be removed to get a sealed transaction's entries checked the
legacy way: an HMAC computed over one message does not match another.
"""
import hashlib
import hmac as hmac_module
from datetime import datetime, timedelta, timezone
from functools import lru_cache

from app.ledger.errors import LedgerConfigurationError

TRANSACTION_PREFIX = b"kassa-ledger-transaction-v1"
TRANSACTION_FIELDS = (
    "transaction_id", "merchant_id", "mode", "business_key", "kind", "description", "reference", "posted_at_us",
)
ENTRY_PREFIX = b"kassa-ledger-v2"
ENTRY_FIELDS = (
    "transaction_id", "transaction_hmac", "merchant_id", "mode", "posted_at_us",
    "entry_id", "account_id", "direction", "amount", "currency", "balance_after", "version_after",
    "previous_hmac",
)
LEGACY_ENTRY_PREFIX = b"kassa-ledger-v1"
LEGACY_ENTRY_FIELDS = (
    "transaction_id", "business_key", "merchant_id", "mode", "posted_at_us",
    "entry_id", "account_id", "direction", "amount", "currency", "balance_after", "version_after",
    "previous_hmac",
)
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_BLOCK_SIZE = 64  # SHA-256's block size: HMAC pads the key to it (RFC 2104)


def require_key(hmac_key: bytes) -> bytes:
    """The key as bytes, or LedgerConfigurationError when it is missing or not bytes."""
    if not isinstance(hmac_key, (bytes, bytearray)) or not hmac_key:
        raise LedgerConfigurationError("the ledger HMAC key is missing: set LEDGER_HMAC_KEY")
    return bytes(hmac_key)


@lru_cache(maxsize=8)
def key_pads(hmac_key: bytes) -> tuple[bytes, bytes]:
    """HMAC-SHA256's inner and outer padded keys, so the database can compute HMAC with sha256() alone.

    HMAC(K, m) = SHA256(outer || SHA256(inner || m)). PostgreSQL has sha256() built in but no HMAC
    without the pgcrypto extension; handing it the pads (with every call, never stored) avoids that.
    """
    key = hashlib.sha256(hmac_key).digest() if len(hmac_key) > _BLOCK_SIZE else hmac_key
    key = key.ljust(_BLOCK_SIZE, b"\0")
    return bytes(b ^ 0x36 for b in key), bytes(b ^ 0x5C for b in key)


def posted_at_us(posted_at: datetime) -> int:
    """A timestamp as integer microseconds since the epoch (exact, unlike a float)."""
    return (posted_at - _EPOCH) // timedelta(microseconds=1)


def _encode(prefix: bytes, fields) -> bytes:
    out = bytearray(prefix)
    for field in fields:
        if field is None:
            out += b"|-"
        else:
            data = field.encode("utf-8")
            out += b"|" + str(len(data)).encode() + b":" + data
    return bytes(out)


def _mode(livemode: bool) -> str:
    return "live" if livemode else "test"


def transaction_message(*, transaction_id: str, merchant_id: str, livemode: bool, business_key: str, kind: str,
                        description: str, reference: str | None, posted_at: datetime) -> bytes:
    """The bytes a transaction's seal is computed over (see the module docstring)."""
    return _encode(TRANSACTION_PREFIX, (
        transaction_id, merchant_id, _mode(livemode), business_key, kind, description, reference,
        str(posted_at_us(posted_at)),
    ))


def transaction_hmac(hmac_key: bytes, **content) -> bytes:
    """HMAC-SHA256 of a transaction's message (keyword arguments as for ``transaction_message``)."""
    return hmac_module.new(hmac_key, transaction_message(**content), hashlib.sha256).digest()


def message(*, entry_id: str, transaction_id: str, transaction_hmac: bytes | None, business_key: str,
            merchant_id: str, livemode: bool, account_id: str, direction: str, amount: int, currency: str,
            balance_after: int, version_after: int, posted_at: datetime, previous_hmac: bytes | None) -> bytes:
    """The bytes an entry's HMAC is computed over: the legacy message when its transaction has no seal."""
    entry_part = (
        entry_id, account_id, direction, str(amount), currency, str(balance_after), str(version_after),
        previous_hmac.hex() if previous_hmac else "",
    )
    if transaction_hmac is None:
        return _encode(LEGACY_ENTRY_PREFIX, (
            transaction_id, business_key, merchant_id, _mode(livemode), str(posted_at_us(posted_at)), *entry_part))
    return _encode(ENTRY_PREFIX, (
        transaction_id, transaction_hmac.hex(), merchant_id, _mode(livemode), str(posted_at_us(posted_at)),
        *entry_part))


def entry_hmac(hmac_key: bytes, **content) -> bytes:
    """HMAC-SHA256 of an entry's message (keyword arguments as for ``message``)."""
    return hmac_module.new(hmac_key, message(**content), hashlib.sha256).digest()
