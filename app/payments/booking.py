"""Ledger postings of payments: a capture books the split, a succeeded refund books its reversal, and a
refund the PSP later reports failed is un-booked.

Accounts (docs/conventions.md): ``psp_receivable:<connector>:<CUR>``, ``seller_payable:<seller>:<CUR>``,
``merchant_revenue:<CUR>``. Each posting carries a business key (``capture:<payment_id>`` then
``capture:<payment_id>:<n>`` for later captures, ``refund:<refund_id>``, ``refund_reversal:<refund_id>``),
so a repeated outcome posts nothing.

Capture of C with orders (a_i, fee f_i): seller i's captured part c_i is a_i for a full capture, else
C allocated pro rata over a_i by largest remainder; its fee is f_i scaled by c_i / a_i (half up).
Refund of R: per-seller parts r_i fixed when the refund was created; the fee returned is what keeps
the seller's fee proportional to what is left captured, computed cumulatively so that the last
refund returns exactly the rest of the fee (1.80 fee on 60.00, refund 30.00 -> 0.90 returned).
"""
from dataclasses import dataclass

from sqlalchemy.orm import Session

from app.money import allocate
from app.payments.models import Payment, PaymentOrder, Refund
from app.scoping import Scope


def scaled(value: int, numerator: int, denominator: int) -> int:
    """value * numerator / denominator rounded half up, in integers only."""
    return (2 * value * numerator + denominator) // (2 * denominator)


@dataclass(frozen=True)
class Part:
    order: PaymentOrder
    amount: int
    fee: int


def capture_parts(payment: Payment, orders: list[PaymentOrder], captured: int) -> list[Part]:
    """Each seller's share of a capture and the platform fee taken from it."""
    if captured == payment.amount:
        return [Part(o, o.amount, o.fee) for o in orders]
    shares = allocate(captured, [o.amount for o in orders])
    return [Part(o, share, scaled(o.fee, share, o.amount)) for o, share in zip(orders, shares, strict=True)]


def refund_parts(orders: list[PaymentOrder], refund: Refund) -> list[Part]:
    """Each seller's part of a refund and the platform fee returned with it (orders not yet updated)."""
    by_id = {o.id: o for o in orders}
    parts = []
    for allocation in refund.allocations:
        order = by_id[allocation["order"]]
        refunded_after = order.amount_refunded + allocation["amount"]
        fee_target = scaled(order.fee_captured, refunded_after, order.amount_captured) if order.amount_captured else 0
        parts.append(Part(order, allocation["amount"], max(fee_target - order.fee_refunded, 0)))
    return parts


def booked_refund_parts(orders: list[PaymentOrder], refund: Refund) -> list[Part]:
    """Each seller's part of a booked refund and the fee it returned, as booked (kept in its allocations)."""
    by_id = {o.id: o for o in orders}
    return [Part(by_id[a["order"]], a["amount"], a["fee"]) for a in refund.allocations]


def _legs(parts: list[Part], connector: str, currency: str, total: int, *, reverse: bool):
    from app.ledger.service import Leg

    debit, credit = ("credit", "debit") if reverse else ("debit", "credit")
    legs = [Leg(f"psp_receivable:{connector}:{currency}", debit, total, currency)]
    for part in parts:
        net = part.amount - part.fee
        if net > 0:
            legs.append(Leg(f"seller_payable:{part.order.seller_id}:{currency}", credit, net, currency))
    fees = sum(part.fee for part in parts)
    if fees > 0:
        legs.append(Leg(f"merchant_revenue:{currency}", credit, fees, currency))
    return legs


def book_capture(session: Session, payment: Payment, parts: list[Part], captured: int, *, hmac_key: bytes,
                 capture_number: int):
    """Post a capture: receivable up, seller payables net of fee and the platform fee as revenue."""
    from app.ledger.service import post_transaction

    key = f"capture:{payment.id}" if capture_number == 1 else f"capture:{payment.id}:{capture_number}"
    return post_transaction(
        session, Scope(payment.merchant_id, payment.livemode), key, "capture",
        _legs(parts, payment.connector, payment.currency, captured, reverse=False),
        hmac_key=hmac_key, description=f"Capture of payment {payment.id}", reference=payment.id)


def book_refund(session: Session, payment: Payment, refund: Refund, parts: list[Part], *, hmac_key: bytes):
    """Post a succeeded refund: the capture's legs reversed for the refunded parts."""
    from app.ledger.service import post_transaction

    return post_transaction(
        session, Scope(payment.merchant_id, payment.livemode), f"refund:{refund.id}", "refund",
        _legs(parts, refund.connector or payment.connector, payment.currency, refund.amount, reverse=True),
        hmac_key=hmac_key, description=f"Refund {refund.id} of payment {payment.id}", reference=refund.id)


def book_refund_reversal(session: Session, payment: Payment, refund: Refund, parts: list[Part], *,
                         hmac_key: bytes):
    """Post the un-booking of a refund the PSP reported failed after it succeeded: its legs mirrored.

    ``parts`` are the refund's booked parts (booked_refund_parts), so the legs are exactly book_refund's,
    each on the other side: a correction is a new posting, never an edit of the first.
    """
    from app.ledger.service import post_transaction

    return post_transaction(
        session, Scope(payment.merchant_id, payment.livemode), f"refund_reversal:{refund.id}", "refund_reversal",
        _legs(parts, refund.connector or payment.connector, payment.currency, refund.amount, reverse=False),
        hmac_key=hmac_key, description=f"Reversal of failed refund {refund.id} of payment {payment.id}",
        reference=refund.id)
