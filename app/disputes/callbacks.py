"""Dispute notices from PSP callbacks: the ``dispute.*`` handlers and the owner of a dispute we know.

Registered in app.psp.callbacks when app.disputes is imported. A handler runs in the callback's processing
transaction, only for a callback whose scope admitted its owner, and applies the notice inside that owner's
book (app/disputes/service.py ``apply_notice``).
"""
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.disputes import service
from app.disputes.models import Dispute
from app.payments.models import Payment
from app.psp.callbacks import CALLBACK_HANDLERS, REFERENCE_RESOLVERS, CallbackOwner, CallbackScope, Recorded
from app.psp.interfaces import CallbackEvent

NOTICE_TYPES = service.EVENT_TYPES


def _app():
    # Glue: the handler registry passes no collaborators, so take the running app's (web or worker).
    from flask import current_app

    return current_app._get_current_object()


def on_dispute_notice(session: Session, event: CallbackEvent, owner: CallbackOwner) -> Recorded:
    """Apply a dispute notice in the owner's book; the first event it wrote (None for a duplicate)."""
    from app.payments.deps import deps_for

    app = _app()
    events = service.apply_notice(
        session, event.psp or "", event,
        service.Owner(owner.scope, owner.object_id if owner.object_type == "payment" else None, owner.connector),
        deps_for(app), base_url=app.config.get("PUBLIC_BASE_URL") or "")
    return Recorded(events[0] if events else None)


def known_dispute_owner(session: Session, scope: CallbackScope, event: CallbackEvent) -> CallbackOwner | None:
    """The owner of a dispute we know already: a dispute id names its merchant whatever else the callback says.

    Looked up across merchants on purpose (the first book that knew it), so that a callback about it from
    another scope is refused, never applied to a second dispute of the same id.
    """
    if not (event.type.startswith("dispute.") and event.data.get("id")):
        return None
    known = session.execute(
        select(Dispute.merchant_id, Dispute.livemode, Dispute.payment_id, Dispute.connector, Payment.credential)
        .outerjoin(Payment, (Payment.id == Dispute.payment_id) & (Payment.merchant_id == Dispute.merchant_id))
        .where(Dispute.psp == scope.psp, Dispute.psp_reference == event.data["id"])
        .order_by(Dispute.created_at).limit(1)).one_or_none()
    if known is None:
        return None
    return CallbackOwner(known.merchant_id, known.livemode, "payment" if known.payment_id else None,
                         known.payment_id, known.connector, credential=known.credential)


for _type in NOTICE_TYPES:
    CALLBACK_HANDLERS[_type] = on_dispute_notice
if known_dispute_owner not in REFERENCE_RESOLVERS:
    REFERENCE_RESOLVERS.insert(0, known_dispute_owner)
