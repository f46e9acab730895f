"""The dashboard in headless Chromium: filters in the URL, refund with confirmation (and a double click),
roles, live updates, export progress, phone-sized screens, keyboard use and axe accessibility checks.

The app runs in-process (tests/browser.py live_server) with the scripted PSP; screenshots of each page go
to test-artifacts/dashboard/.
"""
import re
from pathlib import Path

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from app.jobs.exports import run_export
from app.payments.models import Refund
from app.reporting.models import DashboardExport
from tests.browser import assert_accessible
from tests.dashboard.conftest import T, browser_login, paid, stored_payment

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "dashboard"


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


@pytest.fixture
def signed_in(app, page, live_server, db_session):
    """sign_in(user): the page's browser context is signed in as the user."""

    def sign_in(user):
        browser_login(app, page.context, db_session, user, live_server.url("/"))

    return sign_in


def rows(page) -> list[str]:
    return page.locator("[data-payment-id]").evaluate_all("els => els.map(e => e.dataset.paymentId)")


def test_filters_and_search_keep_the_view_in_the_url(page, live_server, db_session, shop, signed_in):
    s = shop()
    made = [stored_payment(db_session, s.scope, created_at=T(i), amount=500 + i,
                           status="requires_capture" if i % 3 == 0 else "succeeded",
                           customer_email=f"shopper{i}@example.com", card_brand="visa", card_last4=f"{1000 + i}")
            for i in range(12)]
    db_session.commit()
    signed_in(s.users["analyst"])
    page.goto(live_server.url(s.url("payments")))
    expect(page.get_by_role("heading", name="Payments", level=1)).to_be_visible()
    assert len(rows(page)) == 12
    shot(page, "payments-list")

    page.get_by_text("Filters", exact=True).click()
    page.get_by_label("Status").select_option("requires_capture")
    page.get_by_role("button", name="Apply filters").click()
    expect(page).to_have_url(re.compile(r"status=requires_capture"))
    expected = [p.id for p in sorted(made, key=lambda p: p.created_at, reverse=True) if p.status == "requires_capture"]
    expect(page.locator("[data-payment-id]")).to_have_count(len(expected))
    assert rows(page) == expected

    # A bookmark of this URL shows the same view; search narrows it further, by keyboard alone.
    page.goto(page.url)
    assert rows(page) == expected
    page.get_by_label("Search").fill("shopper9@example.com")
    page.get_by_label("Search").press("Enter")
    expect(page).to_have_url(re.compile(r"q=shopper9%40example.com"))
    expect(page.locator("[data-payment-id]")).to_have_count(1)
    assert rows(page) == [made[9].id]
    page.get_by_label("Search").fill("nobody@example.com")
    page.get_by_label("Search").press("Enter")
    expect(page.get_by_role("heading", name="No payments match")).to_be_visible()
    shot(page, "payments-no-match")


def test_partial_refund_with_confirmation_survives_a_double_click(page, live_server, db_session, shop, jobs,
                                                                   signed_in):
    s = shop()
    payment_id = paid(db_session, s.scope, jobs, amount=4000, customer_email="dbl@example.com")
    signed_in(s.users["owner"])
    page.goto(live_server.url(s.url(f"payments/{payment_id}")))
    shot(page, "payment-detail")
    page.get_by_role("link", name="Refund…").click()
    expect(page.get_by_role("heading", name="Refund payment")).to_be_visible()
    page.get_by_label("Amount to refund (USD)").fill("12.50")
    page.get_by_label("Reason (optional)").select_option("requested_by_customer")
    page.get_by_role("button", name="Review…").click()
    expect(page.get_by_role("heading", name="Check and confirm")).to_be_visible()
    shot(page, "refund-review")
    assert db_session.scalars(select(Refund).where(Refund.payment_id == payment_id)).all() == []

    page.get_by_role("button", name="Confirm refund of $12.50").dblclick()
    expect(page).to_have_url(re.compile(rf"/payments/{payment_id}$"))
    expect(page.locator(".flash")).to_be_visible()
    db_session.rollback()
    [refund] = db_session.scalars(select(Refund).where(Refund.payment_id == payment_id)).all()
    assert refund.amount == 1250 and refund.reason == "requested_by_customer"

    jobs.run()
    page.reload()
    expect(page.locator(".summary-head .status")).to_have_text("Partially refunded")
    expect(page.get_by_text(f"refund:{refund.id}")).to_be_visible()
    shot(page, "payment-detail-refunded")


def test_analyst_sees_no_action_and_is_refused(page, live_server, db_session, shop, jobs, signed_in):
    s = shop()
    payment_id = paid(db_session, s.scope, jobs, amount=1500)
    signed_in(s.users["analyst"])
    page.goto(live_server.url(s.url(f"payments/{payment_id}")))
    expect(page.get_by_role("heading", name="Amounts")).to_be_visible()
    expect(page.get_by_role("link", name="Refund…")).to_have_count(0)
    response = page.goto(live_server.url(s.url(f"payments/{payment_id}/refund")))
    assert response.status == 403


def test_new_payments_are_announced_without_a_reload(page, live_server, db_session, shop, signed_in):
    s = shop()
    stored_payment(db_session, s.scope, created_at=T(0))
    db_session.commit()
    signed_in(s.users["owner"])
    page.goto(live_server.url(s.url("payments")))
    assert len(rows(page)) == 1
    newcomer = stored_payment(db_session, s.scope, created_at=T(10), amount=777)
    db_session.commit()
    notice = page.get_by_text("1 new payment — show")
    expect(notice).to_be_visible()  # the list polls every DASHBOARD_POLL_SECONDS (1 s here)
    page.get_by_role("link", name="show").click()
    expect(page.locator("[data-payment-id]")).to_have_count(2)
    assert rows(page)[0] == newcomer.id


def test_export_shows_progress_then_downloads(page, live_server, db_session, shop, signed_in):
    s = shop()
    for i in range(5):
        stored_payment(db_session, s.scope, created_at=T(i), amount=100 * (i + 1))
    db_session.commit()
    signed_in(s.users["analyst"])
    page.goto(live_server.url(s.url("payments?amount_min=2")))
    page.get_by_role("button", name="Export CSV (filtered)").click()
    expect(page.get_by_text("Preparing your CSV")).to_be_visible()
    export_id = db_session.scalars(select(DashboardExport.id).where(
        DashboardExport.merchant_id == s.merchant.id)).one()
    run_export(db_session, export_id)  # what the worker does
    link = page.get_by_role("link", name="Download CSV")
    expect(link).to_be_visible()
    with page.expect_download() as download:
        link.click()
    content = Path(download.value.path()).read_text()
    assert content.count("\n") == 1 + 4 and "$5.00" in content


def test_phone_sized_screens_and_accessibility(page, live_server, db_session, shop, jobs, signed_in):
    s = shop()
    payment_id = paid(db_session, s.scope, jobs, amount=123456, customer_email="a.very.long.address@example.com",
                      metadata={"order": "A-1001"})
    paid(db_session, s.scope, jobs, amount=900, manual=True)
    signed_in(s.users["owner"])
    page.set_viewport_size({"width": 360, "height": 740})
    for name, path in [("home", ""), ("payments", "payments"), ("detail", f"payments/{payment_id}"),
                       ("refund-form", f"payments/{payment_id}/refund"), ("refunds", "refunds"),
                       ("logs", "developers/logs"), ("home-today", "?period=today")]:
        page.goto(live_server.url(s.url(path)))
        # Nothing wider than the screen: tables scroll inside their own box, never the page.
        assert page.evaluate("document.documentElement.scrollWidth") <= 360, name
        assert_accessible(page)
        shot(page, f"phone-{name}")
    page.set_viewport_size({"width": 1280, "height": 800})
    page.goto(live_server.url(s.url()))
    assert_accessible(page)
    shot(page, "home")


def test_refund_by_keyboard_alone(page, live_server, db_session, shop, jobs, signed_in):
    s = shop()
    payment_id = paid(db_session, s.scope, jobs, amount=2000)
    signed_in(s.users["admin"])
    page.goto(live_server.url(s.url(f"payments/{payment_id}")))
    for _ in range(40):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.textContent.trim()") == "Refund…":
            break
    else:
        raise AssertionError("the Refund action is not reachable with Tab")
    page.keyboard.press("Enter")
    expect(page.get_by_label("Amount to refund (USD)")).to_be_visible()
    page.get_by_label("Amount to refund (USD)").focus()
    page.keyboard.press("Control+A")
    page.keyboard.type("5")
    page.keyboard.press("Enter")  # submits the form: the review step
    expect(page.get_by_role("heading", name="Check and confirm")).to_be_visible()
    page.get_by_role("button", name="Confirm refund of $5.00").focus()
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(rf"/payments/{payment_id}$"))
    db_session.rollback()
    assert [r.amount for r in db_session.scalars(select(Refund).where(Refund.payment_id == payment_id))] == [500]


def test_a_failed_update_says_so_and_keeps_the_list(page, live_server, db_session, shop, signed_in):
    s = shop()
    stored_payment(db_session, s.scope, created_at=T(0))
    db_session.commit()
    signed_in(s.users["owner"])
    page.goto(live_server.url(s.url("payments")))
    page.route(re.compile(r".*/payments\?.*q=boom.*"), lambda route: route.fulfill(status=500, body="oops"))
    page.get_by_label("Search").fill("boom")
    page.get_by_label("Search").press("Enter")
    expect(page.get_by_role("alert")).to_contain_text("could not be loaded")
    expect(page.locator("[data-payment-id]")).to_have_count(1)  # the list shown before stays
    page.unroute(re.compile(r".*/payments\?.*q=boom.*"))
    page.get_by_label("Search").fill("")
    page.get_by_label("Search").press("Enter")
    expect(page.get_by_role("alert")).to_be_hidden()
