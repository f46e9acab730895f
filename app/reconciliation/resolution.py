"""Working breaks: assign, and resolve with a kind and a note, audited; adjustments are new ledger transactions.

| resolution      | break (book)                                   | posting (business key ``resolve:<break id>``) |
|-----------------|------------------------------------------------|-----------------------------------------------|
| matched_by_hand | a line in suspense (platform book), to a named payment of a merchant that captured the line's gross | platform: suspense -> psp_clearing; the payment's book: the line's settlement legs (``resolve:<break id>`` in both) |
| matched_by_hand | anything else                                  | none: the named object is recorded |
| accepted / written_off | amount_mismatch (merchant book)         | the difference left in ``psp_receivable`` to ``psp_fees`` |
| accepted / written_off | a break whose money is in suspense (platform book) | ``suspense`` to the platform book's ``psp_fees`` (settlement differences the platform absorbs or gains) |
| accepted / written_off | deposit_mismatch of a batch deposited already (another entry matched or accepted) | as a platform break in suspense (above) |
| accepted / written_off | deposit_mismatch of a known batch (paid short or over) | the deposit is taken as the batch's payment: platform book ``suspense`` -> ``cash`` back out by the deposit; each book of the batch ``psp_clearing`` -> ``cash`` by its share, less its part of the shortfall (largest remainder over the positive shares) to ``psp_fees`` (the platform bears PSP fees and so what the PSP kept; an overpayment lowers them) |
| accepted / written_off | deposit_mismatch from Stripe's payout events (no bank entry: ``payout.paid`` differing from its batch, or ``payout.failed``) | as a known batch's deposit (above), the payout's amount standing for the deposit: ``payout.paid``'s money leaves the platform's suspense and cash; each book's share leaves ``psp_clearing``, to ``cash`` less its part of the difference to ``psp_fees``. A failed payout (paid 0) so writes each book's whole share off to ``psp_fees``: accept it only when Stripe will not pay the batch again, else ask (psp_asked) or match it by hand to the payout that paid it |
| accepted / written_off | other types (fee_mismatch, missing_at_psp)  | none: the posting already made stands |
| psp_asked       | any                                            | none: the PSP's corrected report posts its own difference |
| anything else   | currency_mismatch                              | refused until FX exists (its net is in the platform's suspense in the reported currency) |

A difference shared across books (a deposit accepted short or over for a batch of several books) is allocated by
the largest-remainder method (app.money.allocate) in proportion to each book's positive share, books in the order
of their merchant ids, ties to the earlier book: the parts add up to the difference to the cent, and the same
batch always splits the same way.

Never edits history: a resolution only adds transactions and fills the break's resolution columns.
"""
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app import pan
from app.accounts.audit import audit
from app.ledger import accounts
from app.ledger.errors import InsufficientBalance
from app.ledger.queries import account_balance
from app.ledger.service import post_transaction
from app.models_base import utcnow
from app.money import allocate
from app.payments.models import Payment
from app.ids import new_id
from app.reconciliation.models import PLATFORM_MERCHANT_ID, RESOLUTIONS, BankEntry, Break, Match, ReportLine
from app.reconciliation.service import _currency, _line_changes, _lock_psp_lines, batch_shares, legs_from_changes
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
    if resolution == "matched_by_hand" and scope.merchant_id == PLATFORM_MERCHANT_ID:
        # A line moved to a payment settles it: wait for any import of this PSP's lines (app/reconciliation/service.py
        # ``_lock_psp_lines``, as the importer does) so that neither this check of "settled already" nor the importer's
        # of "settled by hand" misses the other's uncommitted work. Before the break's row lock (the importer may
        # close breaks while it holds its own), and without loading the break before that lock.
        psp = session.scalar(scope.select(Break, Break.id == break_id).with_only_columns(Break.psp))
        if psp is not None:
            _lock_psp_lines(session, psp, scope.livemode)
    batch = session.scalar(scope.select(Break, Break.id == break_id, Break.type == "deposit_mismatch")
                           .with_only_columns(Break.batch_id))
    if batch:
        # Before the break's row lock, as the payout events take them (app/reconciliation/payout_events.py): a
        # payout.failed reversing this resolution's posting must see it committed, or wait for it.
        from app.reconciliation.payout_events import lock_payout

        lock_payout(session, scope.livemode, batch)
    row = get_break(session, scope, break_id, for_update=True)
    if row is None:
        raise ResolutionError("No such break.", "break")
    if row.status != "open":
        raise ResolutionError(f"This break is {row.status} already.", "break")
    if row.type == "currency_mismatch" and resolution != "psp_asked":
        # Its line's net sits in the platform's suspense in the reported currency, the booked amount in the
        # merchant's receivable in the other: no posting can move one into the other before FX exists, and closing
        # the break without one would leave that money in suspense with nothing open about it.
        raise ResolutionError("A currency mismatch can only be sent back to the PSP (psp_asked) until FX exists: "
                              "its money stays in suspense while the break is open.", "resolution")
    transaction_id = None
    if resolution == "matched_by_hand":
        target = (target or "").strip()
        if not target:
            raise ResolutionError("Name the object it matches (a payment, refund or dispute id).", "target")
        if row.merchant_id == PLATFORM_MERCHANT_ID and row.type == "missing_in_kassa":
            transaction_id = _move_line_to_payment(session, row, target, hmac_key)
    elif resolution in ("accepted", "written_off"):
        try:
            if row.type == "deposit_mismatch" and row.kassa_amount is not None and not _deposited(session, row):
                transaction_id = _accept_deposit(session, row, hmac_key)
            else:
                transaction_id = _adjust(session, row, hmac_key)
        except InsufficientBalance as error:  # the caller rolls back what the other books' postings wrote
            raise ResolutionError(f"This adjustment cannot be posted: {error}. A book of the batch cannot give its "
                                  "share; move it by hand first, or ask the PSP (psp_asked).", "resolution") from None
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
    if payment.amount_received != line.gross:
        # The line's gross leaves the payment's receivable: another amount would leave that receivable wrong.
        raise ResolutionError(f"The payment captured {payment.amount_received}, the line reports {line.gross} "
                              f"{line.currency}: not the same charge (or ask the PSP to correct it).", "target")
    # A payment settled already (its own charge line matched, or a line matched to it by hand) would have its
    # receivable taken down twice.
    settled = session.scalar(select(func.count()).select_from(ReportLine).where(
        ReportLine.merchant_id == payment.merchant_id, ReportLine.livemode == payment.livemode,
        ReportLine.object_type == "payment", ReportLine.object_id == payment.id, ReportLine.type == "charge",
        # (matched by PSP and reference: found through the reference index, lines have no index per book)
        ReportLine.psp == payment.connector, ReportLine.reference == payment.psp_reference,
        ReportLine.status.in_(("matched", "mismatch", "unchanged")))) or session.scalar(
        select(func.count()).select_from(Match).where(
            Match.merchant_id == payment.merchant_id, Match.livemode == payment.livemode,
            Match.object_type == "payment", Match.object_id == payment.id,
            # (a line matched by hand that a corrected version dropped had its settlement reversed)
            ~select(ReportLine.line_no).where(ReportLine.file_id == Match.file_id, ReportLine.line_no == Match.line_no,
                                              ReportLine.status == "superseded").exists()))
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
    # The payment's "booked, not reported" break is answered: this line is its report.
    session.execute(update(Break).where(
        Break.merchant_id == payment.merchant_id, Break.livemode == payment.livemode, Break.status == "open",
        Break.type == "missing_at_psp",
        Break.dedupe_key == f"missing_at_psp:{payment.connector}:{payment.psp_reference}:charge")
        .values(status="closed", closed_at=utcnow()).execution_options(synchronize_session=False))
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


def _deposited(session: Session, row: Break) -> bool:
    """Whether another bank entry already counts as the batch's deposit (matched, or a deposit_mismatch accepted
    before): then this one's money is a surplus like a duplicate deposit's, and moving the batch's clearing to cash
    again would count the batch twice."""
    return session.scalar(select(func.count()).select_from(BankEntry).where(
        BankEntry.livemode == row.livemode, BankEntry.batch_id == row.batch_id, BankEntry.status == "matched")) > 0


def payout_event_break(row: Break) -> bool:
    """A deposit break filed from Stripe's payout events (no bank entry behind it): ``payout.paid`` differing from
    its batch, or ``payout.failed``."""
    return row.type == "deposit_mismatch" and not any("entry" in ref for ref in row.lines or []) and (
        row.dedupe_key.startswith("payout_failed:") or row.dedupe_key.count(":") == 2)


def _accept_deposit(session: Session, row: Break, hmac_key: bytes) -> str | None:
    """A deposit that differs from its batch, accepted as the batch's payment (table above): the money leaves the
    platform's suspense and each book's share of the batch moves from clearing to cash, the shortfall (or excess)
    to ``psp_fees`` pro rata; the deposit then counts as the batch's (a later one is a duplicate)."""
    entry = None
    if payout_event_break(row):
        # No bank entry: Stripe's payout event is the deposit (app/reconciliation/payout_events.py); what it paid
        # is the break's PSP side (0 for a failed payout) and sits in the platform's suspense and cash.
        deposited, currency, what = row.psp_amount or 0, row.currency, f"payout {row.batch_id}"
    else:
        ref = (row.lines or [{}])[0]
        entry = session.get(BankEntry, (ref.get("file"), ref.get("entry")))
        if entry is None or entry.batch_id != row.batch_id:
            raise ResolutionError("This break has no bank entry of its batch to accept.", "break")
        deposited, currency, what = entry.amount, entry.currency, f"deposit {entry.bank_reference}"
    shares = [share for share in batch_shares(session, row.livemode, row.batch_id) if share.total]
    if {share.currency for share in shares} != {currency} or len({share.psp for share in shares}) != 1:
        raise ResolutionError("The batch and its deposit are in different currencies (or PSPs): accepting it "
                              "waits for FX. Ask the PSP or bank (psp_asked) or leave it open.", "resolution")
    if payout_event_break(row) and row.dedupe_key.startswith("payout_failed:"):
        # Paid 0: each book's whole share leaves psp_clearing. A payout returned after its cash was spent kept its
        # deposit (app/reconciliation/payout_events.py reverse_paid): that clearing was emptied already.
        short = [share.book for share in shares
                 if share.total > 0 and account_balance(session, Scope(share.book, row.livemode),
                                                        accounts.psp_clearing(share.psp, share.currency)).amount
                 < share.total]
        if short:
            raise ResolutionError(f"The deposit of {', '.join(short)} was not reversed when the payout failed (its "
                                  "cash was spent): its psp_clearing does not hold the share to write off. Move it "
                                  "back by hand first, or ask the PSP (psp_asked).", "resolution")
    total = sum(share.total for share in shares)
    positive = [max(share.total, 0) for share in shares]
    if deposited < 0 or total <= 0 or not any(positive):
        raise ResolutionError("Only a deposit into the bank for a batch the PSP owed can be accepted; ask the "
                              "PSP or bank (psp_asked).", "resolution")
    losses = allocate(total - deposited, positive)
    psp = shares[0].psp
    books: dict[str, dict[str, int]] = {PLATFORM_MERCHANT_ID: {
        accounts.suspense(psp, currency): -deposited, accounts.cash(currency): -deposited}}
    for share, loss in zip(shares, losses):
        changes = books.setdefault(share.book, {})
        for code, change in ((accounts.cash(currency), share.total - loss),
                             (accounts.psp_clearing(psp, currency), -share.total),
                             (accounts.psp_fees(currency), loss)):
            changes[code] = changes.get(code, 0) + change
    posted_ids = {}
    for book, changes in sorted(books.items(), key=lambda item: item[0] != PLATFORM_MERCHANT_ID):
        legs = legs_from_changes(changes, _currency)
        if not legs:
            continue
        posted = post_transaction(session, Scope(book, row.livemode), f"resolve:{row.id}",
                                  "reconciliation_adjustment", legs, hmac_key=hmac_key, reference=row.batch_id,
                                  description=f"Break {row.id}: {what} accepted for batch "
                                              f"{row.batch_id} ({total - deposited} short to psp_fees)")
        posted_ids[book] = posted.id
    if entry is not None:
        entry.status = "matched"
    if not posted_ids:
        return None
    return posted_ids.get(PLATFORM_MERCHANT_ID) or next(iter(posted_ids.values()))
