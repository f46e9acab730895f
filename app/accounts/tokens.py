"""Secret tokens for links and sessions: random, shown once, stored only as a hash."""
import hashlib
import secrets

# 32 random bytes (256 bits): unguessable, so a fast hash is enough to store them (argon2 is for passwords,
# which are low-entropy; a keyed or slow hash adds nothing to a 256-bit random secret).
TOKEN_BYTES = 32


def new_token() -> str:
    """A fresh URL-safe secret (43 characters)."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def hash_token(token: str) -> str:
    """The SHA-256 hex digest under which a token is stored and looked up."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def normalize_email(email: str) -> str:
    """Emails are compared and stored lower-cased and trimmed."""
    return (email or "").strip().lower()
