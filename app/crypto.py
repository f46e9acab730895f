"""Secrets at rest (webhook secrets, PSP credentials): AES-256-GCM under keys that are not SECRET_KEY.

KASSA_ENCRYPTION_KEYS = "kid1:<base64 32 bytes>,kid2:..."; the first key encrypts, every key decrypts,
so a key is rotated by putting a new one first and re-encrypting (see reencrypt()).
Ciphertext format: "<kid>$<base64(nonce | ciphertext+tag)>".
"""
import base64
import os

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
