"""Payments across every merchant, for platform operators: by payment, attempt or refund id, PSP reference
(of an attempt or a refund), customer email, or card last 4 with the amount. Cross-tenant on purpose (the admin views audit each search); never used
for a merchant's own lists, which go through a Scope.

A payment id and a PSP reference are found through indexes (the primary key; the attempts' PSP
references, which include every authorization's; a refund's id). A refund's PSP reference reads the refunds
table, far smaller than the payments'. An email or last 4 + amount reads the payments table:
no index serves them across merchants, and one on the hottest table would tax every payment for the
sake of a rare operator search.
"""
from dataclasses import dataclass

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from app.payments.models import Payment, PaymentAttempt, Refund

SEARCH_LIMIT = 50


@dataclass(frozen=True)
class PaymentQuery:
    """What an operator looks for; every field given narrows the search."""

    reference: str | None = None   # a payment, attempt or refund id, or a PSP reference
    email: str | None = None
    last4: str | None = None
    amount: int | None = None      # minor units of ``currency`` (with last4)
    currency: str | None = None

    @property
    def empty(self) -> bool:
        return not (self.reference or self.email or self.last4 or self.amount)


def find_payments(session: Session, query: PaymentQuery, *, limit: int = SEARCH_LIMIT) -> list[Payment]:
    """The matching payments of every merchant and mode, newest first."""
    if query.empty:
        return []
    criteria = []
    if query.reference:
        criteria.append(or_(
            Payment.id == query.reference,
            Payment.id.in_(select(PaymentAttempt.payment_id).where(or_(
                PaymentAttempt.id == query.reference, PaymentAttempt.psp_reference == query.reference))),
            Payment.id.in_(select(Refund.payment_id).where(or_(
                Refund.id == query.reference, Refund.psp_reference == query.reference)))))
    if query.email:
        criteria.append(func.lower(Payment.customer_email) == query.email.strip().lower())
    if query.last4:
        criteria.append(Payment.card_last4 == query.last4)
    if query.amount is not None:
        criteria.append(Payment.amount == query.amount)
    if query.currency:
        criteria.append(Payment.currency == query.currency)
    return list(session.scalars(select(Payment).where(*criteria).order_by(Payment.created_at.desc(), Payment.id.desc())
                                .limit(limit)))
