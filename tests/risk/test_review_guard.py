"""The merchant's capture and cancel of a payment held for a platform-owned review: refused (409
``payment_in_review``) through the API and the dashboard, by the one guard of app/risk/reviews.py; a merchant's
own review is decided by its capture (approved) or its cancel (closed ``canceled``)."""
import dataclasses
import re

from sqlalchemy import select

from app.events import Event
from app.payments.models import Payment, PaymentAttempt
from app.risk import reviews, rules
from app.risk.models import Review
from app.scoping import Scope
from tests.dashboard import conftest as dashboard
from tests.dashboard.conftest import login_as, paid
from tests.payments.conftest import mint_key

# The dashboard tests' fixtures: its app (no confirm wait), the inline jobs and a merchant with a member per role.
app, jobs, shop = dashboard.app, dashboard.jobs, dashboard.shop

_CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
_TOKEN = re.compile(r'name="form_token"[^>]*value="([^"]+)"')


def held(session, scope: Scope, jobs, *, platform: bool) -> Payment:
    """A payment a review rule (the platform's or the merchant's) held: authorized, its review open."""
    rule = rules.create_rule(session, None if platform else scope, action="review", predicate=":amount: > 4000")
    session.commit()
    payment_id = paid(session, scope, jobs, amount=500000, currency="EUR")
    rules.delete_rule(session, None if platform else scope, rule.id)
    session.commit()
    payment = scope.get(session, Payment, payment_id)
    assert payment.status == "requires_capture" and payment.review_id, payment.status
    assert review_of(session, payment).owner == ("platform" if platform else "merchant")
    return payment


def review_of(session, payment: Payment) -> Review:
    session.expire_all()
    return Scope(payment.merchant_id, payment.livemode).get(session, Review, payment.review_id)


def status_of(session, payment: Payment) -> str:
    session.expire_all()
    return session.get(Payment, payment.id).status


def voids_of(session, payment: Payment) -> list[PaymentAttempt]:
    return list(session.scalars(select(PaymentAttempt).where(PaymentAttempt.payment_id == payment.id,
                                                             PaymentAttempt.operation == "void")))


def event_types(session, scope: Scope, object_id: str) -> list[str]:
    return [e.type for e in session.scalars(scope.select(Event, Event.object_id == object_id).order_by(Event.id))]


def bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


# -- API --------------------------------------------------------------------------------------------------------

def test_the_api_refuses_cancel_and_capture_during_a_platform_review(client, db_session, shop, jobs):
    s = shop()
    payment = held(db_session, s.scope, jobs, platform=True)
    auth = bearer(mint_key(db_session, s.merchant.id))
    for headers in (auth, {**auth, "Idempotency-Key": "cancel-held-1"}, {**auth, "Idempotency-Key": "cancel-held-1"}):
        refused = client.post(f"/v1/payments/{payment.id}/cancel", headers=headers,
                              data={"cancellation_reason": "requested_by_customer"})
        assert refused.status_code == 409, refused.json
        assert refused.json["error"]["code"] == "payment_in_review"
        assert "held for review by the platform" in refused.json["error"]["message"]
    capture = client.post(f"/v1/payments/{payment.id}/capture", headers=auth)
    assert capture.status_code == 409 and capture.json["error"]["code"] == "payment_in_review"
    # Nothing moved: still authorized, the review open, no void staged, no cancel event.
    assert status_of(db_session, payment) == "requires_capture"
    assert review_of(db_session, payment).status == "open"
    assert voids_of(db_session, payment) == [] and jobs.staged == []
    assert "payment.canceled" not in event_types(db_session, s.scope, payment.id)
    # The platform's rejection voids it, once.
    reviews.decide(db_session, s.scope, payment.review_id, "reject", actor=None, note="Stolen card", deps=jobs.deps)
    db_session.commit()
    assert status_of(db_session, payment) == "canceled" and len(voids_of(db_session, payment)) == 1
    assert review_of(db_session, payment).closed_reason == "refunded"


def test_the_api_cancel_of_the_merchants_own_review_closes_it_canceled(client, db_session, shop, jobs):
    s = shop()
    payment = held(db_session, s.scope, jobs, platform=False)
    auth = bearer(mint_key(db_session, s.merchant.id))
    canceled = client.post(f"/v1/payments/{payment.id}/cancel", headers=auth)
    assert canceled.status_code == 200 and canceled.json["status"] == "canceled", canceled.json
    review = review_of(db_session, payment)
    assert (review.status, review.closed_reason) == ("closed", "canceled")
    closed = db_session.scalars(s.scope.select(Event, Event.object_id == review.id,
                                               Event.type == "review.closed")).one()
    assert closed.data["closed_reason"] == "canceled" and closed.data["open"] is False
    assert len(voids_of(db_session, payment)) == 1


def test_the_authorization_expiry_sweep_still_voids_a_payment_in_a_platform_review(db_session, shop, jobs):
    """The guard is the merchant's: the platform's own sweeps are not refused by the platform's review."""
    from datetime import timedelta

    from app.payments import processing

    s = shop()
    payment = held(db_session, s.scope, jobs, platform=True)
    deps = jobs.deps
    late = deps.now() + deps.authorization_expiry + timedelta(hours=1)
    expired = processing.expire_authorizations(db_session, dataclasses.replace(deps, now=lambda: late))
    db_session.commit()
    assert expired == [payment.id]
    assert status_of(db_session, payment) == "canceled"
    assert review_of(db_session, payment).closed_reason == "canceled"


# -- Dashboard --------------------------------------------------------------------------------------------------

def test_the_dashboard_refuses_cancel_and_capture_during_a_platform_review(client, db_session, shop, jobs):
    s = shop()
    payment = held(db_session, s.scope, jobs, platform=True)
    login_as(client, db_session, s.users["owner"])
    detail = client.get(s.url(f"payments/{payment.id}")).get_data(as_text=True)
    assert 'id="platform-review"' in detail
    assert "Cancel payment…" not in detail and "Capture…" not in detail
    for action in ("cancel", "capture"):
        url = s.url(f"payments/{payment.id}/{action}")
        shown = client.get(url)
        assert shown.status_code == 409
        assert 'data-code="payment_in_review"' in shown.get_data(as_text=True)
        csrf = _CSRF.search(detail).group(1) if _CSRF.search(detail) else \
            _CSRF.search(client.get(s.url("payments")).get_data(as_text=True)).group(1)
        for step in ("review", "confirm"):
            posted = client.post(url, data={"csrf_token": csrf, "step": step, "form_token": "t" * 32,
                                            "reason": "requested_by_customer"})
            assert posted.status_code == 409, posted.get_data(as_text=True)[:500]
            assert 'data-code="payment_in_review"' in posted.get_data(as_text=True)
    assert status_of(db_session, payment) == "requires_capture"
    assert review_of(db_session, payment).status == "open"
    assert voids_of(db_session, payment) == [] and jobs.staged == []


def test_the_dashboard_cancel_of_the_merchants_own_review_closes_it_canceled(client, db_session, shop, jobs):
    s = shop()
    payment = held(db_session, s.scope, jobs, platform=False)
    login_as(client, db_session, s.users["owner"])
    detail = client.get(s.url(f"payments/{payment.id}")).get_data(as_text=True)
    assert 'id="platform-review"' not in detail and "Cancel payment…" in detail
    url = s.url(f"payments/{payment.id}/cancel")
    csrf = _CSRF.search(client.get(url).get_data(as_text=True)).group(1)
    review_page = client.post(url, data={"csrf_token": csrf, "step": "review", "reason": "fraudulent"})
    assert review_page.status_code == 200
    html = review_page.get_data(as_text=True)
    confirmed = client.post(url, data={"csrf_token": _CSRF.search(html).group(1), "step": "confirm",
                                       "form_token": _TOKEN.search(html).group(1), "reason": "fraudulent"})
    assert confirmed.status_code == 303
    assert status_of(db_session, payment) == "canceled"
    assert review_of(db_session, payment).closed_reason == "canceled"
