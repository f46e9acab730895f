"""Server-side login sessions: the browser's cookie holds only a random token; this table says who it is.

A login creates a new row (a fresh session id, so a session fixed before login is worthless), logout sets
revoked_at (a copied cookie is dead afterwards), and a password change or reset, or a second-factor reset,
revokes the user's other sessions. A row also records when this browser passed the second factor and when
its user last proved who they are (re-authentication before sensitive actions, app/dashboard/reauth.py).
Never imports Flask.
"""
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ForeignKey, String, select, text, update
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from ua_parser import parse as parse_user_agent

from app import pan
from app.accounts.models import User
from app.accounts.tokens import hash_token, new_token
from app.ids import new_id
from app.models_base import Base, utcnow

# Defaults of SESSION_IDLE_TIMEOUT_SECONDS and SESSION_MAX_AGE_SECONDS: OWASP ASVS 4 V3.3.2 at level 2
# ("12 hours or 30 minutes of inactivity"). A dashboard that moves money left alone for half an hour asks
# for the password again, and however busy, a session (a stolen cookie too) ends after 12 hours.
IDLE_TIMEOUT = timedelta(minutes=30)
ABSOLUTE_LIFETIME = timedelta(hours=12)
# last_seen_at is written at most once a minute: a write per page view would be wasted load, and a minute
# is precise enough for the idle timeout and for the "last used" column of the sessions page.
TOUCH_INTERVAL = timedelta(minutes=1)
# How long a form kept across a re-authentication waits for its user: the confirmation takes seconds;
# a form left longer than this is stale, and typing it again is safer than acting on it.
PENDING_FORM_LIFETIME = timedelta(minutes=15)


class UserSession(Base):
    """One signed-in browser."""

    __tablename__ = "user_sessions"

    id: Mapped[str] = mapped_column(primary_key=True)
    # SHA-256 of the cookie's token: a read of this table does not yield usable cookies.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=text("now()"))
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=text("now()"))
    revoked_at: Mapped[datetime | None]
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(400))
    # When this browser passed the second factor (NULL: the password only, app/accounts/second_factor.py).
    second_factor_passed_at: Mapped[datetime | None]
    # When the user last proved who they are in this session: at login, or on the confirmation page.
    reauthenticated_at: Mapped[datetime | None]
    # A form posted while re-authentication was due, kept to fill the form in again afterwards:
    # {"path": ..., "fields": [[name, value], ...], "saved_at": ISO time}. Never a password, code or card number.
    pending_form: Mapped[dict[str, Any] | None]

    user: Mapped[User] = relationship()

    def is_active_at(self, now: datetime, idle_timeout: timedelta = IDLE_TIMEOUT,
                     max_age: timedelta = ABSOLUTE_LIFETIME) -> bool:
        """Not revoked, not idle too long, not too old."""
        return (self.revoked_at is None and now - self.last_seen_at < idle_timeout
                and now - self.created_at < max_age)

    def reauthenticated_within(self, window: timedelta, now: datetime) -> bool:
        """Whether the user proved who they are in this session less than ``window`` ago."""
        return self.reauthenticated_at is not None and now - self.reauthenticated_at < window


def start_session(session: Session, user: User, *, ip: str | None = None, user_agent: str | None = None,
                  now: datetime | None = None, second_factor_passed: bool = False) -> tuple[UserSession, str]:
    """Create a session for a user who just gave their password; returns the row and the token for the
    cookie (shown only now). Giving the password counts as a re-authentication; whether the session must
    still pass the second factor is app.accounts.second_factor.session_step's to say. Tests that stand for
    a complete login pass ``second_factor_passed=True``."""
    now = now or utcnow()
    token = new_token()
    row = UserSession(id=new_id("ses"), token_hash=hash_token(token), user_id=user.id, created_at=now,
                      last_seen_at=now, ip=ip, user_agent=pan.redact(user_agent or "")[:400] or None,
                      reauthenticated_at=now, second_factor_passed_at=now if second_factor_passed else None)
    session.add(row)
    session.flush()
    return row, token


def resolve_session(session: Session, token: str, *, now: datetime | None = None,
                    idle_timeout: timedelta = IDLE_TIMEOUT,
                    max_age: timedelta = ABSOLUTE_LIFETIME) -> UserSession | None:
    """The active session behind a cookie token, or None (unknown, revoked or expired)."""
    if not token or not isinstance(token, str):
        return None
    row = session.scalars(select(UserSession).where(UserSession.token_hash == hash_token(token))).one_or_none()
    if row is None or not row.is_active_at(now or utcnow(), idle_timeout, max_age):
        return None
    return row


def active_sessions(session: Session, user_id: str, *, now: datetime | None = None,
                    idle_timeout: timedelta = IDLE_TIMEOUT,
                    max_age: timedelta = ABSOLUTE_LIFETIME) -> list[UserSession]:
    """The user's sessions still in use, the most recently used first."""
    now = now or utcnow()
    rows = session.scalars(select(UserSession).where(
        UserSession.user_id == user_id, UserSession.revoked_at.is_(None), UserSession.created_at > now - max_age,
        UserSession.last_seen_at > now - idle_timeout).order_by(UserSession.last_seen_at.desc(), UserSession.id))
    return list(rows)


def mark_second_factor_passed(row: UserSession, *, now: datetime | None = None) -> None:
    """This browser passed the second factor, which is also a re-authentication."""
    now = now or utcnow()
    row.second_factor_passed_at = now
    row.reauthenticated_at = now


def rotate_token(row: UserSession) -> str:
    """A new cookie token for the same session (after its privilege changed); returns it, shown only now."""
    token = new_token()
    row.token_hash = hash_token(token)
    return token


def mark_reauthenticated(row: UserSession, *, now: datetime | None = None) -> None:
    """The user confirmed who they are (password or second factor) on the confirmation page."""
    row.reauthenticated_at = now or utcnow()


def keep_pending_form(row: UserSession, path: str, fields: list[tuple[str, str]], *,
                      now: datetime | None = None) -> None:
    """Remember a form posted while re-authentication was due (the caller filtered out secrets)."""
    row.pending_form = {"path": path, "fields": [list(pair) for pair in fields],
                        "saved_at": (now or utcnow()).isoformat()}


def pending_form_for(row: UserSession, path: str, *, now: datetime | None = None) -> list[tuple[str, str]] | None:
    """The fields of the form kept for this path, unless another path's or too old."""
    kept = row.pending_form
    if not kept or kept.get("path") != path:
        return None
    if (now or utcnow()) - datetime.fromisoformat(kept["saved_at"]) > PENDING_FORM_LIFETIME:
        return None
    return [(name, value) for name, value in kept.get("fields", [])]


def forget_pending_form_statement(session_id: str):
    """UPDATE that drops a kept form once it was filled in again (run outside the request's transaction)."""
    return update(UserSession).where(UserSession.id == session_id).values(pending_form=None)


def needs_touch(row: UserSession, now: datetime | None = None) -> bool:
    """Whether last_seen_at is stale enough to be written again."""
    return (now or utcnow()) - row.last_seen_at >= TOUCH_INTERVAL


def touch_statement(session_id: str, now: datetime):
    """UPDATE that records activity; callers run it outside the request's transaction."""
    return (update(UserSession).where(UserSession.id == session_id, UserSession.revoked_at.is_(None))
            .values(last_seen_at=now))


def revoke_session(session: Session, session_id: str, *, user_id: str | None = None,
                   now: datetime | None = None) -> bool:
    """End one session (logout; with ``user_id``, only when it is that user's). True when one ended."""
    statement = update(UserSession).where(UserSession.id == session_id, UserSession.revoked_at.is_(None))
    if user_id is not None:
        statement = statement.where(UserSession.user_id == user_id)
    return session.execute(statement.values(revoked_at=now or utcnow())).rowcount == 1


def revoke_user_sessions(session: Session, user_id: str, *, except_session_id: str | None = None,
                         now: datetime | None = None) -> int:
    """End every session of a user, but the one named (password change keeps the current browser)."""
    statement = update(UserSession).where(UserSession.user_id == user_id, UserSession.revoked_at.is_(None))
    if except_session_id:
        statement = statement.where(UserSession.id != except_session_id)
    return session.execute(statement.values(revoked_at=now or utcnow())).rowcount


def device_label(user_agent: str | None) -> str:
    """"Chrome 120 on Mac OS X", from the user agent (ua-parser's regexes, the ones Browserscope maintained)."""
    if not user_agent:
        return "Unknown device"
    parsed = parse_user_agent(user_agent)
    browser = parsed.user_agent
    system = parsed.os
    name = f"{browser.family} {browser.major}".strip() if browser and browser.major else (
        browser.family if browser else "Unknown browser")
    if system is None:
        return name
    return f"{name} on {system.family}" + (f" {system.major}" if system.major and system.family in _VERSIONED else "")


# Systems whose major version tells people something ("iOS 17", "Android 14"); "Mac OS X 10" would not.
_VERSIONED = {"iOS", "Android", "Windows"}
