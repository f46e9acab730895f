"""The mail outbox: every email Kassa sends (invitations, password resets) is a row here first.

There is no mail server in development: the dashboard's development page lists this table. A production
sender would pick up rows with sent_at NULL. Never imports Flask.
"""
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text, text
from sqlalchemy.orm import Mapped, Session, mapped_column

from app.ids import new_id
from app.models_base import Base, utcnow


class MailMessage(Base):
    """One email, as it would be sent."""

    __tablename__ = "mail_outbox"
    __table_args__ = (Index("ix_mail_outbox_created_at", "created_at"),)

    id: Mapped[str] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(40))  # invitation, password_reset, ...
    to_address: Mapped[str] = mapped_column(String(320))
    subject: Mapped[str] = mapped_column(String(300))
    body_text: Mapped[str] = mapped_column(Text)
    merchant_id: Mapped[str | None] = mapped_column(ForeignKey("merchants.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=text("now()"))
    sent_at: Mapped[datetime | None]


def queue_mail(session: Session, *, kind: str, to: str, subject: str, body: str,
               merchant_id: str | None = None) -> MailMessage:
    """Put an email in the outbox, in the caller's transaction (so it exists only if the work commits)."""
    message = MailMessage(id=new_id("mail"), kind=kind, to_address=to, subject=subject, body_text=body,
                          merchant_id=merchant_id)
    session.add(message)
    session.flush()
    return message
