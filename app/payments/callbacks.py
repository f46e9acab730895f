"""Late PSP results for payments: ``authorization.updated`` (3-D Secure answered, ...) and ``refund.updated``
(a refund's later news: pending ones settle, succeeded ones may still fail).

Registered in app.psp.callbacks.CALLBACK_HANDLERS when app.payments is imported. A handler runs in the
callback's processing transaction (the hook view or the callback sweep owns it), only for a callback
whose scope admitted its owner, and looks for the attempt or refund only in that owner's book: a PSP
reference copied into another merchant's callback finds nothing here. It applies the outcome through
the same idempotent path as the job and the janitor, so a callback that arrives after the janitor
already resolved the attempt changes nothing. Jobs that follow (the automatic capture, a void) are
enqueued after that transaction commits.
"""
import logging
from dataclasses import replace

from sqlalchemy import event as sa_event
from sqlalchemy.orm import Session

from app.payments import processing
from app.payments.models import AttemptOperation, PaymentAttempt, Refund
from app.psp.callbacks import CALLBACK_HANDLERS, CallbackOwner
from app.psp.interfaces import CallbackEvent, Outcome

log = logging.getLogger(__name__)


def _deps():
    # Glue: the handler registry passes no collaborators, so take the running app's (web or worker).
    from flask import current_app

    from app.payments.deps import deps_for

    return deps_for(current_app._get_current_object())


def find_attempt(session: Session, event: CallbackEvent, owner: CallbackOwner) -> PaymentAttempt | None:
    """The owner's authorize attempt a callback is about: by the PSP's reference, else by our echoed reference."""
    scope = owner.scope
    reference = event.psp_reference or event.data.get("id")
    attempt = None
    if reference:
        attempt = session.scalars(scope.select(
            PaymentAttempt, PaymentAttempt.psp_reference == reference,
            PaymentAttempt.operation == AttemptOperation.AUTHORIZE).order_by(PaymentAttempt.id)).first()
    ours = event.data.get("reference")
    if attempt is None and isinstance(ours, str) and ours.startswith("att_"):
        attempt = scope.get(session, PaymentAttempt, ours)
    return attempt


def _connector_differs(kind: str, event: CallbackEvent, holder: str | None) -> bool:
    """True (and logged) when the callback comes from another connector than the one holding the object."""
    if holder and event.connector and event.connector != holder:
        log.warning("%s from %s for an object at %s; ignored", kind, event.connector, holder)
        return True
    return False


def on_authorization_updated(session: Session, event: CallbackEvent, owner: CallbackOwner) -> None:
    """Apply an authorization's new status to its attempt and payment (once)."""
    attempt = find_attempt(session, event, owner)
    if attempt is None:
        log.info("authorization.updated %s matches no attempt", event.psp_reference)
        return
    if _connector_differs("authorization.updated", event, attempt.connector):
        return
    deps = _deps()
    # The credential whose secret verified the callback is the account holding the authorization.
    result = replace(processing.authorization_result(event.data, event.connector or attempt.connector),
                     credential=owner.credential)
    applied = processing.apply_attempt_result(session, attempt.id, result, deps)
    for attempt_id in applied.follow_ups:
        if deps.enqueue is not None:
            deps.enqueue(session, "app.jobs.payments.run_attempt", attempt_id)
    if applied.notify and deps.redis is not None:
        from app.payments.deps import real_session
        from app.payments.service import notify_outcome

        sa_event.listen(real_session(session), "after_commit",
                        lambda _s: notify_outcome(deps.redis, applied.notify, applied.snapshot), once=True)


def on_refund_updated(session: Session, event: CallbackEvent, owner: CallbackOwner) -> None:
    """Apply a refund's new status (once): a pending one succeeds or fails, a booked one that failed is un-booked."""
    reference = event.data.get("id")
    if not reference or owner.object_type != "payment":
        return
    refund = session.scalars(owner.scope.select(
        Refund, Refund.payment_id == owner.object_id, Refund.psp_reference == reference)).one_or_none()
    if refund is None:
        # A refund Kassa did not make, or one whose creation answer has not been applied yet (its job
        # still runs and resolves it by status query).
        log.info("refund.updated %s of payment %s matches no refund", reference, owner.object_id)
        return
    if _connector_differs("refund.updated", event, refund.connector):
        return
    result = processing.refund_result(event.data, event.connector or refund.connector)
    if result.outcome not in (Outcome.SUCCEEDED, Outcome.DECLINED):
        return  # still pending at the PSP: the refund's job (or a later callback) brings the outcome
    processing.apply_refund_result(session, refund.id, result, _deps())


CALLBACK_HANDLERS["authorization.updated"] = on_authorization_updated
CALLBACK_HANDLERS["refund.updated"] = on_refund_updated
