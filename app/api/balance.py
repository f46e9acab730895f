"""/v1/balance: what the ledger owes each seller and what the platform earned, per currency."""
from flask import g, jsonify
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
    (negative when a seller was refunded after a payout and owes the merchant).
    """
    from app.ledger.models import LedgerAccount

    request_params(allowed=())
    accounts = db.session.scalars(select(LedgerAccount).where(
        LedgerAccount.merchant_id == g.scope.merchant_id, LedgerAccount.livemode == g.scope.livemode,
        LedgerAccount.account_type.in_(("seller_payable", "merchant_revenue")),
    ).order_by(LedgerAccount.account_type, LedgerAccount.subject, LedgerAccount.currency)).all()
    sellers = [{"seller": a.subject, "currency": a.currency, "amount": a.balance}
               for a in accounts if a.account_type == "seller_payable"]
    fees = [{"currency": a.currency, "amount": a.balance} for a in accounts if a.account_type == "merchant_revenue"]
    db.session.commit()
    return jsonify({"object": "balance", "livemode": g.scope.livemode, "sellers": sellers, "platform_fees": fees})
