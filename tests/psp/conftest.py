"""Fixtures of the PSP layer tests: the real sandbox PSP as a subprocess, connectors and routers over it,
Redis-backed breakers with a driven clock, and an app whose hook secrets match the sandbox's.

The sandbox is started with the helpers of tests/sandbox_psp (reused, not copied): free ports, a
callback receiver, ``--timeout-delay 2`` for the timeout card. Connectors use a 1 s read timeout, so
that card always times out on our side and answers at once on a retry or lookup.
"""
import os
import sys
from pathlib import Path

import pytest
import redis as redis_lib

SANDBOX_TESTS = Path(__file__).resolve().parents[1] / "sandbox_psp"
if str(SANDBOX_TESTS) not in sys.path:
    sys.path.insert(0, str(SANDBOX_TESTS))

from sbx_helpers import (  # noqa: E402 - needs the sys.path set-up above
    SECRET,
    TIMEOUT_DELAY_SECONDS,
    WAIT_SECONDS,
    WEBHOOK_SECRET,
    Acquirer,
    HookReceiver,
    Sandbox,
    new_session,
    start_ready_sandbox,
)

from app import create_app  # noqa: E402
from app.extensions import db as _db  # noqa: E402
from app.psp.breaker import BreakerRegistry, BreakerSettings  # noqa: E402
from app.psp.router import RetryPolicy, Router  # noqa: E402
from app.psp.sandbox import SandboxConnector  # noqa: E402
from tests.conftest import app_config  # noqa: E402

# The connectors' timeouts in these tests: the sandbox stalls the timeout card for 2 s, longer than this.
READ_TIMEOUT = 1.0
CONNECT_TIMEOUT = 0.5
assert TIMEOUT_DELAY_SECONDS > READ_TIMEOUT
STRIPE_WEBHOOK_SECRET = "whsec_test_platform"


class Clock:
    """A clock the test moves by hand (breakers never read the real time in tests)."""

    def __init__(self, now: float = 1_800_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(scope="session")
def psp_hook_receiver():
    receiver = HookReceiver()
    receiver.start()
    yield receiver
    receiver.stop()


@pytest.fixture(scope="session")
def psp_sandbox_process(psp_hook_receiver, tmp_path_factory):
    """One sandbox subprocess for the PSP tests (both acquirers, callbacks to the local receiver)."""
    base = tmp_path_factory.mktemp("psp_sandbox")
    process, log_file, ports = start_ready_sandbox(base / "data", base / "sandbox.log", psp_hook_receiver.url)
    try:
        acquirers = {name: Acquirer(name, f"http://127.0.0.1:{ports[name]}", ports[name])
                     for name in ("sandbox", "sandbox_b")}
        handle = Sandbox(f"http://127.0.0.1:{ports['public']}", acquirers, psp_hook_receiver, base / "data",
                         base / "sandbox.log")
        yield handle
        handle.close()
    finally:
        process.terminate()
        process.wait(timeout=WAIT_SECONDS)
        process.stdout.close()
        log_file.close()


@pytest.fixture
def sbx(psp_sandbox_process):
    """The running sandbox, wiped: no data, real time, no faults, no callbacks received."""
    psp_sandbox_process.admin("/_admin/reset")
    psp_sandbox_process.receiver.clear()
    return psp_sandbox_process


def make_connector(sbx, name: str, **kwargs) -> SandboxConnector:
    return SandboxConnector(name, sbx.acquirers[name].url, kwargs.pop("secret", SECRET),
                            webhook_secret=WEBHOOK_SECRET, connect_timeout=CONNECT_TIMEOUT,
                            read_timeout=READ_TIMEOUT, **kwargs)


@pytest.fixture
def connectors(sbx):
    """{"sandbox": ..., "sandbox_b": ...} over the running sandbox."""
    made = {name: make_connector(sbx, name) for name in ("sandbox", "sandbox_b")}
    yield made
    for connector in made.values():
        connector.close()


@pytest.fixture
def redis_conn():
    """A Redis client on the test Redis (no app needed); keys of a test live under a unique prefix."""
    client = redis_lib.Redis.from_url(os.environ["REDIS_URL"])
    yield client
    client.close()


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def breaker_prefix(redis_conn, request):
    """A key prefix of this test's own; its keys are deleted afterwards."""
    import uuid

    prefix = f"test:breaker:{uuid.uuid4().hex[:10]}"
    yield prefix
    for key in redis_conn.scan_iter(f"{prefix}:*"):
        redis_conn.delete(key)


@pytest.fixture
def breakers(redis_conn, clock, breaker_prefix):
    """Breakers with a small minimum (3 calls, half of them failing) on the driven clock."""
    settings = BreakerSettings(failure_rate_threshold=50, minimum_calls=3, window_seconds=60, open_seconds=30,
                               half_open_probes=1, probe_timeout_seconds=30)
    return BreakerRegistry(redis_conn, settings, clock=clock, prefix=breaker_prefix)


class SleepRecorder:
    """Stands in for time.sleep: records what the router would have slept."""

    def __init__(self):
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@pytest.fixture
def sleeps():
    return SleepRecorder()


@pytest.fixture
def router(connectors, breakers, sleeps):
    """sandbox -> sandbox_b with breakers, three tries, recorded (not real) sleeps."""
    import random

    return Router.from_connectors(connectors, breakers=breakers, retry=RetryPolicy(max_tries=3),
                                  sleep=sleeps, rng=random.Random(7))


@pytest.fixture(scope="module")
def app(database):
    """The Kassa app on this module's database, with the sandbox's and a Stripe webhook secret."""
    application = create_app(app_config(database, SANDBOX_WEBHOOK_SECRET=WEBHOOK_SECRET,
                                        SANDBOX_PSP_SECRET=SECRET, STRIPE_WEBHOOK_SECRET=STRIPE_WEBHOOK_SECRET))
    with application.app_context():
        application.extensions["redis"].flushdb()
    yield application
    with application.app_context():
        _db.session.remove()
        _db.engine.dispose()


__all__ = ["Clock", "SECRET", "WEBHOOK_SECRET", "make_connector", "new_session"]
