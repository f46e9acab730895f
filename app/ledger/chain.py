"""The per-account hash chain: what an entry's HMAC covers, byte for byte.

The database function ``ledger_post`` computes each entry's HMAC while it holds the account's lock (so
that a posting is one round trip); ``verify`` recomputes it here in Python. Both build the same message:

    b"kassa-ledger-v1" + for each field: b"|" + <length of the field in UTF-8 bytes> + b":" + field

over the fields of MESSAGE_FIELDS, in that order (the transaction's first: the database builds that part
once per posting). Length prefixes make the encoding unambiguous whatever
a business key contains. The previous entry's hmac (hex, empty for an account's first entry) links the
chain: altering, removing or reordering an entry breaks every later link of its account, and recomputing
them needs the key.
"""
import hashlib
import hmac as hmac_module
from datetime import datetime, timedelta, timezone
from functools import lru_cache

from app.ledger.errors import LedgerConfigurationError

MESSAGE_PREFIX = b"kassa-ledger-v1"
MESSAGE_FIELDS = (
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


def message(*, entry_id: str, transaction_id: str, business_key: str, merchant_id: str, livemode: bool,
            account_id: str, direction: str, amount: int, currency: str, balance_after: int,
            version_after: int, posted_at: datetime, previous_hmac: bytes | None) -> bytes:
    """The bytes an entry's HMAC is computed over (see the module docstring)."""
    fields = (
        transaction_id, business_key, merchant_id, "live" if livemode else "test", str(posted_at_us(posted_at)),
        entry_id, account_id, direction, str(amount), currency, str(balance_after), str(version_after),
        previous_hmac.hex() if previous_hmac else "",
    )
    out = bytearray(MESSAGE_PREFIX)
    for field in fields:
        data = field.encode("utf-8")
        out += b"|" + str(len(data)).encode() + b":" + data
    return bytes(out)


def entry_hmac(hmac_key: bytes, **content) -> bytes:
    """HMAC-SHA256 of an entry's message (keyword arguments as for ``message``)."""
    return hmac_module.new(hmac_key, message(**content), hashlib.sha256).digest()
