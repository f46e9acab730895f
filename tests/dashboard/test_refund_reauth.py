"""Refunds above the merchant's threshold need a recent re-authentication (by default every refund does); the
person comes back to the refund form with the amount and reason they typed, and reviews and confirms again."""
import re
from datetime import timedelta

from sqlalchemy import select

from app.accounts.security import refund_needs_reauth
from app.accounts.sessions import UserSession
from app.models_base import utcnow
from app.payments.models import Refund
from tests.dashboard.conftest import login_as, paid

_CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
CONFIRM = "/dashboard/account/confirm"


def stale(db_session, user) -> None:
    """The user's session confirmed who they are 10 minutes ago (the window is 5)."""
    db_session.rollback()
    row = db_session.scalars(select(UserSession).where(UserSession.user_id == user.id)
                             .order_by(UserSession.created_at.desc())).first()
    row.reauthenticated_at = utcnow() - timedelta(minutes=10)
    db_session.commit()


def post_step(client, url: str, step: str, **fields):
    token = _CSRF.search(client.get(url).get_data(as_text=True)).group(1)
    return client.post(url, data={"csrf_token": token, "step": step, **fields})


def refunds(db_session, payment_id: str) -> list[Refund]:
    db_session.rollback()
    return list(db_session.scalars(select(Refund).where(Refund.payment_id == payment_id)))


def test_every_refund_asks_by_default_and_the_form_comes_back(client, db_session, shop, jobs):
    s = shop()
    payment_id = paid(db_session, s.scope, jobs, amount=4000)
    login_as(client, db_session, s.users["owner"])
    stale(db_session, s.users["owner"])
    url = s.url(f"payments/{payment_id}/refund")
    response = post_step(client, url, "review", amount="12.50", reason="duplicate")
    assert response.status_code == 303 and response.headers["Location"] == f"{CONFIRM}?next={url}"
    page = client.get(response.headers["Location"])
    assert "Confirm it is you" in page.get_data(as_text=True)
    token = _CSRF.search(page.get_data(as_text=True)).group(1)
    response = client.post(CONFIRM, data={"method": "password", "password": "correct horse battery", "next": url,
                                          "csrf_token": token})
    assert response.headers["Location"] == url
    form = client.get(url).get_data(as_text=True)  # the form again, as typed: nothing was refunded
    assert 'value="12.50"' in form and re.search(r'<option value="duplicate"\s+selected', form)
    assert refunds(db_session, payment_id) == []
    review = post_step(client, url, "review", amount="12.50", reason="duplicate")
    assert review.status_code == 200 and "Confirm refund of $12.50" in review.get_data(as_text=True)


def test_refunds_within_the_threshold_do_not_ask(client, db_session, shop, jobs):
    s = shop()
    s.merchant.refund_reauth_threshold, s.merchant.refund_reauth_currency = 5000, "USD"  # 50.00 USD
    db_session.commit()
    usd = paid(db_session, s.scope, jobs, amount=10000)
    eur = paid(db_session, s.scope, jobs, amount=1000, currency="EUR")
    login_as(client, db_session, s.users["admin"])
    stale(db_session, s.users["admin"])
    url = s.url(f"payments/{usd}/refund")
    assert post_step(client, url, "review", amount="50.00").status_code == 200
    assert post_step(client, url, "review", amount="50.01").headers["Location"].startswith(CONFIRM)
    assert post_step(client, url, "review", amount="").status_code == 422  # asks for an amount first
    # Another currency than the threshold's always asks (Kassa has no exchange rates).
    assert post_step(client, s.url(f"payments/{eur}/refund"), "review", amount="1.00") \
        .headers["Location"].startswith(CONFIRM)


def test_the_window_closing_between_review_and_confirm_asks_before_the_money_moves(client, db_session, shop, jobs):
    s = shop()
    payment_id = paid(db_session, s.scope, jobs, amount=4000)
    login_as(client, db_session, s.users["owner"])
    url = s.url(f"payments/{payment_id}/refund")
    review = post_step(client, url, "review", amount="20.00").get_data(as_text=True)
    stale(db_session, s.users["owner"])
    form_token = re.search(r'name="form_token"[^>]*value="([^"]+)"', review).group(1)
    response = client.post(url, data={"csrf_token": _CSRF.search(review).group(1), "step": "confirm",
                                      "form_token": form_token, "amount": "20.00", "reason": ""})
    assert response.headers["Location"] == f"{CONFIRM}?next={url}"
    assert refunds(db_session, payment_id) == []


def test_the_threshold_rule():
    class Merchant:
        refund_reauth_threshold = None
        refund_reauth_currency = None

    merchant = Merchant()
    assert refund_needs_reauth(merchant, 1, "EUR")
    merchant.refund_reauth_threshold, merchant.refund_reauth_currency = 0, "EUR"
    assert refund_needs_reauth(merchant, 1, "EUR")
    merchant.refund_reauth_threshold = 10000
    assert not refund_needs_reauth(merchant, 10000, "eur") and refund_needs_reauth(merchant, 10001, "EUR")
    assert refund_needs_reauth(merchant, 1, "USD")
