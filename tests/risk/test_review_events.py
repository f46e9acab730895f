"""Events ``review.opened`` and ``review.closed``, with every closed reason (approved, refunded, refunded_as_fraud,
disputed, canceled, timed_out), delivered by webhooks to a merchant's endpoint (a localhost receiver that verifies
each signature), each reason produced by the path that really closes a review."""
from datetime import timedelta

from app.disputes.service import Owner, apply_notice
from app.jobs.webhooks import run_due
from app.payments import idempotency
from app.psp.interfaces import CallbackEvent
from app.risk import reviews
from app.risk.models import CLOSED_REASONS
from tests.disputes.helpers import dispute_data
from tests.payments.helpers import make_deps
from tests.risk.test_payment_flow import held_payment, payment_row
from tests.webhooks import conftest as webhooks
from tests.webhooks.conftest import make_endpoint

# The webhook tests' fixtures: a receiver that verifies signatures, a driven clock, the delivery settings.
receiver, clock, settings = webhooks.receiver, webhooks.clock, webhooks.settings


def test_review_opened_and_closed_with_every_reason_reach_the_merchants_endpoint(db_session, scope, redis,
                                                                                    settings, receiver):
    deps = make_deps(redis=redis, enqueued=[])
    make_endpoint(db_session, scope, settings, receiver.url(), events=("review.opened", "review.closed"),
                  receiver=receiver)
    held = {reason: held_payment(db_session, scope, deps, f"tok_events_{reason}")[0]["id"] for reason in CLOSED_REASONS}
    review_of = {reason: payment_row(db_session, payment_id).review_id for reason, payment_id in held.items()}

    def decide(reason, decision, **options):
        reviews.decide(db_session, scope, review_of[reason], decision, actor=None, note=reason, deps=deps,
                       acting_as="merchant", **options)
        db_session.commit()

    decide("approved", "approve")
    decide("refunded", "reject")
    decide("refunded_as_fraud", "reject", as_fraud=True)
    idempotency.execute(db_session, scope, "payment.cancel", {"payment": held["canceled"]}, key=None, deps=deps,
                        path="/test")
    db_session.commit()
    # An inquiry (no money withdrawn) about the held authorization: the review closes as disputed.
    payment = payment_row(db_session, held["disputed"])
    notice = CallbackEvent(id="cb_review_disputed", type="dispute.created", psp_reference=payment.psp_reference,
                           data=dispute_data("dp_review", "warning_needs_response", payment.amount, currency="EUR"),
                           created=1, connector="sandbox")
    apply_notice(db_session, "sandbox", notice, Owner(scope, payment.id, "sandbox"), deps)
    db_session.commit()
    # The sweep, once the review is due: voided before the authorization would expire.
    due = reviews.get_review(db_session, scope, review_of["timed_out"]).expires_at
    assert reviews.expire_due_reviews(db_session, deps, now=due + timedelta(seconds=1)) == [review_of["timed_out"]]
    db_session.commit()

    closed = {reason: reviews.get_review(db_session, scope, review_id).closed_reason
              for reason, review_id in review_of.items()}
    assert closed == {reason: reason for reason in CLOSED_REASONS}

    run_due(db_session, settings)
    delivered = [r.json() for r in receiver.requests if r.verified]
    opened = {e["data"]["object"]["id"] for e in delivered if e["type"] == "review.opened"}
    closing = {e["data"]["object"]["id"]: e["data"]["object"] for e in delivered if e["type"] == "review.closed"}
    assert opened == set(review_of.values())
    assert {obj["closed_reason"] for obj in closing.values()} == set(CLOSED_REASONS)
    assert all(obj["open"] is False and obj["object"] == "review" for obj in closing.values())
    assert {closing[review_id]["closed_reason"]: review_id for review_id in closing} == review_of
