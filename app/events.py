"""Events: the append-only record of every state change, written in the caller's transaction (the outbox)."""
from datetime import datetime
from typing import Any, Callable

from sqlalchemy import ColumnElement, ForeignKey, Index, Insert, and_, bindparam, insert, text
from sqlalchemy.orm import Mapped, Session, mapped_column

from app.ids import new_id
from app.models_base import Base, MerchantOwned, utcnow
from app.scoping import Scope


# Every event type a merchant can receive, on GET /v1/events and at webhook endpoints (docs/webhooks.md
# lists them): a type written anywhere is on this list or internal (tests/webhooks/test_event_types.py).
MERCHANT_EVENT_TYPES = (
    "payment.created", "payment.updated", "payment.processing", "payment.requires_action",
    "payment.requires_capture", "payment.succeeded", "payment.failed", "payment.canceled",
    "refund.created", "refund.succeeded", "refund.failed",
    "dispute.created", "dispute.updated", "dispute.closed", "dispute.funds_withdrawn", "dispute.funds_reinstated",
    "checkout.session.completed", "checkout.session.expired",
    "review.opened", "review.closed",
    "radar.early_fraud_warning.created", "radar.early_fraud_warning.updated",
    "payout.created", "payout.updated", "payout.paid", "payout.failed", "payout.canceled",
    "bank_account.created", "bank_account.updated",
    "webhook.test",
)
# Events of the platform itself, written only in the platform book (app/reconciliation: PLATFORM_MERCHANT_ID, one
# book per mode), never in a merchant's: a merchant cannot receive them, the platform book's own endpoints can.
PLATFORM_EVENT_TYPES = ("reconciliation.completed", "reconciliation.break_opened")
# Events Kassa records for itself (the dashboard's timeline, operators): a PSP callback as received carries
# the PSP's idempotency keys and action URLs, which are not for the merchant's servers.
INTERNAL_EVENT_PREFIXES = ("psp.",)


def is_internal_event(event_type: str) -> bool:
    """True for types never shown on /v1/events nor sent to webhook endpoints."""
    return event_type.startswith(INTERNAL_EVENT_PREFIXES)


def merchant_visible(type_column) -> ColumnElement[bool]:
    """SQL criterion: the event type in ``type_column`` is not internal."""
    return and_(*(~type_column.startswith(prefix, autoescape=True) for prefix in INTERNAL_EVENT_PREFIXES))


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


# Rows other modules keep in step with events (reporting's rollup deltas): each hook gets the new event's
# column values and returns the model and values of a row to insert with it, or None.
EventRowHook = Callable[[dict[str, Any]], tuple[type, dict[str, Any]] | None]
_row_hooks: list[EventRowHook] = []


def on_event_recorded(hook: EventRowHook) -> EventRowHook:
    """Register ``hook`` (at import time): its row is inserted by every event's own statement."""
    _row_hooks.append(hook)
    return hook


def _insert(model: type, columns: tuple[str, ...]) -> Insert:
    # Bind parameters named after the table: several INSERTs in one statement share column names.
    # A Core INSERT of the table, not of the ORM entity: the ORM's bulk-insert path would cost more
    # than the statement.
    table = model.__table__
    return insert(table).values({name: bindparam(f"{table.name}_{name}", type_=table.c[name].type)
                                 for name in columns})


_EVENT_COLUMNS = ("id", "merchant_id", "livemode", "type", "object_type", "object_id", "data", "request_id",
                  "created_at")
# Built once per combination of hook rows: constructing and cache-keying a statement costs more CPU
# than executing a prepared one.
_statements: dict[tuple, Insert] = {}


def _event_statement(rows: tuple[tuple[type, tuple[str, ...]], ...]) -> Insert:
    statement = _statements.get(rows)
    if statement is None:
        statement = _insert(PendingFanout, ("event_id", "created_at")).add_cte(
            _insert(Event, _EVENT_COLUMNS).cte("new_event"))
        for position, (model, columns) in enumerate(rows):
            statement = statement.add_cte(_insert(model, columns).cte(f"event_row_{position}"))
        _statements[rows] = statement
    return statement


def record_event(
    session: Session, scope: Scope, event_type: str, object_type: str, object_id: str,
    data: dict[str, Any], request_id: str | None = None,
) -> Event:
    """Append an Event and its pending fan-out row in the caller's transaction.

    One statement (data-modifying CTEs) writes the event, its fan-out row and the hooks' rows: an event
    is written on every state change, so its round trips count. The Event returned is not attached to
    the session; the row is in the database.
    """
    values = {"id": new_id("evt"), "merchant_id": scope.merchant_id, "livemode": scope.livemode,
              "type": event_type, "object_type": object_type, "object_id": object_id, "data": data,
              "request_id": request_id, "created_at": utcnow()}
    params = {f"events_{name}": value for name, value in values.items()}
    params["event_fanout_pending_event_id"] = values["id"]
    params["event_fanout_pending_created_at"] = values["created_at"]
    rows = []
    for hook in _row_hooks:
        row = hook(values)
        if row is not None:
            model, row_values = row
            rows.append((model, tuple(row_values)))
            params.update({f"{model.__tablename__}_{name}": value for name, value in row_values.items()})
    with session.no_autoflush:  # the event needs no other row written first; pending changes wait for their flush
        session.execute(_event_statement(tuple(rows)), params)
    return Event(**values)


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
