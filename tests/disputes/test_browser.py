"""The merchant's evidence submission in headless Chromium: the list's countdown, the dispute's page, a file
uploaded with its progress, the draft saved, the confirmation that says submitting is final, the worker's answer;
axe finds no serious accessibility problem on any of these pages, and none breaks the Content-Security-Policy."""
import io
import time
from pathlib import Path

import pytest
from playwright.sync_api import expect
from pypdf import PdfWriter

from app.accounts.sessions import start_session
from app.disputes.models import Dispute
from app.jobs.disputes import run_action
from tests.browser import assert_accessible, browser, csp_violations, live_server, page, record_csp_violations  # noqa: F401
from tests.disputes.helpers import captured, deliver, deps, dispute_data
from tests.disputes.test_api import ScriptedDisputes

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "disputes"


def shot(page, name: str) -> None:  # noqa: F811
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def sign_in(app, page, db_session, user, base_url: str) -> None:  # noqa: F811
    _row, token = start_session(db_session, user, second_factor_passed=True)
    db_session.commit()
    value = app.session_interface.get_signing_serializer(app).dumps({"sid": token})
    page.context.add_cookies([{"name": app.config.get("SESSION_COOKIE_NAME", "session"), "value": value,
                               "url": base_url}])


def receipt_pdf(path: Path) -> Path:
    writer = PdfWriter()
    writer.add_blank_page(width=300, height=300)
    out = io.BytesIO()
    writer.write(out)
    path.write_bytes(out.getvalue())
    return path


def test_the_merchant_submits_evidence(app, page, live_server, db_session, shop, tmp_path):  # noqa: F811
    scope = shop["scope"]
    payment = captured(db_session, scope, amount=8900)
    deliver(db_session, payment, f"cb_{payment['id']}", "dispute.created",
            dispute_data(f"dp_{payment['id']}", "needs_response", 8900, reason="fraudulent"))
    dispute_id = db_session.scalars(scope.select(Dispute)).one().id
    db_session.commit()
    record_csp_violations(page)
    sign_in(app, page, db_session, shop["owner"], live_server.url("/"))
    base = f"/dashboard/{shop['merchant'].id}/test"

    page.goto(live_server.url(f"{base}/disputes"))
    expect(page.get_by_role("link", name="Disputes")).to_have_attribute("aria-current", "page")
    row = page.locator(f"[data-dispute-id='{dispute_id}']")
    expect(row).to_contain_text("$89.00")
    expect(row).to_contain_text("6 days left")
    assert_accessible(page)
    shot(page, "list")

    row.get_by_role("link", name="$89.00").click()
    expect(page.get_by_role("heading", name="Evidence")).to_be_visible()
    expect(page.locator("#deadline")).to_contain_text("6 days left")
    assert_accessible(page)
    page.get_by_label("Customer name").fill("Ann Example")
    page.get_by_label("Customer email").fill("ann@example.com")
    page.get_by_label("Anything else").fill("The customer signed for it: winning_evidence")
    # Choosing a file uploads it at once, with its progress, and the form keeps its id.
    page.get_by_label("Receipt", exact=True).set_input_files(str(receipt_pdf(tmp_path / "receipt.pdf")))
    expect(page.locator("#ev-receipt-current")).to_contain_text("receipt.pdf uploaded (PDF)")
    expect(page.locator("#ev-receipt-progress")).to_have_attribute("value", "100")
    page.get_by_role("button", name="Save draft").click()
    expect(page.get_by_role("status").filter(has_text="Evidence saved as a draft")).to_be_visible()
    expect(page.locator("#ev-receipt-current")).to_contain_text("receipt.pdf")
    expect(page.get_by_label("Customer name")).to_have_value("Ann Example")
    shot(page, "draft")

    page.get_by_role("link", name="Submit evidence…").click()
    expect(page.locator(".review")).to_contain_text("Submitting is final")
    expect(page.locator(".review")).to_contain_text("receipt.pdf")
    assert_accessible(page)
    shot(page, "confirm")
    page.get_by_role("button", name="Submit evidence now").click()
    expect(page.get_by_role("status").filter(has_text="Evidence submitted")).to_be_visible()
    expect(page.get_by_role("status").filter(has_text="being submitted")).to_be_visible()

    # The worker carries it to the PSP; the page then shows the dispute under review, its evidence final.
    assert run_action(scope, dispute_id, deps(), ScriptedDisputes()) == "succeeded"
    page.reload()
    expect(page.locator(".summary-head")).to_contain_text("Under review")
    expect(page.get_by_role("button", name="Save draft")).to_have_count(0)
    expect(page.get_by_text("can no longer change")).to_be_visible()
    assert_accessible(page)
    assert csp_violations(page) == []
    shot(page, "submitted")
    stored = scope.get(db_session, Dispute, dispute_id)
    assert stored.evidence["customer_name"] == "Ann Example" and stored.evidence["receipt"].startswith("file_")
    assert stored.submission_count == 1
    db_session.commit()
