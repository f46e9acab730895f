"""Prefixed, time-sortable identifiers such as pay_01JD3X...: a prefix names the type, a ULID sorts by creation."""
from ulid import ULID


def new_id(prefix: str) -> str:
    """A new id like ``pay_01JD3XK2...`` (26 Crockford base32 characters after the prefix)."""
    return f"{prefix}_{ULID()}"
