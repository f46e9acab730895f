"""Developers › Webhooks in headless Chromium: add an endpoint, reveal and rotate its secret, send a test
event, read the attempt log and the event, resend, and a bulk resend whose progress bar htmx polls.

The worker's part is played by the test itself (app.jobs.webhooks.run_due / run_resend), between clicks:
nothing waits for time; Playwright's expectations wait for the page.
"""
import re

from playwright.sync_api import expect
from sqlalchemy import select

from app.accounts.models import Membership, User
from app.jobs.webhooks import run_due, run_resend
from app.webhooks.models import WebhookResendJob
from tests import factories
from tests.browser import assert_accessible
from tests.webhooks.conftest import emit, make_endpoint


def log_in(page, live_server, session, scope, role: str) -> None:
    email = session.scalars(select(User.email).join(Membership, Membership.user_id == User.id).where(
        Membership.merchant_id == scope.merchant_id, Membership.role == role)).first()
    page.goto(live_server.url("/login"))
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(factories.PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(r"/dashboard/mer_[0-9A-Z]+/test/$"))


def webhooks_url(live_server, scope, path: str = "") -> str:
    return live_server.url(f"/dashboard/{scope.merchant_id}/test/developers/webhooks{path}")


def test_add_endpoint_reveal_secret_send_test_event_and_read_the_log(page, live_server, db_session, book, settings,
                                                                      receiver):
    log_in(page, live_server, db_session, book, "developer")
    page.get_by_role("navigation", name="Dashboard").get_by_role("link", name="Webhooks").first.click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Webhooks")
    assert_accessible(page)
    page.get_by_role("link", name="Add endpoint").first.click()

    page.get_by_label("Endpoint URL").fill(receiver.url())
    page.get_by_label("Description (optional)").fill("Order service")
    page.get_by_label("Only the events I choose").check()
    page.get_by_label("payment.succeeded").check()
    page.get_by_label("Other event types (optional)").fill("webhook.test")
    assert_accessible(page)
    page.get_by_role("button", name="Add endpoint").click()
    expect(page.get_by_text("Endpoint added.")).to_be_visible()
    expect(page.get_by_role("heading", level=1)).to_contain_text(receiver.url())

    page.get_by_role("button", name="Reveal secret").click()  # htmx swaps the secret in
    secret_box = page.get_by_role("textbox", name="Signing secret")
    expect(secret_box).to_have_value(re.compile(r"^whsec_"))
    receiver.secrets.append(secret_box.input_value())
    assert_accessible(page)

    page.get_by_role("button", name="Send test event").click()
    expect(page.get_by_text(re.compile("Test event evt_.* queued"))).to_be_visible()
    [result] = run_due(db_session, settings)  # the worker
    assert result.succeeded and receiver.requests[0].verified
    page.reload()
    log = page.locator("table.attempts")
    expect(log.locator("tr.attempt-row")).to_have_count(1)
    expect(log.locator(".attempt-result")).to_have_text("200")
    expect(log).to_contain_text("webhook.test")
    expect(page.get_by_text("100% (1 of 1 attempts)")).to_be_visible()

    # Event detail: the payload and every attempt; resend it.
    log.get_by_role("link", name="webhook.test").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Event webhook.test")
    expect(page.get_by_label("Event payload (JSON)")).to_contain_text('"type": "webhook.test"')
    assert_accessible(page)
    page.get_by_role("button", name=re.compile("Resend to")).click()
    expect(page.get_by_text(re.compile("queued for resending"))).to_be_visible()
    run_due(db_session, settings)
    page.reload()
    expect(page.locator("tr.attempt-row")).to_have_count(2)
    assert receiver.ids()[0] == receiver.ids()[1]  # the same webhook-id both times


def test_rotate_secret_then_both_sign_during_the_grace_period(page, live_server, db_session, book, settings, receiver):
    endpoint, old_secret = make_endpoint(db_session, book, settings, receiver.url(), receiver=receiver)
    log_in(page, live_server, db_session, book, "admin")
    page.goto(webhooks_url(live_server, book, f"/{endpoint.id}"))
    page.get_by_label("Keep signing with the old secret").select_option("24h")
    page.get_by_role("button", name="Rotate secret").click()
    expect(page.get_by_text("Secret rotated.")).to_be_visible()
    new_secret = page.get_by_role("textbox", name="Signing secret").input_value()
    assert new_secret.startswith("whsec_") and new_secret != old_secret
    expect(page.get_by_text(re.compile("the previous secret signs too until"))).to_be_visible()
    receiver.secrets.append(new_secret)

    emit(db_session, book)
    run_due(db_session, settings)
    assert receiver.requests[-1].verified_with == [0, 1]


def test_bulk_resend_shows_a_progress_bar_until_done(page, live_server, db_session, book, settings, receiver):
    endpoint, _ = make_endpoint(db_session, book, settings, receiver.url(), receiver=receiver)
    events = emit(db_session, book, count=30)
    receiver.status = 410
    run_due(db_session, settings)  # every delivery fails; 410 disables the endpoint
    receiver.status = 200

    log_in(page, live_server, db_session, book, "owner")
    page.goto(webhooks_url(live_server, book, f"/{endpoint.id}"))
    expect(page.get_by_role("alert")).to_contain_text("410 Gone")
    page.get_by_role("button", name="Enable").click()
    expect(page.get_by_text("Endpoint enabled")).to_be_visible()

    page.get_by_label("Failed deliveries of events since (UTC)").fill("2000-01-01T00:00")
    page.get_by_role("button", name="Resend failed deliveries").click()
    progress = page.locator("#resend-progress")
    expect(progress).to_contain_text("Waiting for a worker")
    assert_accessible(page)
    job = db_session.scalars(select(WebhookResendJob).where(WebhookResendJob.endpoint_id == endpoint.id)).one()
    assert run_resend(db_session, settings, job.id) is True  # the worker
    expect(progress).to_contain_text("Done: 30 deliveries queued again")  # htmx polled the fragment
    expect(page.locator("#resend-progress progress")).to_have_attribute("value", "30")

    results = run_due(db_session, settings)
    assert len(results) == 30 and all(r.succeeded for r in results)
    assert sorted(set(receiver.ids())) == sorted(e.id for e in events)


def test_an_analyst_sees_the_log_but_no_secret_and_no_buttons(page, live_server, db_session, book, settings, receiver):
    _endpoint, secret = make_endpoint(db_session, book, settings, receiver.url(), receiver=receiver)
    emit(db_session, book)
    run_due(db_session, settings)
    log_in(page, live_server, db_session, book, "analyst")
    page.goto(webhooks_url(live_server, book))
    expect(page.get_by_role("link", name=receiver.url())).to_be_visible()
    expect(page.get_by_role("link", name="Add endpoint")).to_have_count(0)
    page.get_by_role("link", name=receiver.url()).click()
    expect(page.locator("tr.attempt-row")).to_have_count(1)
    expect(page.get_by_role("button")).to_have_count(1)  # only the top bar's mode switch... and log out
    assert secret not in page.content()
    assert_accessible(page)
