"""Password reset by emailed link: expiring, single use, stored hashed. Never imports Flask."""
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import ForeignKey, String, select, text, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from app.accounts.mail import queue_mail
from app.accounts.models import User
from app.accounts.passwords import hash_password
from app.accounts.service import NO_META, Meta, audit_user_event, find_user_by_email
from app.accounts.sessions import revoke_user_sessions
from app.accounts.tokens import hash_token, new_token
from app.ids import new_id
from app.models_base import Base, utcnow

# One hour: enough to switch to the mailbox and back, short enough that an old email in a compromised
# mailbox is no longer a key to the account.
RESET_TOKEN_LIFETIME = timedelta(hours=1)


class PasswordResetToken(Base):
    """A pending password reset link."""

    __tablename__ = "password_reset_tokens"

    id: Mapped[str] = mapped_column(primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=text("now()"))
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    requested_ip: Mapped[str | None] = mapped_column(String(64))


class InvalidResetToken(Exception):
    """The link is unknown, already used or expired."""


def request_password_reset(session: Session, email: str, link_for: Callable[[str], str], *,
                           meta: Meta = NO_META, now: datetime | None = None) -> PasswordResetToken | None:
    """Email a reset link when the account exists (the caller answers the same either way)."""
    user = find_user_by_email(session, email)
    if user is None:
        return None
    now = now or utcnow()
    token = new_token()
    row = PasswordResetToken(id=new_id("prt"), user_id=user.id, token_hash=hash_token(token), created_at=now,
                             expires_at=now + RESET_TOKEN_LIFETIME, requested_ip=meta.ip)
    session.add(row)
    session.flush()
    link = link_for(token)
    queue_mail(session, kind="password_reset", to=user.email, subject="Reset your Kassa password", body=(
        f"Hello{' ' + user.name if user.name else ''},\n\n"
        f"Someone (hopefully you) asked to reset the password of your Kassa account {user.email}.\n"
        f"Choose a new password here within the next hour:\n\n{link}\n\n"
        "The link works once. If you did not ask for this, ignore this email: your password stays as it is.\n"
    ))
    audit_user_event(session, user, "user.password_reset_requested", meta)
    return row


def find_reset_token(session: Session, token: str, *, now: datetime | None = None) -> PasswordResetToken | None:
    """The pending, unexpired reset behind a link, or None."""
    row = session.scalars(select(PasswordResetToken).where(PasswordResetToken.token_hash == hash_token(token or "")))\
        .one_or_none()
    if row is None or row.used_at is not None or row.expires_at <= (now or utcnow()):
        return None
    return row


def reset_password(session: Session, token: str, new_password: str, *, meta: Meta = NO_META,
                   now: datetime | None = None) -> User:
    """Use a reset link once: set the password, end every session, void the user's other pending links."""
    now = now or utcnow()
    # One conditional UPDATE claims the token: of two concurrent uses, exactly one gets a row back.
    user_id = session.execute(
        update(PasswordResetToken)
        .where(PasswordResetToken.token_hash == hash_token(token or ""), PasswordResetToken.used_at.is_(None),
               PasswordResetToken.expires_at > now)
        .values(used_at=now).returning(PasswordResetToken.user_id)
    ).scalar_one_or_none()
    if user_id is None:
        raise InvalidResetToken("This reset link is invalid, expired or already used.")
    session.execute(update(PasswordResetToken)
                    .where(PasswordResetToken.user_id == user_id, PasswordResetToken.used_at.is_(None))
                    .values(used_at=now))
    user = session.get(User, user_id)
    user.password_hash = hash_password(new_password)
    ended = revoke_user_sessions(session, user_id, now=now)
    audit_user_event(session, user, "user.password_reset", meta, details={"sessions_ended": ended})
    return user
