"""A refund above the merchant's threshold in headless Chromium: the dashboard asks who it is, comes back to the
refund form as typed, and the refund happens only after the person reviews and confirms it again."""
import re
from datetime import timedelta

from playwright.sync_api import expect
from sqlalchemy import select

from app.accounts.sessions import UserSession
from app.models_base import utcnow
from app.payments.models import Refund
from tests import factories
from tests.dashboard.conftest import browser_login, paid


def test_a_refund_above_the_threshold_asks_again(app, page, live_server, db_session, shop, jobs):
    s = shop()
    s.merchant.refund_reauth_threshold, s.merchant.refund_reauth_currency = 1000, "USD"  # 10.00 USD
    db_session.commit()
    payment_id = paid(db_session, s.scope, jobs, amount=4000)
    browser_login(app, page.context, db_session, s.users["owner"], live_server.url("/"))
    session = db_session.scalars(select(UserSession).where(UserSession.user_id == s.users["owner"].id)).one()
    refund_form = live_server.url(s.url(f"payments/{payment_id}/refund"))

    # Within the threshold: no question, even with an old confirmation.
    session.reauthenticated_at = utcnow() - timedelta(minutes=10)
    db_session.commit()
    page.goto(refund_form)
    page.get_by_label("Amount to refund (USD)").fill("10.00")
    page.get_by_role("button", name="Review…").click()
    expect(page.get_by_role("heading", name="Check and confirm")).to_be_visible()

    page.goto(refund_form)
    page.get_by_label("Amount to refund (USD)").fill("12.50")
    page.get_by_label("Reason (optional)").select_option("requested_by_customer")
    page.get_by_role("button", name="Review…").click()
    expect(page.get_by_role("heading", name="Confirm it is you")).to_be_visible()
    page.get_by_label("Password").fill(factories.PASSWORD)
    page.get_by_role("button", name="Confirm with password").click()
    expect(page).to_have_url(refund_form)
    expect(page.get_by_label("Amount to refund (USD)")).to_have_value("12.50")  # as typed
    expect(page.get_by_label("Reason (optional)")).to_have_value("requested_by_customer")
    assert db_session.scalars(select(Refund).where(Refund.payment_id == payment_id)).all() == []
    page.get_by_role("button", name="Review…").click()
    page.get_by_role("button", name="Confirm refund of $12.50").click()
    expect(page).to_have_url(re.compile(rf"/payments/{payment_id}$"))
    db_session.rollback()
    [refund] = db_session.scalars(select(Refund).where(Refund.payment_id == payment_id)).all()
    assert refund.amount == 1250
