"""Dispute tables: disputes (as the PSP reports them, with the merchant's evidence and what was booked) and the
files merchants upload as evidence (migration 0019_disputes).

Both are merchant-owned and sharded by merchant (ARCHITECTURE.md, "Growing past one machine"):
``merchant_id`` leads every key. A dispute names its payment by id without a foreign key, as the token
bindings do: ``payments``' key is its id alone, and a key between distributed tables must include
``merchant_id``. A file's content is a ``bytea`` here, or a file named by its id in FILES_DIRECTORY.
"""
from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, LargeBinary, PrimaryKeyConstraint, String, \
    Text, UniqueConstraint, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.models_base import Base, utcnow

# Stripe's dispute statuses (the sandbox speaks the same): inquiries first (warning_*: no money moves),
# then chargebacks. ``prevented`` is Stripe's for a dispute stopped before it reached the merchant.
STATUSES = ("warning_needs_response", "warning_under_review", "warning_closed", "needs_response", "under_review",
            "won", "lost", "prevented")
# Statuses in which the merchant may still answer: save evidence, submit it, or accept (close).
AWAITING_RESPONSE = ("warning_needs_response", "needs_response")
CLOSED = ("warning_closed", "won", "lost", "prevented")
INQUIRY_STATUSES = ("warning_needs_response", "warning_under_review", "warning_closed")
# Stripe's reason codes.
REASONS = ("fraudulent", "product_not_received", "duplicate", "credit_not_processed", "subscription_canceled",
           "product_unacceptable", "unrecognized", "general", "bank_cannot_process", "check_returned",
           "customer_initiated", "debit_not_authorized", "incorrect_account_details", "insufficient_funds",
           "noncompliant")
# What the merchant asked Kassa to tell the PSP; a worker sends it (app/jobs/disputes.py).
ACTIONS = ("submit", "close")
FILE_PURPOSES = ("dispute_evidence",)
FILE_TYPES = ("pdf", "png", "jpg")
FILE_STORAGES = ("database", "directory")


def _in(values) -> str:
    return ", ".join(f"'{v}'" for v in values)


class Dispute(Base):
    """A dispute (an inquiry or a chargeback) of one payment, as its PSP reports it.

    Kassa's own columns around the PSP's: the evidence the merchant saved (``evidence``, Stripe's field
    names; file fields hold file ids), the action the merchant asked for and not yet confirmed by the PSP
    (``pending_action``, sent by a worker with ``action_*`` as its schedule), and what the ledger holds:
    ``allocations`` (each order's share of the disputed amount and the platform fee taken back, fixed when
    the funds were withdrawn) and when the withdrawal, the dispute fee and the reinstatement were booked.
    """

    __tablename__ = "disputes"
    __table_args__ = (
        PrimaryKeyConstraint("merchant_id", "id", name="pk_disputes"),
        UniqueConstraint("merchant_id", "psp", "psp_reference", name="uq_disputes_merchant_psp_reference"),
        CheckConstraint("amount >= 0", name="amount_not_negative"),
        CheckConstraint("submission_count >= 0", name="submission_count_not_negative"),
        CheckConstraint(f"pending_action IN ({_in(ACTIONS)})", name="pending_action"),
        # A dispute id the PSP reports names its merchant (app/disputes/callbacks.py): looked up across books.
        Index("ix_disputes_psp_reference", "psp", "psp_reference"),
        Index("ix_disputes_scope_created", "merchant_id", "livemode", "created_at"),
        Index("ix_disputes_scope_payment", "merchant_id", "livemode", "payment_id"),
        # Reminders and the operators' inbox: disputes still waiting for the merchant, by deadline.
        Index("ix_disputes_awaiting_response", "evidence_due_by",
              postgresql_where=text(f"status IN ({_in(AWAITING_RESPONSE)})")),
        # The sweep's pick: actions the PSP has not confirmed yet, by due time.
        Index("ix_disputes_actions_due", "action_next_attempt_at", postgresql_where=text("pending_action IS NOT NULL")),
    )

    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"), index=True)
    livemode: Mapped[bool] = mapped_column(server_default=text("false"))
    id: Mapped[str] = mapped_column(String)
    psp: Mapped[str] = mapped_column(String(64))
    connector: Mapped[str | None] = mapped_column(String(64))
    psp_reference: Mapped[str] = mapped_column(String(255))                     # the PSP's dispute id
    authorization_reference: Mapped[str | None] = mapped_column(String(255))    # the disputed authorization
    payment_id: Mapped[str | None] = mapped_column(String(64))
    amount: Mapped[int]
    currency: Mapped[str] = mapped_column(String(3))
    reason: Mapped[str | None] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(40))
    # Whether the payment may still be refunded (an inquiry: the usual way to end one), as the PSP says.
    is_charge_refundable: Mapped[bool] = mapped_column(server_default=text("false"))
    evidence: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    evidence_due_by: Mapped[datetime | None]
    submission_count: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    # When the merchant submitted the evidence now with the PSP (or on its way there): from then on it is final.
    submitted_at: Mapped[datetime | None]
    accepted_at: Mapped[datetime | None]                                      # the merchant accepted (closed) it
    pending_action: Mapped[str | None] = mapped_column(String(16))
    # The submission count when the pending action was requested: its idempotency key and the retry's check
    # are derived from it, never from the count a PSP notice may raise while the action is on its way.
    action_submission_count: Mapped[int | None] = mapped_column(Integer)
    action_tries: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    action_next_attempt_at: Mapped[datetime | None]
    action_lease_until: Mapped[datetime | None]
    action_error: Mapped[str | None] = mapped_column(Text)                    # why the PSP refused the last one
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSONB, server_default=text("'{}'::jsonb"))
    allocations: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, server_default=text("'[]'::jsonb"))
    funds_withdrawn_at: Mapped[datetime | None]
    funds_reinstated_at: Mapped[datetime | None]
    # The dispute fee the PSP charged (in the currency it charged it in, which may be its settlement
    # currency) and the part it gave back, once booked.
    fee: Mapped[int | None]
    fee_currency: Mapped[str | None] = mapped_column(String(3))
    fee_returned: Mapped[int | None]
    opened_notified_at: Mapped[datetime | None]
    reminded_at: Mapped[datetime | None]
    psp_created: Mapped[int | None]
    # The PSP event time of the latest notice applied (with the status order, app/disputes/service.py).
    last_event_at: Mapped[int | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=text("now()"))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=text("now()"))
    closed_at: Mapped[datetime | None]


class File(Base):
    """A file a merchant uploaded (dispute evidence): checked by its content, kept under its own id.

    ``filename`` is only a label for people (what the browser called it, cleaned); the file is stored and
    served as ``<id>.<type>``. ``sha256`` is checked whenever the content is read back.
    """

    __tablename__ = "files"
    __table_args__ = (
        PrimaryKeyConstraint("merchant_id", "id", name="pk_files"),
        CheckConstraint(f"purpose IN ({_in(FILE_PURPOSES)})", name="purpose"),
        CheckConstraint(f"type IN ({_in(FILE_TYPES)})", name="type"),
        CheckConstraint(f"storage IN ({_in(FILE_STORAGES)})", name="storage"),
        CheckConstraint("size > 0", name="size_positive"),
        CheckConstraint("(storage = 'database') = (content IS NOT NULL)", name="content_where_stored"),
        Index("ix_files_scope_created", "merchant_id", "livemode", "created_at"),
    )

    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"))
    livemode: Mapped[bool] = mapped_column(server_default=text("false"))
    id: Mapped[str] = mapped_column(String)
    purpose: Mapped[str] = mapped_column(String(40))
    type: Mapped[str] = mapped_column(String(8))
    size: Mapped[int]
    pages: Mapped[int] = mapped_column(Integer, server_default=text("1"))
    sha256: Mapped[str] = mapped_column(String(64))
    filename: Mapped[str | None] = mapped_column(String(255))
    storage: Mapped[str] = mapped_column(String(16))
    content: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=text("now()"))
