"""Server-side login sessions: the browser's cookie holds only a random token; this table says who it is.

A login creates a new row (a fresh session id, so a session fixed before login is worthless), logout sets
revoked_at (a copied cookie is dead afterwards), and a password change or reset revokes the user's other
sessions. Never imports Flask.
"""
from datetime import datetime, timedelta

from sqlalchemy import ForeignKey, String, select, text, update
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from app import pan
from app.accounts.models import User
from app.accounts.tokens import hash_token, new_token
from app.ids import new_id
from app.models_base import Base, utcnow

# A dashboard left alone for 12 hours (a working day plus) needs a new login: long enough not to annoy,
# short enough that a forgotten browser on a shared machine does not stay signed in overnight and beyond.
IDLE_TIMEOUT = timedelta(hours=12)
# However active, a session ends after 7 days: a stolen cookie cannot be used forever.
ABSOLUTE_LIFETIME = timedelta(days=7)
# last_seen_at is written at most once a minute: a write per page view would be wasted load, and the idle
# timeout is measured in hours, so minute precision is plenty.
TOUCH_INTERVAL = timedelta(minutes=1)


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

    user: Mapped[User] = relationship()

    def is_active_at(self, now: datetime) -> bool:
        """Not revoked, not idle too long, not too old."""
        return (self.revoked_at is None and now - self.last_seen_at < IDLE_TIMEOUT
                and now - self.created_at < ABSOLUTE_LIFETIME)


def start_session(session: Session, user: User, *, ip: str | None = None, user_agent: str | None = None,
                  now: datetime | None = None) -> tuple[UserSession, str]:
    """Create a session for the user; returns the row and the token for the cookie (shown only now)."""
    now = now or utcnow()
    token = new_token()
    row = UserSession(id=new_id("ses"), token_hash=hash_token(token), user_id=user.id, created_at=now,
                      last_seen_at=now, ip=ip, user_agent=pan.redact(user_agent or "")[:400] or None)
    session.add(row)
    session.flush()
    return row, token


def resolve_session(session: Session, token: str, *, now: datetime | None = None) -> UserSession | None:
    """The active session behind a cookie token, or None (unknown, revoked or expired)."""
    if not token or not isinstance(token, str):
        return None
    row = session.scalars(select(UserSession).where(UserSession.token_hash == hash_token(token))).one_or_none()
    if row is None or not row.is_active_at(now or utcnow()):
        return None
    return row


def needs_touch(row: UserSession, now: datetime | None = None) -> bool:
    """Whether last_seen_at is stale enough to be written again."""
    return (now or utcnow()) - row.last_seen_at >= TOUCH_INTERVAL


def touch_statement(session_id: str, now: datetime):
    """UPDATE that records activity; callers run it outside the request's transaction."""
    return (update(UserSession).where(UserSession.id == session_id, UserSession.revoked_at.is_(None))
            .values(last_seen_at=now))


def revoke_session(session: Session, session_id: str, *, now: datetime | None = None) -> None:
    """End one session (logout)."""
    session.execute(update(UserSession).where(UserSession.id == session_id, UserSession.revoked_at.is_(None))
                    .values(revoked_at=now or utcnow()))


def revoke_user_sessions(session: Session, user_id: str, *, except_session_id: str | None = None,
                         now: datetime | None = None) -> int:
    """End every session of a user, but the one named (password change keeps the current browser)."""
    statement = update(UserSession).where(UserSession.user_id == user_id, UserSession.revoked_at.is_(None))
    if except_session_id:
        statement = statement.where(UserSession.id != except_session_id)
    return session.execute(statement.values(revoked_at=now or utcnow())).rowcount
