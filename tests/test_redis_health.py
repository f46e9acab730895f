"""Redis away: short timeouts, a per-process latch, API reads and rate limits without it, /healthz levels.

"Stalled" here is a TCP listener that accepts connections and never answers, which is what a SIGSTOPped
redis-server looks like to a client (tests/payments/test_redis_outage.py stops a real one).
"""
import socket

import pytest
import redis

from app import create_app
from app.accounts.api_keys import SECRET, create_key
from app.api.auth import hmac_key
from app.extensions import db
from app.redis_health import RedisHealth, guarded_client
from app.scoping import Scope
from tests import factories
from tests.conftest import app_config


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def stalled_redis():
    """redis://... of a listener that accepts and never answers (the kernel completes the handshake)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    yield f"redis://127.0.0.1:{listener.getsockname()[1]}/0"
    listener.close()


def test_after_a_failure_only_one_probe_per_interval_reaches_redis():
    clock = FakeClock()
    health = RedisHealth(retry_seconds=1.0, clock=clock)
    assert health.may_call() and not health.away
    health.failed(redis.TimeoutError("stalled"))
    assert health.away and not health.may_call()
    clock.now += 1.0
    assert health.may_call()          # the probe
    assert not health.may_call()      # everyone else keeps skipping while it runs
    health.failed(redis.TimeoutError("still stalled"))
    assert not health.may_call()
    clock.now += 1.0
    assert health.may_call()
    health.answered()
    assert not health.away and health.may_call() and health.may_call()


def test_a_stalled_redis_times_out_once_then_calls_are_refused_at_once(stalled_redis):
    health = RedisHealth()
    client = guarded_client(stalled_redis, health)
    with pytest.raises(redis.TimeoutError):
        client.get("key")  # the one call that waits (0.5 s), not redis-py's default retries with backoff
    with pytest.raises(redis.ConnectionError, match="unavailable"):
        client.get("key")
    assert health.away


def test_the_latch_clears_when_redis_answers(app):
    health = RedisHealth(retry_seconds=0)
    client = guarded_client(app.config["REDIS_URL"], health)
    health.failed(redis.ConnectionError("refused"))
    assert client.ping() and not health.away


@pytest.fixture
def outage_app(database, stalled_redis):
    application = create_app(app_config(database, REDIS_URL=stalled_redis, API_RATE_LIMIT="3/minute"))
    yield application
    with application.app_context():
        db.session.remove()
        db.engine.dispose()


def test_with_redis_stalled_api_reads_answer_and_keys_are_limited_in_memory(outage_app):
    with outage_app.test_request_context():
        merchant = factories.merchant(db.session)
        key = create_key(db.session, Scope(merchant.id, False), SECRET, hmac_key=hmac_key()).plaintext
        db.session.commit()
        db.session.remove()
    client = outage_app.test_client()
    headers = {"Authorization": f"Bearer {key}"}
    answers = [client.get("/v1/payments", headers=headers).status_code for _ in range(4)]
    assert answers == [200, 200, 200, 429]  # the limit holds, in this process's memory
    assert outage_app.extensions["redis_health"].away


def test_healthz_says_degraded_without_redis_and_down_without_postgresql(outage_app, database):
    response = outage_app.test_client().get("/healthz")
    assert response.status_code == 200  # load balancers keep sending traffic: payments go on without Redis
    assert response.json["status"] == "degraded" and response.json["checks"]["database"] == "ok"

    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there any more
    nowhere = f"postgresql+psycopg://kassa_app:x@127.0.0.1:{port}/nowhere"
    no_database = create_app(app_config(database, SQLALCHEMY_DATABASE_URI=nowhere))
    response = no_database.test_client().get("/healthz")
    assert response.status_code == 503 and response.json["status"] == "down"
    with no_database.app_context():
        db.engine.dispose()
