"""The demo data has disputes in several states, booked like real ones, and seeding twice adds nothing."""
from app.disputes.models import Dispute
from app.disputes.queries import INBOX_WINDOW, due_without_evidence
from app.models_base import utcnow
from app.scoping import Scope
from app.seed import seed_demo
from tests.disputes.helpers import verify_ledger


def test_demo_disputes_in_several_states(app, db_session):
    merchant, lines = seed_demo(db_session)
    db_session.commit()
    assert any("Demo disputes" in line for line in lines)
    scope = Scope(merchant.id, False)
    disputes = db_session.scalars(scope.select(Dispute)).all()
    assert {d.status for d in disputes} == {"needs_response", "warning_needs_response", "under_review", "won", "lost"}
    won = next(d for d in disputes if d.status == "won")
    assert won.funds_withdrawn_at and won.funds_reinstated_at and won.evidence
    inquiry = next(d for d in disputes if d.status == "warning_needs_response")
    assert inquiry.funds_withdrawn_at is None
    # The operators' inbox shows the one due within its 72 hours (the console's demo item of the dispute kind).
    due, _count = due_without_evidence(db_session, utcnow() + INBOX_WINDOW, merchant_id=merchant.id)
    assert [d.status for d in due] == ["needs_response"]
    db_session.commit()
    verify_ledger(app)

    _merchant, again = seed_demo(db_session)
    db_session.commit()
    assert not any("Demo disputes" in line for line in again)
    assert len(db_session.scalars(scope.select(Dispute)).all()) == len(disputes)
    db_session.commit()
