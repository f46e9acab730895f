"""Test data factories, one function per thing; each flushes and returns the row."""
import uuid

from app.accounts.models import Membership, Merchant, User
from app.accounts.passwords import hash_password
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
    row = User(id=new_id("usr"), email=email or f"user-{uuid.uuid4().hex[:10]}@example.com",
               password_hash=_password_hash(password), **values)
    session.add(row)
    session.flush()
    return row


def member(session, merchant_row: Merchant, role: str = "owner", **user_values) -> User:
    """A user who belongs to the merchant with the given role."""
    row = user(session, **user_values)
    session.add(Membership(id=new_id("mem"), user_id=row.id, merchant_id=merchant_row.id, role=role))
    session.flush()
    return row
