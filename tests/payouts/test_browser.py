"""The Payouts page in headless Chromium: the list and its filters, a scheduled payout's page with the balance
transactions it pays, and a manual payout from the form through its confirmation; axe finds no serious accessibility
problem on any of these pages, and none breaks the Content-Security-Policy."""
import datetime as dt

from playwright.sync_api import expect

from app.payouts import service
from tests.browser import assert_accessible, browser, csp_violations, live_server, page, record_csp_violations  # noqa: F401
from tests.disputes.test_browser import sign_in
from tests.payouts.test_payouts import _ready, key
from tests.reconciliation.helpers import FakeSandbox


def test_the_merchant_reads_payouts_and_pays_out(app, page, live_server, db_session, shop, destinations):  # noqa: F811
    scope = shop["scope"]
    # Days in the past: the live server's payout day is the real one (no sandbox runs here).
    a, day2 = _ready(db_session, scope, FakeSandbox(dt.date(2025, 3, 3)))
    scheduled = service.create_payout(db_session, scope, seller_id=a, currency="USD", hmac_key=key(), today=day2,
                                      business_key=service.period_key(a, "USD", day2), period=day2).payout
    service.cancel_payout(db_session, scope, scheduled.id, hmac_key=key())
    db_session.commit()
    record_csp_violations(page)
    sign_in(app, page, db_session, shop["owner"], live_server.url("/"))
    base = f"/dashboard/{shop['merchant'].id}/test"

    page.goto(live_server.url(f"{base}/payouts"))
    expect(page.get_by_role("link", name="Payouts", exact=True)).to_have_attribute("aria-current", "page")
    row = page.locator(f"[data-payout-id='{scheduled.id}']")
    expect(row).to_contain_text("$58.20")
    expect(row).to_contain_text("Canceled")
    assert_accessible(page)
    page.get_by_label("Status").select_option("paid")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator(f"[data-payout-id='{scheduled.id}']")).to_have_count(0)

    page.goto(live_server.url(f"{base}/payouts/{scheduled.id}"))
    expect(page.locator("#payout-items")).to_contain_text("Charge")
    expect(page.locator("#payout-items tfoot")).to_contain_text("$58.20")
    assert_accessible(page)

    page.goto(live_server.url(f"{base}/payouts/new"))
    assert_accessible(page)
    page.get_by_label("Paid to").select_option(a)
    page.get_by_label("Currency").fill("USD")
    page.get_by_label("Amount").fill("1000.00")
    page.get_by_role("button", name="Review payout").click()
    expect(page.get_by_role("button", name="Pay out now")).to_be_visible()
    assert_accessible(page)
    page.get_by_role("button", name="Pay out now").click()
    expect(page.locator("#amount-error")).to_contain_text("exceeds what is available")
    assert_accessible(page)
    page.get_by_label("Amount").fill("20.00")
    page.get_by_role("button", name="Review payout").click()
    page.get_by_role("button", name="Pay out now").click()
    expect(page.get_by_role("status").filter(has_text="Payout created")).to_be_visible()
    expect(page.locator(".summary-amount")).to_contain_text("$20.00")
    assert_accessible(page)
    assert csp_violations(page) == []
