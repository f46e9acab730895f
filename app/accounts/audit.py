"""Audit log: who did what, from where. Append-only, enforced by the database."""
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, text
from sqlalchemy.orm import Mapped, Session, mapped_column

from app import pan
from app.ids import new_id
from app.models_base import Base, utcnow


class AuditEntry(Base):
    """One audited action (sign-in, failed sign-in, role change, key created/rolled/revoked, mode switch, ...)."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_merchant_created", "merchant_id", "created_at"),)

    id: Mapped[str] = mapped_column(primary_key=True)
    merchant_id: Mapped[str | None] = mapped_column(ForeignKey("merchants.id"))
    livemode: Mapped[bool | None]
    actor_user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id"))
    actor_label: Mapped[str | None] = mapped_column(String(320))  # e.g. the email tried at a failed sign-in
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str | None] = mapped_column(String(200))
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(400))
    request_id: Mapped[str | None]
    details: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=text("now()"))


def audit(
    session: Session, action: str, *, merchant_id: str | None = None, livemode: bool | None = None,
    actor_user_id: str | None = None, actor_label: str | None = None, target: str | None = None,
    ip: str | None = None, user_agent: str | None = None, request_id: str | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEntry:
    """Append an audit entry in the caller's transaction."""
    entry = AuditEntry(
        id=new_id("aud"), merchant_id=merchant_id, livemode=livemode, actor_user_id=actor_user_id,
        actor_label=actor_label, action=action, target=target, ip=ip,
        # A header is whatever the client sends: never keep a card number from it (app/pan.py).
        user_agent=pan.redact(user_agent or "")[:400] or None, request_id=request_id, details=details or {},
    )
    session.add(entry)
    return entry


# Reasons operators give for their actions (recorded in the details of the audit entry): a few sentences.
REASON_MAX = 500


class ReasonRequired(ValueError):
    """An operator action without a usable reason; ``message`` says what to write."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def operator_reason(reason: str | None) -> str:
    """The reason an operator gave for an action, stripped; ReasonRequired when empty or too long."""
    reason = (reason or "").strip()
    if not reason:
        raise ReasonRequired("Give a reason: it is recorded in the audit log.")
    if len(reason) > REASON_MAX:
        raise ReasonRequired(f"Keep the reason to {REASON_MAX} characters.")
    return reason
