"""Early fraud warnings (Stripe's ``radar.early_fraud_warning``): an issuer's notice that a payment was fraudulent,
sent by the PSP before (and often instead of) a dispute. Table ``early_fraud_warnings`` (migration
0033_early_fraud_warnings).

Where they come from: a PSP callback of type ``early_fraud_warning.created`` or ``early_fraud_warning.updated``
(the Stripe connector maps ``radar.early_fraud_warning.*`` onto them, the sandbox sends them when
``POST /_admin/early_fraud_warnings`` raises one). The callback is admitted like every other (app/psp/callbacks.py:
its owner is the payment the PSP reference names, inside the scope of the secret that verified it), then
``on_warning_notice`` keeps one row per (merchant, PSP, PSP warning id) and writes the merchant's event
``radar.early_fraud_warning.created`` or ``.updated`` (sent to its webhook endpoints like every event).

What reads them: ``GET /v1/radar/early_fraud_warnings`` (app/api/fraud_warnings.py), the dashboard's payment page,
and the learned score's labels (app/risk/learning/training.py): a live payment with a warning is fraudulent;
test-mode warnings (every sandbox warning) never become labels.

Merchant-owned and sharded by merchant: ``merchant_id`` leads every key, and the payment is named by id without
a foreign key (``payments``' key is its id alone), as disputes do.

A service: never imports Flask, never commits.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, Integer, PrimaryKeyConstraint, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, Session, mapped_column

from app.events import record_event
from app.ids import new_id
from app.models_base import Base, utcnow
from app.psp.callbacks import CALLBACK_HANDLERS, CallbackOwner, Recorded
from app.psp.interfaces import CallbackEvent
from app.scoping import Scope

# The callback types (normalized by the connectors); they become the merchant's events
# radar.early_fraud_warning.created and .updated (``apply_notice``).
NOTICE_TYPES = ("early_fraud_warning.created", "early_fraud_warning.updated")
# Stripe's fraud types; the sandbox raises these too. Another value a PSP sends is stored as it is (a new
# issuer category must not make the callback fail and be retried for a day), so the column has no CHECK.
FRAUD_TYPES = ("card_never_received", "fraudulent_card_application", "made_with_counterfeit_card",
               "made_with_lost_card", "made_with_stolen_card", "misc", "unauthorized_use_of_card")


class EarlyFraudWarning(Base):
    """A PSP's early fraud warning about one of the merchant's payments, as last reported."""

    __tablename__ = "early_fraud_warnings"
    __table_args__ = (
        PrimaryKeyConstraint("merchant_id", "id", name="pk_early_fraud_warnings"),
        UniqueConstraint("merchant_id", "psp", "psp_reference", name="uq_early_fraud_warnings_merchant_psp_reference"),
        # The list (newest first) and the payment page / the labels query (by payment).
        Index("ix_early_fraud_warnings_scope_payment", "merchant_id", "livemode", "payment_id"),
    )

    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"))
    livemode: Mapped[bool] = mapped_column(server_default=text("false"))
    id: Mapped[str] = mapped_column(String(64))
    payment_id: Mapped[str] = mapped_column(String(64))
    psp: Mapped[str] = mapped_column(String(64))
    connector: Mapped[str | None] = mapped_column(String(64))
    psp_reference: Mapped[str] = mapped_column(String(255))        # the PSP's warning id (issfr_..., efw_...)
    charge_reference: Mapped[str | None] = mapped_column(String(255))  # the PSP's charge / authorization
    fraud_type: Mapped[str] = mapped_column(String(64))
    actionable: Mapped[bool] = mapped_column(Boolean)
    # The PSP's times: when the issuer's warning was made, and of the newest notice applied (an older notice
    # arriving late does not undo a newer one).
    psp_created: Mapped[datetime]
    psp_updated: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=text("now()"))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow, server_default=text("now()"))


def _unix(moment: datetime | None) -> int | None:
    return int(moment.timestamp()) if moment else None


def warning_object(row: EarlyFraudWarning) -> dict[str, Any]:
    """Stripe's ``radar.early_fraud_warning`` shape. Kassa has no charge objects: ``charge`` is null and the
    payment is ``payment_intent`` (and ``payment``), as on reviews; the PSP's own ids are ``psp_*``."""
    return {
        "id": row.id, "object": "radar.early_fraud_warning", "actionable": row.actionable, "charge": None,
        "created": _unix(row.psp_created), "fraud_type": row.fraud_type, "livemode": row.livemode,
        "payment_intent": row.payment_id, "payment": row.payment_id, "psp": row.psp,
        "psp_reference": row.psp_reference, "psp_charge": row.charge_reference,
    }


def warnings_for_payment(session: Session, scope: Scope, payment_id: str) -> list[EarlyFraudWarning]:
    """The payment's warnings in the merchant's book, oldest first (the payment page)."""
    return list(session.scalars(scope.select(EarlyFraudWarning, EarlyFraudWarning.payment_id == payment_id)
                                .order_by(EarlyFraudWarning.psp_created, EarlyFraudWarning.id)))


def _created(data: dict, fallback: int | None) -> datetime:
    seconds = data.get("created") if isinstance(data.get("created"), int) else fallback
    return datetime.fromtimestamp(seconds, timezone.utc) if seconds else utcnow()


def apply_notice(session: Session, psp: str, event: CallbackEvent, scope: Scope, payment_id: str) -> list:
    """Keep the warning a notice reports on ``payment_id`` in ``scope``'s book; the events written ([] when the
    notice changed nothing: a duplicate, or older than what is stored)."""
    data = event.data
    reference = str(data.get("id") or "")
    if not reference:
        raise ValueError("an early fraud warning notice without the warning's id")
    fraud_type = str(data.get("fraud_type") or "misc")[:64]
    actionable = bool(data.get("actionable"))
    noticed = event.created or 0
    row = session.scalars(scope.select(EarlyFraudWarning, EarlyFraudWarning.psp == psp,
                                       EarlyFraudWarning.psp_reference == reference).with_for_update()).one_or_none()
    if row is None:
        row = scope.new(EarlyFraudWarning, id=new_id("issfr"), payment_id=payment_id, psp=psp,
                        connector=event.connector, psp_reference=reference,
                        charge_reference=data.get("charge") or data.get("authorization"), fraud_type=fraud_type,
                        actionable=actionable, psp_created=_created(data, event.created), psp_updated=noticed)
        session.add(row)
        session.flush()
        event_type = "radar.early_fraud_warning.created"
    else:
        if noticed < row.psp_updated or (row.fraud_type, row.actionable) == (fraud_type, actionable):
            return []
        row.fraud_type, row.actionable, row.psp_updated = fraud_type, actionable, noticed
        session.flush()
        event_type = "radar.early_fraud_warning.updated"
    return [record_event(session, scope, event_type, "radar.early_fraud_warning", row.id, warning_object(row))]


def on_warning_notice(session: Session, event: CallbackEvent, owner: CallbackOwner) -> Recorded:
    """The ``early_fraud_warning.*`` callback handler: apply the notice in the owner's book."""
    if owner.object_type != "payment" or not owner.object_id:
        raise ValueError("an early fraud warning names no payment of the merchant")
    events = apply_notice(session, event.psp or "", event, owner.scope, owner.object_id)
    return Recorded(events[0] if events else None)


for _type in NOTICE_TYPES:
    CALLBACK_HANDLERS[_type] = on_warning_notice
