"""Who bears PSP and dispute fees (issue 22; ARCHITECTURE.md, "Money flows in the ledger"). No Flask.

A merchant setting (``merchants.fee_bearer``): ``platform`` (default) books fees as the merchant's own
``psp_fees``/``dispute_fees`` expenses, paid from its ``merchant_revenue``; ``seller`` debits them from the
payable of the seller whose money they are on. A merchant without sellers of its own (only its default seller)
has its default seller bear them whatever the setting, so that what it is paid out equals what the PSP paid.

The places that book fees ask here: reconciliation's settlement posting (charge fees and refund fee rebates,
app/reconciliation/service.py) and the dispute fee (app/disputes/booking.py).
"""
from sqlalchemy import select, text
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


def fee_parts_sql(fees: str) -> str:
    """SQL of ``payment_fee_shares`` for many payments in one statement (the settlement import's, which would
    otherwise ask once per payment). ``fees`` is a query of rows (grp, merchant_id, payment_id, fee): one per payment
    and group (``grp`` any key the caller sums by, e.g. a batch and book), the payment's fee in that group. The
    statement's rows are (grp, payment_id, seller_id, part): each fee split over the payment's orders pro rata to what
    each captured (its amount when it captured nothing; equal weights when all are zero), largest remainder with
    ties to the earlier position, exactly as ``allocate`` does; a payment without orders or a zero fee has no rows."""
    return f"""
WITH fees AS ({fees}),
orders AS (
    SELECT f.grp, f.payment_id, f.fee, o.seller_id,
           row_number() OVER (PARTITION BY f.grp, f.payment_id ORDER BY o.position, o.id) AS i,
           coalesce(nullif(o.amount_captured, 0), o.amount)::numeric AS w
      FROM fees f JOIN payment_orders o ON o.merchant_id = f.merchant_id AND o.payment_id = f.payment_id
     WHERE f.fee <> 0),
weighted AS (
    SELECT grp, payment_id, fee, seller_id, i,
           CASE WHEN sum(w) OVER (PARTITION BY grp, payment_id) = 0 THEN 1 ELSE w END AS w
      FROM orders),
floored AS (
    SELECT grp, payment_id, fee, seller_id, i,
           div(abs(fee) * w, sum(w) OVER g) AS floor, mod(abs(fee) * w, sum(w) OVER g) AS remainder
      FROM weighted WINDOW g AS (PARTITION BY grp, payment_id))
SELECT grp, payment_id, seller_id,
       (sign(fee) * (floor + CASE WHEN row_number() OVER (PARTITION BY grp, payment_id ORDER BY remainder DESC, i)
                                       <= abs(fee) - sum(floor) OVER (PARTITION BY grp, payment_id)
                                  THEN 1 ELSE 0 END))::bigint AS part
  FROM floored
"""


def seller_fee_totals(session: Session, fees: str, params: dict) -> dict:
    """{grp: {seller_id: fee}}: the parts of ``fee_parts_sql(fees)`` summed per group and seller (zero sums
    dropped), in one statement."""
    totals: dict = {}
    rows = session.execute(text(f"SELECT grp, seller_id, sum(part)::bigint AS part FROM ({fee_parts_sql(fees)}) p "
                                "GROUP BY grp, seller_id ORDER BY grp, seller_id"), params)
    for row in rows:
        if row.part:
            totals.setdefault(row.grp, {})[row.seller_id] = row.part
    return totals
