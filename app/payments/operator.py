"""What a platform operator does about an attempt or refund whose PSP outcome stays unknown.

Two actions, both through the same idempotent paths as the worker and the janitor:

- ask the PSP again now: the row is made due and its job enqueued after the commit (the job asks by our
  idempotency key before it would ever send anything again);
- record the outcome the operator found by checking with the PSP (its dashboard, its support): applied
  like a PSP answer, through the state machine, with its Event and ledger posting; jobs that follow (an
  automatic capture, a void) are enqueued after the commit. The operator's note goes to the audit log,
  not into the payment: the merchant's API objects only say that an operator confirmed the outcome.

Each action takes the operator's reason (ReasonRequired without one) and is audited on the merchant, so its
owners and admins see it. Never imports Flask; the caller commits.
"""
from dataclasses import dataclass

from sqlalchemy.orm import Session

from app.accounts.audit import audit, operator_reason
from app.accounts.models import User
from app.accounts.service import Meta
from app.payments import processing
from app.payments.deps import PaymentsDeps
from app.payments.models import AttemptOperation, CaptureMethod, Payment, PaymentAttempt, Refund, RefundStatus
from app.psp.interfaces import Outcome, PspResult

# The outcomes an operator may record. CAPTURED only for the authorization of an automatically captured
# payment, which some PSPs carry out as a sale (authorized and captured in one call).
SUCCEEDED = "succeeded"
CAPTURED = "captured"
DID_NOT_HAPPEN = "did_not_happen"
_DONE_LABELS = {"authorize": "Authorized (not captured)", "capture": "Captured", "void": "Voided",
                "refund": "Refunded"}


class OperatorActionError(Exception):
    """The action cannot be done now; ``message`` says why."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Undecided:
    """An attempt or refund with its payment, as the operator acts on it."""

    row: PaymentAttempt | Refund
    payment: Payment

    @property
    def operation(self) -> str:
        return "refund" if isinstance(self.row, Refund) else self.row.operation

    @property
    def is_open(self) -> bool:
        """Still waiting for an outcome (the only state the actions apply to)."""
        if isinstance(self.row, Refund):
            return self.row.status == RefundStatus.PENDING
        return self.row.status in processing.OPEN_FOR_CLAIM

    def outcomes(self) -> list[tuple[str, str]]:
        """(value, label) of the outcomes the operator may record for this row."""
        choices = [(SUCCEEDED, _DONE_LABELS[self.operation])]
        if self.operation == AttemptOperation.AUTHORIZE and self.payment.capture_method == CaptureMethod.AUTOMATIC:
            choices.append((CAPTURED, "Authorized and captured"))
        choices.append((DID_NOT_HAPPEN, "Did not happen at the PSP"))
        return choices


def find_undecided(session: Session, object_id: str, *, lock: bool = False) -> Undecided:
    """The attempt (att_...) or refund (re_...) and its payment, across merchants (operators only).

    ``lock``: the payment row is locked (the payments lock order: the payment first, as every apply of an
    outcome does) and both rows are read current, so that what the action checks still holds when it acts:
    another operator, a job or a PSP callback deciding the row meanwhile is seen, not overwritten.
    """
    model = Refund if object_id.startswith("re_") else PaymentAttempt
    row = session.get(model, object_id)
    if row is None:
        raise OperatorActionError(f"No such attempt or refund: {object_id}.")
    if not lock:
        return Undecided(row, session.get(Payment, row.payment_id))
    payment = session.get(Payment, row.payment_id, with_for_update=True, populate_existing=True)
    return Undecided(session.get(model, object_id, populate_existing=True), payment)


def _ensure_free(item: Undecided, deps: PaymentsDeps) -> None:
    if not item.is_open:
        raise OperatorActionError(f"This {item.operation} has its outcome already ({item.row.status}).")
    if item.row.lease_until is not None and item.row.lease_until > deps.now():
        raise OperatorActionError(f"A job is asking the PSP about this {item.operation} right now; "
                                  "look again in a minute.")


def _audit(session: Session, item: Undecided, action: str, operator: User, meta: Meta, details: dict) -> None:
    audit(session, action, merchant_id=item.row.merchant_id, livemode=item.row.livemode, actor_user_id=operator.id,
          actor_label=operator.email, target=item.row.id, details={"payment": item.payment.id, **details},
          **meta.as_kwargs())


def ask_psp_again(session: Session, object_id: str, deps: PaymentsDeps, *, operator: User, reason: str | None,
                  meta: Meta) -> Undecided:
    """Make the attempt or refund due now and run its job once this transaction commits."""
    reason = operator_reason(reason)
    item = find_undecided(session, object_id, lock=True)
    _ensure_free(item, deps)
    _audit(session, item, "payment.psp_asked_again", operator, meta, {"reason": reason})
    item.row.next_attempt_at = deps.now()
    job = "app.jobs.payments.run_refund" if isinstance(item.row, Refund) else "app.jobs.payments.run_attempt"
    if deps.enqueue is not None:
        deps.enqueue(session, job, item.row.id)
    session.flush()
    return item


def record_outcome(session: Session, object_id: str, outcome: str, deps: PaymentsDeps, *, operator: User,
                   reason: str | None, meta: Meta, psp_reference: str | None = None) -> Undecided:
    """Apply the outcome an operator confirmed with the PSP, as a PSP answer would be applied."""
    reason = operator_reason(reason)
    item = find_undecided(session, object_id, lock=True)
    _ensure_free(item, deps)
    if outcome not in {value for value, _label in item.outcomes()}:
        raise OperatorActionError("Choose one of the outcomes offered for this operation.")
    row = item.row
    reference = (psp_reference or "").strip() or row.psp_reference
    if outcome != DID_NOT_HAPPEN and item.operation == AttemptOperation.AUTHORIZE and not reference:
        raise OperatorActionError("Give the PSP's reference of the authorization: captures and refunds need it.")
    _audit(session, item, "payment.outcome_recorded", operator, meta,
           {"reason": reason, "outcome": outcome, "psp_reference": reference})
    message = f"A platform operator confirmed with the payment processor the outcome of this {item.operation}."
    connector = row.connector or item.payment.connector or ""
    if outcome == DID_NOT_HAPPEN:
        # An authorization that did not happen was not processed: the payment asks for a payment method
        # again. Any other operation failed as a definite refusal (a "not processed" would be sent again).
        kind = Outcome.NOT_PROCESSED if item.operation == AttemptOperation.AUTHORIZE else Outcome.DECLINED
        result = PspResult(outcome=kind, connector=connector, psp_reference=reference,
                           decline_code="operator_confirmed_not_done", message=message, status="operator_failed")
    else:
        status = "captured" if outcome == CAPTURED else "authorized" if item.operation == "authorize" else "succeeded"
        result = PspResult(outcome=Outcome.SUCCEEDED, connector=connector, psp_reference=reference, message=message,
                           status=status)
    if isinstance(row, Refund):
        processing.apply_refund_result(session, row.id, result, deps)
        return item
    applied = processing.apply_attempt_result(session, row.id, result, deps)
    for attempt_id in applied.follow_ups:
        if deps.enqueue is not None:
            deps.enqueue(session, "app.jobs.payments.run_attempt", attempt_id)
    return item
