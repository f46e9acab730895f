"""Test data factories, one function per thing; each flushes and returns the row."""
import uuid

import pyotp
from flask import current_app

from app.accounts.models import Membership, Merchant, User
from app.accounts.passwords import hash_password
from app.accounts.second_factor import SecondFactor, enrol_confirmed, secret_aad
from app.crypto import SecretBox
from app.ids import new_id

PASSWORD = "correct horse battery"
_hash_cache: dict[str, str] = {}


def _password_hash(password: str) -> str:
    # argon2 is deliberately slow; hash each distinct test password once per run.
    if password not in _hash_cache:
        _hash_cache[password] = hash_password(password)
    return _hash_cache[password]


def merchant(session, name: str = "Test Shop", **values) -> Merchant:
    row = Merchant(id=new_id("mer"), name=name, **values)
    session.add(row)
    session.flush()
    return row


def user(session, email: str | None = None, password: str = PASSWORD, **values) -> User:
    """A user; a platform admin comes with a confirmed second factor, as every admin must have one
    (its secret: ``totp_secret``)."""
    row = User(id=new_id("usr"), email=email or f"user-{uuid.uuid4().hex[:10]}@example.com",
               password_hash=_password_hash(password), **values)
    session.add(row)
    session.flush()
    if row.is_platform_admin:
        second_factor(session, row)
    return row


def _box() -> SecretBox:
    return SecretBox(current_app.config["KASSA_ENCRYPTION_KEYS"])


def second_factor(session, user_row: User, secret: str | None = None) -> str:
    """Give the user a confirmed TOTP authenticator; returns its secret (tests make codes with pyotp)."""
    secret = secret or pyotp.random_base32()
    enrol_confirmed(session, user_row, _box(), secret)
    return secret


def totp_secret(session, user_row: User) -> str:
    """The TOTP secret of the user's authenticator (enrolled by a factory or through the set-up page)."""
    row = session.get(SecondFactor, user_row.id)
    return _box().decrypt(row.secret_encrypted, secret_aad(user_row.id))


def member(session, merchant_row: Merchant, role: str = "owner", **user_values) -> User:
    """A user who belongs to the merchant with the given role."""
    row = user(session, **user_values)
    session.add(Membership(id=new_id("mem"), user_id=row.id, merchant_id=merchant_row.id, role=role))
    session.flush()
    return row
