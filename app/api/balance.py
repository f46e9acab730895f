"""/v1/balance: what the ledger owes each seller and what the platform earned, per currency, with each balance's
parts (issue 22: pending, available, in transit; app/payouts/balances.py)."""
from flask import current_app, g, jsonify
from sqlalchemy import select

from app.api import bp
from app.api.auth import api_view
from app.api.payments import request_params
from app.extensions import db


@bp.get("/balance")
@api_view
def retrieve_balance():
    """Seller payables and the platform fee revenue of the key's book, read from the ledger accounts.

    ``amount`` is the account balance in its normal direction: what the merchant owes the seller
    (negative when a seller was refunded after a payout and owes the merchant). Each seller entry also carries
    ``pending``, ``available``, ``in_transit`` and ``reserved``; ``merchant`` lists the same parts of the merchant's
    own net revenue (platform fees less the fees it bears), per currency.
    """
    from app.ledger.models import LedgerAccount
    from app.payouts.balances import subject_balances
    from app.payouts.clock import payout_today
    from app.payouts.serializers import balance_part

    request_params(allowed=())
    today = payout_today(current_app.config, g.scope.livemode)
    accounts = db.session.scalars(select(LedgerAccount).where(
        LedgerAccount.merchant_id == g.scope.merchant_id, LedgerAccount.livemode == g.scope.livemode,
        LedgerAccount.account_type.in_(("seller_payable", "merchant_revenue")),
    ).order_by(LedgerAccount.account_type, LedgerAccount.subject, LedgerAccount.currency)).all()
    parts: dict[str | None, dict[str, dict]] = {}

    def parts_of(seller_id):
        if seller_id not in parts:
            parts[seller_id] = {b.currency: balance_part(b)
                                for b in subject_balances(db.session, g.scope, seller_id, today)}
        return parts[seller_id]

    sellers = []
    for a in accounts:
        if a.account_type != "seller_payable":
            continue
        part = parts_of(a.subject).get(a.currency, {})
        sellers.append({"seller": a.subject, "currency": a.currency, "amount": a.balance,
                        **{k: part.get(k, 0) for k in ("pending", "available", "in_transit", "reserved")}})
    fees = [{"currency": a.currency, "amount": a.balance} for a in accounts if a.account_type == "merchant_revenue"]
    merchant = list(parts_of(None).values())
    db.session.commit()
    return jsonify({"object": "balance", "livemode": g.scope.livemode, "sellers": sellers, "platform_fees": fees,
                    "merchant": merchant})
