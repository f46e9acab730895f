"""Sign-up, sign-in and password changes. Never imports Flask; the caller commits."""
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.accounts.audit import audit
from app.accounts.models import Membership, Merchant, User
from app.accounts.passwords import hash_password, needs_rehash, verify_password
from app.accounts.permissions import Role
from app.accounts.sessions import revoke_user_sessions
from app.accounts.tokens import normalize_email
from app.ids import new_id

# Steps other features run when a merchant is created (e.g. its default seller):
# functions (session, merchant) -> None, called in the sign-up transaction.
MERCHANT_CREATED_HOOKS: list[Callable[[Session, Merchant], None]] = []

# Verified against when the email is unknown, so that a wrong email costs as much time as a wrong password
# and response times do not reveal which emails have accounts.
_DUMMY_HASH = hash_password("kassa-timing-equalizer")


class AccountError(Exception):
    """A sign-up or password change that cannot be done; ``field`` names the form field to blame."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field


class AccountLocked(AccountError):
    """The password is right but a platform operator locked the account (app/accounts/user_admin.py)."""


@dataclass(frozen=True)
class Meta:
    """Where a request came from, for audit rows."""

    ip: str | None = None
    user_agent: str | None = None
    request_id: str | None = None

    def as_kwargs(self) -> dict:
        return {"ip": self.ip, "user_agent": self.user_agent, "request_id": self.request_id}


NO_META = Meta()  # for calls outside a request (jobs, tests, the shell)


def find_user_by_email(session: Session, email: str) -> User | None:
    """The user with this email (case-insensitive), or None."""
    return session.scalars(select(User).where(func.lower(User.email) == normalize_email(email))).one_or_none()


def audit_user_event(session: Session, user: User | None, action: str, meta: Meta, *,
                     label: str | None = None, details: dict | None = None) -> None:
    """Audit something a person did for themselves (sign-in, password change): one row in the log of each
    merchant they belong to, so that every team sees it; a row without merchant when there is none."""
    merchant_ids = []
    if user is not None:
        merchant_ids = list(session.scalars(select(Membership.merchant_id).where(Membership.user_id == user.id)))
    for merchant_id in merchant_ids or [None]:
        audit(session, action, merchant_id=merchant_id, actor_user_id=user.id if user else None,
              actor_label=label or (user.email if user else None), target=user.id if user else None,
              details=details, **meta.as_kwargs())


def create_user(session: Session, *, email: str, password: str, name: str | None) -> User:
    """A new user (no membership yet); AccountError when the email is taken."""
    email = normalize_email(email)
    if find_user_by_email(session, email) is not None:
        raise AccountError("An account with this email already exists. Log in instead.", field="email")
    user = User(id=new_id("usr"), email=email, name=(name or "").strip() or None,
                password_hash=hash_password(password))
    session.add(user)
    session.flush()
    return user


def sign_up(session: Session, *, email: str, password: str, name: str, business_name: str,
            meta: Meta = NO_META) -> tuple[User, Merchant]:
    """Create a merchant, its owner and the owner's membership."""
    user = create_user(session, email=email, password=password, name=name)
    merchant = Merchant(id=new_id("mer"), name=business_name.strip(), display_name=business_name.strip())
    session.add(merchant)
    session.flush()
    session.add(Membership(id=new_id("mem"), user_id=user.id, merchant_id=merchant.id, role=Role.OWNER))
    session.flush()
    for hook in MERCHANT_CREATED_HOOKS:
        hook(session, merchant)
    audit(session, "user.signed_up", merchant_id=merchant.id, actor_user_id=user.id, actor_label=user.email,
          target=merchant.id, **meta.as_kwargs())
    return user, merchant


def authenticate(session: Session, email: str, password: str, meta: Meta = NO_META) -> User | None:
    """The user when email and password match, else None; audits the success or the failure.

    AccountLocked (after the password was checked, so it tells nothing to someone guessing) when the
    account is locked."""
    user = find_user_by_email(session, email)
    if user is None:
        verify_password(_DUMMY_HASH, password)
        audit_user_event(session, None, "user.sign_in_failed", meta, label=normalize_email(email)[:320],
                         details={"reason": "unknown_email"})
        return None
    if not verify_password(user.password_hash, password):
        audit_user_event(session, user, "user.sign_in_failed", meta, details={"reason": "wrong_password"})
        return None
    if user.locked_at is not None:
        audit_user_event(session, user, "user.sign_in_failed", meta, details={"reason": "locked"})
        raise AccountLocked("This account is locked. Contact the platform operator to have it unlocked.")
    if needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    audit_user_event(session, user, "user.signed_in", meta)
    return user


def change_password(session: Session, user: User, *, current_password: str, new_password: str,
                    current_session_id: str | None, meta: Meta = NO_META) -> int:
    """Set a new password and sign out every other browser; returns how many sessions were ended."""
    if not verify_password(user.password_hash, current_password):
        raise AccountError("Your current password is not correct.", field="current_password")
    if verify_password(user.password_hash, new_password):
        raise AccountError("Choose a password different from the current one.", field="new_password")
    user.password_hash = hash_password(new_password)
    ended = revoke_user_sessions(session, user.id, except_session_id=current_session_id)
    audit_user_event(session, user, "user.password_changed", meta, details={"other_sessions_ended": ended})
    return ended
