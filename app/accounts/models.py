"""Tenancy core: merchants (tenants), users, and memberships with a role."""
from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.models_base import Base, utcnow


class Merchant(Base):
    """A tenant: a business taking payments, with its own books in test and live mode."""

    __tablename__ = "merchants"
    __table_args__ = (
        CheckConstraint("(refund_reauth_threshold IS NULL) = (refund_reauth_currency IS NULL)",
                        name="refund_reauth_threshold_currency"),
        CheckConstraint("refund_reauth_threshold >= 0", name="refund_reauth_threshold_not_negative"),
        CheckConstraint("fee_bearer IN ('platform', 'seller')", name="fee_bearer"),
        CheckConstraint("payout_rail IN ('sandbox', 'sepa')", name="payout_rail"),
    )

    id: Mapped[str] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    # Branding shown on the hosted checkout page.
    display_name: Mapped[str | None] = mapped_column(String(200))
    accent_color: Mapped[str] = mapped_column(String(7), server_default=text("'#4f46e5'"))
    logo_url: Mapped[str | None] = mapped_column(String(2000))
    timezone: Mapped[str] = mapped_column(String(64), server_default=text("'UTC'"))
    live_enabled: Mapped[bool] = mapped_column(server_default=text("false"))
    # Business details the merchant gives for the go-live checklist (app/merchants/lifecycle.py).
    legal_name: Mapped[str | None] = mapped_column(String(200))
    address_line1: Mapped[str | None] = mapped_column(String(200))
    address_line2: Mapped[str | None] = mapped_column(String(200))
    postal_code: Mapped[str | None] = mapped_column(String(20))
    city: Mapped[str | None] = mapped_column(String(100))
    country: Mapped[str | None] = mapped_column(String(2))  # ISO 3166-1 alpha-2
    support_email: Mapped[str | None] = mapped_column(String(320))
    support_url: Mapped[str | None] = mapped_column(String(2000))
    # The merchant confirmed it needs no webhook endpoint (the checklist's alternative to having one).
    webhooks_not_needed: Mapped[bool] = mapped_column(server_default=text("false"))
    # Set by a platform operator: new payments are refused; reads and refunds go on (app/merchants).
    suspended_at: Mapped[datetime | None]
    suspension_reason: Mapped[str | None] = mapped_column(String(500))
    # Security settings (app/accounts/security.py): every member must have a second factor; refunds up to
    # this amount in this currency need no re-authentication (none set: every refund needs it).
    require_second_factor: Mapped[bool] = mapped_column(server_default=text("false"))
    refund_reauth_threshold: Mapped[int | None]
    refund_reauth_currency: Mapped[str | None] = mapped_column(String(3))
    # Risk: the platform keeps the review of this merchant's payments to itself (app/risk/reviews.py).
    risk_reviews_by_platform: Mapped[bool] = mapped_column(server_default=text("false"))
    # Who bears PSP and dispute fees (app/payouts/fees.py): the platform, or the seller of the money they are on.
    fee_bearer: Mapped[str] = mapped_column(String(10), server_default=text("'platform'"))
    # How payouts leave (app/payouts/sepa.py): the sandbox's bank transfers, or SEPA files the merchant's bank pays.
    payout_rail: Mapped[str] = mapped_column(String(10), server_default=text("'sandbox'"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=text("now()"))

    memberships: Mapped[list["Membership"]] = relationship(back_populates="merchant")


class User(Base):
    """A person who signs in to the dashboard; may belong to several merchants."""

    __tablename__ = "users"

    id: Mapped[str] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str | None] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(300))
    is_platform_admin: Mapped[bool] = mapped_column(server_default=text("false"))
    # Locked by a platform operator: cannot sign in, and every session ended (app/accounts/user_admin.py).
    locked_at: Mapped[datetime | None]
    locked_reason: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=text("now()"))

    memberships: Mapped[list["Membership"]] = relationship(back_populates="user")

    # The protocol Flask-Login expects of a user object (plain attributes, no Flask import).
    is_authenticated = True
    is_active = True
    is_anonymous = False

    def get_id(self) -> str:
        return self.id


class Membership(Base):
    """A user's role in one merchant."""

    __tablename__ = "memberships"
    __table_args__ = (UniqueConstraint("user_id", "merchant_id", name="uq_memberships_user_merchant"),)

    id: Mapped[str] = mapped_column(primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"), index=True)
    role: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=text("now()"))

    user: Mapped[User] = relationship(back_populates="memberships")
    merchant: Mapped[Merchant] = relationship(back_populates="memberships")
