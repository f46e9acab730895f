"""Attempts and refunds whose PSP outcome stayed unknown too long: marked for a person, never guessed.

An open attempt or a pending refund is asked about again and again (the janitor, with capped backoff:
app/payments/processing.py). When no definite answer came within ``PaymentsDeps.attention_after`` of its
first try, the row is marked: ``attention_reason`` says what the last answer was, ``attention_since``
since when it is marked. The row stays open and is still asked about; the first definite answer (a job,
the janitor, a PSP callback) clears the mark. The payment page and Home's "Needs attention" show marked
rows; ``needing_attention`` lists them, across merchants for the operators.
"""
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import CompoundSelect, select, union
from sqlalchemy.orm import Session

from app.payments.models import PaymentAttempt, Refund
from app.psp.interfaces import Outcome, PspResult
from app.scoping import Scope

REASON_LENGTH = 500  # the columns' size


def note_undecided(row: PaymentAttempt | Refund, what: str, result: PspResult, started_at: datetime | None,
                   now: datetime, deps) -> None:
    """Mark ``row`` when it has waited longer than ``deps.attention_after`` for a definite answer.

    ``what`` names the operation (``capture``, ``refund``...); ``result`` is the answer that did not
    decide. The first mark's time stays; the reason follows the latest answer.
    """
    if started_at is None or now - started_at < deps.attention_after:
        return
    if row.attention_since is None:
        row.attention_since = now
    if result.outcome == Outcome.PENDING:
        last = f"{result.connector or 'the processor'} still reports it {result.status or 'pending'}"
    else:
        last = f"{result.connector or 'the processor'} could not tell ({result.error or 'no answer'}"
        last += f": {result.message})" if result.message else ")"
    row.attention_reason = (f"No definite outcome of this {what} since "
                            f"{started_at:%Y-%m-%d %H:%M} UTC; last answer: {last}. "
                            f"Kassa keeps asking.")[:REASON_LENGTH]


def note_credential_missing(row: PaymentAttempt | Refund, what: str, result: PspResult, now: datetime) -> None:
    """Mark ``row`` at once: the PSP credential its payment was made with is gone, so Kassa refused to send
    the ``what`` (never with another account). A person decides: restore the account's credential, or
    settle the payment at the PSP by hand."""
    if row.attention_since is None:
        row.attention_since = now
    why = result.message or "the PSP credential of its payment is gone"
    row.attention_reason = f"This {what} was not sent: {why}. Kassa asks again every few minutes."[:REASON_LENGTH]


def clear(row: PaymentAttempt | Refund) -> None:
    """A definite answer arrived: nothing left to look at."""
    if row.attention_since is not None or row.attention_reason is not None:  # no UPDATE of unmarked rows
        row.attention_reason = None
        row.attention_since = None


@dataclass(frozen=True)
class AttentionItem:
    """One marked attempt or refund, as the payment page and the operator console list it."""

    kind: str          # attempt | refund
    id: str
    payment_id: str
    merchant_id: str
    livemode: bool
    operation: str     # authorize | capture | void | refund
    amount: int
    currency: str
    connector: str | None
    reason: str
    since: datetime


def needing_attention(session: Session, scope: Scope | None = None, *, payment_id: str | None = None,
                      limit: int = 100) -> list[AttentionItem]:
    """Marked attempts and refunds, longest marked first: of one book (``scope``), or of every book
    (``scope=None``, the platform operators' view), optionally of one payment."""
    items: list[AttentionItem] = []
    for model, kind in ((PaymentAttempt, "attempt"), (Refund, "refund")):
        criteria = [model.attention_since.is_not(None)]
        if payment_id is not None:
            criteria.append(model.payment_id == payment_id)
        statement = scope.select(model, *criteria) if scope is not None else select(model).where(*criteria)
        for row in session.scalars(statement.order_by(model.attention_since).limit(limit)):
            items.append(AttentionItem(
                kind=kind, id=row.id, payment_id=row.payment_id, merchant_id=row.merchant_id,
                livemode=row.livemode, operation=row.operation if kind == "attempt" else "refund",
                amount=row.amount, currency=row.currency, connector=row.connector,
                reason=row.attention_reason or "", since=row.attention_since))
    items.sort(key=lambda item: item.since)
    return items[:limit]


def payment_ids_needing_attention(scope: Scope) -> CompoundSelect:
    """SELECT of the book's payment ids with a marked attempt or refund (on the partial attention indexes)."""
    return union(
        scope.select(PaymentAttempt, PaymentAttempt.attention_since.is_not(None))
        .with_only_columns(PaymentAttempt.payment_id),
        scope.select(Refund, Refund.attention_since.is_not(None)).with_only_columns(Refund.payment_id))
