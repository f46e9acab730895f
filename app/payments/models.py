"""Payments: sellers, payments split into orders, PSP attempts, refunds and idempotency keys.

Every table is merchant-owned (``merchant_id`` + ``livemode``) and read through app.scoping.Scope.
Amounts are integer minor units of the payment's currency. Card numbers never reach these tables:
a payment keeps the PSP vault's token plus brand, last 4, expiry and fingerprint.
"""
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, PrimaryKeyConstraint, String, UniqueConstraint, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.models_base import Base, MerchantOwned, utcnow


class PaymentStatus(StrEnum):
    """Payment states (Stripe's PaymentIntent vocabulary); moves live in app/payments/state.py."""

    REQUIRES_PAYMENT_METHOD = "requires_payment_method"
    REQUIRES_CONFIRMATION = "requires_confirmation"
    REQUIRES_ACTION = "requires_action"      # 3-D Secure challenge pending
    PROCESSING = "processing"                # an authorization (and, for automatic capture, its capture) runs
    REQUIRES_CAPTURE = "requires_capture"    # authorized, waiting for a manual capture (or review)
    SUCCEEDED = "succeeded"                  # captured; money is booked in the ledger
    CANCELED = "canceled"


class CaptureMethod(StrEnum):
    AUTOMATIC = "automatic"
    MANUAL = "manual"


class AttemptOperation(StrEnum):
    AUTHORIZE = "authorize"
    CAPTURE = "capture"
    VOID = "void"


class AttemptStatus(StrEnum):
    """One PSP try. ``processing`` and ``unknown`` are open: a job or the janitor still owes an answer."""

    PROCESSING = "processing"          # created or in flight; the PSP may or may not have seen it
    UNKNOWN = "unknown"                # the PSP's answer was ambiguous (timeout, 5xx): resolve by status query
    REQUIRES_ACTION = "requires_action"  # authorize only: 3-D Secure pending at the PSP
    SUCCEEDED = "succeeded"            # authorized / captured / voided
    DECLINED = "declined"              # a definite refusal with a decline code
    FAILED = "failed"                  # an error the PSP defines as not processed, or an invalid request


OPEN_ATTEMPT_STATUSES = (AttemptStatus.PROCESSING, AttemptStatus.UNKNOWN)


class RefundStatus(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


def _in(values) -> str:
    return ", ".join(f"'{v}'" for v in values)


class Seller(MerchantOwned, Base):
    """A marketplace sub-account that receives split funds; every merchant has a default seller per mode."""

    __tablename__ = "sellers"
    __table_args__ = (
        Index("ix_sellers_scope_id", "merchant_id", "livemode", "id"),
        # At most one default seller per book: the lazy creation relies on it (INSERT ... ON CONFLICT).
        Index("uq_sellers_default", "merchant_id", "livemode", unique=True,
              postgresql_where=text("is_default")),
    )

    id: Mapped[str] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(320))
    is_default: Mapped[bool] = mapped_column(server_default=text("false"))
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", server_default=text("'{}'::jsonb"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=text("now()"))


class Payment(MerchantOwned, Base):
    """A payment (Stripe's PaymentIntent): amount, currency, status, the card summary and running totals."""

    __tablename__ = "payments"
    __table_args__ = (
        CheckConstraint(f"status IN ({_in(PaymentStatus)})", name="status"),
        CheckConstraint(f"capture_method IN ({_in(CaptureMethod)})", name="capture_method"),
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("amount_capturable >= 0 AND amount_capturable <= amount", name="amount_capturable_range"),
        CheckConstraint("amount_received >= 0 AND amount_received <= amount", name="amount_received_range"),
        CheckConstraint("amount_refunded >= 0 AND amount_refunded <= amount_received", name="amount_refunded_range"),
        # Keyset pagination (newest first by id, a ULID) and the list filters, always within one book.
        Index("ix_payments_scope_id", "merchant_id", "livemode", "id"),
        Index("ix_payments_scope_status_id", "merchant_id", "livemode", "status", "id"),
        Index("ix_payments_scope_email_id", "merchant_id", "livemode", "customer_email", "id"),
        Index("ix_payments_scope_created", "merchant_id", "livemode", "created_at"),
        # The list's risk filters (app/risk): level and outcome type within one book.
        Index("ix_payments_scope_risk_level_id", "merchant_id", "livemode", "risk_level", "id"),
        Index("ix_payments_scope_card_fingerprint", "merchant_id", "livemode", "card_fingerprint"),
        # The expiry sweep reads only uncaptured authorizations, oldest first.
        Index("ix_payments_authorized_uncaptured", "authorized_at",
              postgresql_where=text("status = 'requires_capture'")),
    )

    id: Mapped[str] = mapped_column(primary_key=True)
    amount: Mapped[int]
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(32))
    capture_method: Mapped[str] = mapped_column(String(16))
    amount_capturable: Mapped[int] = mapped_column(server_default=text("0"))
    amount_received: Mapped[int] = mapped_column(server_default=text("0"))   # captured
    amount_refunded: Mapped[int] = mapped_column(server_default=text("0"))   # succeeded refunds only
    customer_email: Mapped[str | None] = mapped_column(String(320))
    description: Mapped[str | None] = mapped_column(String(1000))
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", server_default=text("'{}'::jsonb"))
    # The payment method: a token of one PSP vault and what Kassa may keep about the card.
    payment_method_token: Mapped[str | None] = mapped_column(String(255))
    payment_method_vault: Mapped[str | None] = mapped_column(String(64))
    card_brand: Mapped[str | None] = mapped_column(String(32))
    card_last4: Mapped[str | None] = mapped_column(String(4))
    card_exp_month: Mapped[int | None] = mapped_column(Integer)
    card_exp_year: Mapped[int | None] = mapped_column(Integer)
    card_fingerprint: Mapped[str | None] = mapped_column(String(128))
    # The authorization that holds the money: which connector and the PSP's id for it.
    connector: Mapped[str | None] = mapped_column(String(64))
    psp_reference: Mapped[str | None] = mapped_column(String(255))
    # ...and the credential it was made with: ``platform`` or the merchant's psp_credentials id. Every
    # follow-up (capture, void, refund, status query, dispute action) uses exactly this one.
    credential: Mapped[str | None] = mapped_column(String(64))
    latest_attempt_id: Mapped[str | None] = mapped_column(String(64))
    return_url: Mapped[str | None] = mapped_column(String(2000))
    next_action_url: Mapped[str | None] = mapped_column(String(2000))
    last_error: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    cancellation_reason: Mapped[str | None] = mapped_column(String(64))
    # Risk (app/risk): the shopper's IP (checkout request or the API's customer_ip), the latest assessment's
    # score and level, the outcome shaped like Stripe's charge ``outcome``, the open or closed review, and
    # whether a rule asked the PSP for 3-D Secure.
    customer_ip: Mapped[str | None] = mapped_column(String(45))
    risk_score: Mapped[int | None] = mapped_column(Integer)
    risk_level: Mapped[str | None] = mapped_column(String(16))
    risk_outcome: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    review_id: Mapped[str | None] = mapped_column(String(64))
    request_three_d_secure: Mapped[bool] = mapped_column(server_default=text("false"))
    # Number of captures booked so far (business keys capture:<id>, capture:<id>:2, ...).
    capture_count: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    authorized_at: Mapped[datetime | None]
    captured_at: Mapped[datetime | None]
    canceled_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=text("now()"))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow, server_default=text("now()"))


class PaymentOrder(MerchantOwned, Base):
    """One seller's part of a payment: its amount, the platform fee taken from it, and running totals."""

    __tablename__ = "payment_orders"
    __table_args__ = (
        UniqueConstraint("payment_id", "seller_id", name="uq_payment_orders_payment_seller"),
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("fee >= 0 AND fee <= amount", name="fee_range"),
        CheckConstraint("amount_captured >= 0 AND amount_captured <= amount", name="captured_range"),
        CheckConstraint("fee_captured >= 0 AND fee_captured <= fee", name="fee_captured_range"),
        CheckConstraint("amount_refunded >= 0 AND amount_refunded <= amount_captured", name="refunded_range"),
        CheckConstraint("fee_refunded >= 0 AND fee_refunded <= fee_captured", name="fee_refunded_range"),
        Index("ix_payment_orders_scope_seller", "merchant_id", "livemode", "seller_id", "payment_id"),
    )

    id: Mapped[str] = mapped_column(primary_key=True)
    payment_id: Mapped[str] = mapped_column(ForeignKey("payments.id"), index=True)
    seller_id: Mapped[str] = mapped_column(ForeignKey("sellers.id"))
    position: Mapped[int] = mapped_column(Integer)   # order in the request's split, for stable allocation
    amount: Mapped[int]
    fee: Mapped[int] = mapped_column(server_default=text("0"))
    amount_captured: Mapped[int] = mapped_column(server_default=text("0"))
    fee_captured: Mapped[int] = mapped_column(server_default=text("0"))
    amount_refunded: Mapped[int] = mapped_column(server_default=text("0"))
    fee_refunded: Mapped[int] = mapped_column(server_default=text("0"))


class PaymentAttempt(MerchantOwned, Base):
    """One PSP operation for a payment (authorize, capture or void), with its outcome and timings.

    ``idempotency_key`` is derived from the attempt id and sent to the PSP on every try, so a retry
    of an ambiguous attempt can never charge twice. ``next_attempt_at`` is when the janitor looks at
    an open attempt next (the database is the schedule); ``lease_until`` keeps two runners apart.
    """

    __tablename__ = "payment_attempts"
    __table_args__ = (
        CheckConstraint(f"operation IN ({_in(AttemptOperation)})", name="operation"),
        CheckConstraint(f"status IN ({_in(AttemptStatus)})", name="status"),
        CheckConstraint("amount > 0", name="amount_positive"),
        # The janitor's query: open attempts by due time.
        Index("ix_payment_attempts_due", "next_attempt_at",
              postgresql_where=text("status IN ('processing', 'unknown', 'requires_action')")),
        # Late PSP callbacks find their attempt by the PSP's reference.
        Index("ix_payment_attempts_psp_reference", "psp_reference"),
        # "Needs attention" (dashboard, operators): the few rows marked, per book.
        Index("ix_payment_attempts_attention", "merchant_id", "livemode", "payment_id",
              postgresql_where=text("attention_since IS NOT NULL")),
    )

    id: Mapped[str] = mapped_column(primary_key=True)
    payment_id: Mapped[str] = mapped_column(ForeignKey("payments.id"), index=True)
    operation: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(20))
    amount: Mapped[int]
    currency: Mapped[str] = mapped_column(String(3))
    vault: Mapped[str | None] = mapped_column(String(64))
    # authorize only: the vault token charged (a reference into the PSP's vault, never a card number).
    payment_method_token: Mapped[str | None] = mapped_column(String(255))
    # Set once a PSP answered (or for capture/void, the connector that holds the authorization).
    connector: Mapped[str | None] = mapped_column(String(64))
    psp_reference: Mapped[str | None] = mapped_column(String(255))
    # The credential the PSP was called with (``platform`` or a psp_credentials id; capture/void: the
    # authorization's): every later call about this attempt uses it, never the merchant's current one.
    credential: Mapped[str | None] = mapped_column(String(64))
    psp_status: Mapped[str | None] = mapped_column(String(64))
    decline_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(String(1000))
    action_url: Mapped[str | None] = mapped_column(String(2000))
    idempotency_key: Mapped[str] = mapped_column(String(255), unique=True)
    tries: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    lease_until: Mapped[datetime | None]
    next_attempt_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    latency_ms: Mapped[int | None] = mapped_column(Integer)
    # Marked when the PSP gave no definite answer for longer than PSP_UNKNOWN_ATTENTION_AFTER: why, and
    # since when; cleared by a definite answer (app/payments/attention.py).
    attention_reason: Mapped[str | None] = mapped_column(String(500))
    attention_since: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=text("now()"))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow, server_default=text("now()"))


class Refund(MerchantOwned, Base):
    """Money returned to the shopper: pending until the PSP answers, booked only when it succeeded.

    ``allocations`` is the per-seller split fixed at creation: [{"order", "seller", "amount"}]; the
    platform fee returned with it is computed when the refund is booked.
    """

    __tablename__ = "refunds"
    __table_args__ = (
        CheckConstraint(f"status IN ({_in(RefundStatus)})", name="status"),
        CheckConstraint("amount > 0", name="amount_positive"),
        Index("ix_refunds_scope_id", "merchant_id", "livemode", "id"),
        Index("ix_refunds_scope_payment_id", "merchant_id", "livemode", "payment_id", "id"),
        Index("ix_refunds_due", "next_attempt_at", postgresql_where=text("status = 'pending'")),
        Index("ix_refunds_attention", "merchant_id", "livemode", "payment_id",
              postgresql_where=text("attention_since IS NOT NULL")),
    )

    id: Mapped[str] = mapped_column(primary_key=True)
    payment_id: Mapped[str] = mapped_column(ForeignKey("payments.id"), index=True)
    amount: Mapped[int]
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(64))
    allocations: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", server_default=text("'{}'::jsonb"))
    connector: Mapped[str | None] = mapped_column(String(64))
    psp_reference: Mapped[str | None] = mapped_column(String(255))
    credential: Mapped[str | None] = mapped_column(String(64))   # the payment's (Payment.credential)
    failure_code: Mapped[str | None] = mapped_column(String(64))
    failure_message: Mapped[str | None] = mapped_column(String(1000))
    idempotency_key: Mapped[str] = mapped_column(String(255), unique=True)
    tries: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    lease_until: Mapped[datetime | None]
    next_attempt_at: Mapped[datetime | None]
    latency_ms: Mapped[int | None] = mapped_column(Integer)
    # As on PaymentAttempt: no definite answer from the PSP for too long, why and since when.
    attention_reason: Mapped[str | None] = mapped_column(String(500))
    attention_since: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=text("now()"))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow, server_default=text("now()"))
    finished_at: Mapped[datetime | None]


class IdempotencyKey(MerchantOwned, Base):
    """A client's idempotency key: the request it guards, how far the work got, and the first response.

    ``recovery_point`` names the last committed atomic phase (``started`` ... ``finished``);
    ``locked_at``/``locked_by`` mark the request that currently drives it (a retry meanwhile gets 409);
    ``state`` carries ids between phases (e.g. the payment created in the first one).
    """

    __tablename__ = "idempotency_keys"
    __table_args__ = (
        UniqueConstraint("merchant_id", "livemode", "key", name="uq_idempotency_keys_scope_key"),
        # The reaper deletes by age.
        Index("ix_idempotency_keys_created_at", "created_at"),
        # The completer reads unfinished keys only.
        Index("ix_idempotency_keys_unfinished", "last_run_at",
              postgresql_where=text("recovery_point <> 'finished'")),
    )

    id: Mapped[str] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(255))
    operation: Mapped[str] = mapped_column(String(64))
    request_method: Mapped[str] = mapped_column(String(10))
    request_path: Mapped[str] = mapped_column(String(2000))
    request_params: Mapped[dict[str, Any]] = mapped_column(JSONB)
    request_fingerprint: Mapped[str] = mapped_column(String(64))
    recovery_point: Mapped[str] = mapped_column(String(64))
    state: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    locked_at: Mapped[datetime | None]
    locked_by: Mapped[str | None] = mapped_column(String(64))
    response_status: Mapped[int | None] = mapped_column(Integer)
    response_body: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    request_id: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=text("now()"))
    last_run_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=text("now()"))
    finished_at: Mapped[datetime | None]


class PaymentTokenBinding(Base):
    """Which payment first used a vault token: a token pays for that payment only (its retries and its
    failover among the vault's connectors included), never for another one.

    Keyed by book, vault and token, so the binding lives on the merchant's shard (ARCHITECTURE, Citus).
    No foreign key to ``payments``: its key is the id alone, and a key between distributed tables must
    include ``merchant_id``; the row is written in the transaction that attaches the token to its payment.
    """

    __tablename__ = "payment_token_bindings"
    __table_args__ = (PrimaryKeyConstraint("merchant_id", "livemode", "vault", "token",
                                           name="pk_payment_token_bindings"),)

    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"))
    livemode: Mapped[bool]
    vault: Mapped[str] = mapped_column(String(64))
    token: Mapped[str] = mapped_column(String(255))
    payment_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=text("now()"))
