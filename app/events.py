"""Events: the append-only record of every state change, written in the caller's transaction (the outbox)."""
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, text
from sqlalchemy.orm import Mapped, Session, mapped_column

from app.ids import new_id
from app.models_base import Base, MerchantOwned, utcnow
from app.scoping import Scope


class Event(MerchantOwned, Base):
    """Something that happened to a merchant's object, with the object as it was (append-only)."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_scope_created", "merchant_id", "livemode", "id"),)

    id: Mapped[str] = mapped_column(primary_key=True)
    type: Mapped[str]
    object_type: Mapped[str]
    object_id: Mapped[str] = mapped_column(index=True)
    data: Mapped[dict[str, Any]]
    request_id: Mapped[str | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=text("now()"))


class PendingFanout(Base):
    """An event not yet fanned out to webhook endpoints; claimed with FOR UPDATE SKIP LOCKED, then deleted."""

    __tablename__ = "event_fanout_pending"

    event_id: Mapped[str] = mapped_column(ForeignKey("events.id"), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=text("now()"))


def record_event(
    session: Session, scope: Scope, event_type: str, object_type: str, object_id: str,
    data: dict[str, Any], request_id: str | None = None,
) -> Event:
    """Append an Event and its pending fan-out row in the caller's transaction."""
    event = scope.new(
        Event, id=new_id("evt"), type=event_type, object_type=object_type,
        object_id=object_id, data=data, request_id=request_id, created_at=utcnow(),
    )
    session.add(event)
    session.flush()
    session.add(PendingFanout(event_id=event.id))
    return event


def event_payload(event: Event) -> dict[str, Any]:
    """The public JSON shape of an event (API, webhooks)."""
    return {
        "id": event.id,
        "object": "event",
        "type": event.type,
        "livemode": event.livemode,
        "created": int(event.created_at.timestamp()),
        "data": {"object": event.data},
        "request": {"id": event.request_id},
    }
