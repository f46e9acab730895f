"""Who bears PSP and dispute fees (issue 22; ARCHITECTURE.md, "Money flows in the ledger"). No Flask.

A merchant setting (``merchants.fee_bearer``): ``platform`` (default) books fees as the merchant's own
``psp_fees``/``dispute_fees`` expenses, paid from its ``merchant_revenue``; ``seller`` debits them from the
payable of the seller whose money they are on. A merchant without sellers of its own (only its default seller)
has its default seller bear them whatever the setting, so that what it is paid out equals what the PSP paid.

The places that book fees ask here: reconciliation's settlement posting (charge fees and refund fee rebates,
app/reconciliation/service.py) and the dispute fee (app/disputes/booking.py).
"""
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.money import allocate
from app.scoping import Scope

PLATFORM = "platform"
SELLER = "seller"
FEE_BEARERS = (PLATFORM, SELLER)


def fee_bearer(session: Session, scope: Scope) -> str:
    """The effective bearer of a book's fees: ``seller`` when the setting says so or the merchant has no sellers of
    its own, else ``platform``."""
    from app.accounts.models import Merchant
    from app.payments.models import Seller

    setting = session.scalar(select(Merchant.fee_bearer).where(Merchant.id == scope.merchant_id))
    if setting is None:  # the platform book (suspense) has no merchants row of its own with sellers
        return PLATFORM
    if setting == SELLER:
        return SELLER
    own = session.scalar(select(Seller.id).where(Seller.merchant_id == scope.merchant_id,
                                                 Seller.livemode == scope.livemode,
                                                 Seller.is_default.is_(False)).limit(1))
    return PLATFORM if own else SELLER


def payment_fee_shares(session: Session, scope: Scope, payment_id: str, fee: int) -> dict[str, int]:
    """A fee (negative: a rebate) on a payment split over its sellers pro rata to what each captured (largest
    remainder, so the parts add up exactly); {} when the payment has no orders."""
    from app.payments.models import PaymentOrder

    orders = session.execute(select(PaymentOrder.seller_id, PaymentOrder.amount_captured, PaymentOrder.amount)
                             .where(PaymentOrder.merchant_id == scope.merchant_id,
                                    PaymentOrder.payment_id == payment_id)
                             .order_by(PaymentOrder.position)).all()
    if not orders or not fee:
        return {}
    weights = [o.amount_captured or o.amount for o in orders]
    if not sum(weights):
        weights = [1] * len(orders)
    shares: dict[str, int] = {}
    for order, part in zip(orders, allocate(fee, weights), strict=True):
        if part:
            shares[order.seller_id] = shares.get(order.seller_id, 0) + part
    return shares


def split_over(fee: int, weights: dict[str, int]) -> dict[str, int]:
    """``fee`` split over sellers pro rata to ``weights`` (largest remainder), zero parts dropped."""
    names = list(weights)
    if not names or not fee:
        return {}
    values = [max(weights[n], 0) for n in names]
    if not sum(values):
        values = [1] * len(names)
    return {name: part for name, part in zip(names, allocate(fee, values), strict=True) if part}
