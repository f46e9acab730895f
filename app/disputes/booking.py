"""Ledger postings of disputes (ARCHITECTURE.md, "Money flows in the ledger"). No Flask, never commits.

Four movements, each posted once per dispute under its own business key, when the PSP first reports it:

| movement | key | debit | credit |
|---|---|---|---|
| funds withdrawn (amount D) | ``dispute:<id>`` | each seller's payable its share less the platform fee part; ``merchant_revenue`` the platform fee parts | ``psp_receivable`` D |
| dispute fee F | ``dispute_fee:<id>`` | ``dispute_fees`` F | ``psp_receivable`` F |
| funds reinstated | ``dispute_reinstated:<id>`` | ``psp_receivable`` | the withdrawal's legs, mirrored |
| fee given back | ``dispute_fee_returned:<id>`` | ``psp_receivable`` | ``dispute_fees`` |

Shares: D is allocated over the payment's orders pro rata to what each seller still holds of the payment
(captured - refunded - taken by other disputes), by largest remainder; each share takes back the platform
fee in the same proportion (a seller who still holds 58.20 of 60.00 with 1.80 of fee gives up 58.20 of
which 1.75 is the platform's), so that withdrawing all a seller holds takes back exactly its fee left. The
shares are kept on the dispute (``allocations``) and a reinstatement mirrors them.

The dispute fee is charged in the currency the PSP charged it in, to whoever bears the merchant's fees
(app/payouts/fees.py; issue 22): the platform's ``dispute_fees`` expense, or the disputed sellers' payables pro
rata to their shares of the withdrawal (``fee_legs``, the one place that routes it; its return mirrors it).

Inquiries book nothing: no money moves until an inquiry becomes a chargeback.
"""
from dataclasses import dataclass

from sqlalchemy.orm import Session

from app.ledger.accounts import dispute_fees, merchant_revenue, psp_receivable, seller_payable
from app.ledger.service import CREDIT, DEBIT, Leg, post_transaction
from app.money import allocate
from app.payments.booking import scaled
from app.payments.models import PaymentOrder
from app.scoping import Scope


# The prefixes of the business keys of a dispute's postings (``<kind>:<dispute id>``).
BUSINESS_KEY_KINDS = ("dispute", "dispute_fee", "dispute_reinstated", "dispute_fee_returned")


@dataclass(frozen=True)
class Share:
    """One order's part of a disputed amount and the platform fee part within it."""

    order: str
    seller: str
    amount: int
    fee: int

    def as_dict(self) -> dict:
        return {"order": self.order, "seller": self.seller, "amount": self.amount, "fee": self.fee}


def withdrawal_shares(orders: list[PaymentOrder], amount: int, taken: dict[str, tuple[int, int]]) -> list[Share]:
    """Each order's share of a withdrawal of ``amount``; ``taken``: (amount, fee) other disputes hold, per order.

    Orders in their split's order. When no seller holds anything (a PSP disputing more than is left), the
    capture's split decides; a share beyond what a seller holds takes back at most its fee left.
    """
    held = [o.amount_captured - o.amount_refunded - taken.get(o.id, (0, 0))[0] for o in orders]
    fee_held = [o.fee_captured - o.fee_refunded - taken.get(o.id, (0, 0))[1] for o in orders]
    weights = [max(h, 0) for h in held]
    if not sum(weights):
        weights = [o.amount_captured or o.amount for o in orders]
    shares = []
    for order, part, holds, fee_holds in zip(orders, allocate(amount, weights), held, fee_held, strict=True):
        if not part:
            continue
        fee = min(scaled(fee_holds, part, holds), fee_holds) if holds > 0 and fee_holds > 0 else 0
        shares.append(Share(order.id, order.seller_id, part, fee))
    return shares


def reinstatement_shares(withdrawn: list[Share], amount: int) -> list[Share]:
    """The shares of a reinstatement of ``amount``: the withdrawal's, scaled when the PSP gives back less."""
    total = sum(share.amount for share in withdrawn)
    if amount == total:
        return list(withdrawn)
    parts = allocate(amount, [share.amount for share in withdrawn])
    return [Share(s.order, s.seller, part, scaled(s.fee, part, s.amount)) for s, part in zip(withdrawn, parts, strict=True)
            if part]


def shares_of(allocations: list[dict]) -> list[Share]:
    """Shares as a dispute keeps them (``allocations``)."""
    return [Share(a["order"], a["seller"], a["amount"], a["fee"]) for a in allocations]


def _split_legs(shares: list[Share], connector: str, currency: str, *, reinstate: bool) -> list[Leg]:
    sellers_side, receivable_side = (CREDIT, DEBIT) if reinstate else (DEBIT, CREDIT)
    total = sum(share.amount for share in shares)
    legs = [Leg(psp_receivable(connector, currency), receivable_side, total, currency)]
    by_seller: dict[str, int] = {}
    for share in shares:
        by_seller[share.seller] = by_seller.get(share.seller, 0) + share.amount - share.fee
    legs += [Leg(seller_payable(seller, currency), sellers_side, net, currency)
             for seller, net in by_seller.items() if net > 0]
    fees = sum(share.fee for share in shares)
    if fees:
        legs.append(Leg(merchant_revenue(currency), sellers_side, fees, currency))
    return legs


def fee_legs(connector: str, amount: int, currency: str, *, returned: bool,
             sellers: dict[str, int] | None = None) -> list[Leg]:
    """The dispute fee charged (or given back) against the PSP: the platform's ``dispute_fees`` expense, or with
    ``sellers`` (each seller's part, adding up to ``amount``) those sellers' payables."""
    expense_side, receivable_side = (CREDIT, DEBIT) if returned else (DEBIT, CREDIT)
    if sellers:
        legs = [Leg(seller_payable(seller, currency), expense_side, part, currency)
                for seller, part in sellers.items() if part > 0]
    else:
        legs = [Leg(dispute_fees(currency), expense_side, amount, currency)]
    return legs + [Leg(psp_receivable(connector, currency), receivable_side, amount, currency)]


def fee_sellers(session: Session, scope: Scope, dispute_id: str, amount: int) -> dict[str, int] | None:
    """Each seller's part of a dispute fee when sellers bear the merchant's fees (app/payouts/fees.py), else None:
    pro rata to the sellers' shares of the withdrawal (or of the payment's capture)."""
    from app.disputes.models import Dispute
    from app.payouts.fees import SELLER, fee_bearer, payment_fee_shares, split_over

    if fee_bearer(session, scope) != SELLER:
        return None
    dispute = scope.get(session, Dispute, dispute_id)
    weights: dict[str, int] = {}
    for share in (dispute.allocations if dispute is not None else []) or []:
        weights[share["seller"]] = weights.get(share["seller"], 0) + share["amount"]
    if weights:
        return split_over(amount, weights)
    if dispute is not None and dispute.payment_id:
        return payment_fee_shares(session, scope, dispute.payment_id, amount) or None
    return None


def book_withdrawal(session: Session, scope: Scope, dispute_id: str, payment_id: str, connector: str, currency: str,
                    shares: list[Share], *, hmac_key: bytes):
    """Post the disputed amount taken back from the sellers and the platform fee, against the PSP."""
    return post_transaction(session, scope, f"dispute:{dispute_id}", "dispute",
                            _split_legs(shares, connector, currency, reinstate=False), hmac_key=hmac_key,
                            description=f"Dispute {dispute_id} of payment {payment_id}: funds withdrawn",
                            reference=dispute_id)


def book_reinstatement(session: Session, scope: Scope, dispute_id: str, payment_id: str, connector: str,
                       currency: str, shares: list[Share], *, hmac_key: bytes):
    """Post the disputed amount given back (the dispute won, or withdrawn by the issuer)."""
    return post_transaction(session, scope, f"dispute_reinstated:{dispute_id}", "dispute_reinstated",
                            _split_legs(shares, connector, currency, reinstate=True), hmac_key=hmac_key,
                            description=f"Dispute {dispute_id} of payment {payment_id}: funds reinstated",
                            reference=dispute_id)


def book_fee(session: Session, scope: Scope, dispute_id: str, connector: str, amount: int, currency: str, *,
             returned: bool, hmac_key: bytes):
    """Post the dispute fee as the PSP reported it, or its return."""
    key, kind = ("dispute_fee_returned", "dispute_fee_returned") if returned else ("dispute_fee", "dispute_fee")
    what = "fee returned" if returned else "fee"
    sellers = fee_sellers(session, scope, dispute_id, amount)
    return post_transaction(session, scope, f"{key}:{dispute_id}", kind,
                            fee_legs(connector, amount, currency, returned=returned, sellers=sellers),
                            hmac_key=hmac_key,
                            description=f"Dispute {dispute_id}: {what}", reference=dispute_id)
