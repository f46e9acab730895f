"""The disputes service: PSP notices applied once and in order, the money booked, the merchant's evidence and
actions, the public JSON shape. No Flask; never commits (the hook view, the jobs and the idempotent operations
own the transactions).

**Notices** (``apply_notice``) come from every connector as a normalized dispute (app/psp/interfaces.py,
``CallbackEvent`` of a ``dispute.*`` type): from callbacks, and from the PSP's answer to the merchant's own
action. Each is applied once and never moves a dispute backwards:

* a closed dispute (won, lost, warning_closed) never changes status again;
* otherwise a notice's status is taken only if it is not behind the current one in the life of a dispute
  (``STAGE``: an inquiry, answered, then a chargeback, answered, then closed), and for the same stage only
  if its event time is not older than the last applied; so duplicates and late copies change nothing;
* money follows what the PSP reports (funds withdrawn, the fee, funds reinstated, the fee given back), each
  booked once whatever the notice's order (app/disputes/booking.py; the business keys are the backstop).

**Merchant actions** (``update_dispute`` and ``close_dispute``): evidence is saved as a draft, checked against the limits
on every save (app/disputes/evidence.py); submitting (``submit=true``) or accepting is final once asked and
is carried to the PSP by a worker (``pending_action``, app/jobs/disputes.py), after which the PSP's answer
is applied as a notice. Submitting is refused after ``evidence_due_by``.

Lock order, as in payments: the payment row, then the dispute row, then ledger accounts (posted last).
"""
import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app.disputes import booking, evidence as evidence_rules
from app.disputes.models import AWAITING_RESPONSE, CLOSED, INQUIRY_STATUSES, STATUSES, Dispute, File
from app.disputes.queries import withdrawn_by_order
from app.events import Event, record_event
from app.ids import new_id
from app.payments import idempotency
from app.payments.deps import PaymentsDeps
from app.payments.errors import InvalidRequest, InvalidTransition, NotFound
from app.payments.idempotency import STARTED, Next, Operation, Phase, PhaseContext, Response
from app.payments.models import Payment, PaymentOrder
from app.payments.processing import unknown_backoff
from app.payments.serializers import unix
from app.payments.service import notify_outcome, wait_for_outcome
from app.psp.interfaces import CallbackEvent, EvidenceFile, Outcome, PspResult
from app.scoping import Scope

log = logging.getLogger(__name__)

# How far along its life a status is: a notice whose status is behind the dispute's is an old one.
STAGE = {"warning_needs_response": 0, "warning_under_review": 1, "needs_response": 2, "under_review": 3,
         "warning_closed": 4, "won": 4, "lost": 4, "prevented": 4}
# A merchant action the PSP could not be told about (no connection, an ambiguous answer) is sent again with
# the same idempotency key, on app/payments/processing.py's backoff (1 s doubling to 5 min), until the PSP
# answers; before each retry the dispute is looked up, so that nothing is done twice at a PSP whose
# idempotency keys expire.
EVENT_TYPES = ("dispute.created", "dispute.updated", "dispute.closed", "dispute.funds_withdrawn",
               "dispute.funds_reinstated")


def _moment(seconds: Any) -> datetime | None:
    return datetime.fromtimestamp(seconds, timezone.utc) if isinstance(seconds, int) and seconds > 0 else None


# -- the public shape ----------------------------------------------------------------------------------------

def past_due(dispute: Dispute) -> bool:
    """Whether the last submission came after the deadline (Stripe's ``past_due``; Kassa refuses those)."""
    return bool(dispute.submitted_at and dispute.evidence_due_by and dispute.submitted_at > dispute.evidence_due_by)


def dispute_object(dispute: Dispute) -> dict[str, Any]:
    """The dispute as the API shows it (Stripe's shape, plus Kassa's action and booking state)."""
    return {
        "id": dispute.id,
        "object": "dispute",
        "livemode": dispute.livemode,
        "created": unix(dispute.created_at),
        "amount": dispute.amount,
        "currency": dispute.currency,
        "reason": dispute.reason,
        "status": dispute.status,
        "payment": dispute.payment_id,
        "is_charge_refundable": dispute.is_charge_refundable,
        "evidence": {name: (dispute.evidence or {}).get(name) for name in evidence_rules.FIELDS},
        "evidence_details": {
            "due_by": unix(dispute.evidence_due_by),
            "has_evidence": bool(dispute.evidence),
            "past_due": past_due(dispute),
            "submission_count": dispute.submission_count,
        },
        "pending_action": dispute.pending_action,
        "last_action_error": dispute.action_error,
        "funds_withdrawn": dispute.funds_withdrawn_at is not None,
        "funds_reinstated": dispute.funds_reinstated_at is not None,
        "fee": {"amount": dispute.fee, "currency": dispute.fee_currency} if dispute.fee is not None else None,
        "fee_returned": ({"amount": dispute.fee_returned, "currency": dispute.fee_currency}
                         if dispute.fee_returned is not None else None),
        "metadata": dispute.metadata_ or {},
        "psp": dispute.psp,
        "psp_reference": dispute.psp_reference,
        "connector": dispute.connector,
    }


def summary_object(dispute: Dispute) -> dict[str, Any]:
    """The short form a payment object carries."""
    return {"id": dispute.id, "object": "dispute", "status": dispute.status, "reason": dispute.reason,
            "amount": dispute.amount, "currency": dispute.currency,
            "evidence_details": {"due_by": unix(dispute.evidence_due_by)}}


def get_dispute(session: Session, scope: Scope, dispute_id: Any, *, for_update: bool = False) -> Dispute:
    """The scope's dispute, or NotFound (also for another merchant's or mode's)."""
    dispute = scope.get(session, Dispute, dispute_id, for_update=for_update) if isinstance(dispute_id, str) else None
    if dispute is None:
        raise NotFound(f"No such dispute: '{dispute_id}'.", param="id")
    return dispute


# -- notices ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Owner:
    """Whose book a notice is about and which payment (the callback owner, or the dispute's own)."""

    scope: Scope
    payment_id: str | None
    connector: str | None


def _lock_payment(session: Session, scope: Scope, payment_id: str | None) -> Payment | None:
    return scope.get(session, Payment, payment_id, for_update=True) if payment_id else None


def apply_notice(session: Session, psp: str, event: CallbackEvent, owner: Owner, deps: PaymentsDeps, *,
                 base_url: str = "") -> list[Event]:
    """Create or update the dispute a notice describes, book what money it reports moved, write the events.

    Returns the events written (none for a notice that changed nothing). Raises (to be retried later) when
    the notice reports money taken from a payment whose capture is not booked yet.
    """
    data = event.data
    reference = data.get("id")
    if not reference:
        raise ValueError("dispute notice without a dispute id")
    now = deps.now()
    scope = owner.scope
    payment = _lock_payment(session, scope, owner.payment_id)
    dispute = session.scalars(scope.select(Dispute, Dispute.psp == psp, Dispute.psp_reference == reference)
                              .with_for_update()).one_or_none()
    types: list[str] = []
    if dispute is None:
        dispute = _new_dispute(scope, psp, event, owner, payment, now)
        session.add(dispute)
        types.append("dispute.created")
    elif _is_newer(dispute, data.get("status"), event.created):
        was_closed = dispute.status in CLOSED
        if _take(dispute, data, event, now):
            types.append("dispute.closed" if dispute.status in CLOSED and not was_closed else "dispute.updated")
    postings = _money(session, dispute, data, payment, now, types, deps)
    session.flush()
    if "dispute.created" in types and payment is not None and payment.review_id:
        from app.risk.reviews import close_for_payment  # here: app.risk builds on payments and disputes

        close_for_payment(session, payment, "disputed")  # its open review, as Radar closes it (review.closed)
    if "dispute.created" in types:
        from app.disputes.notifications import notify_opened

        notify_opened(session, dispute, base_url=base_url, now=now)
    snapshot = dispute_object(dispute)
    recorded = [record_event(session, scope, type_, "dispute", dispute.id, snapshot) for type_ in types]
    # Last in the transaction: ledger account locks are held until the commit that follows. A notice may need
    # up to four postings here (withdrawal, fee, reinstatement, fee back), against the ledger's advice of one per
    # transaction: after the first, they add only ``dispute_fees`` to the accounts it already holds (a
    # reinstatement mirrors the withdrawal), so a transaction holding ``dispute_fees`` never waits for another
    # account, and no lock cycle can form.
    for post in postings:
        post()
    return recorded


def _new_dispute(scope: Scope, psp: str, event: CallbackEvent, owner: Owner, payment: Payment | None,
                 now: datetime) -> Dispute:
    data = event.data
    status = data.get("status") if data.get("status") in STATUSES else "needs_response"
    dispute = scope.new(
        Dispute, id=new_id("dsp"), psp=psp, connector=event.connector or owner.connector,
        psp_reference=data["id"], authorization_reference=event.psp_reference,
        payment_id=payment.id if payment is not None else owner.payment_id,
        amount=int(data.get("amount") or 0), currency=(data.get("currency") or (payment.currency if payment else ""))
        .upper(), reason=data.get("reason"), status=status, is_charge_refundable=bool(data.get("is_charge_refundable")),
        evidence={}, evidence_due_by=_moment(data.get("due_by")),
        submission_count=int(data.get("submission_count") or 0), action_tries=0, metadata_={}, allocations=[],
        psp_created=data.get("created"), last_event_at=event.created, created_at=now, updated_at=now,
        closed_at=now if status in CLOSED else None)
    return dispute


def _is_newer(dispute: Dispute, status: str | None, created: int | None) -> bool:
    """Whether a notice may change the dispute: not after it closed, not from an earlier stage, not older."""
    if dispute.status in CLOSED:
        return False
    if status in STAGE and STAGE[status] != STAGE.get(dispute.status, 0):
        return STAGE[status] > STAGE.get(dispute.status, 0)
    return created is None or dispute.last_event_at is None or created >= dispute.last_event_at


def _take(dispute: Dispute, data: dict, event: CallbackEvent, now: datetime) -> bool:
    """Copy the notice's facts onto the dispute; whether anything a merchant sees changed."""
    before = dispute_object(dispute)
    status = data.get("status")
    if status in STATUSES and status != dispute.status:
        if dispute.status in INQUIRY_STATUSES and status not in INQUIRY_STATUSES:
            # The inquiry became a chargeback: a new answer is due, whatever was sent to the inquiry.
            dispute.submitted_at = None
        dispute.status = status
        if status in CLOSED:
            dispute.closed_at = now
    if data.get("amount") is not None:
        dispute.amount = int(data["amount"])
    dispute.reason = data.get("reason") or dispute.reason
    if data.get("due_by") is not None:
        dispute.evidence_due_by = _moment(data["due_by"])
    if data.get("is_charge_refundable") is not None:
        dispute.is_charge_refundable = bool(data["is_charge_refundable"])
    dispute.submission_count = max(dispute.submission_count, int(data.get("submission_count") or 0))
    if event.created is not None:
        dispute.last_event_at = event.created
    changed = dispute_object(dispute) != before
    if changed:
        dispute.updated_at = now
    return changed


def _money(session: Session, dispute: Dispute, data: dict, payment: Payment | None, now: datetime,
           types: list[str], deps: PaymentsDeps) -> list:
    """Mark what the notice reports that is not booked yet; returns the postings to make (last)."""
    postings = []
    scope = Scope(dispute.merchant_id, dispute.livemode)
    key = deps.ledger_hmac_key
    connector = dispute.connector or (payment.connector if payment else None)
    withdrawn = bool(data.get("funds_withdrawn"))
    reinstated = bool(data.get("funds_reinstated"))
    if (withdrawn or reinstated) and dispute.funds_withdrawn_at is None:
        if payment is None or connector is None:
            log.warning("dispute %s reports money moved for a payment Kassa does not know; nothing booked",
                        dispute.id)
            return postings
        if payment.amount_received <= 0:
            raise RuntimeError(f"dispute {dispute.id}: the capture of payment {payment.id} is not booked yet")
        orders = list(session.scalars(select(PaymentOrder).where(PaymentOrder.payment_id == payment.id)
                                      .order_by(PaymentOrder.position)))
        shares = booking.withdrawal_shares(orders, dispute.amount,
                                           withdrawn_by_order(session, scope, payment.id, excluding=dispute.id))
        dispute.allocations = [share.as_dict() for share in shares]
        dispute.funds_withdrawn_at = now
        types.append("dispute.funds_withdrawn")
        postings.append(lambda: booking.book_withdrawal(session, scope, dispute.id, payment.id, connector,
                                                        dispute.currency, shares, hmac_key=key))
    fee = _money_of(data.get("fee"))
    if fee and dispute.fee is None and dispute.funds_withdrawn_at is not None:
        dispute.fee, dispute.fee_currency = fee
        postings.append(lambda: booking.book_fee(session, scope, dispute.id, connector, fee[0], fee[1],
                                                 returned=False, hmac_key=key))
    if reinstated and dispute.funds_reinstated_at is None and dispute.funds_withdrawn_at is not None:
        shares = booking.reinstatement_shares(booking.shares_of(dispute.allocations), dispute.amount)
        dispute.funds_reinstated_at = now
        types.append("dispute.funds_reinstated")
        payment_id = dispute.payment_id
        postings.append(lambda: booking.book_reinstatement(session, scope, dispute.id, payment_id, connector,
                                                           dispute.currency, shares, hmac_key=key))
    returned = _money_of(data.get("fee_returned"))
    if returned and dispute.fee is not None and dispute.fee_returned is None and returned[1] == dispute.fee_currency:
        amount = min(returned[0], dispute.fee)  # never more than was charged: dispute_fees may not go negative
        dispute.fee_returned = amount
        postings.append(lambda: booking.book_fee(session, scope, dispute.id, connector, amount, dispute.fee_currency,
                                                 returned=True, hmac_key=key))
    if postings and not types:
        types.append("dispute.updated")  # a fee reported on its own: the merchant sees it on the dispute
    return postings


def _money_of(value: Any) -> tuple[int, str] | None:
    """(amount, currency) of a notice's fee, or None when it reports none."""
    if not isinstance(value, dict):
        return None
    amount, currency = value.get("amount"), value.get("currency")
    if not isinstance(amount, int) or amount <= 0 or not isinstance(currency, str):
        return None
    return amount, currency.upper()


# -- the merchant's actions ---------------------------------------------------------------------------------

def _awaiting(dispute: Dispute, what: str) -> None:
    """InvalidTransition unless the merchant may still answer the dispute (``what``: the refused action)."""
    if dispute.status not in AWAITING_RESPONSE:
        raise InvalidTransition(f"This dispute is {dispute.status}; {what} only while it needs a response.",
                                code="dispute_not_awaiting_response", param="id")
    if dispute.pending_action is not None:
        raise InvalidTransition(f"This dispute's {_ACTION_NAMES[dispute.pending_action]} is already on its way to "
                                f"the payment processor; {what} no more.", code="dispute_action_in_progress",
                                param="id")
    if dispute.submitted_at is not None:
        raise InvalidTransition(f"Evidence was already submitted for this dispute; {what} no more.",
                                code="dispute_already_submitted", param="id")


_ACTION_NAMES = {"submit": "evidence submission", "close": "acceptance"}


def evidence_files(session: Session, scope: Scope, values: dict[str, str]) -> dict[str, File]:
    """The merchant's dispute evidence files that ``values`` names (unknown or foreign ids are left out)."""
    ids = [value for name, value in values.items() if evidence_rules.FIELDS.get(name) and
           evidence_rules.FIELDS[name].file and isinstance(value, str)]
    if not ids:
        return {}
    rows = session.scalars(scope.select(File, File.id.in_(ids), File.purpose == "dispute_evidence"))
    return {row.id: row for row in rows}


def check_evidence(session: Session, scope: Scope, values: dict[str, str]) -> None:
    """InvalidRequest (naming the field) unless the evidence is within the limits and its files are the scope's."""
    files = evidence_files(session, scope, values)
    try:
        evidence_rules.check(values, {file_id: evidence_rules.FileFacts(f.id, f.size, f.pages)
                                      for file_id, f in files.items()})
    except evidence_rules.EvidenceInvalid as error:
        raise InvalidRequest(error.message, param=f"evidence[{error.field}]" if error.field else "evidence",
                             code=error.code) from None


def update_dispute(session: Session, scope: Scope, dispute_id: str, params: dict[str, Any], deps: PaymentsDeps, *,
           request_id: str | None = None) -> tuple[Dispute, bool]:
    """Save evidence (a draft) and metadata, and with ``submit`` submit the evidence; (dispute, action staged).

    ``params``: ``evidence`` (field -> text or file id; "" clears a field), ``metadata`` (key -> value; ""
    removes a key), ``submit`` (bool). Nothing changes when any part is refused.
    """
    dispute = get_dispute(session, scope, dispute_id, for_update=True)
    now = deps.now()
    changes = params.get("evidence") or {}
    changed = False
    if changes:
        _awaiting(dispute, "evidence can be changed")
        try:
            values = evidence_rules.merged(dispute.evidence or {}, changes)
        except evidence_rules.EvidenceInvalid as error:
            raise InvalidRequest(error.message, param=f"evidence[{error.field}]", code=error.code) from None
        check_evidence(session, scope, values)
        if values != (dispute.evidence or {}):
            dispute.evidence = values
            changed = True
    metadata = params.get("metadata")
    if metadata:
        merged_metadata = {**(dispute.metadata_ or {}), **metadata}
        merged_metadata = {key: value for key, value in merged_metadata.items() if value != ""}
        if merged_metadata != (dispute.metadata_ or {}):
            dispute.metadata_ = merged_metadata
            changed = True
    staged = False
    if params.get("submit"):
        _awaiting(dispute, "evidence can be submitted")
        if dispute.evidence_due_by is not None and now > dispute.evidence_due_by:
            raise InvalidRequest(f"The deadline to respond to this dispute passed on "
                                 f"{dispute.evidence_due_by:%Y-%m-%d %H:%M} UTC; evidence can no longer be submitted.",
                                 param="submit", code="dispute_past_due")
        if not dispute.evidence:
            raise InvalidRequest("Add evidence before submitting it.", param="evidence", code="evidence_missing")
        check_evidence(session, scope, dispute.evidence)
        dispute.submitted_at = now
        _stage(session, dispute, "submit", now, deps)
        staged = True
    if changed or staged:
        dispute.updated_at = now
        session.flush()
        record_event(session, scope, "dispute.updated", "dispute", dispute.id, dispute_object(dispute),
                     request_id=request_id)
    return dispute, staged


def close_dispute(session: Session, scope: Scope, dispute_id: str, deps: PaymentsDeps, *,
          request_id: str | None = None) -> Dispute:
    """Accept the dispute (Stripe's "close"): the merchant gives up; a worker tells the PSP."""
    dispute = get_dispute(session, scope, dispute_id, for_update=True)
    _awaiting(dispute, "it can be accepted")
    now = deps.now()
    dispute.accepted_at = now
    _stage(session, dispute, "close", now, deps)
    dispute.updated_at = now
    session.flush()
    record_event(session, scope, "dispute.updated", "dispute", dispute.id, dispute_object(dispute),
                 request_id=request_id)
    return dispute


def _stage(session: Session, dispute: Dispute, action: str, now: datetime, deps: PaymentsDeps) -> None:
    dispute.pending_action = action
    dispute.action_submission_count = dispute.submission_count
    dispute.action_tries = 0
    dispute.action_error = None
    dispute.action_lease_until = None
    # The sweep's backstop, should the job be lost (Redis down, a worker killed).
    dispute.action_next_attempt_at = now + deps.attempt_stuck_after
    if deps.enqueue is not None:
        deps.enqueue(session, "app.jobs.disputes.send_action", dispute.merchant_id, dispute.livemode, dispute.id)


# -- carrying an action to the PSP (the job's phases) ------------------------------------------------------

@dataclass(frozen=True)
class ActionClaim:
    """A leased action: what the job needs for its PSP call, no ORM rows."""

    merchant_id: str
    livemode: bool
    dispute_id: str
    action: str
    tries: int
    connector: str | None
    psp_reference: str
    submission_count: int  # when the action was requested (Dispute.action_submission_count)
    evidence: dict[str, str]
    files: tuple[EvidenceFile, ...]
    # The credential the disputed payment was made with: the action goes to that account, no other.
    credential: str | None = None

    @property
    def scope(self) -> Scope:
        return Scope(self.merchant_id, self.livemode)

    @property
    def idempotency_key(self) -> str:
        """The same for every try of one action (a second submission after an escalation gets its own)."""
        return f"kassa-{self.dispute_id}-{self.action}-{self.submission_count + 1}"


def claim_action(session: Session, scope: Scope, dispute_id: str, deps: PaymentsDeps,
                 read_file: Callable[[File], bytes]) -> ActionClaim | None:
    """Lease a dispute's pending action for one try; None when there is none or another runner holds it.

    ``read_file``: how a file's content is read (app/disputes/files.py ``read_content`` with its directory).
    """
    now = deps.now()
    row = session.execute(
        update(Dispute).where(
            Dispute.merchant_id == scope.merchant_id, Dispute.livemode == scope.livemode, Dispute.id == dispute_id,
            Dispute.pending_action.is_not(None),
            (Dispute.action_lease_until.is_(None)) | (Dispute.action_lease_until < now))
        .values(action_tries=Dispute.action_tries + 1, action_lease_until=now + deps.attempt_stuck_after,
                action_next_attempt_at=now + deps.attempt_stuck_after)
        .returning(Dispute.pending_action, Dispute.action_tries, Dispute.connector, Dispute.psp_reference,
                   func.coalesce(Dispute.action_submission_count, Dispute.submission_count).label("submission_count"),
                   Dispute.evidence, Dispute.payment_id)
        .execution_options(synchronize_session=False)).one_or_none()
    if row is None:
        return None
    files: list[EvidenceFile] = []
    if row.pending_action == "submit":
        stored = evidence_files(session, scope, row.evidence)
        for name in evidence_rules.FILE_FIELDS:
            file_id = row.evidence.get(name)
            if file_id in stored:
                f = stored[file_id]
                files.append(EvidenceFile(name, f.id, f.type, f.size, f.sha256, read_file(f)))
    credential = (session.scalar(scope.select(Payment, Payment.id == row.payment_id)
                                 .with_only_columns(Payment.credential)) if row.payment_id else None)
    return ActionClaim(scope.merchant_id, scope.livemode, dispute_id, row.pending_action, row.action_tries,
                       row.connector, row.psp_reference, row.submission_count, dict(row.evidence), tuple(files),
                       credential=credential)


def action_done(claim: ActionClaim, found: dict[str, Any]) -> bool:
    """Whether the PSP's dispute shows the claimed action as carried out already (a lookup before a retry)."""
    status = found.get("status")
    if claim.action == "close":
        return status in CLOSED
    return status not in AWAITING_RESPONSE or int(found.get("submission_count") or 0) > claim.submission_count


def apply_action_result(session: Session, claim: ActionClaim, result: PspResult, deps: PaymentsDeps, *,
                        base_url: str = "") -> dict[str, Any] | None:
    """Apply what the PSP answered to a claimed action; the dispute object when it is settled (None: again later).

    SUCCEEDED: done, and the PSP's dispute is applied as a notice. DECLINED: the PSP refused it; the action
    is dropped with the PSP's reason and the merchant may act again (a refused submission was not made).
    Anything else: tried again later with the same idempotency key.
    """
    scope = claim.scope
    payment_id = session.scalar(select(Dispute.payment_id).where(
        Dispute.merchant_id == scope.merchant_id, Dispute.livemode == scope.livemode, Dispute.id == claim.dispute_id))
    _lock_payment(session, scope, payment_id)
    dispute = get_dispute(session, scope, claim.dispute_id, for_update=True)
    if dispute.pending_action != claim.action:
        return None  # applied already (a runner whose lease expired)
    now = deps.now()
    dispute.action_lease_until = None
    if result.outcome == Outcome.SUCCEEDED:
        dispute.pending_action = None
        dispute.action_next_attempt_at = None
        dispute.action_error = None
        if claim.action == "submit":
            # The claim's count, not the dispute's: a notice of this very submission may have raised it already.
            dispute.submission_count = max(dispute.submission_count, claim.submission_count + 1,
                                           int((result.raw or {}).get("submission_count") or 0))
        dispute.updated_at = now
        session.flush()
        events = []
        if result.raw.get("id"):
            events = apply_notice(session, dispute.psp, CallbackEvent(
                id=f"action:{claim.idempotency_key}", type="dispute.updated", psp_reference=dispute.authorization_reference,
                data=result.raw, connector=result.connector), Owner(scope, dispute.payment_id, dispute.connector),
                deps, base_url=base_url)
        if not events:
            record_event(session, scope, "dispute.updated", "dispute", dispute.id, dispute_object(dispute))
        return dispute_object(dispute)
    if result.outcome == Outcome.DECLINED or result.error == "not_found":
        # Refused, or the PSP knows no such dispute (its own "no such object": the action can never succeed).
        dispute.pending_action = None
        dispute.action_next_attempt_at = None
        dispute.action_error = (result.message or result.decline_code or "The payment processor refused it.")[:2000]
        if claim.action == "submit":
            dispute.submitted_at = None
        else:
            dispute.accepted_at = None
        dispute.updated_at = now
        session.flush()
        log.warning("dispute %s: the PSP refused the %s: %s", dispute.id, claim.action, dispute.action_error)
        snapshot = dispute_object(dispute)
        record_event(session, scope, "dispute.updated", "dispute", dispute.id, snapshot)
        return snapshot
    dispute.action_next_attempt_at = now + unknown_backoff(claim.tries)
    session.flush()
    return None


def due_actions(session: Session, deps: PaymentsDeps, *, batch: int = 100) -> list[tuple[str, bool, str]]:
    """(merchant_id, livemode, dispute_id) of actions due again and not leased; rescheduled as handed out.

    Across merchants: the sweep's pick (each job then works inside its dispute's book).
    """
    now = deps.now()
    rows = session.scalars(
        select(Dispute).where(Dispute.pending_action.is_not(None), Dispute.action_next_attempt_at <= now,
                              (Dispute.action_lease_until.is_(None)) | (Dispute.action_lease_until < now))
        .order_by(Dispute.action_next_attempt_at).limit(batch).with_for_update(skip_locked=True)).all()
    for row in rows:
        row.action_next_attempt_at = now + deps.attempt_stuck_after
    session.flush()
    return [(row.merchant_id, row.livemode, row.id) for row in rows]


# -- idempotent operations (API and dashboard) ------------------------------------------------------------

def _update_started(ctx: PhaseContext):
    dispute, staged = update_dispute(ctx.session, ctx.scope, ctx.params.get("dispute"), ctx.params, ctx.deps,
                             request_id=ctx.request_id)
    if staged:
        return Next("action_staged", {"dispute_id": dispute.id})
    return Response(200, dispute_object(dispute))


def _close_started(ctx: PhaseContext):
    dispute = close_dispute(ctx.session, ctx.scope, ctx.params.get("dispute"), ctx.deps, request_id=ctx.request_id)
    return Next("action_staged", {"dispute_id": dispute.id})


def _wait_action(ctx: PhaseContext) -> dict[str, Any] | None:
    return wait_for_outcome(ctx.deps, ctx.state["dispute_id"])


def _dispute_response(ctx: PhaseContext) -> Response:
    snapshot = ctx.waited
    if snapshot is not None and snapshot.get("id") == ctx.state["dispute_id"]:
        return Response(200, snapshot)
    return Response(200, dispute_object(get_dispute(ctx.session, ctx.scope, ctx.state["dispute_id"])))


_AFTER_ACTION = Phase(run=_dispute_response, wait=_wait_action, durable=False)
UPDATE_DISPUTE = idempotency.register(Operation("dispute.update", {
    STARTED: Phase(run=_update_started), "action_staged": _AFTER_ACTION}))
CLOSE_DISPUTE = idempotency.register(Operation("dispute.close", {
    STARTED: Phase(run=_close_started), "action_staged": _AFTER_ACTION}))


def notify_settled(deps: PaymentsDeps, dispute_id: str, snapshot: dict[str, Any] | None) -> None:
    """Wake a request waiting for the PSP's answer to an action (after the commit)."""
    if snapshot is not None:
        notify_outcome(deps.redis, [dispute_id], snapshot)


# -- listing ---------------------------------------------------------------------------------------------

def disputes_query(scope: Scope, *, statuses: tuple[str, ...] = (), payment: str | None = None,
                   created_gte: datetime | None = None, created_lte: datetime | None = None):
    """The scope's disputes filtered as the list endpoint and the dashboard allow."""
    statement = scope.select(Dispute)
    if statuses:
        statement = statement.where(Dispute.status.in_(statuses))
    if payment:
        statement = statement.where(Dispute.payment_id == payment)
    if created_gte:
        statement = statement.where(Dispute.created_at >= created_gte)
    if created_lte:
        statement = statement.where(Dispute.created_at <= created_lte)
    return statement

