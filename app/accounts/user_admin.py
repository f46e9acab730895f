"""What platform operators do to a user account: find it, lock and unlock it, force a password reset; and
who is a platform operator (``set_platform_admin``, from the command line: app/accounts/platform_admin_cli.py).

A locked user cannot sign in and every session they had ends at once; unlocking lets them sign in again
with their password. A forced reset makes the password unusable, ends every session and mails a reset
link. (A second factor, once the account-security issue adds one, is reset here too.)

Each action takes a reason (ReasonRequired without one) and is audited once on each merchant the user belongs to, so that its owners
and admins see it (one row without merchant when the user has none). Never imports Flask; the caller
commits.
"""
import secrets
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from app.accounts.audit import audit, operator_reason
from app.accounts.models import Membership, Merchant, User
from app.accounts.recovery import request_password_reset
from app.accounts.service import NO_META, Meta
from app.accounts.sessions import UserSession, revoke_user_sessions
from app.models_base import utcnow

SEARCH_LIMIT = 50
# Not an argon2 hash: verify_password answers False for it whatever is typed, so the old password is dead.
UNUSABLE_PASSWORD_PREFIX = "!reset-forced:"


class UserAdminError(Exception):
    """An operator action on a user that cannot be done; ``message`` says why."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def search_users(session: Session, query: str, *, limit: int = SEARCH_LIMIT) -> list[User]:
    """Users whose email (or id) contains the query, case-insensitive, by email."""
    query = (query or "").strip().lower()
    statement = select(User).order_by(User.email).limit(limit)
    if query:
        pattern = "%" + query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        statement = statement.where(or_(func.lower(User.email).like(pattern, escape="\\"), User.id == query))
    return list(session.scalars(statement))


def memberships_of(session: Session, user_id: str) -> list[tuple[Membership, Merchant]]:
    """The user's memberships with their merchants, oldest first."""
    return list(session.execute(
        select(Membership, Merchant).join(Merchant, Merchant.id == Membership.merchant_id)
        .where(Membership.user_id == user_id).order_by(Membership.created_at)).all())


def active_session_count(session: Session, user_id: str, *, now: datetime | None = None) -> int:
    """How many browsers are signed in as the user now."""
    now = now or utcnow()
    rows = session.scalars(select(UserSession).where(UserSession.user_id == user_id,
                                                     UserSession.revoked_at.is_(None)))
    return sum(1 for row in rows if row.is_active_at(now))


def set_platform_admin(session: Session, user: User, granted: bool, *, actor_label: str,
                       meta: Meta = NO_META) -> bool:
    """Grant or take away the use of the operator console; audited on each team of the user. True when it
    changed."""
    if user.is_platform_admin == granted:
        return False
    user.is_platform_admin = granted
    _audit(session, user, "user.platform_admin_granted" if granted else "user.platform_admin_revoked", None, meta,
           {}, actor_label=actor_label)
    return True


def _locked_user(session: Session, user_id: str) -> User:
    user = session.scalars(select(User).where(User.id == user_id).with_for_update()
                           .execution_options(populate_existing=True)).one_or_none()
    if user is None:
        raise UserAdminError(f"No such user: {user_id}.")
    return user


def _audit(session: Session, user: User, action: str, operator: User | None, meta: Meta, details: dict, *,
           actor_label: str | None = None) -> None:
    merchant_ids = list(session.scalars(select(Membership.merchant_id).where(Membership.user_id == user.id)))
    for merchant_id in merchant_ids or [None]:
        audit(session, action, merchant_id=merchant_id, actor_user_id=operator.id if operator else None,
              actor_label=operator.email if operator else actor_label, target=user.id,
              details={"email": user.email, **details}, **meta.as_kwargs())


def lock_user(session: Session, user_id: str, *, operator: User, reason: str | None, meta: Meta,
              now: datetime | None = None) -> int:
    """Lock the account and end its sessions; returns how many sessions ended."""
    reason = operator_reason(reason)
    user = _locked_user(session, user_id)
    if user.id == operator.id:
        raise UserAdminError("You cannot lock your own account.")
    if user.locked_at is not None:
        raise UserAdminError("This account is already locked.")
    now = now or utcnow()
    user.locked_at, user.locked_reason = now, reason
    ended = revoke_user_sessions(session, user.id, now=now)
    _audit(session, user, "user.locked", operator, meta, {"reason": reason, "sessions_ended": ended})
    return ended


def unlock_user(session: Session, user_id: str, *, operator: User, reason: str | None, meta: Meta) -> None:
    """Let the user sign in again (with the password they have)."""
    reason = operator_reason(reason)
    user = _locked_user(session, user_id)
    if user.locked_at is None:
        raise UserAdminError("This account is not locked.")
    user.locked_at = user.locked_reason = None
    _audit(session, user, "user.unlocked", operator, meta, {"reason": reason})


def force_password_reset(session: Session, user_id: str, link_for: Callable[[str], str], *, operator: User,
                         reason: str | None, meta: Meta, now: datetime | None = None) -> int:
    """Make the password unusable, end every session and mail a reset link; returns the sessions ended."""
    reason = operator_reason(reason)
    user = _locked_user(session, user_id)
    now = now or utcnow()
    user.password_hash = UNUSABLE_PASSWORD_PREFIX + secrets.token_urlsafe(16)
    ended = revoke_user_sessions(session, user.id, now=now)
    _audit(session, user, "user.password_reset_forced", operator, meta, {"reason": reason, "sessions_ended": ended})
    request_password_reset(session, user.email, link_for, meta=meta, now=now)
    return ended
