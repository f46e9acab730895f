"""The risk screens in headless Chromium (system Chromium, axe-core as the other browser tests): the rules editor
shows where a rule's error is, backtests a rule and saves it; an operator approves a review from the queue; every
risk page fits a laptop screen with long values and passes axe."""
import re

from playwright.sync_api import expect

from app.payments.models import Payment
from app.risk import lists, rules
from app.risk.models import RiskRule
from app.risk.learning.demo import seed_demo_model
from tests.admin.conftest import admin  # noqa: F401  (pytest fixture)
from tests.browser import axe_violations, browser, live_server, page  # noqa: F401  (pytest fixtures)
from tests.dashboard.conftest import app, browser_login, jobs, paid, shop  # noqa: F401  (pytest fixtures)
from tests.dashboard.test_layout_browser import OVERFLOWS, laptop  # noqa: F401  (pytest fixture)
from tests.risk.test_dashboard_screens import held_for_review


def no_axe_violations(page) -> None:
    found = [f"{v['id']}: {[n['target'] for n in v['nodes']][:3]}" for v in axe_violations(page)]
    assert not found, found


def test_the_rules_editor_shows_the_errors_position_and_backtests_before_saving(app, page, live_server, db_session,
                                                                                  shop, jobs):
    s = shop()
    big = paid(db_session, s.scope, jobs, amount=70000, currency="EUR")
    paid(db_session, s.scope, jobs, amount=1000, currency="EUR")
    browser_login(app, page.context, db_session, s.users["owner"], live_server.url("/"))
    page.goto(live_server.url(s.url("radar/rules")))
    no_axe_violations(page)
    page.get_by_role("link", name="Add a block rule").click()

    page.get_by_label("Rule", exact=True).fill(":amount: > > 5")
    page.get_by_role("button", name="Backtest").click()
    position = page.locator("#predicate-position")
    expect(position).to_be_visible()
    expect(position).to_contain_text("Line 1, column 12")
    expect(position.locator("mark")).to_have_text(" " * 11 + "^")
    expect(page.locator("#predicate-error")).to_contain_text("line 1, column 12")
    no_axe_violations(page)

    page.get_by_label("Rule", exact=True).fill(":amount: > 500")
    page.get_by_role("button", name="Save rule").click()  # not backtested yet: the backtest comes first
    expect(page.locator("#backtest-note")).to_be_visible()
    expect(page.locator("#backtest-matched")).to_have_text("1")
    expect(page.locator("#backtest-sample").get_by_role("link", name=big)).to_be_visible()
    db_session.rollback()
    assert db_session.scalars(s.scope.select(RiskRule)).all() == []
    no_axe_violations(page)

    page.get_by_role("button", name="Save rule").click()
    expect(page.get_by_text("The rule is saved.")).to_be_visible()
    expect(page.locator("section[data-action=block]").get_by_text(":amount: > 500")).to_be_visible()
    db_session.rollback()
    assert [r.predicate for r in db_session.scalars(s.scope.select(RiskRule))] == [":amount: > 500"]


def test_an_operator_approves_a_review_from_the_queue(app, page, live_server, db_session, shop, jobs, admin):
    s = shop("Queue Shop")
    held = held_for_review(db_session, s.scope, jobs)
    browser_login(app, page.context, db_session, admin, live_server.url("/"))
    page.goto(live_server.url("/admin/risk/reviews"))
    row = page.locator(f"tr[data-review='{held.review_id}']")
    expect(row).to_contain_text("Queue Shop")
    expect(row).to_contain_text(":amount: > 500")
    no_axe_violations(page)
    row.get_by_role("link").first.click()
    expect(page).to_have_url(re.compile(f"/admin/risk/reviews/{held.review_id}$"))
    no_axe_violations(page)
    form = page.get_by_role("form", name="Decide the review")
    form.get_by_label("Note").fill("Known customer, confirmed by phone")
    form.get_by_role("button", name="Approve").click()
    expect(page.locator("#review-status")).to_have_text("Closed: Approved")
    expect(page.get_by_text("Known customer, confirmed by phone")).to_be_visible()
    jobs.run()
    db_session.rollback()
    assert s.scope.get(db_session, Payment, held.id).status == "succeeded"


def test_every_risk_page_fits_a_laptop_screen_and_passes_axe(app, laptop, live_server, db_session, shop, jobs,
                                                             admin):
    s = shop("Marketplace With A Rather Long Company Name GmbH & Co. KG")
    long_email = "a.very.long.customer.address.for.testing@subdomain.example-shop.co.uk"
    held = held_for_review(db_session, s.scope, jobs, customer_email=long_email)
    value_list = lists.create_value_list(db_session, s.scope, alias="blocked_customer_emails_from_support_tickets",
                                         name="Customers our support team flagged after chargebacks", item_type="email")
    lists.add_item(db_session, s.scope, value_list.id, long_email)
    rules.create_rule(db_session, s.scope, action="block", description="Flagged customers, any amount",
                      predicate=":email: in @blocked_customer_emails_from_support_tickets and :amount: > 0 and "
                                "not :is_3d_secure: and :card_country: != :ip_country:")
    platform_list = lists.create_value_list(db_session, None, alias="platform_long_list_of_blocked_bins",
                                            name="BINs the issuers told us about", item_type="card_bin")
    seed_demo_model(db_session, None, "")  # a learned candidate (demo data) on /admin/risk/models
    db_session.commit()
    pages = [s.url(p) for p in ("radar/rules", "radar/rules/new", "radar/lists", f"radar/lists/{value_list.id}",
                                "radar/reviews", f"radar/reviews/{held.review_id}", f"payments/{held.id}",
                                "payments?risk_outcome=manual_review")]
    console = ["/admin/risk/reviews", f"/admin/risk/reviews/{held.review_id}", "/admin/risk/rules",
               "/admin/risk/rules/new", "/admin/risk/lists", f"/admin/risk/lists/{platform_list.id}",
               f"/admin/merchants/{s.merchant.id}", f"/admin/payments/{held.id}", "/admin/risk/models"]
    problems = {}
    for user, paths in ((s.users["owner"], pages), (admin, console)):
        browser_login(app, laptop.context, db_session, user, live_server.url("/"))
        for path in paths:
            response = laptop.goto(live_server.url(path))
            assert response.status == 200, path
            found = laptop.evaluate(OVERFLOWS) + [f"axe {v['id']}: {[n['target'] for n in v['nodes']][:3]}"
                                                   for v in axe_violations(laptop)]
            if found:
                problems[path] = found[:6]
    assert not problems, "\n".join(f"{path}: {found}" for path, found in problems.items())
    assert laptop.console_errors == []
