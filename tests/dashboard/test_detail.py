"""A payment's page: everything about it, for whom (developers see payments, not the books)."""
from sqlalchemy import select

from app.events import Event
from app.ids import new_id
from app.webhooks.models import WebhookDelivery, WebhookEndpoint
from tests.dashboard.conftest import login_as, paid


def test_detail_shows_attempts_events_ledger_and_webhook_deliveries(client, db_session, shop, jobs):
    s = shop()
    payment_id = paid(db_session, s.scope, jobs, amount=2600, currency="GBP", customer_email="d@example.com",
                      metadata={"order": "A-77"})
    endpoint = s.scope.new(WebhookEndpoint, id=new_id("we"), url="https://shop.example/hooks", enabled_events=["*"],
                           status="enabled", secret_encrypted="sealed")
    db_session.add(endpoint)
    db_session.flush()
    succeeded = db_session.scalars(s.scope.select(Event, Event.object_id == payment_id,
                                                  Event.type == "payment.succeeded")).one()
    db_session.add(s.scope.new(WebhookDelivery, id=new_id("whd"), event_id=succeeded.id, endpoint_id=endpoint.id,
                               event_type=succeeded.type, status="failed", attempt_count=9, last_status_code=500))
    db_session.commit()

    login_as(client, db_session, s.users["analyst"])
    html = client.get(s.url(f"payments/{payment_id}")).get_data(as_text=True)
    for text in ("£26.00", "d@example.com", "Visa •••• 4242", "12/2035", "payment.created", "payment.succeeded",
                 "Authorize", "Capture", f"capture:{payment_id}", "psp_receivable:sandbox:GBP", "A-77",
                 "https://shop.example/hooks", "500", "/ledger/accounts/"):
        assert text in html, text
    home = client.get(s.url()).get_data(as_text=True)
    assert "1 webhook delivery failed in the last 7 days" in home and "Owed to sellers (GBP)" in home

    login_as(client, db_session, s.users["developer"])
    html = client.get(s.url(f"payments/{payment_id}")).get_data(as_text=True)
    assert "£26.00" in html and "https://shop.example/hooks" in html
    assert "Ledger entries" not in html and "psp_receivable" not in html
    assert "Owed to sellers" not in client.get(s.url()).get_data(as_text=True)


def test_fold_job_and_timeline_of_refunds(client, db_session, shop, jobs):
    from app.jobs.dashboard import fold_rollups
    from app.payments import idempotency
    from app.reporting.models import PaymentRollupDelta

    s = shop()
    payment_id = paid(db_session, s.scope, jobs, amount=900)
    idempotency.execute(db_session, s.scope, "refund.create", {"payment": payment_id, "amount": 300}, key=None,
                        deps=jobs.deps)
    jobs.run()
    assert fold_rollups() >= 3
    assert db_session.scalar(select(PaymentRollupDelta.id).limit(1)) is None
    login_as(client, db_session, s.users["owner"])
    html = client.get(s.url(f"payments/{payment_id}")).get_data(as_text=True)
    assert "refund.created" in html and "refund.succeeded" in html and "Partially refunded" in html


def test_an_attempt_without_an_answer_for_too_long_needs_attention_on_the_page_and_home(client, db_session, shop,
                                                                                       jobs):
    from datetime import timedelta

    from app.jobs.payments import _run_attempt
    from app.models_base import utcnow
    from app.payments import idempotency
    from app.psp.interfaces import Lookup, Outcome, PspResult

    s = shop()
    jobs.gateway.authorize_results = [PspResult(Outcome.UNKNOWN, "sandbox", error="read_timeout", message="timeout")]
    body = idempotency.execute(db_session, s.scope, "payment.create", {
        "amount": 4200, "currency": "USD", "payment_method": "tok_visa", "confirm": True}, key=None,
        deps=jobs.deps).body
    jobs.run()
    attempt_id = body["attempts"][0]["id"]
    # 31 minutes later (the deps' clock), the acquirer is still rate limiting the status queries.
    later = utcnow() + timedelta(minutes=31)
    jobs.deps.now = lambda: later
    rate_limited = Lookup.unknown("sandbox", "rate_limited", "HTTP 429")
    jobs.gateway.retrieve_results = [rate_limited, rate_limited]
    _run_attempt(attempt_id, jobs.deps, jobs.gateway)

    login_as(client, db_session, s.users["analyst"])
    page = client.get(s.url(f"payments/{body['id']}")).get_data(as_text=True)
    assert "Needs attention." in page and attempt_id in page and "rate_limited" in page
    home = client.get(s.url()).get_data(as_text=True)
    assert "1 payment without a definite answer from the processor for over 30 minutes" in home
    assert "attention=needs_attention" in home
    listed = client.get(s.url("payments?attention=needs_attention")).get_data(as_text=True)
    assert body["id"] in listed and "no definite answer about for too long" in listed

    # The answer arrives: the mark is gone everywhere.
    jobs.gateway.retrieve_results = [Lookup.of(PspResult(Outcome.SUCCEEDED, "sandbox", "auth_9", status="authorized"))]
    later += timedelta(minutes=5)
    _run_attempt(attempt_id, jobs.deps, jobs.gateway)
    page = client.get(s.url(f"payments/{body['id']}")).get_data(as_text=True)
    assert "Needs attention." not in page and "Succeeded" in page
    assert "without a definite answer" not in client.get(s.url()).get_data(as_text=True)
    assert body["id"] not in client.get(s.url("payments?attention=needs_attention")).get_data(as_text=True)
