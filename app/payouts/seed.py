"""Demo data: the demo merchant's default seller (test mode) with a bank account, a weekly schedule and three
payouts of what the reconciled demo days made available (app/reconciliation/seed.py runs first): one paid, one in
transit, one failed (reversed, its account flagged). Idempotent: nothing is added once the demo has payouts."""
from datetime import timedelta

from flask import current_app
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models_base import utcnow
from app.payments.deps import deps_for
from app.payments.service import default_seller
from app.payouts import service
from app.payouts.bank_accounts import Actor, set_bank_account
from app.payouts.models import Payout
from app.scoping import Scope


def seed_demo_payouts(session: Session, merchant, _web_url: str) -> list[str]:
    """SEED_STEPS entry: a bank account, a schedule and a paid, an in-transit and a failed payout, once."""
    scope = Scope(merchant.id, False)
    if session.scalar(select(Payout.id).where(Payout.merchant_id == merchant.id).limit(1)) is not None:
        return []
    key = deps_for(current_app._get_current_object()).ledger_hmac_key
    seller = default_seller(session, scope)
    set_bank_account(session, scope, seller_id=seller.id, holder_name="Demo Shop GmbH", country="DE", currency="EUR",
                     iban="DE89370400440532013000", actor=Actor(None, "demo seed"), cooling=timedelta(0))
    service.set_schedule(session, scope, seller.id, {"interval": "weekly", "weekly_anchor": "friday",
                                                     "minimum_amount": 1000})
    today, now = utcnow().date(), utcnow()
    made = []
    for amount in (2000, 1500, 1000):
        result = service.create_payout(session, scope, seller_id=seller.id, currency="EUR", hmac_key=key,
                                       today=today, amount=amount, description="Demo payout", now=now)
        made.append(result.payout)
        session.flush()
    paid, in_transit, failed = made
    for payout in made:
        service.mark_in_transit(session, payout, rail_reference=payout.id, arrival_date=today + timedelta(days=2),
                                next_check=now)
    service.mark_paid(session, paid, hmac_key=key)
    service.mark_failed(session, failed, failure_code="account_closed", hmac_key=key)
    session.flush()
    return ["Payouts: the demo seller has a bank account, a weekly schedule and three payouts (paid, in transit, "
            "failed) on the dashboard's Payouts page"]
