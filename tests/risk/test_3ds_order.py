"""A matching ``request_3ds`` does not stop the other actions (issue 19: first match wins *within each action*).

At confirmation: ``request_3ds`` is decided, then allow -> block -> review over what is known before the
challenge; a block refuses before any PSP call, anything else asks for the challenge, after which the whole chain
(the platform's blocks, then allow -> block -> review) runs again with the 3-D Secure signals."""
import pytest
from sqlalchemy import select

from app.jobs.payments import _run_attempt
from app.payments import processing
from app.payments.models import PaymentAttempt
from app.psp.interfaces import Outcome
from app.risk import evaluate, lists, reviews, rules
from app.risk.models import Assessment
from tests.payments.helpers import authorized, event_types, make_deps, result
from tests.risk.test_engine import FRAUD_CARD, GOOD_CARD, payment
from tests.risk.test_payment_flow import GOOD, RiskGateway, confirm, payment_row


@pytest.fixture
def deps(redis):
    return make_deps(redis=redis, enqueued=[])


def _disposable(db_session, scope):
    domains = lists.create_value_list(db_session, scope, alias="disposable_domains", name="Disposable",
                                      item_type="email_domain")
    lists.add_item(db_session, scope, domains.id, "mailinator.com")


def _assessments(db_session, payment_id):
    return {row.stage: row for row in db_session.scalars(select(Assessment).where(
        Assessment.payment_id == payment_id))}


def test_a_merchant_block_wins_over_a_matching_request_3ds_before_any_psp_call(db_session, scope, deps):
    _disposable(db_session, scope)
    rules.create_rule(db_session, scope, action="request_3ds", predicate=":amount: > 100")
    block = rules.create_rule(db_session, scope, action="block", predicate=":email_domain: in @disposable_domains")
    db_session.commit()
    gateway = RiskGateway(cards={"tok_disposable": GOOD})
    body = confirm(db_session, scope, deps, "tok_disposable", customer_email="someone@mailinator.com")
    _run_attempt(body["attempts"][0]["id"], deps, gateway)
    assert [call[0] for call in gateway.calls] == ["card_facts"]  # no authorization, no challenge
    payment_ = payment_row(db_session, body["id"])
    assert payment_.status == "requires_payment_method" and payment_.last_error["code"] == "blocked"
    assert payment_.risk_outcome["type"] == "blocked" and payment_.risk_outcome["rule"]["id"] == block.id
    assert not payment_.request_three_d_secure
    assert _assessments(db_session, payment_.id)["confirmation"].outcome == "block"
    # The same amount from an ordinary address: the challenge is asked for.
    gateway = RiskGateway(cards={"tok_ordinary": GOOD}, authorize_results=[
        result(Outcome.REQUIRES_ACTION, psp_reference="auth_ordinary", action_url="http://psp/challenge/o",
               status="requires_action")])
    body = confirm(db_session, scope, deps, "tok_ordinary")
    _run_attempt(body["attempts"][0]["id"], deps, gateway)
    assert gateway.authorize_requests[0].three_d_secure is True
    assert payment_row(db_session, body["id"]).status == "requires_action"


def test_a_review_matching_alongside_request_3ds_holds_the_capture_after_the_challenge(db_session, scope, deps):
    _disposable(db_session, scope)
    asks = rules.create_rule(db_session, scope, action="request_3ds", predicate=":amount: > 100")
    review = rules.create_rule(db_session, scope, action="review", predicate=":email_domain: in @disposable_domains")
    db_session.commit()
    gateway = RiskGateway(cards={"tok_3ds_held": GOOD}, authorize_results=[
        result(Outcome.REQUIRES_ACTION, psp_reference="auth_3ds_held", action_url="http://psp/challenge/h",
               status="requires_action")])
    body = confirm(db_session, scope, deps, "tok_3ds_held", customer_email="someone@mailinator.com")
    attempt_id = body["attempts"][0]["id"]
    _run_attempt(attempt_id, deps, gateway)
    assert gateway.authorize_requests[0].three_d_secure is True
    payment_ = payment_row(db_session, body["id"])
    assert payment_.status == "requires_action" and payment_.review_id is None  # the challenge first
    confirmation = _assessments(db_session, payment_.id)["confirmation"]
    assert confirmation.outcome == "request_3ds" and confirmation.rule_id == asks.id
    applied = processing.apply_attempt_result(db_session, attempt_id, authorized("auth_3ds_held"), deps)
    db_session.commit()
    payment_ = payment_row(db_session, body["id"])
    assert payment_.capture_method == "automatic"
    assert payment_.status == "requires_capture" and payment_.review_id
    assert payment_.risk_outcome["type"] == "manual_review" and payment_.risk_outcome["rule"]["id"] == review.id
    after = _assessments(db_session, payment_.id)["after_3ds"]
    assert after.outcome == "review" and after.rule_id == review.id and after.signals["is_3d_secure"] is True
    opened = reviews.get_review(db_session, scope, payment_.review_id)
    assert opened.status == "open" and "review.opened" in event_types(db_session, scope, opened.id)
    operations = db_session.scalars(select(PaymentAttempt.operation).where(
        PaymentAttempt.payment_id == payment_.id)).all()
    assert "capture" not in operations and applied.follow_ups == []


def test_an_allow_rule_after_the_challenge_skips_the_merchants_block_and_review(db_session, scope, deps):
    rules.create_rule(db_session, scope, action="request_3ds", predicate=":amount: > 100")
    allow = rules.create_rule(db_session, scope, action="allow", predicate=":is_3d_secure:")
    rules.create_rule(db_session, scope, action="block", predicate=":card_funding: = 'credit' and :is_3d_secure:")
    rules.create_rule(db_session, scope, action="review", predicate=":amount: > 100")
    db_session.commit()
    gateway = RiskGateway(cards={"tok_3ds_allowed": GOOD}, authorize_results=[
        result(Outcome.REQUIRES_ACTION, psp_reference="auth_3ds_allowed", action_url="http://psp/challenge/a",
               status="requires_action")])
    body = confirm(db_session, scope, deps, "tok_3ds_allowed")
    attempt_id = body["attempts"][0]["id"]
    _run_attempt(attempt_id, deps, gateway)
    assert payment_row(db_session, body["id"]).status == "requires_action"
    applied = processing.apply_attempt_result(db_session, attempt_id, authorized("auth_3ds_allowed"), deps)
    db_session.commit()
    payment_ = payment_row(db_session, body["id"])
    assert payment_.review_id is None and payment_.risk_outcome["type"] == "authorized"
    assert payment_.risk_outcome["rule"]["id"] == allow.id
    [capture] = [db_session.get(PaymentAttempt, attempt) for attempt in applied.follow_ups]
    assert capture.operation == "capture"  # the automatic capture follows, nothing held


def test_engine_order_within_each_action(db_session, scope, redis):
    """The engine's decisions, stage by stage: a request_3ds match leaves the 3-D Secure rules for later, a
    block still wins, an allow skips the merchant's block and every review but never a platform block."""
    asks = rules.create_rule(db_session, scope, action="request_3ds", predicate=":amount: > 5")
    waits = rules.create_rule(db_session, scope, action="block", predicate="not :is_3d_secure:")
    platform_review = rules.create_rule(db_session, None, action="review", predicate=":amount: > 5")

    def assess(card=GOOD_CARD, **kwargs):
        return evaluate.assess(db_session, payment(db_session, scope), redis=redis, card=card, **kwargs)

    # The 3-D Secure block is not known before the challenge; the platform's review waits for it too.
    assert assess().outcome == "request_3ds"
    after = assess(stage="after_3ds", three_d_secure_result="authenticated")
    assert after.outcome == "review" and after.rule.id == platform_review.id
    assert assess(stage="after_3ds", three_d_secure_result="failed").rule.id == waits.id
    # Without a challenge to wait for, a 3-D Secure rule is decided on what is known (not attempted).
    rules.set_rule_enabled(db_session, scope, asks.id, False)
    assert assess().rule.id == waits.id
    rules.set_rule_enabled(db_session, scope, asks.id, True)
    # A merchant allow: it skips the merchant's block and the platform's review, before and after the challenge.
    allow = rules.create_rule(db_session, scope, action="allow", predicate=":card_brand: = 'visa'")
    assert assess().outcome == "request_3ds"
    after = assess(stage="after_3ds", three_d_secure_result="failed")
    assert after.outcome == "allow" and after.rule.id == allow.id
    # ... never a platform block, at confirmation or after the challenge.
    blocked = assess(card=FRAUD_CARD)
    assert blocked.outcome == "block" and blocked.rule.id == "rule_platform_fraud_hint"
    blocked = assess(card=FRAUD_CARD, stage="after_3ds", three_d_secure_result="authenticated")
    assert blocked.outcome == "block" and blocked.rule.id == "rule_platform_fraud_hint"
    db_session.rollback()
