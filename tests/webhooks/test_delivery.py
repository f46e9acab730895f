"""Delivery to a localhost receiver: Standard Webhooks signatures, rotation, the retry schedule, 410, limits."""
import json
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from app.accounts.mail import MailMessage
from app.events import Event, event_payload
from app.jobs.webhooks import run_due
from app.webhooks import service
from app.webhooks.models import (
    DeliveryStatus,
    DisabledReason,
    EndpointStatus,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)
from app.webhooks.settings import RETRY_DELAYS
from tests.webhooks.conftest import Receiver, emit, make_endpoint


def attempts_of(session, delivery_id: str) -> list[WebhookAttempt]:
    return list(session.scalars(select(WebhookAttempt).where(WebhookAttempt.delivery_id == delivery_id)
                                .order_by(WebhookAttempt.attempt_number)))


def delivery_of(session, event_id: str) -> WebhookDelivery:
    return session.scalars(select(WebhookDelivery).where(WebhookDelivery.event_id == event_id)).one()


def test_every_delivery_verifies_with_standardwebhooks(db_session, book, settings, receiver):
    _endpoint, secret = make_endpoint(db_session, book, settings, receiver.url(), receiver=receiver)
    assert secret.startswith("whsec_")
    events = emit(db_session, book, count=3, amount=1000)

    results = run_due(db_session, settings)

    assert [r.succeeded for r in results] == [True, True, True]
    assert len(receiver.requests) == 3
    assert all(r.verified for r in receiver.requests)
    by_id = {r.webhook_id: r for r in receiver.requests}
    for event in events:
        request = by_id[event.id]  # webhook-id is the event id
        assert request.json() == json.loads(json.dumps(event_payload(db_session.get(Event, event.id))))
        assert request.headers["content-type"] == "application/json"
        assert request.headers["webhook-signature"].startswith("v1,")
        assert request.path == "/hooks/kassa"
        delivery = delivery_of(db_session, event.id)
        assert delivery.status == DeliveryStatus.SUCCEEDED and delivery.attempt_count == 1
        [attempt] = attempts_of(db_session, delivery.id)
        assert (attempt.status_code, attempt.succeeded, attempt.webhook_id) == (200, True, event.id)
        assert attempt.latency_ms is not None and attempt.response_excerpt == '{"received": true}'
    # Nothing is left to do.
    assert run_due(db_session, settings) == []


def test_a_tampered_delivery_is_rejected(db_session, book, settings, receiver):
    _endpoint, secret = make_endpoint(db_session, book, settings, receiver.url(), receiver=receiver)
    emit(db_session, book)
    run_due(db_session, settings)
    [genuine] = receiver.requests
    Webhook(secret).verify(genuine.body, genuine.headers)  # the genuine one verifies

    tampered_body = genuine.body.replace(b'"payment.succeeded"', b'"payment.refunded"')
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(tampered_body, genuine.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(genuine.body, {**genuine.headers, "webhook-id": "evt_other"})
    with pytest.raises(WebhookVerificationError):
        Webhook(service.generate_secret()).verify(genuine.body, genuine.headers)

    # Replayed at the receiver with a tampered body, the receiver refuses it.
    response = httpx.post(receiver.url(), content=tampered_body, headers={
        k: v for k, v in genuine.headers.items() if k.startswith("webhook-") or k == "content-type"})
    assert response.status_code == 400
    assert receiver.requests[-1].verified is False


def test_rotation_signs_with_both_secrets_during_grace_then_only_the_new(db_session, book, settings, clock, receiver):
    endpoint, old_secret = make_endpoint(db_session, book, settings, receiver.url(), receiver=receiver)
    endpoint, new_secret = service.rotate_secret(db_session, book, settings, endpoint.id, timedelta(hours=1))
    db_session.commit()
    assert new_secret != old_secret and new_secret == service.reveal_secret(settings, endpoint)
    receiver.secrets[:] = [old_secret, new_secret]

    emit(db_session, book)
    run_due(db_session, settings)
    during = receiver.requests[-1]
    assert len(during.headers["webhook-signature"].split(" ")) == 2
    assert during.verified_with == [0, 1]  # a receiver still on the old secret, and one on the new, both accept

    clock.advance(hours=1, seconds=1)
    emit(db_session, book)
    run_due(db_session, settings)
    after = receiver.requests[-1]
    assert len(after.headers["webhook-signature"].split(" ")) == 1
    assert after.verified_with == [1]
    with pytest.raises(WebhookVerificationError):
        Webhook(old_secret).verify(after.body, after.headers)


def test_rotation_without_grace_stops_the_old_secret_at_once(db_session, book, settings, receiver):
    endpoint, old_secret = make_endpoint(db_session, book, settings, receiver.url())
    _endpoint, new_secret = service.rotate_secret(db_session, book, settings, endpoint.id, timedelta(0))
    db_session.commit()
    receiver.secrets[:] = [old_secret, new_secret]
    emit(db_session, book)
    run_due(db_session, settings)
    assert receiver.requests[-1].verified_with == [1]


def test_a_failing_receiver_gets_retries_at_the_scheduled_times(db_session, book, settings, clock, receiver):
    receiver.status = 500
    endpoint, _ = make_endpoint(db_session, book, settings, receiver.url(), receiver=receiver)
    [event] = emit(db_session, book)
    started = clock()

    results = run_due(db_session, settings)
    assert [r.status_code for r in results] == [500]
    for number, delay in enumerate(RETRY_DELAYS, start=1):
        delivery = delivery_of(db_session, event.id)
        assert delivery.status == DeliveryStatus.PENDING and delivery.attempt_count == number
        wait = delivery.next_attempt_at - clock()
        assert delay * 0.9 <= wait <= delay * 1.1  # the schedule, with at most 10 % jitter
        # Just before it is due, nothing is sent.
        clock.set(delivery.next_attempt_at - timedelta(milliseconds=1))
        assert run_due(db_session, settings) == []
        clock.set(delivery.next_attempt_at)
        assert [r.status_code for r in run_due(db_session, settings)] == [500]

    delivery = delivery_of(db_session, event.id)
    attempts = attempts_of(db_session, delivery.id)
    assert len(attempts) == len(RETRY_DELAYS) + 1 == 13
    assert delivery.status == DeliveryStatus.FAILED and delivery.next_attempt_at is None
    assert {a.webhook_id for a in attempts} == {event.id}
    assert len(receiver.requests) == 13 and set(receiver.ids()) == {event.id}
    gaps = [later.attempted_at - earlier.attempted_at for earlier, later in zip(attempts, attempts[1:])]
    for gap, delay in zip(gaps, RETRY_DELAYS):
        assert delay * 0.9 <= gap <= delay * 1.1
    assert timedelta(days=3) < attempts[-1].attempted_at - started < timedelta(days=3.6)

    # Every attempt failed for three days: the endpoint is disabled, says why, and the merchant is mailed.
    db_session.expire_all()
    endpoint = db_session.get(WebhookEndpoint, endpoint.id)
    assert endpoint.status == EndpointStatus.DISABLED and endpoint.disabled_reason == DisabledReason.FAILING
    assert "HTTP 500" in endpoint.disabled_detail
    mails = db_session.scalars(select(MailMessage).where(MailMessage.merchant_id == book.merchant_id,
                                                         MailMessage.kind == "webhook_endpoint_disabled")).all()
    assert sorted(m.to_address.split("-")[0] for m in mails) == ["admin", "developer", "owner"]
    assert endpoint.url in mails[0].body_text

    # A disabled endpoint gets no new deliveries.
    emit(db_session, book)
    assert run_due(db_session, settings) == []
    assert len(receiver.requests) == 13


def test_a_success_resets_the_failure_run(db_session, book, settings, clock, receiver):
    receiver.script.extend([500, 500])
    endpoint, _ = make_endpoint(db_session, book, settings, receiver.url(), receiver=receiver)
    [event] = emit(db_session, book)
    run_due(db_session, settings)
    db_session.expire_all()
    assert db_session.get(WebhookEndpoint, endpoint.id).failing_since == clock()
    for _ in range(2):
        clock.set(delivery_of(db_session, event.id).next_attempt_at)
        run_due(db_session, settings)
    db_session.expire_all()
    delivery = delivery_of(db_session, event.id)
    assert delivery.status == DeliveryStatus.SUCCEEDED and delivery.attempt_count == 3
    assert db_session.get(WebhookEndpoint, endpoint.id).failing_since is None


def test_410_gone_disables_the_endpoint_at_once(db_session, book, settings, clock, receiver):
    receiver.status = 410
    endpoint, _ = make_endpoint(db_session, book, settings, receiver.url(), receiver=receiver)
    [first, second] = emit(db_session, book, count=2)
    results = run_due(db_session, settings)
    assert sorted(r.status_code for r in results) == [410, 410]  # both were in flight in the same batch

    db_session.expire_all()
    endpoint = db_session.get(WebhookEndpoint, endpoint.id)
    assert endpoint.status == EndpointStatus.DISABLED and endpoint.disabled_reason == DisabledReason.GONE
    for event in (first, second):
        delivery = delivery_of(db_session, event.id)
        assert delivery.status == DeliveryStatus.FAILED and delivery.next_attempt_at is None  # no retries
    assert db_session.scalars(select(MailMessage).where(MailMessage.kind == "webhook_endpoint_disabled",
                                                        MailMessage.merchant_id == book.merchant_id)).first()
    clock.advance(days=1)
    emit(db_session, book)
    assert run_due(db_session, settings) == []
    assert len(receiver.requests) == 2


def test_pending_deliveries_of_a_disabled_or_deleted_endpoint_fail_without_an_attempt(db_session, book, settings,
                                                                                       clock, receiver):
    receiver.status = 503
    disabled, _ = make_endpoint(db_session, book, settings, receiver.url("/a"), receiver=receiver)
    deleted, _ = make_endpoint(db_session, book, settings, receiver.url("/b"), receiver=receiver)
    emit(db_session, book)
    run_due(db_session, settings)
    assert len(receiver.requests) == 2
    service.update_endpoint(db_session, book, settings, disabled.id, disabled=True)
    service.delete_endpoint(db_session, book, settings, deleted.id)
    db_session.commit()
    clock.advance(minutes=1)
    assert run_due(db_session, settings) == []
    assert len(receiver.requests) == 2
    errors = {d.endpoint_id: (d.status, d.last_error) for d in db_session.scalars(
        select(WebhookDelivery).where(WebhookDelivery.endpoint_id.in_([disabled.id, deleted.id])))}
    assert errors == {disabled.id: ("failed", "endpoint disabled"), deleted.id: ("failed", "endpoint deleted")}


def test_enabled_events_filter_what_an_endpoint_receives(db_session, book, settings, receiver):
    make_endpoint(db_session, book, settings, receiver.url(), events=["refund.created", "payment.failed"],
                  receiver=receiver)
    emit(db_session, book, "payment.succeeded")
    [failed] = emit(db_session, book, "payment.failed")
    [refund] = emit(db_session, book, "refund.created")
    run_due(db_session, settings)
    assert sorted(receiver.ids()) == sorted([failed.id, refund.id])


def test_redirects_are_not_followed(db_session, book, settings, receiver):
    other = Receiver().start()
    try:
        receiver.status = 302
        receiver.headers = {"Location": other.url()}
        make_endpoint(db_session, book, settings, receiver.url(), receiver=receiver)
        [event] = emit(db_session, book)
        [result] = run_due(db_session, settings)
        assert result.status_code == 302 and not result.succeeded
        assert other.requests == []
        assert delivery_of(db_session, event.id).status == DeliveryStatus.PENDING  # retried later, not followed
    finally:
        other.stop()


def test_the_response_excerpt_is_truncated_to_1_kib(db_session, book, settings, receiver):
    receiver.body = b"x" * 5000 + b"\x00"
    receiver.status = 500
    make_endpoint(db_session, book, settings, receiver.url(), receiver=receiver)
    [event] = emit(db_session, book)
    run_due(db_session, settings)
    [attempt] = attempts_of(db_session, delivery_of(db_session, event.id).id)
    assert attempt.response_excerpt == "x" * 1024 and attempt.status_code == 500


def test_a_receiver_that_does_not_answer_times_out(db_session, book, settings, receiver):
    import socket

    # A socket that accepts the connection but never answers.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    try:
        settings.total_timeout = 0.3
        make_endpoint(db_session, book, settings, f"http://127.0.0.1:{silent.getsockname()[1]}/", receiver=receiver)
        [event] = emit(db_session, book)
        [result] = run_due(db_session, settings)
        assert result.error == "timed out after 0.3 s"
        delivery = delivery_of(db_session, event.id)
        assert delivery.status == DeliveryStatus.PENDING and delivery.last_error == result.error
    finally:
        silent.close()


def test_a_refused_connection_is_an_attempt_and_a_retry(db_session, book, settings):
    from tests.webhooks.conftest import free_port

    make_endpoint(db_session, book, settings, f"http://127.0.0.1:{free_port()}/")
    [event] = emit(db_session, book)
    [result] = run_due(db_session, settings)
    assert result.error == "connection refused"
    delivery = delivery_of(db_session, event.id)
    assert delivery.status == DeliveryStatus.PENDING and delivery.attempt_count == 1


def test_send_test_event_goes_to_that_endpoint_only(db_session, book, settings, receiver):
    target, _ = make_endpoint(db_session, book, settings, receiver.url("/target"), receiver=receiver)
    make_endpoint(db_session, book, settings, receiver.url("/other"), receiver=receiver)
    delivery = service.send_test_event(db_session, book, settings, target.id)
    db_session.commit()
    run_due(db_session, settings)
    [request] = receiver.requests
    assert request.path == "/target" and request.verified
    assert request.json()["type"] == "webhook.test" and request.webhook_id == delivery.event_id
    [attempt] = attempts_of(db_session, delivery.id)
    assert attempt.trigger == "test"


def test_resend_one_delivery_sends_the_same_webhook_id_again_once(db_session, book, settings, clock, receiver):
    make_endpoint(db_session, book, settings, receiver.url(), receiver=receiver)
    [event] = emit(db_session, book)
    run_due(db_session, settings)
    delivery = delivery_of(db_session, event.id)
    receiver.status = 500
    service.resend_delivery(db_session, book, settings, delivery.id)
    db_session.commit()
    run_due(db_session, settings)
    assert receiver.ids() == [event.id, event.id]
    delivery = delivery_of(db_session, event.id)
    # A manual resend is one attempt: failing, it does not start a new three-day schedule.
    assert delivery.status == DeliveryStatus.FAILED and delivery.attempt_count == 2
    assert [a.trigger for a in attempts_of(db_session, delivery.id)] == ["automatic", "manual"]


def test_secrets_are_sealed_at_rest_and_follow_an_encryption_key_rotation(db_session, book, settings, clock,
                                                                            receiver):
    import base64
    import secrets as random_bytes

    from app.crypto import SecretBox, rotate_all

    endpoint, old_secret = make_endpoint(db_session, book, settings, receiver.url(), receiver=receiver)
    endpoint, new_secret = service.rotate_secret(db_session, book, settings, endpoint.id, timedelta(hours=1))
    db_session.commit()
    receiver.secrets.append(new_secret)
    assert old_secret not in endpoint.secret_encrypted + endpoint.previous_secret_encrypted

    old_spec = settings.secret_box.keys
    spec = ",".join([f"rotated:{base64.b64encode(random_bytes.token_bytes(32)).decode()}"]
                    + [f"{kid}:{base64.b64encode(key).decode()}" for kid, key in old_spec])
    settings.secret_box = SecretBox(spec)
    counts = rotate_all(db_session, settings.secret_box)
    db_session.commit()
    assert counts["webhook_endpoints.secret_encrypted"] >= 1
    assert counts["webhook_endpoints.previous_secret_encrypted"] >= 1
    db_session.expire_all()
    endpoint = db_session.get(WebhookEndpoint, endpoint.id)
    assert endpoint.secret_encrypted.startswith("rotated$")
    assert endpoint.previous_secret_encrypted.startswith("rotated$")
    assert service.signing_secrets(settings, endpoint, clock()) == [new_secret, old_secret]
    emit(db_session, book)
    [result] = run_due(db_session, settings)
    assert result.succeeded and receiver.requests[-1].verified_with == [0, 1]
