"""The operator console in headless Chromium: each action through its form (with the audit entry it leaves),
the merchant completing the go-live checklist in the dashboard, the inbox worked from end to end, and axe
on every console page (no serious or critical violation)."""
import datetime as dt
import re

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from app.accounts.models import Merchant, User
from app.payments.models import Payment
from app.psp.interfaces import CallbackEvent
from app.psp.models import PspCallback
from app.seed import DEMO_CALLBACK_ID, seed_demo
from app.webhooks.models import WebhookEndpoint
from tests.admin.conftest import audit_rows, failed_callback
from tests.browser import DEFAULT_TIMEOUT_MS, assert_accessible, axe_violations
from tests.dashboard.conftest import browser_login
from tests.dashboard.test_layout_browser import LAPTOP, OVERFLOWS


@pytest.fixture
def signed_in(app, browser, page, live_server, db_session):
    """sign_in(user) signs the test's page in; sign_in(user, new_page=True) opens another browser for them."""

    def sign_in(user, new_page: bool = False):
        target = browser.new_context().new_page() if new_page else page
        browser_login(app, target.context, db_session, user, live_server.url("/"))
        return target

    return sign_in


def open_inbox(page) -> None:
    page.get_by_role("navigation", name="Platform admin").get_by_role("link", name=re.compile(r"^Inbox")).click()


def _act(page, form_name: str, reason: str, button: str) -> None:
    form = page.get_by_role("form", name=form_name)
    form.get_by_label("Reason").fill(reason)
    form.get_by_role("button", name=button).click()


def test_merchant_lifecycle_through_the_console_and_the_dashboard(page, live_server, db_session, admin, shop,
                                                                  signed_in):
    merchant, owner, _developer = shop
    signed_in(admin)
    page.goto(live_server.url("/admin/merchants"))
    page.get_by_label("Name, id or team member's email").fill(owner.email)
    page.get_by_label("Name, id or team member's email").press("Enter")
    page.get_by_role("link", name="Corner Shop").click()
    expect(page.get_by_role("heading", name="Corner Shop", level=1)).to_be_visible()
    assert_accessible(page)

    _act(page, "Enable live mode", "KYC complete", "Enable live mode")
    expect(page.get_by_role("alert")).to_contain_text("Missing: Business details; Webhooks.")
    assert_accessible(page)  # the re-rendered page, with its message

    _act(page, "Suspend the merchant", "Chargeback spike", "Suspend")
    expect(page.get_by_role("status")).to_contain_text("The merchant is suspended")
    expect(page.locator("#suspension-state")).to_contain_text("Chargeback spike")
    expect(page.locator("#merchant-audit")).to_contain_text("merchant.suspended")
    _act(page, "Reinstate the merchant", "Spike explained", "Reinstate")
    expect(page.locator("#suspension-state")).to_have_text("active")
    assert [e.details["reason"] for e in audit_rows(db_session, "merchant.reinstated", merchant.id)] == \
        ["Spike explained"]

    # The owner completes the checklist in the dashboard.
    owners_page = signed_in(owner, new_page=True)
    owners_page.goto(live_server.url(f"/dashboard/{merchant.id}/test/settings/go-live"))
    expect(owners_page.locator("#checklist")).to_contain_text("To do")
    assert_accessible(owners_page)
    owners_page.get_by_label("Legal name").fill("Corner Shop GmbH")
    owners_page.get_by_label("Address", exact=True).fill("Hauptstrasse 1")
    owners_page.get_by_label("Postal code").fill("10115")
    owners_page.get_by_label("City").fill("Berlin")
    owners_page.get_by_label("Country").select_option("DE")
    owners_page.get_by_label("Support email").fill("help@corner.example")
    owners_page.get_by_role("button", name="Save business details").click()
    expect(owners_page.get_by_role("status")).to_contain_text("Business details saved.")
    owners_page.get_by_label("Our integration needs no webhooks").check()
    owners_page.get_by_role("button", name="Save", exact=True).click()
    expect(owners_page.locator("#checklist")).not_to_contain_text("To do")
    owners_page.context.close()

    page.reload()
    _act(page, "Enable live mode", "KYC complete", "Enable live mode")
    expect(page.locator("#live-state")).to_have_text("enabled")
    db_session.rollback()
    assert db_session.get(Merchant, merchant.id).live_enabled
    [entry] = audit_rows(db_session, "merchant.live_enabled", merchant.id)
    assert entry.actor_user_id == admin.id and entry.details == {"reason": "KYC complete"}


def test_user_actions_through_the_console(page, live_server, db_session, admin, shop, signed_in):
    _merchant, owner, developer = shop
    signed_in(admin)
    page.goto(live_server.url("/admin/users"))
    page.get_by_label("Email (or part of it) or user id").fill(developer.email)
    page.get_by_role("button", name="Search").click()
    page.get_by_role("link", name=developer.email).click()
    expect(page.get_by_role("heading", name=developer.email)).to_be_visible()
    assert_accessible(page)

    _act(page, "Lock the account", "Suspicious sign-ins", "Lock")
    expect(page.locator("#lock-state")).to_contain_text("Suspicious sign-ins")
    _act(page, "Unlock the account", "Owner vouched for them", "Unlock")
    expect(page.locator("#lock-state")).to_have_text("active")
    _act(page, "Force a password reset", "Password seen in a paste", "Force a password reset")
    expect(page.get_by_role("status")).to_contain_text("a reset link was mailed")
    db_session.rollback()
    assert db_session.get(User, developer.id).password_hash.startswith("!reset-forced:")
    for action in ("user.locked", "user.unlocked", "user.password_reset_forced"):
        assert [e.target for e in audit_rows(db_session, action) if e.actor_user_id == admin.id] == [developer.id]
    assert owner.locked_at is None


def test_the_inbox_worked_from_end_to_end_and_every_console_page_accessible(page, live_server, db_session, admin,
                                                                             signed_in, jobs):
    merchant, _lines = seed_demo(db_session)
    db_session.commit()
    crashed = failed_callback(db_session, CallbackEvent(id="evt_browser", type="refund.updated",
                                                         psp_reference=None, data={}, livemode=False))
    signed_in(admin)
    page.goto(live_server.url("/admin/"))
    assert_accessible(page)
    open_inbox(page)
    items = page.locator("#inbox-items tbody tr")
    # The demo's five kinds (risk review included), the failed callback, its failed payout (app/payouts/seed.py)
    # and its reconciliation breaks (app/reconciliation/seed.py: one of each of 9 kinds).
    breaks = 9 + 1  # (+ the failed payout, counted here to keep the steps' arithmetic below)
    expect(items).to_have_count(6 + breaks)
    assert_accessible(page)

    # Claim a callback, then dismiss it from its page.
    row = page.locator(f'[data-item="psp_callback:{crashed}"]')
    row.get_by_role("button", name=re.compile("^Claim")).click()
    expect(row).to_contain_text(admin.email)
    row.get_by_role("link").click()
    expect(page.get_by_role("heading", name=re.compile("PSP callback"))).to_be_visible()
    assert_accessible(page)
    _act(page, "Dismiss with a note", "Test event from the PSP's console; nothing to replay", "Dismiss")
    expect(page.locator("#callback-dismissed")).to_contain_text("nothing to replay")

    # The demo's failed callback: its cause is fixed, so it is processed again (it names nothing Kassa knows).
    demo = db_session.scalars(select(PspCallback).where(PspCallback.callback_id == DEMO_CALLBACK_ID)).one()
    open_inbox(page)
    page.locator(f'[data-item="psp_callback:{demo.id}"]').get_by_role("link").click()
    _act(page, "Process again", "Database is back", "Process again now")
    expect(page.locator("#callback-result")).to_contain_text("unmatched")

    # The stuck authorization: asked again, then recorded as never having happened at the PSP.
    open_inbox(page)
    expect(items).to_have_count(4 + breaks)
    page.get_by_role("link", name="Authorization outcome unknown at the PSP").click()
    assert_accessible(page)
    _act(page, "Ask the PSP again", "Sandbox was restarted", "Ask the PSP again")
    expect(page.get_by_role("status")).to_contain_text("The PSP is being asked again")
    assert [job for job, _args in jobs.staged] == ["app.jobs.payments.run_attempt"]
    form = page.get_by_role("form", name="Record the PSP's outcome")
    form.get_by_label("Did not happen at the PSP").check()
    form.get_by_label("Note").fill("No such authorization in the sandbox's records")
    form.get_by_role("button", name="Record outcome").click()
    expect(page.locator("#payment-status")).to_have_text("requires_payment_method")
    assert_accessible(page)

    open_inbox(page)
    expect(items).to_have_count(3 + breaks)
    page.get_by_role("link", name=re.compile("^Webhook endpoint disabled")).click()
    expect(page.locator("#endpoint-status")).to_contain_text("disabled")
    assert_accessible(page)

    # The other console pages.
    page.goto(live_server.url("/admin/payments?email=stuck%40example.com"))
    expect(page.locator("#payment-results tbody tr")).to_have_count(1)
    assert_accessible(page)
    page.goto(live_server.url(f"/admin/merchants?q={merchant.id}"))
    assert_accessible(page)
    page.goto(live_server.url("/admin/users"))
    assert_accessible(page)

    mine = {action: [e.target for e in audit_rows(db_session, action) if e.actor_user_id == admin.id]
            for action in ("inbox.claimed", "psp_callback.dismissed", "psp_callback.reprocessed",
                           "payment.psp_asked_again", "payment.outcome_recorded")}
    assert mine["inbox.claimed"] == [f"psp_callback:{crashed}"]
    assert (mine["psp_callback.dismissed"], mine["psp_callback.reprocessed"]) == ([crashed], [demo.id])
    assert len(mine["payment.psp_asked_again"]) == 1
    assert mine["payment.outcome_recorded"] == mine["payment.psp_asked_again"]


def test_every_console_page_fits_a_laptop_screen(app, browser, live_server, db_session, admin):
    """Each console page at 1366 px with the demo's items (a dispute, a failed callback, a disabled endpoint,
    a stuck payment) and a long merchant name: nothing pushes the page sideways or is cut off, no console
    error, and axe finds no serious violation (a table wider than its box is a scrollable region that a
    keyboard cannot reach)."""
    merchant, _lines = seed_demo(db_session)
    merchant.name = merchant.display_name = "Marketplace With A Rather Long Company Name GmbH & Co. KG"
    db_session.commit()
    owner = db_session.scalars(select(User).where(User.email == "owner@demo.test")).one()
    stuck = db_session.scalars(select(Payment).where(Payment.customer_email == "stuck@example.com")).one()
    callback = db_session.scalars(select(PspCallback).where(PspCallback.callback_id == DEMO_CALLBACK_ID)).one()
    endpoint = db_session.scalars(select(WebhookEndpoint).where(WebhookEndpoint.merchant_id == merchant.id)).first()
    from app.reconciliation.models import Break

    recon_break = db_session.scalars(select(Break).where(Break.merchant_id == merchant.id,
                                                         Break.type == "amount_mismatch")).one()
    from app.models_base import utcnow
    from app.reconciliation import failures

    # A fetch failing for more than a day: its table on /admin/reconciliation fits too.
    failing_day = dt.date(2036, 6, 6)  # a day of its own, cleared at the end (the inbox of later tests)
    failures.record_failure(db_session, source="sandbox_b", kind="settlement", livemode=False, report_date=failing_day,
                            error="http://127.0.0.1:8202/v1/settlements/2036-06-06.csv: ConnectTimeout",
                            now=utcnow() - dt.timedelta(hours=30), raise_after=dt.timedelta(hours=24))
    # A merchant's own Stripe account (live mode: no test payment routes to it): how its deposits are confirmed.
    from app.crypto import SecretBox
    from app.psp.credentials import delete_credentials, set_credentials
    from app.scoping import Scope

    stripe_credential = set_credentials(db_session, Scope(merchant.id, True), SecretBox(
        app.config["KASSA_ENCRYPTION_KEYS"]), "stripe", secret_key="sk_live_console_layout").id
    db_session.commit()
    try:
        _every_console_page_fits(app, browser, live_server, db_session, admin, merchant, owner, stuck, callback,
                                 endpoint, recon_break, stripe_credential)
    finally:
        failures.clear_failure(db_session, source="sandbox_b", kind="settlement", livemode=False,
                               report_date=failing_day)
        delete_credentials(db_session, Scope(merchant.id, True), "stripe")
        db_session.commit()


def _every_console_page_fits(app, browser, live_server, db_session, admin, merchant, owner, stuck, callback, endpoint,
                             recon_break, stripe_credential):
    context = browser.new_context(viewport=LAPTOP)
    context.set_default_timeout(3 * DEFAULT_TIMEOUT_MS)  # full-page screenshots on a loaded machine
    tab = context.new_page()
    errors: list[str] = []
    tab.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    browser_login(app, context, db_session, admin, live_server.url("/"))
    problems = {}
    for path in ("/admin/", "/admin/inbox", "/admin/merchants", f"/admin/merchants/{merchant.id}", "/admin/users",
                 f"/admin/users/{owner.id}", "/admin/payments?email=stuck%40example.com", f"/admin/payments/{stuck.id}",
                 f"/admin/callbacks/{callback.id}", f"/admin/webhook-endpoints/{endpoint.id}", "/admin/psp",
                 "/admin/ledger", "/admin/reconciliation", "/admin/reconciliation/breaks",
                 f"/admin/reconciliation/breaks/{recon_break.merchant_id}/{recon_break.id}",
                 "/admin/reconciliation/files", "/admin/reconciliation/upload",
                 f"/admin/psp/credentials/{stripe_credential}/deposit-confirmation"):
        assert tab.goto(live_server.url(path)).status == 200, path
        if path == "/admin/reconciliation":
            assert tab.locator("#failing-heading").count() == 1  # the failing fetch is shown (and checked)
        found = tab.evaluate(OVERFLOWS) + [f"axe {v['id']}: {[n['target'] for n in v['nodes']][:3]}"
                                           for v in axe_violations(tab)]
        if found:
            problems[path] = found[:6]
    context.close()
    assert not problems, "\n".join(f"{path}: {found}" for path, found in problems.items())
    assert errors == []
