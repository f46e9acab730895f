"""Checkout sessions: what the hosted page (/c/<id>) sells, to whom it reports back, and until when."""
import secrets
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.ids import new_id
from app.models_base import Base, MerchantOwned, utcnow
from app.payments import models as _payments  # noqa: F401  (payment_id references payments)

# 24 URL-safe characters are 144 random bits: the id is the shopper's only credential for the page,
# so it must be unguessable, not merely unique (the ULID part is predictable from the creation time).
SESSION_SECRET_BYTES = 18


def new_session_id() -> str:
    """``cs_<ULID><24 random url-safe chars>``: sortable by creation, unguessable as a whole."""
    return new_id("cs") + secrets.token_urlsafe(SESSION_SECRET_BYTES)


class SessionStatus(StrEnum):
    OPEN = "open"            # the page takes payments
    COMPLETE = "complete"    # its payment is authorized (succeeded or held for capture)
    EXPIRED = "expired"      # past expires_at, or expired by the merchant; the page shows no form


class CheckoutSession(MerchantOwned, Base):
    """A hosted payment page for one order; owns at most one Payment, confirmed again after a decline."""

    __tablename__ = "checkout_sessions"
    __table_args__ = (
        CheckConstraint("status IN ('open', 'complete', 'expired')", name="status"),
        CheckConstraint("amount_total > 0", name="amount_total_positive"),
        CheckConstraint("attempt_number >= 1", name="attempt_number_positive"),
        Index("ix_checkout_sessions_scope_id", "merchant_id", "livemode", "id"),
        # The expiry sweep reads only open sessions by expiry time.
        Index("ix_checkout_sessions_open_expires_at", "expires_at", postgresql_where=text("status = 'open'")),
    )

    id: Mapped[str] = mapped_column(primary_key=True)
    status: Mapped[str] = mapped_column(String(16), server_default=text("'open'"))
    currency: Mapped[str] = mapped_column(String(3))
    amount_total: Mapped[int]
    # [{"name", "quantity", "unit_amount", "amount"}], or NULL when the session sells a single amount.
    line_items: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONB)
    description: Mapped[str | None] = mapped_column(String(500))
    # [{"seller", "amount", "fee"}] handed to the payment as it is (the payments service validates it).
    split: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONB)
    success_url: Mapped[str] = mapped_column(String(2000))
    cancel_url: Mapped[str | None] = mapped_column(String(2000))
    customer_email: Mapped[str | None] = mapped_column(String(320))
    client_reference_id: Mapped[str | None] = mapped_column(String(200))
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", server_default=text("'{}'::jsonb"))
    payment_id: Mapped[str | None] = mapped_column(ForeignKey("payments.id"), unique=True)
    # Part of the payment's idempotency key (checkout:<id>:<n>); rises only after a definite decline,
    # so a double click or a reload replays the same confirmation instead of paying twice.
    attempt_number: Mapped[int] = mapped_column(server_default=text("1"))
    expires_at: Mapped[datetime]
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=text("now()"))
    completed_at: Mapped[datetime | None]
    expired_at: Mapped[datetime | None]

    @property
    def idempotency_key(self) -> str:
        """The key of the current confirmation attempt."""
        return f"checkout:{self.id}:{self.attempt_number}"
