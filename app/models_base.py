"""Declarative base, shared column types and the merchant-owned mixin."""
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import BigInteger, DateTime, ForeignKey, MetaData, String, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, registry

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(timezone.utc)


def lock_until_commit(session, key: str) -> None:
    """Wait for, then hold until the transaction ends, the advisory lock named ``key``: work on one thing (a
    payout, a PSP's lines, a day's file) taken in turns by transactions that would otherwise miss each other's
    uncommitted rows."""
    session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": key})


class Base(DeclarativeBase):
    registry = registry(
        metadata=MetaData(naming_convention=NAMING_CONVENTION),
        type_annotation_map={
            dict[str, Any]: JSONB,
            datetime: DateTime(timezone=True),
            int: BigInteger,
            str: String,
        },
    )


class MerchantOwned:
    """Columns every merchant-owned row carries; read such rows through app.scoping.Scope."""

    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"), index=True)
    livemode: Mapped[bool] = mapped_column(server_default=text("false"))
