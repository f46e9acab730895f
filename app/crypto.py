"""Secrets at rest (webhook secrets, PSP credentials): AES-256-GCM under keys that are not SECRET_KEY.

KASSA_ENCRYPTION_KEYS = "kid1:<base64 32 bytes>,kid2:..."; the first key encrypts, every key decrypts,
so a key is rotated by putting a new one first and re-encrypting (see reencrypt()).
Ciphertext format: "<kid>$<base64(nonce | ciphertext+tag)>".
"""
import base64
import os
from dataclasses import dataclass
from typing import Any, Callable

from cryptography.hazmat.primitives.ciphers.aead import AESGCM


class CryptoError(Exception):
    """Missing or unknown key, or a ciphertext that does not authenticate."""


def parse_keys(spec: str) -> list[tuple[str, bytes]]:
    """Parse the KASSA_ENCRYPTION_KEYS value into (key id, 32-byte key) pairs, newest first."""
    keys = []
    for item in filter(None, (part.strip() for part in spec.split(","))):
        kid, _, encoded = item.partition(":")
        key = base64.b64decode(encoded)
        if not kid or len(key) != 32 or "$" in kid:
            raise CryptoError(f"encryption key {kid!r} must be 'kid:<base64 of 32 bytes>'")
        keys.append((kid, key))
    return keys


class SecretBox:
    """Encrypts and decrypts short secrets with the configured keys."""

    def __init__(self, spec: str):
        self.keys = parse_keys(spec)

    def encrypt(self, plaintext: str, associated_data: str = "") -> str:
        if not self.keys:
            raise CryptoError("KASSA_ENCRYPTION_KEYS is not configured")
        kid, key = self.keys[0]
        nonce = os.urandom(12)  # 96-bit random nonce: GCM's standard size
        sealed = AESGCM(key).encrypt(nonce, plaintext.encode(), associated_data.encode())
        return f"{kid}${base64.b64encode(nonce + sealed).decode()}"

    def decrypt(self, token: str, associated_data: str = "") -> str:
        kid, _, encoded = token.partition("$")
        key = dict(self.keys).get(kid)
        if key is None:
            raise CryptoError(f"no encryption key with id {kid!r}")
        raw = base64.b64decode(encoded)
        try:
            return AESGCM(key).decrypt(raw[:12], raw[12:], associated_data.encode()).decode()
        except Exception as exc:  # cryptography raises InvalidTag
            raise CryptoError("ciphertext does not authenticate") from exc

    def needs_reencrypt(self, token: str) -> bool:
        """True when the token was sealed with a key other than the current one."""
        return bool(self.keys) and token.partition("$")[0] != self.keys[0][0]

    def reencrypt(self, token: str, associated_data: str = "") -> str:
        """Re-seal under the current key (for rotation)."""
        return self.encrypt(self.decrypt(token, associated_data), associated_data)


# --- Rotation: a registry of encrypted columns --------------------------------------------------------------
# Features that store SecretBox ciphertext register their column once, at import of their models module:
#
#     register_encrypted_column(WebhookEndpoint, "secret_encrypted", associated_data=lambda row: row.id)
#
# and `flask secrets rotate` (app/crypto_cli.py) re-seals every registered value under the newest key.
# associated_data must return what the feature passed to encrypt()/decrypt() for that row ("" by default).

@dataclass(frozen=True)
class EncryptedColumn:
    """A model column holding SecretBox tokens, and how to derive each row's associated data."""

    model: Any
    column: str
    associated_data: Callable[[Any], str] | None = None

    @property
    def label(self) -> str:
        return f"{self.model.__tablename__}.{self.column}"


ENCRYPTED_COLUMNS: list[EncryptedColumn] = []

# Rows re-encrypted per transaction: small enough to hold few row locks briefly, large enough to be quick.
ROTATE_BATCH_SIZE = 200


def register_encrypted_column(model: Any, column: str,
                              associated_data: Callable[[Any], str] | None = None) -> EncryptedColumn:
    """Declare that ``model.column`` holds SecretBox tokens (idempotent)."""
    entry = EncryptedColumn(model, column, associated_data)
    for existing in ENCRYPTED_COLUMNS:
        if existing.model is model and existing.column == column:
            return existing
    ENCRYPTED_COLUMNS.append(entry)
    return entry


def rotate_column(session, box: SecretBox, entry: EncryptedColumn, *, batch_size: int = ROTATE_BATCH_SIZE,
                  on_batch: Callable[[], None] | None = None) -> int:
    """Re-encrypt the column's values that are not sealed under ``box``'s newest key; returns how many.

    Works in batches of rows locked FOR UPDATE (a concurrent writer waits for one batch, never for the
    whole run); ``on_batch`` is called after each flushed batch (the CLI commits there). A value that
    does not decrypt raises CryptoError naming the row, so a missing old key is never silently skipped.
    Cross-merchant on purpose: an operator command, not a merchant-scoped read.
    """
    if not box.keys:
        raise CryptoError("KASSA_ENCRYPTION_KEYS is not configured")
    from sqlalchemy import func, select

    current_kid = box.keys[0][0]
    column = getattr(entry.model, entry.column)
    primary_key = list(entry.model.__mapper__.primary_key)
    statement = (
        select(entry.model)
        .where(column.is_not(None), func.split_part(column, "$", 1) != current_kid)
        .order_by(*primary_key)
        .limit(batch_size)
        .with_for_update()
    )
    total = 0
    while True:
        rows = list(session.scalars(statement))
        if not rows:
            return total
        for row in rows:
            aad = entry.associated_data(row) if entry.associated_data else ""
            token = getattr(row, entry.column)
            try:
                setattr(row, entry.column, box.reencrypt(token, aad))
            except CryptoError as exc:
                ids = ", ".join(str(getattr(row, pk.key)) for pk in primary_key)
                raise CryptoError(f"{entry.label} of row {ids}: {exc}") from exc
        session.flush()
        total += len(rows)
        if on_batch:
            on_batch()


def rotate_all(session, box: SecretBox, *, batch_size: int = ROTATE_BATCH_SIZE,
               on_batch: Callable[[], None] | None = None) -> dict[str, int]:
    """rotate_column for every registered column: {"table.column": rows re-encrypted}."""
    return {entry.label: rotate_column(session, box, entry, batch_size=batch_size, on_batch=on_batch)
            for entry in ENCRYPTED_COLUMNS}
