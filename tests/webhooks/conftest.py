"""Fixtures for the webhook tests: a localhost receiver that verifies signatures, a driven clock, settings.

Time is never waited for: the schedule's clock (``clock``) is moved by hand and the sweeps are run
directly (app.jobs.webhooks.run_due), so a three-day retry schedule takes milliseconds.
"""
import json
import random
import socket
import ssl
import threading
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import delete, update
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from app.events import PendingFanout, record_event
from app.models_base import utcnow
from app.scoping import Scope
from app.webhooks import service
from app.webhooks.models import DeliveryStatus, WebhookDelivery
from app.webhooks.settings import install, settings_from_config
from tests import factories
from tests.browser import browser, live_server, page  # noqa: F401  (pytest fixtures)


class FakeClock:
    """The schedule's clock: stands still until a test moves it."""

    def __init__(self, start: datetime | None = None):
        self.now = start or utcnow().replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta | None = None, **kwargs) -> datetime:
        self.now += delta if delta is not None else timedelta(**kwargs)
        return self.now

    def set(self, moment: datetime) -> datetime:
        self.now = moment
        return self.now


@dataclass
class Received:
    """One request the receiver got."""

    path: str
    headers: dict[str, str]
    body: bytes
    verified: bool
    verified_with: list[int]    # indexes into Receiver.secrets that verify the signature
    error: str | None = None

    @property
    def webhook_id(self) -> str:
        return self.headers.get("webhook-id", "")

    def json(self) -> dict:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A merchant's webhook endpoint on localhost that verifies every request with ``standardwebhooks``.

    A request that no configured secret verifies is answered 400 (as a real receiver must); a verified
    one gets the next scripted status (``script``), else ``status``.
    """

    secrets: list[str] = field(default_factory=list)
    status: int = 200
    script: deque = field(default_factory=deque)
    body: bytes = b'{"received": true}'
    headers: dict[str, str] = field(default_factory=dict)
    requests: list[Received] = field(default_factory=list)
    port: int = 0
    tls: ssl.SSLContext | None = None
    server: ThreadingHTTPServer | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self, port: int | None = None) -> "Receiver":
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms Nagle stall

            def log_message(self, *args):  # keep test output quiet
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                verified_with = []
                error = None
                for index, secret in enumerate(receiver.secrets):
                    try:
                        Webhook(secret).verify(body, headers)
                        verified_with.append(index)
                    except WebhookVerificationError as exc:
                        error = str(exc)
                verified = bool(verified_with)
                with receiver.lock:
                    receiver.requests.append(Received(self.path, headers, body, verified, verified_with,
                                                      None if verified else error))
                    status = (receiver.script.popleft() if receiver.script else receiver.status) if verified else 400
                payload = receiver.body if verified else b'{"error": "signature"}'
                self.send_response(status)
                for name, value in receiver.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        class Server(ThreadingHTTPServer):
            request_queue_size = 128  # the default listen backlog of 5 resets a burst of concurrent deliveries
            daemon_threads = True

        self.server = Server(("127.0.0.1", port if port is not None else self.port), Handler)
        if self.tls is not None:
            self.server.socket = self.tls.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, name="webhook-receiver", daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def url(self, path: str = "/hooks/kassa", host: str = "127.0.0.1", scheme: str = "http") -> str:
        return f"{scheme}://{host}:{self.port}{path}"

    def ids(self) -> list[str]:
        return [r.webhook_id for r in self.requests]


def free_port() -> int:
    """A port nothing listens on (for a receiver that is down)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def receiver():
    instance = Receiver().start()
    yield instance
    instance.stop()


@pytest.fixture
def clock():
    return FakeClock()


def settle_leftovers(session) -> None:
    """Finish what earlier tests of the module left owed (their receivers are gone), so each test's sweeps
    see only its own deliveries: the module shares one database."""
    session.execute(update(WebhookDelivery).where(WebhookDelivery.status == DeliveryStatus.PENDING)
                    .values(status=DeliveryStatus.FAILED, next_attempt_at=None, last_error="test clean-up"))
    session.execute(delete(PendingFanout))
    session.commit()


@pytest.fixture
def settings(app, clock, db_session):
    """WebhookSettings with the driven clock, a seeded jitter and private addresses allowed (localhost receivers)."""
    settle_leftovers(db_session)
    instance = settings_from_config(app.config)
    instance.clock = clock
    instance.rng = random.Random(20261120)
    instance.allow_private = True
    instance.connect_timeout = 2.0
    instance.total_timeout = 5.0
    install(app, instance)
    yield instance
    app.extensions.pop("webhooks", None)


def make_endpoint(session, scope: Scope, settings, url: str, events=("*",), receiver: Receiver | None = None):
    """Create and commit an endpoint; its secret is given to the receiver to verify with."""
    endpoint, secret = service.create_endpoint(session, scope, settings, url=url, enabled_events=list(events))
    session.commit()
    if receiver is not None:
        receiver.secrets.append(secret)
    return endpoint, secret


def emit(session, scope: Scope, event_type: str = "payment.succeeded", count: int = 1, **data):
    """Record and commit events as a feature would (record_event: the Event plus its pending fan-out row)."""
    events = [record_event(session, scope, event_type, "payment", f"pay_{i}", {"id": f"pay_{i}", **data})
              for i in range(count)]
    session.commit()
    return events


@pytest.fixture
def book(db_session):
    """A merchant (with an owner, admin, developer and analyst) and its test-mode scope."""
    merchant = factories.merchant(db_session, name="Hook Shop")
    for role in ("owner", "admin", "developer", "analyst"):
        factories.member(db_session, merchant, role=role, email=f"{role}-{merchant.id.lower()}@example.com")
    db_session.commit()
    return Scope(merchant.id, False)


UTC = timezone.utc
