"""The public JSON shapes of payments, refunds, sellers and attempts (API responses and event data)."""
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.payments.models import Payment, PaymentAttempt, PaymentOrder, Refund, Seller
from app.scoping import Scope


def unix(moment: datetime | None) -> int | None:
    """Seconds since the epoch, as the API speaks time."""
    return int(moment.timestamp()) if moment else None


def attention_object(row: PaymentAttempt | Refund) -> dict[str, Any] | None:
    """Why an attempt or refund needs a person (no definite answer from the PSP for too long), or None."""
    if row.attention_since is None:
        return None
    return {"reason": row.attention_reason, "since": unix(row.attention_since)}


def attempt_object(attempt: PaymentAttempt) -> dict[str, Any]:
    """One PSP attempt as the API shows it (never the card token)."""
    return {
        "id": attempt.id,
        "object": "payment_attempt",
        "operation": attempt.operation,
        "status": attempt.status,
        "amount": attempt.amount,
        "currency": attempt.currency,
        "connector": attempt.connector,
        "credential": attempt.credential,
        "psp_reference": attempt.psp_reference,
        "decline_code": attempt.decline_code,
        "error_message": attempt.error_message,
        "tries": attempt.tries,
        "created": unix(attempt.created_at),
        "started": unix(attempt.started_at),
        "finished": unix(attempt.finished_at),
        "latency_ms": attempt.latency_ms,
        "attention": attention_object(attempt),
    }


def order_object(order: PaymentOrder) -> dict[str, Any]:
    """One seller's part of a payment, with what was captured and refunded of it."""
    return {
        "seller": order.seller_id,
        "amount": order.amount,
        "fee": order.fee,
        "amount_captured": order.amount_captured,
        "fee_captured": order.fee_captured,
        "amount_refunded": order.amount_refunded,
        "fee_refunded": order.fee_refunded,
    }


def payment_object(session: Session, payment: Payment, *, orders: list[PaymentOrder] | None = None,
                   attempts: list[PaymentAttempt] | None = None) -> dict[str, Any]:
    """The payment as the API shows it, with its split, its attempts (oldest first) and its latest dispute.

    ``orders``/``attempts``: the complete lists (in that order) when the caller has them already, e.g.
    for a payment created in this very transaction; otherwise they are read.
    """
    if orders is None:
        orders = session.scalars(select(PaymentOrder).where(PaymentOrder.payment_id == payment.id)
                                 .order_by(PaymentOrder.position)).all()
    if attempts is None:
        attempts = session.scalars(select(PaymentAttempt).where(PaymentAttempt.payment_id == payment.id)
                                   .order_by(PaymentAttempt.id)).all()
    card = None
    if payment.payment_method_token:
        card = {
            "vault": payment.payment_method_vault,
            "brand": payment.card_brand,
            "last4": payment.card_last4,
            "exp_month": payment.card_exp_month,
            "exp_year": payment.card_exp_year,
            "fingerprint": payment.card_fingerprint,
        }
    dispute = None
    if payment.amount_received:  # only a captured payment can be disputed: no query for the others
        from app.disputes.queries import payment_disputes  # here: app.disputes builds on payments
        from app.disputes.service import summary_object

        disputes = payment_disputes(session, Scope(payment.merchant_id, payment.livemode), payment.id)
        dispute = summary_object(disputes[-1]) if disputes else None
    outcome = payment.risk_outcome
    if outcome is None and payment.status == "processing" and attempts:
        # Screened, the PSP's answer awaited: the outcome is its assessment's (app/payments/risk.py).
        from app.payments.risk import pending_outcome  # here, as the disputes below: no import cycle

        outcome = pending_outcome(session, payment, attempts)
    next_action = None
    if payment.status == "requires_action" and payment.next_action_url:
        next_action = {"type": "redirect_to_url",
                       "redirect_to_url": {"url": payment.next_action_url, "return_url": payment.return_url}}
    return {
        "id": payment.id,
        "object": "payment",
        "livemode": payment.livemode,
        "created": unix(payment.created_at),
        "amount": payment.amount,
        "currency": payment.currency,
        "status": payment.status,
        "capture_method": payment.capture_method,
        "amount_capturable": payment.amount_capturable,
        "amount_received": payment.amount_received,
        "amount_refunded": payment.amount_refunded,
        "customer_email": payment.customer_email,
        "description": payment.description,
        "metadata": payment.metadata_ or {},
        "payment_method": card,
        "connector": payment.connector,
        "credential": payment.credential,
        "next_action": next_action,
        "return_url": payment.return_url,
        "last_payment_error": payment.last_error,
        "cancellation_reason": payment.cancellation_reason,
        "canceled_at": unix(payment.canceled_at),
        "split": [order_object(o) for o in orders],
        "attempts": [attempt_object(a) for a in attempts],
        "disputed": dispute is not None,
        "dispute": dispute,
        # Risk (app/risk): Stripe's charge ``outcome``, the review holding the capture, the shopper's IP.
        "outcome": outcome,
        "review": payment.review_id,
        "customer_ip": payment.customer_ip,
    }


def refund_object(refund: Refund) -> dict[str, Any]:
    """A refund as the API shows it; each seller's ``fee`` (returned platform fee) is set once booked."""
    return {
        "id": refund.id,
        "object": "refund",
        "livemode": refund.livemode,
        "created": unix(refund.created_at),
        "payment": refund.payment_id,
        "amount": refund.amount,
        "currency": refund.currency,
        "status": refund.status,
        "reason": refund.reason,
        "metadata": refund.metadata_ or {},
        "sellers": [{"seller": a["seller"], "amount": a["amount"], "fee": a.get("fee")}
                    for a in refund.allocations],
        "failure_code": refund.failure_code,
        "failure_message": refund.failure_message,
        "connector": refund.connector,
        "credential": refund.credential,
        "psp_reference": refund.psp_reference,
        "attention": attention_object(refund),
    }


def seller_object(seller: Seller) -> dict[str, Any]:
    """A seller as the API shows it."""
    return {
        "id": seller.id,
        "object": "seller",
        "livemode": seller.livemode,
        "created": unix(seller.created_at),
        "name": seller.name,
        "email": seller.email,
        "default": seller.is_default,
        "metadata": seller.metadata_ or {},
    }
