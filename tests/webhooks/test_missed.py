"""Events raised while an endpoint was disabled are kept for it ("missed") and sent later, once, on request.

Fan-out writes a disabled endpoint's delivery row too, as ``missed``; "send missed events" (service, API,
dashboard) turns those of the last 30 days, of types the endpoint subscribes to, into ordinary deliveries
signed with the event's own id as webhook-id.
"""
from datetime import timedelta

import pytest
from sqlalchemy import select

from app.accounts.audit import AuditEntry
from app.events import Event, PendingFanout
from app.ids import new_id
from app.jobs.webhooks import run_due, run_fanout
from app.scoping import Scope
from app.webhooks import service
from app.webhooks.models import DeliveryStatus, DisabledReason, EndpointStatus, WebhookDelivery, WebhookEndpoint
from app.webhooks.service import MISSED_EVENTS_WINDOW
from tests import factories
from tests.webhooks.conftest import emit, make_endpoint
from tests.webhooks.test_api import key_for
from tests.webhooks.test_dashboard import csrf, login, page_url


def statuses(session, endpoint_id: str) -> dict[str, str]:
    """event id -> status of the endpoint's delivery of it."""
    return {d.event_id: d.status for d in session.scalars(
        select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint_id))}


def raise_at(session, scope: Scope, created_at, event_type: str = "payment.succeeded") -> Event:
    """An event with a chosen time (as if raised then), queued for fan-out like record_event's."""
    event = scope.new(Event, id=new_id("evt"), type=event_type, object_type="payment", object_id="pay_old",
                      data={"id": "pay_old"}, request_id=None, created_at=created_at)
    session.add(event)
    session.flush()
    session.add(PendingFanout(event_id=event.id, created_at=created_at))
    session.commit()
    return event


def enable(session, scope: Scope, settings, endpoint_id: str) -> None:
    service.update_endpoint(session, scope, settings, endpoint_id, disabled=False)
    session.commit()


def send_missed(session, scope: Scope, settings, endpoint_id: str) -> int:
    _endpoint, missed = service.send_missed_events(session, scope, settings, endpoint_id)
    session.commit()
    return missed.count


def test_events_raised_while_disabled_by_hand_are_sent_once_with_their_own_webhook_id(db_session, book, settings,
                                                                                      receiver):
    endpoint, _ = make_endpoint(db_session, book, settings, receiver.url(), receiver=receiver)
    [before] = emit(db_session, book)
    run_due(db_session, settings)
    service.update_endpoint(db_session, book, settings, endpoint.id, disabled=True)
    db_session.commit()

    missed = emit(db_session, book, count=3)
    assert run_due(db_session, settings) == []  # nothing is sent to a disabled endpoint...
    assert statuses(db_session, endpoint.id) == {before.id: DeliveryStatus.SUCCEEDED,
                                                 **{e.id: DeliveryStatus.MISSED for e in missed}}  # ...but it is kept
    with pytest.raises(service.NotResendable):  # not while it is still disabled
        service.send_missed_events(db_session, book, settings, endpoint.id)
    db_session.rollback()

    enable(db_session, book, settings, endpoint.id)
    assert run_due(db_session, settings) == []  # re-enabling alone sends nothing: the merchant chooses
    row = db_session.get(WebhookEndpoint, endpoint.id)
    assert service.count_missed_events(db_session, book, settings, row).count == 3
    assert send_missed(db_session, book, settings, endpoint.id) == 3
    results = run_due(db_session, settings)

    assert sorted(r.outgoing.event_id for r in results) == sorted(e.id for e in missed)
    assert all(r.succeeded for r in results)
    later = receiver.requests[1:]
    assert sorted(r.webhook_id for r in later) == sorted(e.id for e in missed)  # the event's id, as always
    assert all(r.verified and r.json()["id"] == r.webhook_id for r in later)
    assert set(statuses(db_session, endpoint.id).values()) == {DeliveryStatus.SUCCEEDED}

    # Idempotent: a second call schedules nothing, and nothing more is sent.
    assert send_missed(db_session, book, settings, endpoint.id) == 0
    assert run_due(db_session, settings) == []
    assert len(receiver.requests) == 4


def test_events_after_a_410_are_recovered_through_the_api(client, db_session, book, settings, receiver):
    auth = key_for(db_session, book.merchant_id)
    receiver.status = 410
    endpoint, _ = make_endpoint(db_session, book, settings, receiver.url(), receiver=receiver)
    [gone] = emit(db_session, book)
    run_due(db_session, settings)
    db_session.expire_all()
    assert db_session.get(WebhookEndpoint, endpoint.id).disabled_reason == DisabledReason.GONE
    missed = emit(db_session, book, count=2)
    run_due(db_session, settings)
    receiver.status = 200
    path = f"/v1/webhook_endpoints/{endpoint.id}/send_missed_events"

    refused = client.post(path, headers=auth)
    assert refused.status_code == 400 and refused.json["error"]["code"] == "webhook_endpoint_disabled"
    assert "disabled=false" in refused.json["error"]["message"]
    assert client.post(f"/v1/webhook_endpoints/{endpoint.id}", headers=auth,
                       json={"disabled": False}).json["status"] == "enabled"
    first = client.post(path, headers=auth)
    assert first.status_code == 200, first.json
    assert first.json["object"] == "webhook_missed_events" and first.json["webhook_endpoint"] == endpoint.id
    assert first.json["scheduled"] == 2 and first.json["livemode"] is False
    assert abs(first.json["since"] - int((settings.clock() - MISSED_EVENTS_WINDOW).timestamp())) <= 1
    assert client.post(path, headers=auth).json["scheduled"] == 0  # a retry of the call schedules nothing new

    run_due(db_session, settings)
    assert receiver.ids()[0] == gone.id and sorted(receiver.ids()[1:]) == sorted(e.id for e in missed)
    # The 410'd delivery stays failed: "Resend failed deliveries" is the way for it, not this.
    assert statuses(db_session, endpoint.id)[gone.id] == DeliveryStatus.FAILED
    audit = db_session.scalars(select(AuditEntry).where(AuditEntry.target == endpoint.id,
                                                        AuditEntry.action == "webhook_endpoint.missed_events_sent")
                               .order_by(AuditEntry.created_at, AuditEntry.id)).all()
    assert [a.details["scheduled"] for a in audit] == [2, 0]
    assert audit[0].actor_label.startswith("api_key:")

    # Another merchant's key cannot see or drive the endpoint.
    other = factories.merchant(db_session, name="Not yours")
    db_session.commit()
    assert client.post(path, headers=key_for(db_session, other.id)).status_code == 404
    assert client.post(path, headers=key_for(db_session, book.merchant_id, livemode=True)).status_code == 404


def test_only_the_last_30_days_and_subscribed_types_are_sent(db_session, book, settings, clock, receiver):
    endpoint, _ = make_endpoint(db_session, book, settings, receiver.url(), receiver=receiver,
                                events=["payment.succeeded", "refund.created"])
    service.update_endpoint(db_session, book, settings, endpoint.id, disabled=True)
    db_session.commit()
    too_old = raise_at(db_session, book, clock() - MISSED_EVENTS_WINDOW - timedelta(hours=1))
    recent = raise_at(db_session, book, clock() - MISSED_EVENTS_WINDOW + timedelta(hours=1))
    [unsubscribed] = emit(db_session, book, "payment.failed")
    [no_longer_wanted] = emit(db_session, book, "refund.created")
    [wanted] = emit(db_session, book, "payment.succeeded")
    run_fanout(db_session, settings)
    assert unsubscribed.id not in statuses(db_session, endpoint.id)  # never subscribed: not missed either

    service.update_endpoint(db_session, book, settings, endpoint.id, enabled_events=["payment.succeeded"],
                            disabled=False)
    db_session.commit()
    assert send_missed(db_session, book, settings, endpoint.id) == 2
    run_due(db_session, settings)
    assert sorted(receiver.ids()) == sorted([recent.id, wanted.id])
    left = statuses(db_session, endpoint.id)
    assert (left[too_old.id], left[no_longer_wanted.id]) == (DeliveryStatus.MISSED, DeliveryStatus.MISSED)


def test_other_merchants_other_modes_and_test_events_are_never_included(db_session, book, settings, receiver):
    mine, _ = make_endpoint(db_session, book, settings, receiver.url("/mine"), receiver=receiver)
    live = Scope(book.merchant_id, True)
    mine_live, _ = make_endpoint(db_session, live, settings, "https://127.0.0.1:9/live")  # live needs https
    other = Scope(factories.merchant(db_session, name="Other Shop").id, False)
    db_session.commit()
    theirs, _ = make_endpoint(db_session, other, settings, receiver.url("/theirs"), receiver=receiver)
    sibling, _ = make_endpoint(db_session, book, settings, receiver.url("/sibling"), receiver=receiver)
    for scope, endpoint in ((book, mine), (live, mine_live), (other, theirs)):
        service.update_endpoint(db_session, scope, settings, endpoint.id, disabled=True)
    db_session.commit()

    [my_event] = emit(db_session, book)
    [live_event] = emit(db_session, live)
    [their_event] = emit(db_session, other)
    test_event = service.send_test_event(db_session, book, settings, sibling.id)  # for the sibling only
    db_session.commit()
    run_due(db_session, settings)
    assert statuses(db_session, mine.id) == {my_event.id: DeliveryStatus.MISSED}
    assert statuses(db_session, mine_live.id) == {live_event.id: DeliveryStatus.MISSED}
    assert statuses(db_session, theirs.id) == {their_event.id: DeliveryStatus.MISSED}

    for scope, endpoint in ((book, mine), (live, mine_live), (other, theirs)):
        enable(db_session, scope, settings, endpoint.id)
    with pytest.raises(service.NotFound):  # an endpoint is reached through its own book only
        service.send_missed_events(db_session, book, settings, theirs.id)
    db_session.rollback()
    with pytest.raises(service.NotFound):
        service.send_missed_events(db_session, book, settings, mine_live.id)
    db_session.rollback()
    assert send_missed(db_session, book, settings, mine.id) == 1
    assert send_missed(db_session, other, settings, theirs.id) == 1
    assert send_missed(db_session, live, settings, mine_live.id) == 1
    assert statuses(db_session, mine_live.id) == {live_event.id: DeliveryStatus.PENDING}
    receiver.requests.clear()
    run_due(db_session, settings)

    sent = {(r.path, r.webhook_id) for r in receiver.requests}
    assert sent == {("/mine", my_event.id), ("/theirs", their_event.id)}
    assert test_event.event_id not in {webhook_id for _path, webhook_id in sent}


def test_the_dashboard_confirms_then_sends_the_missed_events(client, db_session, book, settings, receiver):
    endpoint, _ = make_endpoint(db_session, book, settings, receiver.url(), receiver=receiver)
    service.update_endpoint(db_session, book, settings, endpoint.id, disabled=True)
    db_session.commit()
    missed = emit(db_session, book, count=2)
    run_due(db_session, settings)
    login(client, db_session, book, "developer")
    detail = page_url(book, f"/{endpoint.id}")
    confirm = page_url(book, f"/{endpoint.id}/missed-events")

    html = client.get(detail).get_data(as_text=True)
    assert "2 events of the last 30 days were raised while this endpoint was disabled" in html
    assert "Enable the endpoint first" in html and "Send 2 missed events" not in html
    assert "Enable" in client.get(confirm).get_data(as_text=True)
    refused = client.post(confirm, data={"csrf_token": csrf(client, detail)}, follow_redirects=True)
    assert "Not sent: The endpoint is disabled" in refused.get_data(as_text=True)

    enable(db_session, book, settings, endpoint.id)
    assert "Send 2 missed events from the last 30 days" in client.get(detail).get_data(as_text=True)
    page = client.get(confirm).get_data(as_text=True)
    assert "Send 2 missed events to" in page and "webhook-id" in page
    assert client.post(confirm, data={}).status_code == 400  # no CSRF token: nothing happens
    assert set(statuses(db_session, endpoint.id).values()) == {DeliveryStatus.MISSED}

    sent = client.post(confirm, data={"csrf_token": csrf(client, confirm)})
    assert sent.status_code == 303 and sent.headers["Location"].endswith(f"/developers/webhooks/{endpoint.id}")
    assert "2 missed events scheduled" in client.get(detail).get_data(as_text=True)
    run_due(db_session, settings)
    assert sorted(receiver.ids()) == sorted(e.id for e in missed)
    assert "No event of the last 30 days was missed" in client.get(detail).get_data(as_text=True)
    client.post(confirm, data={"csrf_token": csrf(client, confirm)})  # again: nothing new
    assert run_due(db_session, settings) == []
    actions = db_session.scalars(select(AuditEntry).where(
        AuditEntry.target == endpoint.id, AuditEntry.action == "webhook_endpoint.missed_events_sent")
        .order_by(AuditEntry.created_at, AuditEntry.id)).all()
    assert [(a.details["scheduled"], a.actor_label.split("-")[0]) for a in actions] == [(2, "developer"),
                                                                                         (0, "developer")]


def test_a_missed_delivery_shows_on_the_event_page(client, db_session, book, settings):
    endpoint, _ = make_endpoint(db_session, book, settings, "http://127.0.0.1:9/hook")
    service.update_endpoint(db_session, book, settings, endpoint.id, disabled=True)
    db_session.commit()
    [event] = emit(db_session, book)
    run_fanout(db_session, settings)
    login(client, db_session, book, "analyst")
    assert "Missed (endpoint disabled)" in client.get(page_url(book, f"/events/{event.id}")).get_data(as_text=True)


@pytest.mark.parametrize("role, allowed", [("owner", True), ("admin", True), ("developer", True), ("analyst", False)])
def test_who_may_send_missed_events(client, db_session, book, settings, role, allowed):
    endpoint, _ = make_endpoint(db_session, book, settings, "http://127.0.0.1:9/hook")
    service.update_endpoint(db_session, book, settings, endpoint.id, disabled=True)
    db_session.commit()
    emit(db_session, book)
    run_fanout(db_session, settings)
    enable(db_session, book, settings, endpoint.id)
    login(client, db_session, book, role)
    detail = page_url(book, f"/{endpoint.id}")
    assert ("Send 1 missed event from the last 30 days" in client.get(detail).get_data(as_text=True)) == allowed
    confirm = page_url(book, f"/{endpoint.id}/missed-events")
    assert client.get(confirm).status_code == (200 if allowed else 403)
    response = client.post(confirm, data={"csrf_token": csrf(client, detail)})
    assert response.status_code == (303 if allowed else 403)
    left = set(statuses(db_session, endpoint.id).values())
    assert left == ({DeliveryStatus.PENDING} if allowed else {DeliveryStatus.MISSED})
    assert db_session.get(WebhookEndpoint, endpoint.id).status == EndpointStatus.ENABLED
