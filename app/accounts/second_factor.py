"""The second factor: TOTP codes (RFC 6238, pyotp) and one-time recovery codes, and what a session must still
pass before it reaches anything. Never imports Flask; the caller commits.

- Enrolment draws a secret, kept sealed with the key ring (app/crypto.py SecretBox, associated data: the user)
  but unconfirmed until the person scans its QR code and types a first code. Confirming creates ten recovery
  codes, shown once and stored as argon2id hashes.
- A TOTP code is accepted within one 30-second step either side of now, and only once: the time step of the
  last accepted code is stored, and a code of that step or an earlier one is refused (no replay).
- Required for platform admins and for every member of a merchant whose owner requires it (app/accounts/
  security.py); optional for everyone else. A session that has passed only the password reaches nothing but
  the second-factor page (SessionStep.SECOND_FACTOR), or the enrolment page when a second factor is required
  and missing (SessionStep.ENROL).
"""
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

import pyotp
from sqlalchemy import ForeignKey, String, Text, delete, exists, func, select, text, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from app.accounts.audit import audit
from app.accounts.mail import queue_mail
from app.accounts.models import Membership, Merchant, User
from app.accounts.passwords import hash_password, verify_password
from app.accounts.service import NO_META, Meta, audit_user_event
from app.accounts.sessions import UserSession, revoke_user_sessions
from app.crypto import SecretBox, register_encrypted_column
from app.ids import new_id
from app.models_base import Base, utcnow

ISSUER = "Kassa"  # the account's label in authenticator apps
# One 30-second step either side of now: phone clocks drift, and a code typed at the end of its step arrives
# in the next one. RFC 6238 section 5.2 recommends at most one step of network delay.
TOTP_VALID_WINDOW = 1
RECOVERY_CODE_COUNT = 10
# Crockford's base32 alphabet (no i, l, o, u: nothing to misread). Ten characters are 50 random bits: short
# enough to type from paper, and with argon2id hashes a stolen table costs 2^50 slow hashes per code.
RECOVERY_CODE_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
RECOVERY_CODE_LENGTH = 10
TOTP_CODE = re.compile(r"^[0-9]{6}$")


class SecondFactor(Base):
    """A user's TOTP authenticator: confirmed once its first code was typed."""

    __tablename__ = "user_second_factors"

    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), primary_key=True)
    secret_encrypted: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=text("now()"))
    confirmed_at: Mapped[datetime | None]
    # The 30-second time step of the last accepted code: codes of this step or earlier are refused.
    last_used_step: Mapped[int | None]


class RecoveryCode(Base):
    """One single-use recovery code, stored as an argon2id hash."""

    __tablename__ = "recovery_codes"

    id: Mapped[str] = mapped_column(primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    code_hash: Mapped[str] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=text("now()"))
    used_at: Mapped[datetime | None]


def secret_aad(user_id: str) -> str:
    """Associated data of a sealed TOTP secret: a ciphertext copied to another user's row does not open."""
    return f"second_factor:{user_id}"


register_encrypted_column(SecondFactor, "secret_encrypted", associated_data=lambda row: secret_aad(row.user_id))


class SessionStep(StrEnum):
    """What a signed-in browser still has to do before it reaches the dashboard or the admin console."""

    COMPLETE = "complete"            # nothing: signed in
    SECOND_FACTOR = "second_factor"  # type a code (the user has a second factor; this session gave the password only)
    ENROL = "enrol"                  # set up a second factor (one is required and the user has none)


class SecondFactorError(Exception):
    """A code that is wrong, expired or already used, or a change that is not allowed (message for the person)."""

    def __init__(self, message: str, reason: str = "refused"):
        super().__init__(message)
        self.message = message
        self.reason = reason


@dataclass(frozen=True)
class Verified:
    """A code that was accepted: "totp" or "recovery_code", and how many recovery codes are left."""

    method: str
    recovery_codes_left: int


def confirmed_factor(session: Session, user_id: str) -> SecondFactor | None:
    """The user's confirmed second factor, or None."""
    row = session.get(SecondFactor, user_id)
    return row if row is not None and row.confirmed_at is not None else None


def second_factor_required(session: Session, user: User) -> bool:
    """Platform admins, and members of a merchant that requires it, must have a second factor."""
    if user.is_platform_admin:
        return True
    return bool(session.scalar(select(exists().where(
        Membership.user_id == user.id, Membership.merchant_id == Merchant.id,
        Merchant.require_second_factor.is_(True)))))


def session_step(session: Session, user_session: UserSession) -> SessionStep:
    """What this session must still pass. Computed on every request, so that a merchant starting to require
    a second factor sends its members to enrolment at their next click, not at their next login."""
    if user_session.second_factor_passed_at is not None:
        return SessionStep.COMPLETE
    user = user_session.user
    if confirmed_factor(session, user.id) is not None:
        return SessionStep.SECOND_FACTOR
    if second_factor_required(session, user):
        return SessionStep.ENROL
    return SessionStep.COMPLETE


def enrolment_secret(session: Session, user: User, box: SecretBox, *, now: datetime | None = None) -> str:
    """The secret being set up: drawn on the first call, the same on later ones (a reload shows the same QR
    code) until confirmed. SecondFactorError when the user already has a confirmed second factor."""
    row = session.get(SecondFactor, user.id)
    if row is not None and row.confirmed_at is not None:
        raise SecondFactorError("Two-step sign-in is already set up for your account.", "already_enrolled")
    if row is None:
        secret = pyotp.random_base32()  # 32 characters: 160 bits, RFC 4226's recommended key length
        session.add(SecondFactor(user_id=user.id, secret_encrypted=box.encrypt(secret, secret_aad(user.id)),
                                 created_at=now or utcnow()))
        session.flush()
        return secret
    return box.decrypt(row.secret_encrypted, secret_aad(user.id))


def enrol_confirmed(session: Session, user: User, box: SecretBox, secret: str, *, now: datetime | None = None) -> None:
    """Give the user an authenticator with a known secret, already confirmed and without recovery codes: for the
    demo data (app/seed.py) and tests, never for a person, whose secret must be drawn and shown only to them."""
    session.add(SecondFactor(user_id=user.id, secret_encrypted=box.encrypt(secret, secret_aad(user.id)),
                             created_at=now or utcnow(), confirmed_at=now or utcnow()))
    session.flush()


def provisioning_uri(secret: str, email: str) -> str:
    """The otpauth:// URI an authenticator app reads from the QR code."""
    return pyotp.TOTP(secret).provisioning_uri(name=email, issuer_name=ISSUER)


def normalize_code(code: str) -> str:
    """What the person typed, without spaces and dashes, lower case."""
    return re.sub(r"[\s-]", "", code or "").lower()


def _matching_step(secret: str, code: str, now: datetime) -> int | None:
    """The time step whose TOTP code this is, within the valid window around now; None when none matches."""
    totp = pyotp.TOTP(secret)
    current = totp.timecode(now)
    for step in range(current - TOTP_VALID_WINDOW, current + TOTP_VALID_WINDOW + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def _claim_step(session: Session, user_id: str, step: int) -> bool:
    """Record the accepted code's step; False when a code of this step or a later one was already accepted.
    One conditional UPDATE: of two requests with the same code, exactly one wins."""
    return session.execute(
        update(SecondFactor).where(SecondFactor.user_id == user_id,
                                   (SecondFactor.last_used_step.is_(None)) | (SecondFactor.last_used_step < step))
        .values(last_used_step=step).returning(SecondFactor.user_id)).scalar_one_or_none() is not None


def _check_totp(session: Session, row: SecondFactor, box: SecretBox, code: str, now: datetime) -> None:
    step = _matching_step(box.decrypt(row.secret_encrypted, secret_aad(row.user_id)), code, now)
    if step is None:
        raise SecondFactorError("This code is not correct, or it has expired. Enter the code your app shows now.",
                                "wrong_code")
    if not _claim_step(session, row.user_id, step):
        raise SecondFactorError("This code was already used. Wait for the next code in your app.", "replayed_code")


def _new_recovery_codes(session: Session, user_id: str, now: datetime) -> list[str]:
    """Replace the user's recovery codes with new ones; returns them, formatted "xxxxx-xxxxx" (shown once)."""
    session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user_id))
    codes = ["".join(secrets.choice(RECOVERY_CODE_ALPHABET) for _ in range(RECOVERY_CODE_LENGTH))
             for _ in range(RECOVERY_CODE_COUNT)]
    session.add_all(RecoveryCode(id=new_id("rcc"), user_id=user_id, code_hash=hash_password(code), created_at=now)
                    for code in codes)
    session.flush()
    return [f"{code[:5]}-{code[5:]}" for code in codes]


def recovery_codes_left(session: Session, user_id: str) -> int:
    """How many of the user's recovery codes are unused."""
    return session.scalar(select(func.count()).select_from(RecoveryCode).where(
        RecoveryCode.user_id == user_id, RecoveryCode.used_at.is_(None)))


def _use_recovery_code(session: Session, user_id: str, code: str, now: datetime) -> None:
    for row in session.scalars(select(RecoveryCode).where(RecoveryCode.user_id == user_id,
                                                          RecoveryCode.used_at.is_(None))):
        if verify_password(row.code_hash, code):
            # Claimed with a conditional UPDATE: of two requests with the same code, one wins.
            claimed = session.execute(
                update(RecoveryCode).where(RecoveryCode.id == row.id, RecoveryCode.used_at.is_(None))
                .values(used_at=now).returning(RecoveryCode.id)).scalar_one_or_none()
            if claimed is not None:
                return
    raise SecondFactorError("This recovery code is not correct, or it was already used.", "wrong_recovery_code")


def _mail(session: Session, user: User, kind: str, subject: str, body: str) -> None:
    queue_mail(session, kind=kind, to=user.email, subject=subject,
               body=f"Hello{' ' + user.name if user.name else ''},\n\n{body}")


def confirm_enrolment(session: Session, user: User, box: SecretBox, code: str, *, meta: Meta = NO_META,
                      now: datetime | None = None) -> list[str]:
    """Confirm the secret being set up with its first code; returns the ten recovery codes (shown only now)."""
    now = now or utcnow()
    row = session.get(SecondFactor, user.id)
    if row is None or row.confirmed_at is not None:
        raise SecondFactorError("Start the set-up again: there is no authenticator waiting to be confirmed.",
                                "not_enrolling")
    code = normalize_code(code)
    if not TOTP_CODE.match(code):
        raise SecondFactorError("Enter the 6-digit code your authenticator app shows.", "wrong_code")
    try:
        _check_totp(session, row, box, code, now)
    except SecondFactorError as error:
        audit_user_event(session, user, "user.second_factor_failed", meta,
                         details={"reason": error.reason, "purpose": "enrolment"})
        raise
    row.confirmed_at = now
    codes = _new_recovery_codes(session, user.id, now)
    audit_user_event(session, user, "user.second_factor_enabled", meta, details={"method": "totp"})
    _mail(session, user, "second_factor_enabled", "Two-step sign-in is on for your Kassa account", (
        f"Two-step sign-in was turned on for your Kassa account {user.email}: from now on, signing in asks for a "
        "code from your authenticator app after the password.\n\n"
        "If you did not do this, reset your password at once and tell your platform operator.\n"))
    return codes


def verify(session: Session, user: User, box: SecretBox, code: str, *, purpose: str, meta: Meta = NO_META,
           now: datetime | None = None) -> Verified:
    """Check a code the person typed: a 6-digit TOTP code, or else a recovery code (used up). Audits the
    outcome; a recovery code also emails the user. ``purpose`` ("sign_in", "reauthentication") is audited."""
    now = now or utcnow()
    row = confirmed_factor(session, user.id)
    if row is None:
        raise SecondFactorError("Two-step sign-in is not set up for your account.", "not_enrolled")
    typed = normalize_code(code)
    method = "totp" if TOTP_CODE.match(typed) else "recovery_code"
    try:
        if not typed:
            raise SecondFactorError("Enter the 6-digit code from your authenticator app, or a recovery code.",
                                    "missing_code")
        if method == "totp":
            _check_totp(session, row, box, typed, now)
        else:
            _use_recovery_code(session, user.id, typed, now)
    except SecondFactorError as error:
        audit_user_event(session, user, "user.second_factor_failed", meta,
                         details={"reason": error.reason, "purpose": purpose})
        raise
    left = recovery_codes_left(session, user.id)
    audit_user_event(session, user, "user.second_factor_passed", meta,
                     details={"method": method, "purpose": purpose,
                              **({"recovery_codes_left": left} if method == "recovery_code" else {})})
    if method == "recovery_code":
        _mail(session, user, "recovery_code_used", "A recovery code was used for your Kassa account", (
            f"A recovery code was used to confirm a sign-in to your Kassa account {user.email}"
            f"{' from ' + meta.ip if meta.ip else ''}. {_codes_left_text(left)}\n\n"
            "If this was not you, reset your password at once and tell your platform operator. "
            "If you lost your phone, set up two-step sign-in again under Account security.\n"))
    return Verified(method=method, recovery_codes_left=left)


def _codes_left_text(left: int) -> str:
    if left == 0:
        return "You have no recovery codes left: make new ones under Account security."
    return f"You have {left} recovery code{'s' if left != 1 else ''} left."


def regenerate_recovery_codes(session: Session, user: User, *, meta: Meta = NO_META,
                              now: datetime | None = None) -> list[str]:
    """New recovery codes replace all the old ones (used or not); returns them (shown only now)."""
    if confirmed_factor(session, user.id) is None:
        raise SecondFactorError("Two-step sign-in is not set up for your account.", "not_enrolled")
    codes = _new_recovery_codes(session, user.id, now or utcnow())
    audit_user_event(session, user, "user.recovery_codes_regenerated", meta)
    return codes


def _remove(session: Session, user_id: str) -> None:
    session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user_id))
    session.execute(delete(SecondFactor).where(SecondFactor.user_id == user_id))


def disable_second_factor(session: Session, user: User, *, current_session_id: str | None,
                          meta: Meta = NO_META, now: datetime | None = None) -> int:
    """Turn two-step sign-in off (refused when it is required); ends the user's other sessions, returns how many."""
    if confirmed_factor(session, user.id) is None:
        raise SecondFactorError("Two-step sign-in is not set up for your account.", "not_enrolled")
    if second_factor_required(session, user):
        raise SecondFactorError("Two-step sign-in is required for your account (platform admins, and members of "
                                "a team whose owner requires it): it cannot be turned off.", "required")
    _remove(session, user.id)
    ended = revoke_user_sessions(session, user.id, except_session_id=current_session_id, now=now)
    audit_user_event(session, user, "user.second_factor_disabled", meta, details={"other_sessions_ended": ended})
    _mail(session, user, "second_factor_disabled", "Two-step sign-in is off for your Kassa account", (
        f"Two-step sign-in was turned off for your Kassa account {user.email}; your other sessions were ended.\n\n"
        "If you did not do this, reset your password at once and tell your platform operator.\n"))
    return ended


def reset_second_factor(session: Session, user: User, *, actor: User | None, reason: str, meta: Meta = NO_META,
                        now: datetime | None = None) -> int:
    """An operator removes a user's second factor (a lost phone): audited with the reason, every session of the
    user ends, and the user is told by email. At the next login the user sets up a new one when it is
    required. ``actor`` is the operator (None: the command line). Returns how many sessions ended."""
    reason = (reason or "").strip()
    if not reason:
        raise SecondFactorError("Say why the second factor is reset (it is kept in the audit log).", "missing_reason")
    if session.get(SecondFactor, user.id) is None:
        raise SecondFactorError(f"{user.email} has no second factor to reset.", "not_enrolled")
    _remove(session, user.id)
    ended = revoke_user_sessions(session, user.id, now=now)
    merchant_ids = list(session.scalars(select(Membership.merchant_id).where(Membership.user_id == user.id)))
    for merchant_id in merchant_ids or [None]:  # every team of the user sees it, like the user's own events
        audit(session, "user.second_factor_reset", merchant_id=merchant_id,
              actor_user_id=actor.id if actor else None, actor_label=actor.email if actor else "command line",
              target=user.id, details={"user": user.email, "reason": reason[:500], "sessions_ended": ended},
              **meta.as_kwargs())
    _mail(session, user, "second_factor_reset", "Your Kassa second factor was reset", (
        f"A platform operator reset the two-step sign-in of your Kassa account {user.email}.\n"
        f"Reason given: {reason[:500]}\n\n"
        "Every session of your account was ended. When you next log in with your password, set up your "
        "authenticator app again.\n\n"
        "If you did not ask for this, reset your password at once and tell your platform operator.\n"))
    return ended
