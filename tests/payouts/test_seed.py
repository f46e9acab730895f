"""The demo's payouts: a paid, an in-transit and a failed payout of the demo seller, the ledger verifiable, and
seeding again adds none."""
from sqlalchemy import select

from app.payouts.models import Payout
from app.seed import seed_demo
from tests.disputes.helpers import verify_ledger


def test_the_demo_has_payouts(app, db_session):
    merchant, lines = seed_demo(db_session)
    db_session.commit()
    assert any(line.startswith("Payouts:") for line in lines)
    rows = db_session.scalars(select(Payout).where(Payout.merchant_id == merchant.id).order_by(Payout.id)).all()
    assert [(p.amount, p.status) for p in rows] == [(2000, "paid"), (1500, "in_transit"), (1000, "failed")]
    db_session.commit()
    verify_ledger(app)
    seed_demo(db_session)
    db_session.commit()
    assert len(db_session.scalars(select(Payout).where(Payout.merchant_id == merchant.id)).all()) == 3
    db_session.commit()
