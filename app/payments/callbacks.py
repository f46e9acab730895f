"""Late PSP results for payments: the ``authorization.updated`` callback (3-D Secure answered, ...).

Registered in app.psp.callbacks.CALLBACK_HANDLERS when app.payments is imported. The handler runs in
the callback's processing transaction (the hook view or the callback sweep owns it) and applies the
outcome through the same idempotent path as the job and the janitor, so a callback that arrives after
the janitor already resolved the attempt changes nothing. Jobs that follow (the automatic capture, a
void) are enqueued after that transaction commits.
"""
import logging

from sqlalchemy import event as sa_event
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.payments import processing
from app.payments.models import AttemptOperation, PaymentAttempt
from app.psp.callbacks import CALLBACK_HANDLERS
from app.psp.interfaces import CallbackEvent

log = logging.getLogger(__name__)


def _deps():
    # Glue: the handler registry passes no collaborators, so take the running app's (web or worker).
    from flask import current_app

    from app.payments.deps import deps_for

    return deps_for(current_app._get_current_object())


def find_attempt(session: Session, event: CallbackEvent) -> PaymentAttempt | None:
    """The authorize attempt a callback is about: by the PSP's reference, else by our echoed reference."""
    reference = event.psp_reference or event.data.get("id")
    attempt = None
    if reference:
        attempt = session.scalars(select(PaymentAttempt).where(
            PaymentAttempt.psp_reference == reference,
            PaymentAttempt.operation == AttemptOperation.AUTHORIZE).order_by(PaymentAttempt.id)).first()
    ours = event.data.get("reference")
    if attempt is None and isinstance(ours, str) and ours.startswith("att_"):
        attempt = session.get(PaymentAttempt, ours)
    return attempt


def on_authorization_updated(session: Session, event: CallbackEvent) -> None:
    """Apply an authorization's new status to its attempt and payment (once)."""
    attempt = find_attempt(session, event)
    if attempt is None:
        log.info("authorization.updated %s matches no attempt", event.psp_reference)
        return
    connector = event.connector or attempt.connector
    if attempt.connector and connector and connector != attempt.connector:
        log.warning("authorization.updated from %s for an attempt at %s; ignored", connector, attempt.connector)
        return
    deps = _deps()
    applied = processing.apply_attempt_result(session, attempt.id, processing.authorization_result(
        event.data, connector), deps)
    for attempt_id in applied.follow_ups:
        if deps.enqueue is not None:
            deps.enqueue(session, "app.jobs.payments.run_attempt", attempt_id)
    if applied.notify and deps.redis is not None:
        from app.payments.deps import real_session
        from app.payments.service import notify_outcome

        sa_event.listen(real_session(session), "after_commit",
                        lambda _s: notify_outcome(deps.redis, applied.notify, applied.snapshot), once=True)


CALLBACK_HANDLERS["authorization.updated"] = on_authorization_updated
