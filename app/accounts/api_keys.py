"""API keys: model and service (no Flask).

Kinds and formats
    secret       ``sk_test_<32 base62>`` / ``sk_live_<32 base62>``: full API access for the merchant's servers.
    publishable  ``pk_test_<32 base62>`` / ``pk_live_<32 base62>``: only the few browser-safe calls.

32 base62 characters carry about 190 bits from ``secrets``: nobody guesses one, so a single keyed hash
(HMAC-SHA256 under ``API_KEY_HMAC_KEY``) is the right way to store them. A slow password hash (argon2)
buys nothing against a brute force that is already impossible and would cost tens of ms per API call.
The HMAC key lives in the environment, not the database, so a stolen database dump alone cannot even
confirm a guessed key.

Storage
    * secret keys: only ``key_hash`` plus a display ``prefix`` (``sk_test_`` + 4 characters) and
      ``last4``. The full secret exists once, in the return value of create_key()/roll_key(); a CHECK
      constraint makes the database refuse a secret key row that carries clear text.
    * publishable keys: ``key_hash`` (one lookup path for both kinds) *and* the clear value in
      ``publishable_token``. They are public by design (every checkout page ships one to the browser),
      so hiding them protects nothing, while showing them in the dashboard at any time is what
      developers need to configure a front end.

Lifecycle
    active -> (roll) expiring until ``expires_at`` -> expired;  any -> (revoke) revoked.
    Rolling creates a new key of the same kind and mode and gives the old one a grace period
    (``GRACE_PERIODS``: now, 1 h, 24 h, 7 days) so that deployments can switch over without downtime.

``last_used_at`` is not written here in the request's transaction: see ``touch_last_used`` and
app/api/auth.py (at most once a minute per key, on its own short connection after the response).
"""
import hashlib
import hmac
import secrets
import string
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import CheckConstraint, Connection, ForeignKey, Index, String, bindparam, select, text, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from app.accounts.audit import audit
from app.ids import new_id
from app.models_base import Base, MerchantOwned, utcnow
from app.scoping import Scope

SECRET = "secret"
PUBLISHABLE = "publishable"
KINDS = (SECRET, PUBLISHABLE)
_KIND_PREFIX = {SECRET: "sk", PUBLISHABLE: "pk"}

_ALPHABET = string.ascii_letters + string.digits
# 32 base62 characters = 32 * log2(62) ~ 190 bits of entropy: beyond any brute force, short enough to paste.
RANDOM_LENGTH = 32
# Characters of the random part kept for display ("sk_test_AbCd...wxyz"); 4 + 4 of 32 leaves ~140 bits unknown.
VISIBLE_PREFIX_CHARS = 4

GRACE_PERIODS: dict[str, timedelta] = {
    "now": timedelta(0),
    "1h": timedelta(hours=1),
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
}
GRACE_LABELS = {"now": "Immediately", "1h": "In 1 hour", "24h": "In 24 hours", "7d": "In 7 days"}

# Audit actions written by this module.
AUDIT_CREATED = "api_key.created"
AUDIT_ROLLED = "api_key.rolled"
AUDIT_REVOKED = "api_key.revoked"


class ApiKey(MerchantOwned, Base):
    """An API key of one merchant in one mode; the secret itself is never stored."""

    __tablename__ = "api_keys"
    __table_args__ = (
        CheckConstraint("kind IN ('secret', 'publishable')", name="kind"),
        # The database itself refuses a secret key stored in clear.
        CheckConstraint("kind = 'publishable' OR publishable_token IS NULL", name="secret_never_in_clear"),
        Index("ix_api_keys_merchant_mode_kind", "merchant_id", "livemode", "kind"),
    )

    id: Mapped[str] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str | None] = mapped_column(String(100))
    # hex HMAC-SHA256(API_KEY_HMAC_KEY, full key): the lookup path for authentication.
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(20))   # e.g. "sk_test_AbCd"
    last4: Mapped[str] = mapped_column(String(4))
    publishable_token: Mapped[str | None] = mapped_column(String(64))  # publishable keys only (public)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=text("now()"))
    created_by_user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id"))
    last_used_at: Mapped[datetime | None]
    expires_at: Mapped[datetime | None]   # set by roll_key: the end of the grace period
    revoked_at: Mapped[datetime | None]
    rolled_from_id: Mapped[str | None] = mapped_column(ForeignKey("api_keys.id"))
    replaced_by_id: Mapped[str | None] = mapped_column(ForeignKey("api_keys.id"))

    @property
    def mode(self) -> str:
        return "live" if self.livemode else "test"

    @property
    def masked(self) -> str:
        """What the dashboard shows: the full publishable key, or "sk_test_AbCd…wxyz" for a secret."""
        if self.publishable_token:
            return self.publishable_token
        return f"{self.prefix}…{self.last4}"

    def status(self, now: datetime | None = None) -> str:
        """"active", "expiring" (rolled, in its grace period), "expired" or "revoked"."""
        now = now or utcnow()
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None:
            return "expired" if self.expires_at <= now else "expiring"
        return "active"

    def usable(self, now: datetime | None = None) -> bool:
        return self.status(now) in ("active", "expiring")


@dataclass(frozen=True)
class NewKey:
    """A freshly minted key: the row and the full key, which exists only here and is shown once."""

    row: ApiKey
    plaintext: str


@dataclass(frozen=True)
class AuditContext:
    """Who acts and from where, for the audit log (the view fills it; services do not know Flask)."""

    actor_user_id: str | None = None
    actor_label: str | None = None
    ip: str | None = None
    user_agent: str | None = None
    request_id: str | None = None


class ApiKeyError(Exception):
    """Base class of API key errors."""


class KeyNotFound(ApiKeyError):
    """No such key in this merchant's scope."""


class KeyNotActive(ApiKeyError):
    """The key is revoked, expired or already rolled, so the operation does not apply."""


class AuthenticationFailed(ApiKeyError):
    """A presented key does not authenticate; ``code`` is the API error code."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def hash_key(plaintext: str, hmac_key: bytes) -> str:
    """Keyed hash (hex HMAC-SHA256) of a full API key."""
    if not hmac_key:
        raise ApiKeyError("API_KEY_HMAC_KEY is not configured")
    return hmac.new(hmac_key, plaintext.encode(), hashlib.sha256).hexdigest()


def parse_key(plaintext: str) -> tuple[str, bool] | None:
    """(kind, livemode) from a key's syntax, or None when it is not shaped like a Kassa key."""
    parts = plaintext.split("_")
    if len(parts) != 3 or parts[1] not in ("test", "live"):
        return None
    kind = {"sk": SECRET, "pk": PUBLISHABLE}.get(parts[0])
    random_part = parts[2]
    if kind is None or len(random_part) != RANDOM_LENGTH or not all(c in _ALPHABET for c in random_part):
        return None
    return kind, parts[1] == "live"


def _mint(kind: str, livemode: bool) -> str:
    random_part = "".join(secrets.choice(_ALPHABET) for _ in range(RANDOM_LENGTH))
    return f"{_KIND_PREFIX[kind]}_{'live' if livemode else 'test'}_{random_part}"


def _new_row(scope: Scope, kind: str, hmac_key: bytes, *, name: str | None, created_by: str | None,
             now: datetime, rolled_from_id: str | None = None) -> NewKey:
    plaintext = _mint(kind, scope.livemode)
    prefix_len = len(plaintext) - RANDOM_LENGTH + VISIBLE_PREFIX_CHARS
    row = scope.new(
        ApiKey, id=new_id("key"), kind=kind, name=name, key_hash=hash_key(plaintext, hmac_key),
        prefix=plaintext[:prefix_len], last4=plaintext[-4:],
        publishable_token=plaintext if kind == PUBLISHABLE else None,
        created_at=now, created_by_user_id=created_by, rolled_from_id=rolled_from_id,
    )
    return NewKey(row=row, plaintext=plaintext)


def _audit(session: Session, action: str, key: ApiKey, ctx: AuditContext, **details) -> None:
    audit(session, action, merchant_id=key.merchant_id, livemode=key.livemode,
          actor_user_id=ctx.actor_user_id, actor_label=ctx.actor_label, target=key.id, ip=ctx.ip,
          user_agent=ctx.user_agent, request_id=ctx.request_id,
          details={"kind": key.kind, "display": key.masked, **details})


def create_key(session: Session, scope: Scope, kind: str, *, hmac_key: bytes, name: str | None = None,
               ctx: AuditContext = AuditContext(), now: datetime | None = None) -> NewKey:
    """Mint a key for the scope's merchant and mode; audited. The plaintext is returned once, never stored."""
    if kind not in KINDS:
        raise ApiKeyError(f"unknown key kind {kind!r}")
    now = now or utcnow()
    new = _new_row(scope, kind, hmac_key, name=name, created_by=ctx.actor_user_id, now=now)
    session.add(new.row)
    session.flush()
    _audit(session, AUDIT_CREATED, new.row, ctx)
    return new


def list_keys(session: Session, scope: Scope, *, include_inactive: bool = True) -> list[ApiKey]:
    """The scope's keys, newest first."""
    statement = scope.select(ApiKey).order_by(ApiKey.created_at.desc(), ApiKey.id.desc())
    if not include_inactive:
        statement = statement.where(ApiKey.revoked_at.is_(None), ApiKey.expires_at.is_(None))
    return list(session.scalars(statement))


def get_key(session: Session, scope: Scope, key_id: str, *, for_update: bool = False) -> ApiKey:
    """One key of the scope, or KeyNotFound (also for another merchant's or mode's key)."""
    row = scope.get(session, ApiKey, key_id, for_update=for_update)
    if row is None:
        raise KeyNotFound(key_id)
    return row


def roll_key(session: Session, scope: Scope, key_id: str, grace: str | timedelta, *, hmac_key: bytes,
             ctx: AuditContext = AuditContext(), now: datetime | None = None) -> NewKey:
    """Replace an active key by a new one; the old one keeps working for the grace period. Audited.

    The row is locked so that two concurrent rolls cannot both replace the same key.
    """
    period = GRACE_PERIODS[grace] if isinstance(grace, str) else grace
    if period < timedelta(0):
        raise ApiKeyError("grace period cannot be negative")
    now = now or utcnow()
    old = get_key(session, scope, key_id, for_update=True)
    if old.status(now) != "active":
        raise KeyNotActive(f"key {key_id} is {old.status(now)} and cannot be rolled")
    new = _new_row(scope, old.kind, hmac_key, name=old.name, created_by=ctx.actor_user_id, now=now,
                   rolled_from_id=old.id)
    session.add(new.row)
    session.flush()
    old.expires_at = now + period
    old.replaced_by_id = new.row.id
    session.flush()
    _audit(session, AUDIT_ROLLED, old, ctx, new_key_id=new.row.id, expires_at=old.expires_at.isoformat(),
           grace_seconds=int(period.total_seconds()))
    return new


def revoke_key(session: Session, scope: Scope, key_id: str, *, ctx: AuditContext = AuditContext(),
               now: datetime | None = None) -> ApiKey:
    """Revoke a key at once (also a rolled key still in its grace period). Audited."""
    now = now or utcnow()
    row = get_key(session, scope, key_id, for_update=True)
    if row.status(now) in ("revoked", "expired"):
        raise KeyNotActive(f"key {key_id} is already {row.status(now)}")
    row.revoked_at = now
    session.flush()
    _audit(session, AUDIT_REVOKED, row, ctx)
    return row


# Built once (every API request runs it): the key's columns by keyed hash, and their attribute names.
_KEY_BY_HASH = select(ApiKey.__table__).where(ApiKey.__table__.c.key_hash == bindparam("key_hash"))
_KEY_ATTRIBUTES = [(ApiKey.__mapper__.get_property_by_column(column).key, column.name)
                   for column in ApiKey.__table__.columns]


def authenticate(connection: Connection | Session, presented: str, *, hmac_key: bytes,
                 now: datetime | None = None) -> ApiKey:
    """The usable key matching a presented plaintext, else AuthenticationFailed with an API error code.

    The lookup is by keyed hash on a unique index, so no secret is compared byte by byte and the
    response time does not depend on how much of a guess was right. One statement on the caller's
    connection (API requests use an autocommit one: no transaction to open and end for a read); the
    ApiKey returned belongs to no session.
    """
    if parse_key(presented) is None:
        raise AuthenticationFailed("api_key_invalid", "Invalid API key provided.")
    found = connection.execute(_KEY_BY_HASH, {"key_hash": hash_key(presented, hmac_key)}).one_or_none()
    if found is None:
        raise AuthenticationFailed("api_key_invalid", "Invalid API key provided.")
    row = ApiKey(**{attribute: found._mapping[column] for attribute, column in _KEY_ATTRIBUTES})
    status = row.status(now)
    if status == "revoked":
        raise AuthenticationFailed("api_key_invalid", "This API key has been revoked.")
    if status == "expired":
        raise AuthenticationFailed("api_key_expired", "This API key has expired (it was rolled); use its replacement.")
    return row


def touch_last_used(connection: Connection, key_id: str, used_at: datetime) -> None:
    """Record a use on the caller's own connection (not a request's session); never moves the time back."""
    connection.execute(
        update(ApiKey)
        .where(ApiKey.id == key_id)
        .where((ApiKey.last_used_at.is_(None)) | (ApiKey.last_used_at < used_at))
        .values(last_used_at=used_at)
    )
