"""Developers › Webhooks with the test client: who sees and does what, resends, bulk resend, event detail."""
import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from app.accounts.audit import AuditEntry
from app.accounts.models import Membership, User
from app.accounts.sessions import start_session
from app.jobs.webhooks import run_due, run_resend
from app.webhooks import service
from app.webhooks.models import DeliveryStatus, ResendStatus, WebhookDelivery, WebhookResendJob
from tests import factories
from tests.webhooks.conftest import emit, make_endpoint

_CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


def login(client, session, scope, role: str) -> User:
    user = session.scalars(select(User).join(Membership, Membership.user_id == User.id).where(
        Membership.merchant_id == scope.merchant_id, Membership.role == role)).first()
    _row, token = start_session(session, user, second_factor_passed=True)
    session.commit()
    with client.session_transaction() as cookie:
        cookie.clear()
        cookie["sid"] = token
    return user


def page_url(scope, path: str = "") -> str:
    return f"/dashboard/{scope.merchant_id}/test/developers/webhooks{path}"


def csrf(client, path: str) -> str:
    match = _CSRF.search(client.get(path).get_data(as_text=True))
    assert match, path
    return match.group(1)


def test_analyst_reads_everything_but_never_the_secret(client, db_session, book, settings, receiver):
    endpoint, secret = make_endpoint(db_session, book, settings, receiver.url(), receiver=receiver)
    [event] = emit(db_session, book)
    run_due(db_session, settings)
    login(client, db_session, book, "analyst")

    listing = client.get(page_url(book)).get_data(as_text=True)
    assert endpoint.url in listing and "100%" in listing and "Add endpoint" not in listing
    detail = client.get(page_url(book, f"/{endpoint.id}"))
    html = detail.get_data(as_text=True)
    assert detail.status_code == 200 and "payment.succeeded" in html and "200" in html
    assert secret not in html and "Reveal secret" not in html and "Rotate secret" not in html
    assert "Send test event" not in html
    event_page = client.get(page_url(book, f"/events/{event.id}")).get_data(as_text=True)
    assert event.id in event_page and "&#34;type&#34;: &#34;payment.succeeded&#34;" in event_page
    assert ">Resend<" not in event_page

    # Every change, and the secret, is refused to the analyst by the server too.
    token = csrf(client, page_url(book))  # the analyst's own session token (the layout's mode switch form)
    delivery_id = db_session.scalars(select(WebhookDelivery.id).where(WebhookDelivery.event_id == event.id)).one()
    for path in (f"/{endpoint.id}/secret", f"/{endpoint.id}/rotate", f"/{endpoint.id}/test", f"/{endpoint.id}/status",
                 f"/{endpoint.id}/delete", f"/{endpoint.id}/resend-failed", f"/deliveries/{delivery_id}/resend",
                 "/new"):
        response = client.post(page_url(book, path), data={"csrf_token": token, "grace": "0", "enable": "0"})
        assert response.status_code == 403, path
        assert secret not in response.get_data(as_text=True)


def test_developer_reveals_and_rotates_the_secret_audited_and_not_cached(client, db_session, book, settings):
    endpoint, secret = make_endpoint(db_session, book, settings, "https://example.com/hooks")
    login(client, db_session, book, "developer")
    detail = page_url(book, f"/{endpoint.id}")
    page = client.get(detail).get_data(as_text=True)
    assert secret not in page and "Reveal secret" in page

    revealed = client.post(page_url(book, f"/{endpoint.id}/secret"), data={"csrf_token": csrf(client, detail)})
    assert revealed.status_code == 200 and secret in revealed.get_data(as_text=True)
    assert revealed.headers["Cache-Control"] == "no-store"
    fragment = client.post(page_url(book, f"/{endpoint.id}/secret"), data={"csrf_token": csrf(client, detail)},
                           headers={"HX-Request": "true"})
    assert secret in fragment.get_data(as_text=True) and "<html" not in fragment.get_data(as_text=True)

    rotated = client.post(page_url(book, f"/{endpoint.id}/rotate"),
                          data={"csrf_token": csrf(client, detail), "grace": "24h"})
    html = rotated.get_data(as_text=True)
    new_secret = re.search(r'value="(whsec_[^"]+)"', html).group(1)
    assert rotated.status_code == 200 and new_secret != secret and rotated.headers["Cache-Control"] == "no-store"
    db_session.expire_all()
    row = service.get_endpoint(db_session, book, endpoint.id)
    assert service.signing_secrets(settings, row, settings.clock()) == [new_secret, secret]
    actions = [a.action for a in db_session.scalars(select(AuditEntry).where(AuditEntry.target == endpoint.id)
                                                    .order_by(AuditEntry.created_at, AuditEntry.id))]
    assert actions == ["webhook_endpoint.secret_revealed", "webhook_endpoint.secret_revealed",
                       "webhook_endpoint.secret_rotated"]


def test_other_merchants_endpoints_and_events_are_404(client, db_session, book, settings):
    other = factories.merchant(db_session, name="Elsewhere")
    db_session.commit()
    from app.scoping import Scope

    theirs, _ = make_endpoint(db_session, Scope(other.id, False), settings, "https://example.com/theirs")
    [their_event] = emit(db_session, Scope(other.id, False))
    login(client, db_session, book, "owner")
    assert client.get(page_url(book, f"/{theirs.id}")).status_code == 404
    assert client.get(page_url(book, f"/events/{their_event.id}")).status_code == 404
    assert client.get(f"/dashboard/{other.id}/test/developers/webhooks").status_code == 404


def test_create_edit_disable_and_delete_through_forms(client, db_session, book, settings):
    login(client, db_session, book, "admin")
    new = page_url(book, "/new")
    bad = client.post(new, data={"csrf_token": csrf(client, new), "url": "ftp://nope", "events_mode": "all"})
    assert bad.status_code == 422 and "Invalid URL" in bad.get_data(as_text=True)
    created = client.post(new, data={"csrf_token": csrf(client, new), "url": "http://127.0.0.1:9/hook",
                                     "description": "Orders", "events_mode": "selected",
                                     "events": ["payment.succeeded"], "other_events": "custom.thing_done"})
    assert created.status_code == 303
    endpoint_id = created.headers["Location"].rstrip("/").split("/")[-1]
    endpoint = service.get_endpoint(db_session, book, endpoint_id)
    assert endpoint.enabled_events == ["payment.succeeded", "custom.thing_done"]

    edit = page_url(book, f"/{endpoint_id}/edit")
    assert "custom.thing_done" in client.get(edit).get_data(as_text=True)
    client.post(edit, data={"csrf_token": csrf(client, edit), "url": "http://127.0.0.1:9/other", "events_mode": "all"})
    detail = page_url(book, f"/{endpoint_id}")
    client.post(page_url(book, f"/{endpoint_id}/status"), data={"csrf_token": csrf(client, detail), "enable": "0"})
    db_session.expire_all()
    endpoint = service.get_endpoint(db_session, book, endpoint_id)
    assert (endpoint.url, endpoint.enabled_events, endpoint.status) == ("http://127.0.0.1:9/other", ["*"], "disabled")
    assert "disabled by hand" in client.get(detail).get_data(as_text=True)
    deleted = client.post(page_url(book, f"/{endpoint_id}/delete"), data={"csrf_token": csrf(client, detail)})
    assert deleted.status_code == 303 and client.get(detail).status_code == 404


def test_bulk_resend_requeues_failed_deliveries_with_progress(client, db_session, book, settings, clock, receiver):
    endpoint, _ = make_endpoint(db_session, book, settings, receiver.url(), receiver=receiver)
    events = emit(db_session, book, count=250)
    receiver.status = 410  # fails every delivery of the batch and disables the endpoint
    run_due(db_session, settings, limit=1000)
    assert {d.status for d in db_session.scalars(select(WebhookDelivery).where(
        WebhookDelivery.endpoint_id == endpoint.id))} == {DeliveryStatus.FAILED}
    receiver.status = 200
    login(client, db_session, book, "developer")
    detail = page_url(book, f"/{endpoint.id}")
    refused = client.post(page_url(book, f"/{endpoint.id}/resend-failed"),
                          data={"csrf_token": csrf(client, detail), "since": "2000-01-01T00:00"})
    assert refused.status_code == 422 and "Enable the endpoint first" in refused.get_data(as_text=True)
    client.post(page_url(book, f"/{endpoint.id}/status"), data={"csrf_token": csrf(client, detail), "enable": "1"})

    since = (clock() - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
    started = client.post(page_url(book, f"/{endpoint.id}/resend-failed"),
                          data={"csrf_token": csrf(client, detail), "since": since})
    assert started.status_code == 303 and "resend_job=whr_" in started.headers["Location"]
    job = db_session.scalars(select(WebhookResendJob).where(WebhookResendJob.endpoint_id == endpoint.id)).one()
    assert (job.status, job.total, job.processed) == (ResendStatus.QUEUED, 250, 0)
    progress = client.get(page_url(book, f"/resends/{job.id}"), headers={"HX-Request": "true"}).get_data(as_text=True)
    assert 'hx-trigger="every 1s"' in progress and "Waiting for a worker" in progress

    service.claim_resend_job(db_session, settings, job.id)
    assert service.resend_batch(db_session, settings, job.id) is False  # first 200
    db_session.commit()
    progress = client.get(page_url(book, f"/resends/{job.id}")).get_data(as_text=True)
    assert "200 of 250" in progress and 'value="200"' in progress
    assert service.resend_batch(db_session, settings, job.id) is True
    db_session.commit()
    progress = client.get(page_url(book, f"/resends/{job.id}")).get_data(as_text=True)
    assert "Done: 250 deliveries" in progress and "hx-trigger" not in progress
    assert run_resend(db_session, settings, job.id) is False  # finished: a second run does nothing

    results = run_due(db_session, settings, limit=1000)
    assert len(results) == 250 and all(r.succeeded for r in results)
    assert sorted(set(receiver.ids())) == sorted(e.id for e in events)
    assert all(r.trigger == "manual" for r in (res.outgoing for res in results))


def test_resend_one_delivery_from_the_event_page(client, db_session, book, settings, receiver):
    make_endpoint(db_session, book, settings, receiver.url(), receiver=receiver)
    [event] = emit(db_session, book)
    run_due(db_session, settings)
    login(client, db_session, book, "owner")
    event_page = page_url(book, f"/events/{event.id}")
    html = client.get(event_page).get_data(as_text=True)
    assert "Resend" in html and "Succeeded" in html
    delivery = db_session.scalars(select(WebhookDelivery).where(WebhookDelivery.event_id == event.id)).one()
    response = client.post(page_url(book, f"/deliveries/{delivery.id}/resend"),
                           data={"csrf_token": csrf(client, event_page)})
    assert response.status_code == 303
    run_due(db_session, settings)
    assert receiver.ids() == [event.id, event.id]
    html = client.get(event_page).get_data(as_text=True)
    assert html.count('class="attempt-row"') == 2 and "manual" in html


@pytest.mark.parametrize("role, allowed", [("owner", True), ("admin", True), ("developer", True), ("analyst", False)])
def test_who_may_add_endpoints(client, db_session, book, settings, role, allowed):
    login(client, db_session, book, role)
    assert (client.get(page_url(book, "/new")).status_code == 200) == allowed
