"""The demo data has risk rules, value lists and payments held for review (one the platform's); seeding twice adds
nothing."""
from app.inbox import InboxFilters
from app.risk import reviews, rules
from app.risk.inbox import open_platform_reviews
from app.risk.models import Review, RiskRule, ValueList
from app.scoping import Scope
from app.seed import seed_demo


def test_demo_risk_data(app, db_session):
    merchant, lines = seed_demo(db_session)
    db_session.commit()
    assert any(line.startswith("Risk:") for line in lines)
    scope = Scope(merchant.id, False)
    assert len(rules.list_rules(db_session, scope)) == 5
    assert {row.alias for row in db_session.scalars(scope.select(ValueList))} >= {"disposable_domains"}
    held = reviews.list_reviews(db_session, scope)
    assert len(held) == 3 and {review.owner for review in held} == {"merchant", "platform"}
    assert [review.created_at for review in held] == sorted(review.created_at for review in held)  # oldest first
    page = open_platform_reviews(db_session, InboxFilters(merchant_id=merchant.id))
    assert page.count == 1 and page.items[0].kind == "review"
    _merchant, again = seed_demo(db_session)
    db_session.commit()
    assert not any(line.startswith("Risk:") for line in again)
    assert len(db_session.scalars(scope.select(RiskRule)).all()) == 5
    assert len(db_session.scalars(scope.select(Review)).all()) == 3
