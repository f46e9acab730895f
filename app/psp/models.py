"""PSP-side tables: inbound callbacks (deduplicated), per-merchant PSP credentials (disputes: app/disputes/models.py).

Payment attempts and their PSP references belong to payments (app/payments/models.py); the PSP layer
stores what PSPs tell it and the secrets it needs to talk to them.
"""
from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from app.crypto import register_encrypted_column
from app.models_base import Base, MerchantOwned, utcnow


class PspCallback(Base):
    """One verified inbound callback, stored as received; (psp, callback_id) is unique, so retries dedupe.

    Not merchant-owned when it arrives: the merchant is found from the PSP reference while processing
    (and stays NULL for callbacks about objects Kassa does not know, or outside the callback's scope).
    The scope (app/psp/callbacks.py CallbackScope) is what the verifying secret speaks for: ``psp``,
    ``livemode``, ``verified_with`` and ``scope_merchant_id``.
    """

    __tablename__ = "psp_callbacks"
    __table_args__ = (
        UniqueConstraint("psp", "callback_id", name="uq_psp_callbacks_psp_callback_id"),
        # The sweep's claim: unprocessed rows that are due, oldest first.
        Index("ix_psp_callbacks_pending", "next_attempt_at", postgresql_where=text("processed_at IS NULL")),
        Index("ix_psp_callbacks_psp_reference", "psp_reference"),
        # The operators' inbox: callbacks that failed or were rejected and nobody dismissed yet.
        Index("ix_psp_callbacks_needs_operator", "received_at",
              postgresql_where=text("result IN ('failed', 'rejected') AND dismissed_at IS NULL")),
    )

    id: Mapped[str] = mapped_column(primary_key=True)
    psp: Mapped[str] = mapped_column(String(64))                 # the hook: sandbox | stripe
    callback_id: Mapped[str] = mapped_column(String(255))        # the PSP's id of the callback
    type: Mapped[str] = mapped_column(String(100))
    connector: Mapped[str | None] = mapped_column(String(64))
    psp_reference: Mapped[str | None] = mapped_column(String(255))
    psp_created: Mapped[int | None]                              # the PSP's event time (unix seconds)
    livemode: Mapped[bool]                                       # the one mode the verifying secret vouches for
    # "platform" (the platform's own secret at the PSP) or the psp_credentials id of a merchant's secret.
    verified_with: Mapped[str] = mapped_column(String(64))
    # A merchant's own account: the only merchant the callback may act on. NULL: the platform's account,
    # which serves the merchants without credentials of their own at this PSP in this mode.
    scope_merchant_id: Mapped[str | None] = mapped_column(ForeignKey("merchants.id"))
    payload: Mapped[dict[str, Any]]
    merchant_id: Mapped[str | None] = mapped_column(ForeignKey("merchants.id"), index=True)
    received_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=text("now()"))
    processed_at: Mapped[datetime | None]
    # unprocessed | applied | unmatched (no merchant owns the reference) | rejected (the object is outside
    # the callback's scope; nothing was changed) | failed (gave up)
    result: Mapped[str] = mapped_column(String(20), server_default=text("'unprocessed'"))
    attempts: Mapped[int] = mapped_column(server_default=text("0"))
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=text("now()"))
    last_error: Mapped[str | None] = mapped_column(Text)          # why the last try failed, or why it was rejected
    event_id: Mapped[str | None] = mapped_column(String(64))
    # An operator looked at a failed or rejected callback and closed it, saying why (the inbox drops it).
    dismissed_at: Mapped[datetime | None]
    dismissed_by_user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id"))
    dismissal_note: Mapped[str | None] = mapped_column(String(500))


class PspCredential(MerchantOwned, Base):
    """A merchant's own credentials at one PSP in one mode, secrets sealed with app/crypto.py SecretBox."""

    __tablename__ = "psp_credentials"
    __table_args__ = (
        # One current credential per merchant, mode and PSP; retired ones stay (payments made with them
        # still capture, void, refund and look up through them: app/psp/credentials.py).
        Index("uq_psp_credentials_current", "merchant_id", "livemode", "psp", unique=True,
              postgresql_where=text("retired_at IS NULL")),
        CheckConstraint("deposit_confirmation IN ('bank_statement', 'payout_events')", name="deposit_confirmation"),
    )

    id: Mapped[str] = mapped_column(primary_key=True)
    psp: Mapped[str] = mapped_column(String(64))
    secret_key_encrypted: Mapped[str] = mapped_column(Text)
    webhook_secret_encrypted: Mapped[str | None] = mapped_column(Text)
    publishable_key: Mapped[str | None] = mapped_column(String(255))   # public by design: sent to browsers
    # How the PSP's payouts of this account are confirmed as deposited (app/reconciliation/payout_events.py):
    # ``payout_events`` (paid into the merchant's own bank, which Kassa never sees: the PSP's payout.paid stands in
    # for the deposit) or ``bank_statement`` (paid into the platform's bank account, matched on its statement).
    deposit_confirmation: Mapped[str] = mapped_column(String(20), server_default=text("'payout_events'"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=text("now()"))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=text("now()"))
    # Replaced or deleted: no longer used for new payments, kept for the follow-ups of those made with it.
    retired_at: Mapped[datetime | None]


def credential_aad(row: PspCredential, column: str) -> str:
    """Associated data of a sealed credential: binds the ciphertext to its row and column."""
    return f"psp_credentials:{row.id}:{column}"


# `flask secrets rotate` re-seals these under the newest key (app/crypto.py).
register_encrypted_column(PspCredential, "secret_key_encrypted",
                          associated_data=lambda row: credential_aad(row, "secret_key"))
register_encrypted_column(PspCredential, "webhook_secret_encrypted",
                          associated_data=lambda row: credential_aad(row, "webhook_secret"))
