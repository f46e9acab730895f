"""Attempts and refunds that need a person because the PSP's outcome stays unknown: the one definition the
operators' inbox (app/payments/inbox.py) and the admin payment page read.

Here it is status and age: an attempt ``unknown``, or a refund still ``pending``, more than
NEEDS_ATTENTION_AFTER after it was created (the janitor has been asking the PSP all along, with backoff).
Where attempts and refunds carry "needs attention" marks (``attention_since`` / ``attention_reason``,
set and cleared by the janitor's path), these three functions read the marks instead:

    needs_attention(model, now)  ->  model.attention_since.is_not(None)
    attention_since(model)       ->  model.attention_since
    attention_of(row)            ->  (row.attention_since, row.attention_reason)

Nothing else in the inbox depends on how the rows are picked.
"""
from datetime import datetime, timedelta

from app.payments.models import AttemptStatus, PaymentAttempt, Refund, RefundStatus

# Half an hour without a definite answer: the janitor asked several times meanwhile (every few minutes at
# most), so this is past a blip or a restart, and still before a shopper or a merchant notices first.
NEEDS_ATTENTION_AFTER = timedelta(minutes=30)


def needs_attention(model: type[PaymentAttempt] | type[Refund], now: datetime):
    """SQL criterion: the row's outcome has been unknown for too long."""
    status = AttemptStatus.UNKNOWN if model is PaymentAttempt else RefundStatus.PENDING
    return (model.status == status) & (model.created_at <= now - NEEDS_ATTENTION_AFTER)


def attention_since(model: type[PaymentAttempt] | type[Refund]):
    """SQL expression: since when the row waits for its outcome (the inbox's age and order)."""
    return model.created_at


def attention_of(row: PaymentAttempt | Refund) -> tuple[datetime, str]:
    """Since when the row needs a person, and why, in a sentence."""
    if isinstance(row, Refund):
        return row.created_at, "The PSP has not confirmed this refund yet; Kassa keeps asking."
    detail = f" (last answer: {row.error_message})" if row.error_message else ""
    return row.created_at, f"The PSP gave no definite answer about this {row.operation}{detail}; Kassa keeps asking."
