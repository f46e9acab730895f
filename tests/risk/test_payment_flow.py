"""Risk in the payment flow, in process with a scripted PSP: block, review (held, decided once), request_3ds,
3-D Secure rules after the challenge, the merchant's capture during a platform review, the timeout sweep."""
import threading
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from sqlalchemy import select

from app.extensions import db
from app.jobs.payments import _run_attempt
from app.payments import idempotency, processing
from app.payments.models import Payment, PaymentAttempt
from app.risk import reviews, rules
from app.risk.errors import NotReviewOwner, PaymentInReview, ReviewDecided, RiskNotFound
from app.risk.models import Review
from app.scoping import Scope
from tests import factories
from tests.payments.helpers import ScriptedGateway, authorized, event_types, make_deps, result
from app.psp.interfaces import CardFactsUnavailable, Outcome
from app.risk import lists
from app.risk.models import Assessment

FRAUD = {"brand": "visa", "funding": "credit", "country": "US", "bin": "410000", "fingerprint": "fp_fraud",
         "risk_hint": "fraudulent", "last4": "0019", "exp_month": 12, "exp_year": 2035}
GOOD = {"brand": "visa", "funding": "credit", "country": "US", "bin": "424242", "fingerprint": "fp_good",
        "risk_hint": None, "last4": "4242", "exp_month": 12, "exp_year": 2035}


@dataclass
class RiskGateway(ScriptedGateway):
    """The scripted PSP with a vault that knows each token's card."""

    cards: dict = field(default_factory=dict)

    def card_facts(self, vault, token, **owner):
        self.calls.append(("card_facts", token))
        return self.cards.get(token)


@pytest.fixture
def deps(redis):
    return make_deps(redis=redis, enqueued=[])


def confirm(db_session, scope, deps, token, **params):
    body = {"amount": 70000, "currency": "EUR", "capture_method": "automatic", "payment_method": token,
            "confirm": True, "customer_email": "shopper@example.com", "customer_ip": "81.2.69.160", **params}
    response = idempotency.execute(db_session, scope, "payment.create", body, key=None, deps=deps, path="/test")
    return response.body


def payment_row(db_session, payment_id) -> Payment:
    db_session.expire_all()
    return db_session.get(Payment, payment_id)


def test_the_fraud_card_is_blocked_before_any_psp_call(db_session, scope, deps):
    gateway = RiskGateway(cards={"tok_fraud": FRAUD})
    body = confirm(db_session, scope, deps, "tok_fraud")
    _run_attempt(body["attempts"][0]["id"], deps, gateway)
    assert [call[0] for call in gateway.calls] == ["card_facts"]  # nothing sent to the PSP
    payment = payment_row(db_session, body["id"])
    assert payment.status == "requires_payment_method" and payment.last_error["code"] == "blocked"
    assert payment.risk_outcome["type"] == "blocked"
    assert payment.risk_outcome["network_status"] == "not_sent_to_network"
    assert payment.risk_outcome["rule"]["id"] == "rule_platform_fraud_hint"
    assert payment.customer_ip == "81.2.69.160"
    attempt = db_session.get(PaymentAttempt, body["attempts"][0]["id"])
    assert attempt.status == "failed" and attempt.decline_code == "blocked"
    assert event_types(db_session, scope, payment.id)[-1] == "payment.failed"


def test_a_merchant_allow_rule_cannot_let_the_fraud_card_through(db_session, scope, deps):
    rules.create_rule(db_session, scope, action="allow", predicate=":card_risk_hint: = 'fraudulent'")
    db_session.commit()
    gateway = RiskGateway(cards={"tok_fraud2": FRAUD})
    body = confirm(db_session, scope, deps, "tok_fraud2")
    _run_attempt(body["attempts"][0]["id"], deps, gateway)
    assert payment_row(db_session, body["id"]).status == "requires_payment_method"
    assert "authorize" not in [call[0] for call in gateway.calls]


def held_payment(db_session, scope, deps, token, *, platform=False):
    owner = None if platform else scope
    rule = rules.create_rule(db_session, owner, action="review", predicate=":amount: >= 700 and :currency: = 'eur'")
    db_session.commit()
    gateway = RiskGateway(cards={token: GOOD})
    body = confirm(db_session, scope, deps, token)
    _run_attempt(body["attempts"][0]["id"], deps, gateway)
    rules.delete_rule(db_session, owner, rule.id)
    db_session.commit()
    return body, gateway


def test_review_authorizes_and_holds_the_capture(db_session, scope, deps):
    body, gateway = held_payment(db_session, scope, deps, "tok_review")
    assert [call[0] for call in gateway.calls] == ["card_facts", "authorize"]
    assert gateway.authorize_requests[0].capture is False  # no sale: the capture is held
    payment = payment_row(db_session, body["id"])
    assert payment.status == "requires_capture" and payment.review_id
    assert payment.risk_outcome["type"] == "manual_review" and payment.risk_outcome["review_owner"] == "merchant"
    review = reviews.get_review(db_session, scope, payment.review_id)
    assert review.status == "open" and review.owner == "merchant" and review.ip_country == "GB"
    assert "review.opened" in event_types(db_session, scope, review.id)
    # Approve: one capture, the review closed as approved, review.closed written.
    reviews.decide(db_session, scope, review.id, "approve", actor=None, note="Looks fine", deps=deps,
                   acting_as="merchant")
    db_session.commit()
    captures = db_session.scalars(select(PaymentAttempt).where(PaymentAttempt.payment_id == payment.id,
                                                               PaymentAttempt.operation == "capture")).all()
    assert len(captures) == 1
    _run_attempt(captures[0].id, deps, gateway)
    assert payment_row(db_session, payment.id).status == "succeeded"
    with pytest.raises(ReviewDecided):
        reviews.decide(db_session, scope, review.id, "reject", actor=None, note="too late", deps=deps)
    db_session.rollback()
    assert [call[0] for call in gateway.calls].count("capture") == 1
    assert "review.closed" in event_types(db_session, scope, review.id)


def test_the_merchants_capture_approves_its_own_review_and_the_outcome_says_so(db_session, scope, deps):
    body, _ = held_payment(db_session, scope, deps, "tok_review_capture")
    payment = payment_row(db_session, body["id"])
    assert payment.risk_outcome["type"] == "manual_review"
    idempotency.execute(db_session, scope, "payment.capture", {"payment": payment.id}, key=None, deps=deps,
                        path="/test")
    db_session.commit()
    payment = payment_row(db_session, payment.id)
    review = reviews.get_review(db_session, scope, payment.review_id)
    assert (review.status, review.closed_reason) == ("closed", "approved")
    # The same outcome as an approval by decision: the payments list's risk filters find it under "authorized".
    assert payment.risk_outcome["type"] == "authorized"


def test_reject_voids_once_and_the_platform_review_refuses_the_merchants_capture(db_session, scope, deps):
    body, gateway = held_payment(db_session, scope, deps, "tok_platform_review", platform=True)
    payment = payment_row(db_session, body["id"])
    review = reviews.get_review(db_session, scope, payment.review_id)
    assert review.owner == "platform"
    with pytest.raises(PaymentInReview) as refused:
        idempotency.execute(db_session, scope, "payment.capture", {"payment": payment.id}, key=None, deps=deps,
                            path="/test")
    assert refused.value.status == 409 and refused.value.code == "payment_in_review"
    db_session.rollback()
    with pytest.raises(NotReviewOwner):
        reviews.decide(db_session, scope, review.id, "approve", actor=None, note="mine", deps=deps,
                       acting_as="merchant")
    db_session.rollback()
    reviews.decide(db_session, scope, review.id, "reject", actor=None, note="Stolen card", deps=deps, as_fraud=True)
    db_session.commit()
    payment = payment_row(db_session, payment.id)
    assert payment.status == "canceled"
    voids = db_session.scalars(select(PaymentAttempt).where(PaymentAttempt.payment_id == payment.id,
                                                            PaymentAttempt.operation == "void")).all()
    assert len(voids) == 1
    assert reviews.get_review(db_session, scope, review.id).closed_reason == "refunded_as_fraud"


def test_a_concurrent_approve_and_reject_decide_once(app, db_session, scope, deps):
    body, _ = held_payment(db_session, scope, deps, "tok_race")
    review_id = payment_row(db_session, body["id"]).review_id
    barrier = threading.Barrier(2)
    outcomes = {}

    def decide(decision):
        with app.app_context():
            barrier.wait()
            try:
                reviews.decide(db.session, scope, review_id, decision, actor=None, note=decision, deps=deps)
                db.session.commit()
                outcomes[decision] = "decided"
            except ReviewDecided:
                db.session.rollback()
                outcomes[decision] = "refused"
            finally:
                db.session.remove()

    threads = [threading.Thread(target=decide, args=(d,)) for d in ("approve", "reject")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes.values()) == ["decided", "refused"]
    db_session.expire_all()
    attempts = db_session.scalars(select(PaymentAttempt.operation).where(PaymentAttempt.payment_id == body["id"])).all()
    assert sorted(attempts).count("capture") + sorted(attempts).count("void") == 1


def test_request_3ds_asks_the_psp_and_a_3ds_rule_blocks_after_the_challenge(db_session, scope, deps):
    rules.create_rule(db_session, scope, action="request_3ds", predicate=":amount: > 500")
    rules.create_rule(db_session, scope, action="block", predicate=":is_3d_secure: and :card_funding: = 'credit'")
    db_session.commit()
    gateway = RiskGateway(cards={"tok_3ds": GOOD}, authorize_results=[
        result(Outcome.REQUIRES_ACTION, psp_reference="auth_3ds", action_url="http://psp/challenge/auth_3ds",
               status="requires_action")])
    body = confirm(db_session, scope, deps, "tok_3ds")
    attempt_id = body["attempts"][0]["id"]
    _run_attempt(attempt_id, deps, gateway)
    assert gateway.authorize_requests[0].three_d_secure is True
    payment = payment_row(db_session, body["id"])
    assert payment.status == "requires_action" and payment.request_three_d_secure
    # The challenge succeeds (as its callback or poll reports): the 3-D Secure rules run again and block.
    applied = processing.apply_attempt_result(db_session, attempt_id, authorized("auth_3ds"), deps)
    db_session.commit()
    payment = payment_row(db_session, body["id"])
    assert payment.status == "requires_payment_method" and payment.last_error["code"] == "blocked"
    assert payment.risk_outcome["type"] == "blocked"
    [void] = [db_session.get(PaymentAttempt, attempt) for attempt in applied.follow_ups]
    assert void.operation == "void" and void.psp_reference == "auth_3ds"


def test_open_reviews_time_out_before_the_authorization_expires(db_session, scope, deps):
    body, _ = held_payment(db_session, scope, deps, "tok_timeout")
    payment = payment_row(db_session, body["id"])
    review = reviews.get_review(db_session, scope, payment.review_id)
    assert review.expires_at < payment.authorized_at + deps.authorization_expiry
    assert reviews.expire_due_reviews(db_session, deps, now=review.expires_at - timedelta(seconds=1)) == []
    assert reviews.expire_due_reviews(db_session, deps, now=review.expires_at + timedelta(seconds=1)) == [review.id]
    db_session.commit()
    assert payment_row(db_session, payment.id).status == "canceled"
    assert reviews.get_review(db_session, scope, review.id).closed_reason == "timed_out"


def test_a_merchant_cannot_see_or_decide_another_merchants_review(db_session, scope, deps):
    body, _ = held_payment(db_session, scope, deps, "tok_tenancy")
    review_id = payment_row(db_session, body["id"]).review_id
    other = Scope(factories.merchant(db_session, name="Other").id, False)
    db_session.commit()
    with pytest.raises(RiskNotFound):
        reviews.get_review(db_session, other, review_id)
    with pytest.raises(RiskNotFound):
        reviews.decide(db_session, other, review_id, "approve", actor=None, note="x", deps=deps, acting_as="merchant")
    assert reviews.list_reviews(db_session, other) == []
    assert review_id in [r.id for r in reviews.list_reviews(db_session, scope)]
    assert db_session.scalar(select(Review.status).where(Review.id == review_id)) == "open"


def test_bulk_decide_reports_each_review(db_session, scope, deps):
    first, _ = held_payment(db_session, scope, deps, "tok_bulk_1")
    second, _ = held_payment(db_session, scope, deps, "tok_bulk_2")
    ids = [payment_row(db_session, body["id"]).review_id for body in (first, second)]
    reviews.decide(db_session, scope, ids[0], "approve", actor=None, note="first", deps=deps)
    db_session.commit()
    results = reviews.bulk_decide(db_session, [(scope, ids[0]), (scope, ids[1])], "reject", actor=None,
                                  note="Fraud ring", deps=deps)
    db_session.commit()
    assert results[ids[1]] == "ok" and "closed already" in results[ids[0]]
    assert payment_row(db_session, second["id"]).status == "canceled"
    assert payment_row(db_session, first["id"]).status == "requires_capture"  # its capture is staged


def test_payments_filter_by_risk_level_and_outcome(db_session, scope, deps):
    from app.payments.service import payments_query

    held, _ = held_payment(db_session, scope, deps, "tok_filter_held")
    gateway = RiskGateway(cards={"tok_filter_fraud": FRAUD})
    blocked = confirm(db_session, scope, deps, "tok_filter_fraud")
    _run_attempt(blocked["attempts"][0]["id"], deps, gateway)
    ids = lambda **f: {row.id for row in db_session.scalars(payments_query(scope, **f))}  # noqa: E731
    assert held["id"] in ids(outcome="manual_review") and blocked["id"] not in ids(outcome="manual_review")
    assert blocked["id"] in ids(outcome="blocked")
    level = payment_row(db_session, held["id"]).risk_level
    assert held["id"] in ids(risk_level=level)
    assert all(held["id"] not in ids(risk_level=other) for other in ("normal", "elevated", "highest") if other != level)


def test_the_platform_keeps_review_to_itself_and_the_history_stays_in_the_book(db_session, scope, deps):
    reviews.set_reviews_by_platform(db_session, scope.merchant_id, True, actor=None, reason="Fraud spike")
    db_session.commit()
    body, _ = held_payment(db_session, scope, deps, "tok_kept")
    review = reviews.get_review(db_session, scope, payment_row(db_session, body["id"]).review_id)
    assert review.owner == "platform"  # opened by the merchant's own rule
    history = reviews.review_history(db_session, scope, review)
    assert body["id"] in [row["id"] for row in history["card"]["payments"]]
    other = Scope(factories.merchant(db_session, name="Same card elsewhere").id, False)
    db_session.commit()
    assert all(row["id"] != body["id"] for row in (reviews.review_history(db_session, other, review)["card"] or
                                                    {"payments": []})["payments"])
    reviews.set_reviews_by_platform(db_session, scope.merchant_id, False, actor=None)
    db_session.commit()


def test_the_timeout_sweep_takes_locks_in_the_decisions_order(db_session, scope, deps):
    """Review r3: the sweep locked the review, then waited for the payment a decision held, while the decision
    (payment first, then review) waited for the review: a deadlock. It now skips a payment someone holds, and
    locks the review only after its payment."""
    from sqlalchemy import text

    body, _ = held_payment(db_session, scope, deps, "tok_sweep_order")
    payment = payment_row(db_session, body["id"])
    review_id, expires_at = payment.review_id, reviews.get_review(db_session, scope, payment.review_id).expires_at
    db_session.commit()
    with db.engine.connect() as decider:  # a decision under way: it holds the payment and wants the review next
        decider.execute(text("SELECT 1 FROM payments WHERE id = :p FOR UPDATE"), {"p": body["id"]})
        # Bounded so that the order this test forbids fails instead of hanging the suite.
        db_session.execute(text("SET LOCAL lock_timeout = '5s'"))
        assert review_id not in reviews.expire_due_reviews(db_session, deps, now=expires_at + timedelta(seconds=1))
        decider.execute(text("SELECT 1 FROM risk_reviews WHERE id = :r FOR UPDATE NOWAIT"), {"r": review_id})
        decider.rollback()
    db_session.rollback()
    # Once the decision is gone, the next sweep times the review out.
    assert review_id in reviews.expire_due_reviews(db_session, deps, now=expires_at + timedelta(seconds=1))
    db_session.commit()
    assert reviews.get_review(db_session, scope, review_id).closed_reason == "timed_out"


@dataclass
class DownVaultGateway(RiskGateway):
    """The scripted PSP whose vault cannot be asked (a timeout, a 5xx: the connectors raise so)."""

    def card_facts(self, vault, token, **owner):
        self.calls.append(("card_facts", token))
        raise CardFactsUnavailable("vault: ReadTimeout")


def test_a_vault_that_cannot_be_asked_holds_the_payment_for_a_platform_review(db_session, scope, deps):
    # A merchant rule that would let everything through changes nothing: the platform's lists went unchecked.
    rules.create_rule(db_session, scope, action="allow", predicate=":amount: > 0")
    db_session.commit()
    gateway = DownVaultGateway()
    body = confirm(db_session, scope, deps, "tok_vault_down")
    _run_attempt(body["attempts"][0]["id"], deps, gateway)
    assert [call[0] for call in gateway.calls] == ["card_facts", "authorize"]
    assert gateway.authorize_requests[0].capture is False  # neither let through nor declined: held
    payment = payment_row(db_session, body["id"])
    assert payment.status == "requires_capture" and payment.review_id
    assert payment.risk_outcome["type"] == "manual_review"
    assert payment.risk_outcome["reason"] == "card_facts_unavailable"
    assert payment.risk_outcome["rule"] is None and payment.risk_outcome["review_owner"] == "platform"
    assessment = db_session.get(Assessment, (scope.merchant_id, payment.risk_outcome["assessment"]))
    assert assessment.outcome == "review" and assessment.reason == "card_facts_unavailable"
    assert assessment.signals["card_fingerprint"] is None
    review = reviews.get_review(db_session, scope, payment.review_id)
    assert review.owner == "platform" and review.opened_reason == "card_facts_unavailable"
    with pytest.raises(PaymentInReview):  # the merchant cannot capture around it
        idempotency.execute(db_session, scope, "payment.capture", {"payment": payment.id}, key=None, deps=deps,
                            path="/test")
    db_session.rollback()


def test_a_block_on_what_is_known_still_blocks_when_the_vault_cannot_be_asked(db_session, scope, deps):
    block_list = lists.get_value_list(db_session, None, "rsl_platform_email")
    item = lists.add_item(db_session, None, block_list.id, "vault-down-fraud@example.com")
    db_session.commit()
    try:
        gateway = DownVaultGateway()
        body = confirm(db_session, scope, deps, "tok_vault_down_blocked",
                       customer_email="vault-down-fraud@example.com")
        _run_attempt(body["attempts"][0]["id"], deps, gateway)
        assert [call[0] for call in gateway.calls] == ["card_facts"]
        payment = payment_row(db_session, body["id"])
        assert payment.status == "requires_payment_method" and payment.risk_outcome["type"] == "blocked"
        assert payment.risk_outcome["reason"] == "rule"
        assert payment.risk_outcome["rule"]["id"] == "rule_platform_email"
    finally:
        lists.delete_item(db_session, None, item.id)
        db_session.commit()


@dataclass
class CrashingGateway(RiskGateway):
    """The worker dies between the screening's commit and the PSP call (once)."""

    crashes: int = 1

    def authorize(self, vault, request):
        if self.crashes:
            self.crashes -= 1
            raise RuntimeError("worker killed before sending")
        return super().authorize(vault, request)


def test_a_retried_attempt_reuses_its_screening(db_session, scope, deps):
    from sqlalchemy import func, text

    rules.create_rule(db_session, scope, action="review", predicate=":amount: >= 700")
    db_session.commit()
    gateway = CrashingGateway(cards={"tok_retry": GOOD})
    body = confirm(db_session, scope, deps, "tok_retry")
    attempt_id = body["attempts"][0]["id"]
    with pytest.raises(RuntimeError):
        _run_attempt(attempt_id, deps, gateway)
    db_session.rollback()
    # The lease runs out: the next run claims the attempt again (tries 2) and screens it again.
    db_session.execute(text("UPDATE payment_attempts SET lease_until = now() - interval '1 second', "
                            "next_attempt_at = now() - interval '1 second' WHERE id = :id"), {"id": attempt_id})
    db_session.commit()
    _run_attempt(attempt_id, deps, gateway)
    kinds = [call[0] for call in gateway.calls]
    assert kinds.count("card_facts") == 2 and kinds.count("authorize") == 1  # (a status query comes first)
    assert gateway.authorize_requests[0].capture is False  # the first screening's review still holds it
    assert db_session.scalar(select(func.count()).select_from(Assessment).where(
        Assessment.merchant_id == scope.merchant_id, Assessment.attempt_id == attempt_id)) == 1
    payment = payment_row(db_session, body["id"])
    assert payment.status == "requires_capture" and payment.review_id


def test_a_screening_rolled_back_leaves_no_decline_and_its_retry_counts_once(db_session, scope, deps, monkeypatch):
    """Velocity and the screening's transaction: the confirmation's own counts are members named by the payment
    (a retry of the same attempt adds nothing), and a block's decline is counted only once its transaction
    commits, so a rolled-back screening leaves no decline for its retry to see."""
    import uuid

    from sqlalchemy import text

    from app.payments import state
    from app.risk.velocity import Velocity

    card = {**FRAUD, "fingerprint": f"fp_rollback_{uuid.uuid4().hex}"}
    gateway = RiskGateway(cards={"tok_rollback": card})
    body = confirm(db_session, scope, deps, "tok_rollback", customer_email=f"{uuid.uuid4().hex}@example.com")
    attempt_id = body["attempts"][0]["id"]

    def counters():
        return Velocity(deps.redis).record_and_read(
            payment_id=body["id"], merchant_id=scope.merchant_id, livemode=False, fingerprint=card["fingerprint"],
            email=body["customer_email"], ip=None, currency="EUR", amount=70000, record=False)

    real_transition = state.transition

    def failing_transition(*args, **kwargs):
        real_transition(*args, **kwargs)
        raise RuntimeError("the screening's transaction fails after the block was decided")

    monkeypatch.setattr(state, "transition", failing_transition)
    with pytest.raises(RuntimeError):
        _run_attempt(attempt_id, deps, gateway)
    db_session.rollback()
    first = counters()
    assert first["card_payments_24h"] == 1 and first["email_payments_24h"] == 1
    assert first["card_declines_24h"] == 0 and first["email_declines_24h"] == 0  # nothing committed, nothing counted
    assert first["card_amount_24h_minor"] == 70000
    assert db_session.scalar(select(Assessment.id).where(Assessment.attempt_id == attempt_id)) is None

    monkeypatch.setattr(state, "transition", real_transition)
    db_session.execute(text("UPDATE payment_attempts SET lease_until = now() - interval '1 second', "
                            "next_attempt_at = now() - interval '1 second' WHERE id = :id"), {"id": attempt_id})
    db_session.commit()
    assert _run_attempt(attempt_id, deps, gateway) == "blocked"
    again = counters()
    # The retry is the same confirmation: counted once, its amount once; its block is one decline.
    assert again["card_payments_24h"] == 1 and again["email_payments_24h"] == 1
    assert again["card_amount_24h_minor"] == 70000
    assert again["card_declines_24h"] == 1 and again["email_declines_24h"] == 1
    assert payment_row(db_session, body["id"]).status == "requires_payment_method"
    assert [call[0] for call in gateway.calls] == ["card_facts", "card_facts"]  # never sent to the PSP


@dataclass
class WatchingGateway(RiskGateway):
    """Looks at the payment as another connection sees it while the PSP is being asked (screening committed)."""

    payment_id: str = ""
    seen: dict = field(default_factory=dict)

    def authorize(self, vault, request):
        from sqlalchemy.orm import Session as OrmSession

        from app.payments.serializers import payment_object

        with OrmSession(db.engine) as other:
            row = other.execute(select(Payment.risk_outcome, Payment.risk_level, text_xmin())
                                .where(Payment.id == self.payment_id)).one()
            self.seen = {"row_outcome": row[0], "row_level": row[1], "xmin": row[2],
                         "api": payment_object(other, other.get(Payment, self.payment_id))}
        return super().authorize(vault, request)


def text_xmin():
    from sqlalchemy import literal_column

    return literal_column("payments.xmin::text")


def test_the_screening_leaves_the_payment_row_to_the_answer_and_the_api_shows_its_outcome_meanwhile(
        db_session, scope, deps):
    """An allowed or held authorization's screening writes only its assessment (the payment's risk fields go in
    the UPDATE the PSP's answer gives it anyway: no second, non-HOT UPDATE of payments per authorization); in
    between, the API shows the outcome from the assessment."""
    rules.create_rule(db_session, scope, action="review", predicate=":amount: >= 700")
    db_session.commit()
    gateway = WatchingGateway(cards={"tok_watch": GOOD})
    body = confirm(db_session, scope, deps, "tok_watch")
    gateway.payment_id = body["id"]
    xmin = db_session.scalar(select(text_xmin()).where(Payment.id == body["id"]))
    db_session.commit()
    _run_attempt(body["attempts"][0]["id"], deps, gateway)
    assessment = db_session.scalars(select(Assessment).where(
        Assessment.merchant_id == scope.merchant_id, Assessment.payment_id == body["id"])).one()
    seen = gateway.seen
    assert seen["xmin"] == xmin  # the screening did not write the payment's row
    assert seen["row_outcome"] is None and seen["row_level"] is None
    assert seen["api"]["status"] == "processing"
    assert seen["api"]["outcome"]["type"] == "manual_review"
    assert seen["api"]["outcome"]["assessment"] == assessment.id
    assert seen["api"]["outcome"]["review_owner"] == "merchant"
    payment = payment_row(db_session, body["id"])
    assert payment.status == "requires_capture" and payment.review_id
    assert payment.risk_outcome == seen["api"]["outcome"]
    assert (payment.risk_score, payment.risk_level) == (assessment.score, assessment.level)
    assert payment.card_fingerprint == "fp_1"  # the PSP's answer has the last word on the card summary


@dataclass
class LostAnswerGateway(RiskGateway):
    """The PSP authorizes, and the worker dies before applying the answer (once)."""

    def authorize(self, vault, request):
        super().authorize(vault, request)
        raise RuntimeError("worker killed before applying the answer")


def test_an_answer_applied_without_its_screening_reads_the_outcome_from_the_assessment(db_session, scope, deps):
    """A crash between the screening and the PSP's answer loses no outcome: the answer, applied later by
    another path (a callback, the janitor's status query), writes the risk fields from the assessment, and the
    review still holds the capture."""
    rules.create_rule(db_session, scope, action="review", predicate=":amount: >= 700")
    db_session.commit()
    gateway = LostAnswerGateway(cards={"tok_lost": GOOD}, authorize_results=[authorized("auth_lost")])
    body = confirm(db_session, scope, deps, "tok_lost")
    attempt_id = body["attempts"][0]["id"]
    with pytest.raises(RuntimeError):
        _run_attempt(attempt_id, deps, gateway)
    db_session.rollback()
    assert payment_row(db_session, body["id"]).risk_outcome is None
    processing.apply_attempt_result(db_session, attempt_id, authorized("auth_lost"), deps)
    db_session.commit()
    payment = payment_row(db_session, body["id"])
    assessment = db_session.scalars(select(Assessment).where(
        Assessment.merchant_id == scope.merchant_id, Assessment.attempt_id == attempt_id)).one()
    assert payment.status == "requires_capture" and payment.review_id
    assert payment.risk_outcome["type"] == "manual_review" and payment.risk_outcome["assessment"] == assessment.id
    assert payment.risk_level == assessment.level
    review = reviews.get_review(db_session, scope, payment.review_id)
    assert review.status == "open" and review.assessment_id == assessment.id


def test_a_block_overtaken_before_its_lock_is_applied_by_the_attempts_next_run(db_session, scope, deps, monkeypatch):
    """The screening reads without a lock and locks the payment only to apply a block; a run overtaken in
    between sends nothing, and the attempt's next run applies the block its assessment decided (never sends)."""
    from sqlalchemy import func, text

    from app.payments import risk as payment_risk
    from app.payments.risk import Screened

    gateway = RiskGateway(cards={"tok_overtaken": FRAUD})
    body = confirm(db_session, scope, deps, "tok_overtaken")
    attempt_id = body["attempts"][0]["id"]
    real_block = payment_risk._block
    monkeypatch.setattr(payment_risk, "_block", lambda *args, **kwargs: Screened(None, []))
    assert _run_attempt(attempt_id, deps, gateway) == "blocked"
    assert payment_row(db_session, body["id"]).status == "processing"
    monkeypatch.setattr(payment_risk, "_block", real_block)
    db_session.execute(text("UPDATE payment_attempts SET lease_until = now() - interval '1 second', "
                            "next_attempt_at = now() - interval '1 second' WHERE id = :id"), {"id": attempt_id})
    db_session.commit()
    assert _run_attempt(attempt_id, deps, gateway) == "blocked"
    payment = payment_row(db_session, body["id"])
    assert payment.status == "requires_payment_method" and payment.risk_outcome["type"] == "blocked"
    assert payment.last_error["code"] == "blocked"
    assert "authorize" not in [call[0] for call in gateway.calls]
    assert db_session.scalar(select(func.count()).select_from(Assessment).where(
        Assessment.merchant_id == scope.merchant_id, Assessment.attempt_id == attempt_id)) == 1


def test_a_held_authorization_sent_again_after_a_timeout_is_still_no_sale(db_session, scope, deps):
    """An authorization left ``unknown`` (a timeout) that the PSP then says it never got is sent again under its
    screening's outcome: held for review, so no sale, and the payment ends held with its review open."""
    from sqlalchemy import text

    rules.create_rule(db_session, scope, action="review", predicate=":amount: >= 700")
    db_session.commit()
    gateway = RiskGateway(cards={"tok_timeout": GOOD}, authorize_results=[result(Outcome.UNKNOWN)])
    body = confirm(db_session, scope, deps, "tok_timeout")
    attempt_id = body["attempts"][0]["id"]
    _run_attempt(attempt_id, deps, gateway)
    assert db_session.get(PaymentAttempt, attempt_id).status == "unknown"
    db_session.execute(text("UPDATE payment_attempts SET lease_until = NULL, "
                            "next_attempt_at = now() - interval '1 second' WHERE id = :id"), {"id": attempt_id})
    db_session.commit()
    _run_attempt(attempt_id, deps, gateway)
    kinds = [call[0] for call in gateway.calls]
    # Screened once; the second run asks the PSP first (each connector of the vault), then sends again.
    assert kinds[:2] == ["card_facts", "authorize"] and kinds[-1] == "authorize"
    assert kinds.count("card_facts") == 1 and set(kinds[2:-1]) == {"retrieve"}
    assert [request.capture for request in gateway.authorize_requests] == [False, False]
    payment = payment_row(db_session, body["id"])
    assert payment.status == "requires_capture" and payment.review_id
    assert payment.risk_outcome["type"] == "manual_review"
