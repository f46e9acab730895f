"""Working breaks: assign, and resolve with a kind and a note, audited; adjustments are new ledger transactions.

| resolution      | break (book)                                   | posting (business key ``resolve:<break id>``) |
|-----------------|------------------------------------------------|-----------------------------------------------|
| matched_by_hand | a line in suspense (platform book), to a named payment of a merchant | platform: suspense -> psp_clearing; the payment's book: the line's settlement legs (``resolve:<break id>`` in both) |
| matched_by_hand | anything else                                  | none: the named object is recorded |
| accepted / written_off | amount_mismatch (merchant book)         | the difference left in ``psp_receivable`` to ``psp_fees`` |
| accepted / written_off | a break whose money is in suspense (platform book) | ``suspense`` to the platform book's ``psp_fees`` (settlement differences the platform absorbs or gains) |
| accepted / written_off | deposit_mismatch of a known batch               | refused for now: the batch waits in the merchants' clearing |
| accepted / written_off | other types (fee_mismatch, missing_at_psp)  | none: the posting already made stands |
| psp_asked       | any                                            | none: the PSP's corrected report posts its own difference |

Never edits history: a resolution only adds transactions and fills the break's resolution columns.
"""
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app import pan
from app.accounts.audit import audit
from app.ledger import accounts
from app.ledger.service import post_transaction
from app.models_base import utcnow
from app.payments.models import Payment
from app.ids import new_id
from app.reconciliation.models import PLATFORM_MERCHANT_ID, RESOLUTIONS, Break, Match, ReportLine
from app.reconciliation.service import _currency, _line_changes, legs_from_changes
from app.scoping import Scope

NOTE_MAX = 2000
# Breaks whose money the platform book's suspense holds.
SUSPENSE_TYPES = ("missing_in_kassa", "duplicate", "deposit_mismatch", "deposit_without_batch")


class ResolutionError(ValueError):
    """A resolution that cannot be made as asked; ``message`` says why (shown to the operator)."""

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param


def get_break(session: Session, scope: Scope, break_id: str, *, for_update: bool = False) -> Break | None:
    """A break of one book (the platform's included)."""
    return scope.get(session, Break, break_id, for_update=for_update)


def assign_break(session: Session, scope: Scope, break_id: str, assignee: str | None, *, actor_user_id: str | None,
                 actor_label: str | None = None) -> Break:
    """Give a break to an operator (None: to nobody), audited."""
    row = get_break(session, scope, break_id, for_update=True)
    if row is None:
        raise ResolutionError("No such break.", "break")
    row.assigned_to = (assignee or "").strip()[:320] or None
    audit(session, "reconciliation.break_assigned", merchant_id=scope.merchant_id, livemode=scope.livemode,
          actor_user_id=actor_user_id, actor_label=actor_label, target=row.id, details={"assigned_to": row.assigned_to})
    session.flush()
    return row


def resolve_break(session: Session, scope: Scope, break_id: str, *, resolution: str, note: str, hmac_key: bytes,
                  actor_user_id: str | None, actor_label: str | None = None, target: str | None = None,
                  now: datetime | None = None) -> Break:
    """Resolve an open break with a kind and a note; post its adjustment (table above); audited."""
    if resolution not in RESOLUTIONS:
        raise ResolutionError(f"resolution must be one of {', '.join(RESOLUTIONS)}", "resolution")
    note = (note or "").strip()
    if not note or len(note) > NOTE_MAX:
        raise ResolutionError(f"Give a note of at most {NOTE_MAX} characters: it is kept with the break and audited.",
                              "note")
    for param, text_ in (("note", note), ("target", target)):
        match = pan.find_card_number(text_) if isinstance(text_, str) else None
        if match is not None:  # the console's form refuses it too; the CLI comes straight here
            raise ResolutionError(pan.refusal(param, match), param)
    row = get_break(session, scope, break_id, for_update=True)
    if row is None:
        raise ResolutionError("No such break.", "break")
    if row.status != "open":
        raise ResolutionError(f"This break is {row.status} already.", "break")
    transaction_id = None
    if resolution == "matched_by_hand":
        target = (target or "").strip()
        if not target:
            raise ResolutionError("Name the object it matches (a payment, refund or dispute id).", "target")
        if row.merchant_id == PLATFORM_MERCHANT_ID and row.type == "missing_in_kassa":
            transaction_id = _move_line_to_payment(session, row, target, hmac_key)
    elif resolution in ("accepted", "written_off"):
        if row.type == "deposit_mismatch" and row.kassa_amount is not None:
            # The deposit sits in the platform's suspense and the batch in the merchants' clearing: moving the
            # cash into their books is not built yet, and writing the whole deposit off to psp_fees booked it as
            # a gain. Until then such a break waits (psp_asked records the question to the PSP or bank).
            raise ResolutionError("A deposit that differs from its batch cannot be accepted or written off yet: "
                                  "the batch's money would stay in the merchants' clearing. Ask the PSP or bank "
                                  "(psp_asked) or leave it open.", "resolution")
        transaction_id = _adjust(session, row, hmac_key)
    row.status = "resolved"
    row.resolution = resolution
    row.resolution_note = note
    row.resolved_by = actor_label or actor_user_id
    row.resolution_transaction_id = transaction_id
    row.closed_at = now or utcnow()
    if target:
        row.object_id = row.object_id or target
    audit(session, "reconciliation.break_resolved", merchant_id=scope.merchant_id, livemode=scope.livemode,
          actor_user_id=actor_user_id, actor_label=actor_label, target=row.id,
          details={"resolution": resolution, "note": note, "target": target, "transaction": transaction_id,
                   "type": row.type})
    session.flush()
    return row


def _line(session: Session, row: Break) -> ReportLine:
    ref = (row.lines or [{}])[0]
    line = session.get(ReportLine, (ref.get("file"), ref.get("line")))
    if line is None:
        raise ResolutionError("This break has no report line to move.", "break")
    return line


def _move_line_to_payment(session: Session, row: Break, payment_id: str, hmac_key: bytes) -> str:
    """A line in suspense that belongs to a merchant's payment: out of the platform book, into the payment's."""
    line = _line(session, row)
    if line.type != "charge":
        raise ResolutionError("Only charge lines can be moved to a payment by hand for now.", "target")
    payment = session.scalars(select(Payment).where(Payment.id == payment_id, Payment.livemode == row.livemode)
                              ).one_or_none()
    if payment is None:
        raise ResolutionError(f"No payment {payment_id} in this mode.", "target")
    if payment.currency != line.currency:
        raise ResolutionError(f"The payment is in {payment.currency}, the line in {line.currency}.", "target")
    if payment.connector != line.psp:
        raise ResolutionError(f"The payment went through {payment.connector}, the line is {line.psp}'s.", "target")
    # A payment settled already (its own charge line matched, or a line matched to it by hand) would have its
    # receivable taken down twice.
    settled = session.scalar(select(func.count()).select_from(ReportLine).where(
        ReportLine.merchant_id == payment.merchant_id, ReportLine.livemode == payment.livemode,
        ReportLine.object_type == "payment", ReportLine.object_id == payment.id, ReportLine.type == "charge",
        ReportLine.status.in_(("matched", "mismatch", "unchanged")))) or session.scalar(
        select(func.count()).select_from(Match).where(
            Match.merchant_id == payment.merchant_id, Match.livemode == payment.livemode,
            Match.object_type == "payment", Match.object_id == payment.id))
    if settled:
        raise ResolutionError(f"Payment {payment.id} is settled already by another line.", "target")
    platform = Scope(PLATFORM_MERCHANT_ID, row.livemode)
    book = Scope(payment.merchant_id, row.livemode)
    back = {code: -change for code, change in
            _line_changes(line.type, line.gross, line.fee, line.net, line.psp, line.currency, True).items()}
    post_transaction(session, platform, f"resolve:{row.id}", "reconciliation_adjustment",
                     legs_from_changes(back, _currency), hmac_key=hmac_key, reference=row.id,
                     description=f"Break {row.id}: line of {line.reference} moved to payment {payment.id}")
    moved = post_transaction(
        session, book, f"resolve:{row.id}", "reconciliation_adjustment",
        legs_from_changes(_line_changes(line.type, line.gross, line.fee, line.net, line.psp, line.currency, False),
                          _currency),
        hmac_key=hmac_key, reference=row.id,
        description=f"Break {row.id}: settlement line {line.reference} matched by hand to payment {payment.id}")
    session.add(book.new(Match, id=new_id("rmat"), file_id=line.file_id, line_no=line.line_no, object_type="payment",
                         object_id=payment.id, transaction_id=moved.id, matched_by="operator"))
    return moved.id


def _adjust(session: Session, row: Break, hmac_key: bytes) -> str | None:
    scope = Scope(row.merchant_id, row.livemode)
    if row.type == "amount_mismatch" and row.kassa_amount is not None and row.psp_amount is not None:
        difference = row.kassa_amount - row.psp_amount
        changes = {accounts.psp_receivable(row.psp, row.currency): -difference, accounts.psp_fees(row.currency): difference}
    elif row.merchant_id == PLATFORM_MERCHANT_ID and row.type in SUSPENSE_TYPES and row.psp_amount:
        held = row.psp_amount
        changes = {accounts.suspense(row.psp, row.currency): -held, accounts.psp_fees(row.currency): -held}
    else:
        return None
    legs = legs_from_changes(changes, _currency)
    if not legs:
        return None
    posted = post_transaction(session, scope, f"resolve:{row.id}", "reconciliation_adjustment", legs,
                              hmac_key=hmac_key, reference=row.id,
                              description=f"Break {row.id} ({row.type}) resolved: adjustment")
    return posted.id
