"""Payout tables (migration 0024_payouts): schedules and reserves, payouts and the ledger entries each pays.

Every table is merchant-owned and sharded by merchant (ARCHITECTURE.md, "Growing past one machine"): ``merchant_id``
is first in each primary key and unique constraint. A payout's ``seller_id`` is NULL when it pays the merchant's
own net revenue (its platform fees less the fees it bears).
"""
from datetime import date, datetime
from enum import StrEnum

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, PrimaryKeyConstraint, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from app.models_base import Base, utcnow

# The schedule row of the merchant's own revenue (no seller): a subject no seller id can take (ids are sel_...).
MERCHANT_SUBJECT = "merchant"


class PayoutStatus(StrEnum):
    """Stripe's payout states; moves live in app/payouts/state.py."""

    PENDING = "pending"          # created, booked out of the payable, not yet handed to the rail
    IN_TRANSIT = "in_transit"    # the rail accepted it
    PAID = "paid"
    FAILED = "failed"
    CANCELED = "canceled"


INTERVALS = ("daily", "weekly", "monthly", "manual")
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def _in(values) -> str:
    return ", ".join(f"'{v}'" for v in values)


class PayoutSchedule(Base):
    """When a seller (or the merchant itself) is paid, the least worth paying, the delay, and the reserve held.

    A seller without a row is paid daily with no minimum, no delay and no reserve (DEFAULT_SCHEDULE).
    ``reserve_percent_bp``: basis points of each charge held for ``reserve_days`` after it became available;
    ``reserve_minimum``: minor units always kept back (in each currency).
    """

    __tablename__ = "payout_schedules"
    __table_args__ = (
        PrimaryKeyConstraint("merchant_id", "livemode", "subject", name="pk_payout_schedules"),
        CheckConstraint(f"interval IN ({_in(INTERVALS)})", name="interval"),
        CheckConstraint(f"weekly_anchor IN ({_in(WEEKDAYS)})", name="weekly_anchor"),
        CheckConstraint("monthly_anchor BETWEEN 1 AND 31", name="monthly_anchor"),
        CheckConstraint("minimum_amount >= 0 AND delay_days >= 0 AND reserve_days >= 0 AND reserve_minimum >= 0",
                        name="not_negative"),
        CheckConstraint("reserve_percent_bp BETWEEN 0 AND 10000", name="reserve_percent"),
    )

    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"))
    livemode: Mapped[bool] = mapped_column(server_default=text("false"))
    subject: Mapped[str] = mapped_column(String(100))  # a seller id, or MERCHANT_SUBJECT
    interval: Mapped[str] = mapped_column(String(10), server_default=text("'daily'"))
    weekly_anchor: Mapped[str] = mapped_column(String(10), server_default=text("'monday'"))
    monthly_anchor: Mapped[int] = mapped_column(Integer, server_default=text("1"))
    minimum_amount: Mapped[int] = mapped_column(server_default=text("0"))
    delay_days: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    reserve_percent_bp: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    reserve_days: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    reserve_minimum: Mapped[int] = mapped_column(server_default=text("0"))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=text("now()"))


class Payout(Base):
    """Money moved out of a payable to a bank account, booked once per business key."""

    __tablename__ = "payouts"
    __table_args__ = (
        PrimaryKeyConstraint("merchant_id", "id", name="pk_payouts"),
        # A scheduled payout's key is per seller, currency and period; a second scheduler finds it taken.
        UniqueConstraint("merchant_id", "livemode", "business_key", name="uq_payouts_business_key"),
        CheckConstraint(f"status IN ({_in(PayoutStatus)})", name="status"),
        CheckConstraint("kind IN ('scheduled', 'manual')", name="kind"),
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("currency ~ '^[A-Z]{3}$'", name="currency"),
        Index("ix_payouts_scope_id", "merchant_id", "livemode", "id"),
        Index("ix_payouts_scope_seller", "merchant_id", "livemode", "seller_id", "currency"),
        # The rail's obligations: payouts to send, and payouts whose rail outcome is due.
        Index("ix_payouts_due", "next_attempt_at", postgresql_where=text("next_attempt_at IS NOT NULL")),
    )

    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"))
    livemode: Mapped[bool] = mapped_column(server_default=text("false"))
    id: Mapped[str] = mapped_column(String)
    seller_id: Mapped[str | None] = mapped_column(String)
    amount: Mapped[int]
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(16), server_default=text("'pending'"))
    kind: Mapped[str] = mapped_column(String(10))
    business_key: Mapped[str] = mapped_column(String(200))
    period: Mapped[date | None]
    description: Mapped[str | None] = mapped_column(String(500))
    bank_account_id: Mapped[str | None] = mapped_column(String)
    bank_account_last4: Mapped[str | None] = mapped_column(String(4))
    rail: Mapped[str] = mapped_column(String(20), server_default=text("'sandbox'"))
    rail_reference: Mapped[str | None] = mapped_column(String(100))
    # Held by the bank account's cooling period: not sent before this time.
    held_until: Mapped[datetime | None]
    hold_reason: Mapped[str | None] = mapped_column(String(40))
    next_attempt_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    arrival_date: Mapped[date | None]
    failure_code: Mapped[str | None] = mapped_column(String(40))
    failure_message: Mapped[str | None] = mapped_column(String(500))
    created_by: Mapped[str | None] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=text("now()"))
    sent_at: Mapped[datetime | None]
    paid_at: Mapped[datetime | None]
    failed_at: Mapped[datetime | None]
    canceled_at: Mapped[datetime | None]


class PayoutItem(Base):
    """A ledger entry (a balance transaction) that a scheduled payout pays: each entry is paid at most once."""

    __tablename__ = "payout_items"
    __table_args__ = (
        PrimaryKeyConstraint("merchant_id", "entry_id", name="pk_payout_items"),
        Index("ix_payout_items_payout", "merchant_id", "payout_id"),
    )

    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"))
    livemode: Mapped[bool] = mapped_column(server_default=text("false"))
    entry_id: Mapped[str] = mapped_column(String)
    payout_id: Mapped[str] = mapped_column(String)
    amount: Mapped[int]
