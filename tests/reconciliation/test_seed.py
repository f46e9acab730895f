"""The demo's reconciled days keep the ledger verifiable, the clean day's batch reaches cash, and seeding again adds
no file."""
from sqlalchemy import func, select

from app.ledger import accounts
from app.reconciliation.models import BREAK_TYPES, Break, ReportFile
from app.scoping import Scope
from app.seed import seed_demo
from tests.disputes.helpers import verify_ledger
from tests.reconciliation.helpers import balance


def test_the_demo_days_reconcile_and_verify(app, db_session):
    merchant, lines = seed_demo(db_session)
    db_session.commit()
    assert any(line.startswith("Reconciliation:") for line in lines)
    files = db_session.scalar(select(func.count()).select_from(ReportFile))
    assert files == 6  # three reports, three statements (each paying the day before)
    # Day 1 (125.00 less 4.23 of fees) and day 3 (the late line, 60.00 less 2.04) reached the bank; the demo's paid
    # payout (20.00, app/payouts/seed.py) left it.
    assert balance(db_session, Scope(merchant.id, False), accounts.cash("EUR")) == (12500 - 423) + (6000 - 204) - 2000
    # One break of each kind (the late line's missing_at_psp closed, the others open).
    kinds = set(db_session.scalars(select(Break.type).where(Break.report_date.is_not(None))).all())
    assert kinds == set(BREAK_TYPES)
    db_session.commit()
    verify_ledger(app)
    seed_demo(db_session)
    db_session.commit()
    assert db_session.scalar(select(func.count()).select_from(ReportFile)) == files
