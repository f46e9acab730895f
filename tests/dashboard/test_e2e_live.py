"""A partial refund from the payment's page against the real thing: gunicorn web, RQ worker, sandbox PSP.

The payment is made through the live API with a sandbox card token; an owner signs in through the login
page in Chromium, refunds part of it with the confirmation step (double-clicking "Confirm"), and the
worker carries the refund out at the sandbox PSP. Then: one refund, succeeded, its ledger reversal, its
events, its audit entry, and the payment's page showing all of it.
"""
import re

from playwright.sync_api import expect
from sqlalchemy import select

from app.accounts.audit import AuditEntry
from app.accounts.models import Merchant
from app.extensions import db
from app.ledger.models import JournalTransaction
from app.payments.models import Refund
from app.scoping import Scope
from tests import factories
from tests.payments.conftest import live  # noqa: F401  (pytest fixture: sandbox + gunicorn + worker)
from tests.payments.helpers import assert_ledger_balanced, event_types, ledger_balances
from tests.payments.live_helpers import Api, Sandbox, new_merchant_key

PASSWORD = factories.PASSWORD


def test_partial_refund_from_the_detail_page_end_to_end(app, live, page):  # noqa: F811
    merchant_id, key = new_merchant_key(app, name="Live Dash Shop")
    with app.app_context():
        owner = factories.member(db.session, db.session.get(Merchant, merchant_id), role="owner",
                                 email="live-owner@example.com")
        db.session.commit()
        owner_email = owner.email
        db.session.remove()
    api, sandbox = Api(live.url, key), Sandbox(live.sandbox_url)
    created = api.post("/v1/payments", amount=8000, currency="usd", payment_method=sandbox.token("visa"),
                       confirm=True, customer_email="e2e-dash@example.com").json()
    payment = api.wait_for(created["id"], "succeeded")

    page.goto(f"{live.url}/login")
    page.get_by_label("Email").fill(owner_email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(r"/dashboard/"))
    page.goto(f"{live.url}/dashboard/{merchant_id}/test/payments?q=e2e-dash@example.com")
    page.get_by_role("link", name=re.compile(r"\$80\.00")).click()
    expect(page.get_by_role("heading", name="Amounts")).to_be_visible()
    page.get_by_role("link", name="Refund…").click()
    page.get_by_label("Amount to refund (USD)").fill("25.00")
    page.get_by_label("Reason (optional)").select_option("requested_by_customer")
    page.get_by_role("button", name="Review…").click()
    page.get_by_role("button", name="Confirm refund of $25.00").dblclick()
    expect(page).to_have_url(re.compile(rf"/payments/{payment['id']}$"))

    refunds = api.get("/v1/refunds", payment=payment["id"]).json()["data"]
    assert len(refunds) == 1
    refund = api.wait_for_refund(refunds[0]["id"])
    assert (refund["status"], refund["amount"], refund["reason"]) == ("succeeded", 2500, "requested_by_customer")

    scope = Scope(merchant_id, False)
    with app.app_context():
        session = db.session
        assert session.scalars(select(Refund).where(Refund.payment_id == payment["id"])).all()[0].id == refund["id"]
        assert session.scalars(select(JournalTransaction).where(
            JournalTransaction.merchant_id == merchant_id,
            JournalTransaction.business_key == f"refund:{refund['id']}")).one().kind == "refund"
        assert_ledger_balanced(session, scope)
        balances = ledger_balances(session, scope)
        connector = payment["connector"]
        assert balances[f"psp_receivable:{connector}:USD"] == 8000 - 2500
        assert event_types(session, scope, refund["id"]) == ["refund.created", "refund.succeeded"]
        assert len(session.scalars(select(AuditEntry).where(AuditEntry.merchant_id == merchant_id,
                                                            AuditEntry.action == "payment.refund_created")).all()) == 1
        session.remove()

    page.reload()
    expect(page.locator(".summary-head .status")).to_have_text("Partially refunded")
    expect(page.get_by_text(f"refund:{refund['id']}")).to_be_visible()
