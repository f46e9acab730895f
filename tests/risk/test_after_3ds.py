"""The rules run again after the challenge, with its result: a review rule then holds the authorization (the
payment ends requires_capture with its review open, even with automatic capture, and no capture is staged). The
block after the challenge: test_payment_flow.py and, end to end, test_e2e.py."""
from sqlalchemy import select

from app.jobs.payments import _run_attempt
from app.payments import processing
from app.payments.models import PaymentAttempt
from app.psp.interfaces import Outcome
from app.risk import reviews, rules
from tests.payments.helpers import authorized, event_types, make_deps, result
from tests.risk.test_payment_flow import GOOD, RiskGateway, confirm, payment_row


def test_a_3ds_review_rule_holds_the_authorization_after_the_challenge(db_session, scope, redis):
    deps = make_deps(redis=redis, enqueued=[])
    rules.create_rule(db_session, scope, action="request_3ds", predicate=":amount: > 500")
    rules.create_rule(db_session, scope, action="review",
                      predicate=":is_3d_secure: and :three_d_secure_result: = 'authenticated'")
    db_session.commit()
    gateway = RiskGateway(cards={"tok_3ds_review": GOOD}, authorize_results=[
        result(Outcome.REQUIRES_ACTION, psp_reference="auth_3ds_review", action_url="http://psp/challenge/x",
               status="requires_action")])
    body = confirm(db_session, scope, deps, "tok_3ds_review")
    attempt_id = body["attempts"][0]["id"]
    _run_attempt(attempt_id, deps, gateway)
    payment = payment_row(db_session, body["id"])
    assert payment.status == "requires_action" and payment.review_id is None  # not held before the challenge
    applied = processing.apply_attempt_result(db_session, attempt_id, authorized("auth_3ds_review"), deps)
    db_session.commit()
    payment = payment_row(db_session, body["id"])
    assert payment.capture_method == "automatic"
    assert payment.status == "requires_capture" and payment.review_id
    assert payment.risk_outcome["type"] == "manual_review"
    review = reviews.get_review(db_session, scope, payment.review_id)
    assert review.status == "open" and "review.opened" in event_types(db_session, scope, review.id)
    operations = db_session.scalars(select(PaymentAttempt.operation).where(
        PaymentAttempt.payment_id == payment.id)).all()
    assert "capture" not in operations and applied.follow_ups == []
