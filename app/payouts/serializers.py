"""JSON shapes of payouts, balances and balance transactions (Stripe's, issue 22)."""
from app.payouts.balances import Balance, BalanceTransaction
from app.payouts.models import Payout


def _ts(value):
    return int(value.timestamp()) if value is not None else None


def payout_object(payout: Payout) -> dict:
    """A payout as the API, events and webhooks show it (bank account masked: last 4 only)."""
    return {"id": payout.id, "object": "payout", "livemode": payout.livemode, "amount": payout.amount,
            "currency": payout.currency, "status": payout.status, "type": payout.kind,
            "seller": payout.seller_id, "destination": payout.bank_account_id,
            "bank_account_last4": payout.bank_account_last4, "method": "standard", "rail": payout.rail,
            "period": payout.period.isoformat() if payout.period else None, "description": payout.description,
            "arrival_date": payout.arrival_date.isoformat() if payout.arrival_date else None,
            "held_until": _ts(payout.held_until), "hold_reason": payout.hold_reason,
            "failure_code": payout.failure_code, "failure_message": payout.failure_message,
            "created": _ts(payout.created_at), "paid_at": _ts(payout.paid_at), "failed_at": _ts(payout.failed_at),
            "canceled_at": _ts(payout.canceled_at)}


def balance_transaction_object(t: BalanceTransaction) -> dict:
    return {"id": t.id, "object": "balance_transaction", "type": t.type, "amount": t.amount, "fee": t.fee,
            "net": t.net, "currency": t.currency, "created": _ts(t.created),
            "available_on": t.available_on.isoformat() if t.available_on else None,
            "status": "available" if t.available_on is not None else "pending", "source": t.source,
            "description": t.description, "payout": t.payout, "seller": t.seller}


def balance_part(b: Balance) -> dict:
    return {"currency": b.currency, "pending": b.pending, "available": b.available,
            "in_transit": b.in_transit, "reserved": b.reserved}
