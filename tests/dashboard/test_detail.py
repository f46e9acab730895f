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
