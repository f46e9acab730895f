"""Inbound PSP callbacks after their signature was verified: store (deduplicated), then process.

Storing and processing are separate steps with a commit in between (the hook view owns both
transactions), so a callback is acknowledged as soon as it is durable; processing that fails is
retried by the sweep (app/jobs/psp.py) from the row's ``next_attempt_at`` — the database is the
schedule.

Every callback carries a ``CallbackScope``, fixed where it enters (app/hooks) from the secret that
verified its signature and stored on its row: the PSP, the mode, and which merchants that secret
speaks for. A PSP reference is only a name, and a name can be copied: a merchant who signs with its
own Stripe secret an event naming another merchant's PaymentIntent (a shopper sees it in the 3-D
Secure return URL) must not move that payment. So nothing below acts outside the scope. Nor outside the
credential: a payment records the credential it was made with (``platform`` or a psp_credentials id), and
a callback verified with one credential's secret acts only on objects made with that credential, so a
merchant that replaced its Stripe account hears from each account about that account's payments only.

Processing a callback:

1. find which merchant it belongs to, from the PSP reference (``REFERENCE_RESOLVERS``: disputes registers
   its own first, so that a dispute we know names its merchant; then the built-in lookup in the payments
   tables, when they exist);
2. admit it only inside its scope (``CallbackScope.refusal``, the one check every resolver's answer
   goes through): an owner outside it, or in the other mode, makes the callback ``rejected`` (with
   the reason in ``last_error``) and nothing else happens: no handler, no event;
3. the handler registered for its type in ``CALLBACK_HANDLERS`` runs with the admitted owner and
   looks only inside that owner's book (payments registers ``authorization.updated`` and
   ``refund.updated`` and applies the late result through its state machine; disputes registers the
   ``dispute.*`` types, app/disputes/callbacks.py);
4. an Event is recorded for the merchant in the same transaction: ``psp.<type>``, unless the handler
   recorded the merchant's events itself (it returns ``Recorded``: disputes' ``dispute.created``, ...).

A service: never imports Flask, never commits.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Callable

from sqlalchemy import exists, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from app import pan
from app.accounts.audit import audit, operator_reason
from app.accounts.models import User
from app.accounts.service import Meta
from app.events import Event, record_event
from app.ids import new_id
from app.models_base import utcnow
from app.psp.interfaces import CallbackEvent
from app.psp.models import PspCallback, PspCredential
from app.scoping import Scope

log = logging.getLogger(__name__)

# What ``CallbackScope.verified_with`` says for the platform's own secrets (STRIPE_WEBHOOK_SECRET,
# SANDBOX_WEBHOOK_SECRET); a merchant's stored secret is named by its psp_credentials id.
PLATFORM = "platform"


@dataclass(frozen=True)
class CallbackScope:
    """What a verified callback may act on: decided where it enters, by the secret that verified it.

    The platform's account at a PSP (``merchant_id`` None) serves the merchants that have no
    credentials of their own at that PSP in that mode; a merchant's own account (its stored webhook
    secret) serves that merchant only. Either way one mode: the one the verifying secret belongs to
    (the sandbox is test mode only), so a test-mode secret never vouches for a live payment.
    """

    psp: str                          # the hook it came through: sandbox | stripe
    livemode: bool
    verified_with: str                # PLATFORM, or the psp_credentials id of the merchant's secret
    merchant_id: str | None = None    # set: a merchant's own account, that merchant only

    @classmethod
    def of(cls, row: PspCallback) -> "CallbackScope":
        """The scope a stored callback was verified for."""
        return cls(row.psp, row.livemode, row.verified_with, row.scope_merchant_id)

    def refusal(self, session: Session, owner: "CallbackOwner") -> str | None:
        """Why this scope may not act on ``owner``; None when it may.

        Besides merchant and mode: an object made with a known credential (``owner.credential``) is acted
        on only by callbacks verified with that same credential's secret (the platform's for ``platform``).
        A merchant that replaced its account still hears from the old one about the payments made there,
        and the new account's secret never vouches for them (nor the old one's for new payments).
        """
        if owner.livemode != self.livemode:
            return (f"the object is in {_mode(owner.livemode)} mode; the callback was verified for "
                    f"{_mode(self.livemode)} mode")
        if self.merchant_id is not None and owner.merchant_id != self.merchant_id:
            return f"the object belongs to another merchant than {self.merchant_id}, whose secret verified it"
        if owner.credential is not None:
            if owner.credential != self.verified_with:
                return (f"the object was made with the credential {owner.credential}; the callback was verified "
                        f"with {self.verified_with}")
            return None
        if self.merchant_id is not None:
            return None
        has_own_account = session.scalar(select(exists().where(
            PspCredential.merchant_id == owner.merchant_id, PspCredential.livemode == owner.livemode,
            PspCredential.psp == self.psp, PspCredential.retired_at.is_(None))))
        if has_own_account:
            return (f"the object's merchant has its own {self.psp} account in this mode; the platform's "
                    "account does not serve it")
        return None


def _mode(livemode: bool) -> str:
    return "live" if livemode else "test"


@dataclass(frozen=True)
class CallbackOwner:
    """The merchant (and mode) a callback is about, and the Kassa object it concerns if known."""

    merchant_id: str
    livemode: bool
    object_type: str | None = None   # e.g. "payment"
    object_id: str | None = None
    connector: str | None = None     # the connector holding the authorization, when known
    # The credential the object was made with (PLATFORM or a psp_credentials id), when known.
    credential: str | None = None

    @property
    def scope(self) -> Scope:
        """The owner's book: where a handler may look."""
        return Scope(self.merchant_id, self.livemode)


@dataclass(frozen=True)
class Recorded:
    """A handler's answer when it wrote the merchant's events itself: the first of them (None: the callback
    changed nothing, a duplicate). Then no ``psp.<type>`` event is written."""

    event: Event | None


# handler(session, event, owner) -> None | Recorded: runs inside the processing transaction, only for a
# callback whose owner its scope admitted, and reads and writes only inside ``owner.scope``; raise to be
# retried later.
CALLBACK_HANDLERS: dict[str, Callable[[Session, CallbackEvent, CallbackOwner], "Recorded | None"]] = {}

# resolver(session, scope, event) -> CallbackOwner | None. Registered resolvers are asked before the
# built-in lookup (_builtin_owner), in order. Whatever they answer goes through CallbackScope.refusal.
REFERENCE_RESOLVERS: list[Callable[[Session, CallbackScope, CallbackEvent], CallbackOwner | None]] = []

# Processing is retried with exponential backoff (10 s, 20 s, 40 s ... capped at one hour) for about
# a day; after that the row is marked failed and stays for an operator. A handler that keeps failing
# is a bug, and retrying it forever would hide it.
RETRY_BASE_SECONDS = 10
RETRY_MAX_SECONDS = 3600
MAX_ATTEMPTS = 30
# Rows one sweep claims: small enough to hold few row locks at a time.
SWEEP_BATCH_SIZE = 50


def store_callback(session: Session, scope: CallbackScope, event: CallbackEvent) -> tuple[str, bool]:
    """Insert a verified callback with its scope unless (psp, callback id) is stored already.

    Returns (row id, is_new).
    """
    if event.livemode is not None and event.livemode != scope.livemode:
        raise ValueError("a callback's scope must be in the mode of the event it verified")
    # No card number is ever kept, whoever sends it: a merchant's own PSP secret signs whatever that
    # merchant writes into its PSP objects (descriptions, metadata), which the callback carries here and
    # its Event on to webhooks (app/pan.py).
    event = replace(event, id=pan.redact(event.id), type=pan.redact(event.type),
                    psp_reference=pan.redact(event.psp_reference), data=pan.redact_value(event.data))
    row_id = new_id("pcb")
    inserted = session.execute(
        insert(PspCallback).values(
            id=row_id, psp=scope.psp, callback_id=event.id, type=event.type, connector=event.connector,
            psp_reference=event.psp_reference, psp_created=event.created, livemode=scope.livemode,
            scope_merchant_id=scope.merchant_id, verified_with=scope.verified_with,
            payload=event.data, received_at=utcnow(), next_attempt_at=utcnow(),
        ).on_conflict_do_nothing(constraint="uq_psp_callbacks_psp_callback_id").returning(PspCallback.id)
    ).scalar_one_or_none()
    if inserted is not None:
        return inserted, True
    existing = session.scalar(select(PspCallback.id).where(PspCallback.psp == scope.psp,
                                                           PspCallback.callback_id == event.id))
    return existing, False


def as_event(row: PspCallback) -> CallbackEvent:
    """The stored callback as the connector normalized it."""
    return CallbackEvent(id=row.callback_id, type=row.type, psp_reference=row.psp_reference, data=row.payload,
                         created=row.psp_created, connector=row.connector, livemode=row.livemode, psp=row.psp)


def process_callback(session: Session, row_id: str, *, now: datetime | None = None) -> str | None:
    """Process one stored callback if it is still unprocessed and nobody else holds it.

    Returns its result (``applied`` / ``unmatched`` / ``rejected``), or None when there was nothing to do.
    """
    row = session.scalars(
        select(PspCallback).where(PspCallback.id == row_id, PspCallback.processed_at.is_(None))
        .with_for_update(skip_locked=True)
    ).one_or_none()
    if row is None:
        return None
    return _process(session, row, now or utcnow())


def _process(session: Session, row: PspCallback, now: datetime) -> str:
    event = as_event(row)
    scope = CallbackScope.of(row)
    owner = resolve_owner(session, scope, event)
    refusal = scope.refusal(session, owner) if owner is not None else None
    row.last_error = None
    if owner is None:
        row.result = "unmatched"
        log.warning("callback %s %s (%s) matches no merchant", row.psp, row.callback_id, event.psp_reference)
    elif refusal is not None:
        row.result = "rejected"
        row.last_error = refusal
        log.warning("callback %s %s (%s) rejected: %s", row.psp, row.callback_id, event.psp_reference, refusal)
    else:
        row.result = "applied"
        if owner.credential is None:
            # Admitted: the account whose secret verified it holds the object (handlers may record it).
            owner = replace(owner, credential=scope.verified_with)
        handler = CALLBACK_HANDLERS.get(event.type)
        handled = handler(session, event, owner) if handler is not None else None
        if isinstance(handled, Recorded):
            recorded = handled.event
        else:
            recorded = record_event(session, owner.scope, f"psp.{event.type}", "psp_callback", row.id, {
                "id": row.id, "object": "psp_callback", "psp": row.psp, "connector": row.connector,
                "type": event.type, "psp_reference": event.psp_reference,
                "related_object": {"type": owner.object_type, "id": owner.object_id},
                "data": event.data,
            })
        row.event_id = recorded.id if recorded is not None else None
        row.merchant_id = owner.merchant_id
    row.processed_at = now
    row.attempts += 1
    session.flush()
    return row.result


def record_failure(session: Session, row_id: str, error: str, *, now: datetime | None = None) -> None:
    """Note a failed processing try (in a fresh transaction after the rollback) and schedule the next."""
    now = now or utcnow()
    row = session.get(PspCallback, row_id, with_for_update=True)
    if row is None or row.processed_at is not None:
        return
    row.attempts += 1
    row.last_error = error[:2000]
    if row.attempts >= MAX_ATTEMPTS:
        row.result = "failed"
        row.processed_at = now
        log.error("callback %s %s failed %d times; giving up", row.psp, row.callback_id, row.attempts)
    else:
        delay = min(RETRY_MAX_SECONDS, RETRY_BASE_SECONDS * 2 ** (row.attempts - 1))
        row.next_attempt_at = now + timedelta(seconds=delay)
    session.flush()


def due_callbacks(session: Session, *, now: datetime | None = None, limit: int = SWEEP_BATCH_SIZE) -> list[str]:
    """Ids of unprocessed callbacks whose next try is due, oldest first (for the sweep)."""
    return list(session.scalars(
        select(PspCallback.id).where(PspCallback.processed_at.is_(None),
                                     PspCallback.next_attempt_at <= (now or utcnow()))
        .order_by(PspCallback.next_attempt_at).limit(limit)
    ))


# -- owners ---------------------------------------------------------------------------------------------

def resolve_owner(session: Session, scope: CallbackScope, event: CallbackEvent) -> CallbackOwner | None:
    """Whom the object a callback names belongs to: registered resolvers, then the built-in lookup.

    Not yet an admission: the caller asks ``scope.refusal`` about the answer.
    """
    for resolver in (*REFERENCE_RESOLVERS, _builtin_owner):
        owner = resolver(session, scope, event)
        if owner is not None:
            return owner
    return None


def _builtin_owner(session: Session, scope: CallbackScope, event: CallbackEvent) -> CallbackOwner | None:
    """A payment or attempt holding the PSP reference (if payments exists).

    Looked up across merchants on purpose: the PSP reference is what tells us the merchant, and an
    owner outside the callback's scope must be found to be refused (``rejected``, not ``unmatched``).
    """
    if not event.psp_reference:
        return None
    try:
        from app.payments.models import Payment, PaymentAttempt
    except ImportError:  # payments not installed: nothing else to ask
        return None
    payment = session.execute(
        select(Payment.id, Payment.merchant_id, Payment.livemode, Payment.connector, Payment.credential)
        .where(Payment.psp_reference == event.psp_reference).limit(1)
    ).one_or_none()
    if payment is not None:
        return CallbackOwner(payment.merchant_id, payment.livemode, "payment", payment.id, payment.connector,
                             payment.credential)
    columns = (PaymentAttempt.payment_id, PaymentAttempt.merchant_id, PaymentAttempt.livemode,
               PaymentAttempt.connector, PaymentAttempt.credential)
    attempt = session.execute(
        select(*columns).where(PaymentAttempt.psp_reference == event.psp_reference).limit(1)
    ).one_or_none()
    if attempt is None and isinstance(event.data.get("reference"), str):
        # The sandbox echoes our attempt id as the authorization's reference.
        attempt = session.execute(
            select(*columns).where(PaymentAttempt.id == event.data["reference"]).limit(1)
        ).one_or_none()
    if attempt is not None:
        return CallbackOwner(attempt.merchant_id, attempt.livemode, "payment", attempt.payment_id, attempt.connector,
                             attempt.credential)
    return None


# -- operators ------------------------------------------------------------------------------------------

class CallbackActionError(Exception):
    """An operator's action on a callback that cannot be done; ``message`` says why."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def _for_operator(session: Session, row_id: str) -> PspCallback:
    row = session.get(PspCallback, row_id, with_for_update=True, populate_existing=True)
    if row is None:
        raise CallbackActionError(f"No such callback: {row_id}.")
    if row.dismissed_at is not None:
        raise CallbackActionError("This callback was dismissed already.")
    return row


def _audit(session: Session, row: PspCallback, action: str, operator: User, meta: Meta, reason: str) -> None:
    # On the merchant the callback was applied to, if any (a failed or rejected one names none for sure).
    audit(session, action, merchant_id=row.merchant_id, livemode=row.livemode, actor_user_id=operator.id,
          actor_label=operator.email, target=row.id,
          details={"reason": reason, "result": row.result, "psp": row.psp, "type": row.type}, **meta.as_kwargs())


def reopen_failed(session: Session, row_id: str, *, operator: User, reason: str | None, meta: Meta,
                  now: datetime | None = None) -> PspCallback:
    """Make a callback that failed for good due again, once its cause is fixed; the caller then processes it.

    Only ``failed``: a ``rejected`` callback named an object outside the scope its secret vouches for, and
    processing it again would act on another merchant's data; it can only be dismissed. Its attempts are
    kept, so that a reprocessing that fails again gives up at once instead of retrying for another day.
    """
    reason = operator_reason(reason)
    row = _for_operator(session, row_id)
    if row.result != "failed":
        raise CallbackActionError("Only a callback that failed to apply can be processed again; a rejected "
                                  "one named an object outside its scope and can only be dismissed.")
    _audit(session, row, "psp_callback.reprocessed", operator, meta, reason)
    row.result = "unprocessed"
    row.processed_at = None
    row.next_attempt_at = now or utcnow()
    session.flush()
    return row


def dismiss(session: Session, row_id: str, *, operator: User, reason: str | None, meta: Meta,
            now: datetime | None = None) -> PspCallback:
    """Close a failed or rejected callback with a note saying why nothing more is done about it."""
    reason = operator_reason(reason)
    row = _for_operator(session, row_id)
    if row.result not in ("failed", "rejected"):
        raise CallbackActionError(f"Only failed or rejected callbacks are dismissed; this one is {row.result}.")
    row.dismissed_at = now or utcnow()
    row.dismissed_by_user_id = operator.id
    row.dismissal_note = reason
    _audit(session, row, "psp_callback.dismissed", operator, meta, reason)
    session.flush()
    return row
