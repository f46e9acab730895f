"""The circuit breaker: transitions driven by a hand-moved clock, overrides, metrics and logs, shared
state between separate worker processes on one Redis, and failing open when Redis is gone."""
import json
import logging
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import redis as redis_lib
from redis.backoff import NoBackoff
from redis.retry import Retry
from prometheus_client import REGISTRY

from app.psp.breaker import BreakerSettings, BreakerState, CircuitBreaker

REPO_ROOT = Path(__file__).resolve().parents[2]


def transitions(connector: str, from_state: str, to_state: str) -> float:
    value = REGISTRY.get_sample_value("kassa_psp_breaker_transitions_total",
                                      {"connector": connector, "from_state": from_state, "to_state": to_state})
    return value or 0.0


def gauge(connector: str) -> float | None:
    return REGISTRY.get_sample_value("kassa_psp_breaker_state", {"connector": connector})


def test_failures_in_the_window_open_it_and_old_ones_do_not_count(breakers, clock):
    breaker = breakers.get("acq_window")
    assert breaker.record_failure() == BreakerState.CLOSED
    assert breaker.record_failure() == BreakerState.CLOSED
    clock.advance(61)  # both fell out of the 60 s window
    assert breaker.record_failure() == BreakerState.CLOSED
    assert breaker.snapshot().failures == 1
    assert breaker.record_failure() == BreakerState.CLOSED
    assert breaker.record_failure() == BreakerState.OPEN
    assert breaker.snapshot().failures == 3


def test_open_short_circuits_then_one_half_open_probe_closes_it(breakers, clock, caplog):
    breaker = breakers.get("acq_cycle")
    before = transitions("acq_cycle", "closed", "open")
    with caplog.at_level(logging.WARNING, logger="app.psp.breaker"):
        for _ in range(3):
            breaker.record_failure()
    assert transitions("acq_cycle", "closed", "open") == before + 1
    assert gauge("acq_cycle") == 2
    assert any("acq_cycle: closed -> open" in record.getMessage() for record in caplog.records)

    assert breaker.allow().allowed is False
    clock.advance(29.9)
    assert breaker.allow().allowed is False
    snap = breaker.snapshot()
    assert snap.state == BreakerState.OPEN and snap.retry_at == pytest.approx(clock.now + 0.1)

    clock.advance(0.1)  # the open period is over: exactly one probe goes through
    probe = breaker.allow()
    assert probe.allowed and probe.state == BreakerState.HALF_OPEN and probe.probe_token
    assert gauge("acq_cycle") == 1
    other = breaker.allow()
    assert other.allowed is False and other.state == BreakerState.HALF_OPEN
    assert breaker.record_success(probe) == BreakerState.CLOSED
    assert gauge("acq_cycle") == 0
    assert transitions("acq_cycle", "open", "half_open") >= 1
    assert transitions("acq_cycle", "half_open", "closed") >= 1
    snap = breaker.snapshot()
    assert snap.state == BreakerState.CLOSED and snap.failures == 0
    assert breaker.allow().allowed


def test_a_failed_probe_opens_it_again(breakers, clock):
    breaker = breakers.get("acq_probe_fails")
    for _ in range(3):
        breaker.record_failure()
    clock.advance(30)
    probe = breaker.allow()
    assert probe.probe_token
    assert breaker.record_failure(probe) == BreakerState.OPEN
    assert breaker.allow().allowed is False
    clock.advance(30)
    assert breaker.allow().allowed  # the next open period ends with a new probe


def test_a_lost_probe_frees_its_slot_after_the_probe_timeout(breakers, clock):
    breaker = breakers.get("acq_lost_probe")
    for _ in range(3):
        breaker.record_failure()
    clock.advance(30)
    assert breaker.allow().probe_token  # this probe's process "dies": it never reports
    assert breaker.allow().allowed is False
    clock.advance(30)
    assert breaker.allow().probe_token


def test_success_of_an_ordinary_call_does_not_close_a_half_open_breaker(breakers, clock):
    breaker = breakers.get("acq_stale_success")
    for _ in range(3):
        breaker.record_failure()
    clock.advance(30)
    breaker.allow()  # the probe is under way
    assert breaker.record_success(None) == BreakerState.HALF_OPEN


def test_manual_override_force_open_force_close_reset(breakers, clock):
    breaker = breakers.get("acq_override")
    assert breaker.force_open() == BreakerState.OPEN
    clock.advance(3600)  # a forced-open breaker does not time out into half-open
    assert breaker.allow().allowed is False
    assert breaker.snapshot().forced == "open"

    assert breaker.force_close() == BreakerState.CLOSED
    for _ in range(10):
        breaker.record_failure()
    assert breaker.allow().allowed  # forced closed: failures are counted but never open it
    assert breaker.snapshot().failures == 10 and breaker.snapshot().state == BreakerState.CLOSED

    assert breaker.reset() == BreakerState.CLOSED
    snap = breaker.snapshot()
    assert snap.forced is None and snap.failures == 0
    for _ in range(3):
        breaker.record_failure()
    assert breaker.state() == BreakerState.OPEN  # automatic again
    assert transitions("acq_override", "closed", "open") >= 1


def test_redis_down_lets_calls_through():
    # No client-side retries: the point is what the breaker does once Redis gave up.
    dead = redis_lib.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2,
                           retry=Retry(NoBackoff(), 0))
    breaker = CircuitBreaker(dead, "acq_no_redis", BreakerSettings(), clock=lambda: 0.0)
    assert breaker.allow().allowed
    assert breaker.record_failure() == BreakerState.CLOSED


def test_settings_from_config_then_environment(monkeypatch):
    monkeypatch.setenv("PSP_BREAKER_OPEN_SECONDS", "12")
    settings = BreakerSettings.from_config({"PSP_BREAKER_FAILURES": "7"})
    assert settings.failure_threshold == 7 and settings.open_seconds == 12.0
    assert settings.window_seconds == BreakerSettings().window_seconds


class Worker:
    """A separate Python process using the breaker against the same Redis (as two RQ workers would)."""

    def __init__(self, prefix: str):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.psp.breaker_worker", prefix], cwd=REPO_ROOT, env=dict(os.environ),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.pid = json.loads(self.process.stdout.readline())["ready"]

    def send(self, **command) -> dict:
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        assert line, "the worker process died"
        return json.loads(line)

    def close(self):
        self.process.stdin.close()
        returncode = self.process.wait(timeout=30)
        self.process.stdout.close()
        assert returncode == 0


@pytest.fixture
def workers(redis_conn):
    prefix = f"test:shared:{uuid.uuid4().hex[:10]}"
    started = [Worker(prefix), Worker(prefix)]
    yield started
    for worker in started:
        worker.close()
    for key in redis_conn.scan_iter(f"{prefix}:*"):
        redis_conn.delete(key)


def test_breaker_state_is_shared_between_worker_processes(workers):
    one, two = workers
    assert one.pid != two.pid
    now = 1_000_000.0
    # Failures seen by different processes add up: 3 in one, 2 in the other open it (threshold 5).
    assert one.send(op="failures", count=3, now=now)["states"] == ["closed"] * 3
    assert two.send(op="failures", count=2, now=now + 1)["states"] == ["closed", "open"]
    # The first process now refuses calls too.
    assert one.send(op="allow", now=now + 2) == {"allowed": False, "state": "open", "probe": False, "pid": one.pid}
    # After the open period, one process gets the single half-open probe and the other is refused.
    probe = two.send(op="allow", now=now + 31)
    assert probe["allowed"] and probe["probe"] and probe["state"] == "half_open"
    assert one.send(op="allow", now=now + 31)["allowed"] is False
    # The probe succeeds in its process; the other sees the breaker closed.
    assert two.send(op="success", now=now + 32)["state"] == "closed"
    assert one.send(op="snapshot", now=now + 32) == {"state": "closed", "failures": 0, "forced": None,
                                                     "pid": one.pid}
    assert one.send(op="allow", now=now + 32)["allowed"]
    # An operator override made through one process holds in the other.
    one.send(op="force_open", now=now + 40)
    assert two.send(op="allow", now=now + 1000)["allowed"] is False


def test_concurrent_failures_from_two_processes_are_all_counted_and_open_it_once(workers, redis_conn):
    one, two = workers
    now = 2_000_000.0
    # Both send their batch before reading either answer, so the two processes run concurrently.
    for worker in workers:
        worker.process.stdin.write(json.dumps({"op": "failures", "count": 200, "now": now}) + "\n")
        worker.process.stdin.flush()
    answers = [json.loads(worker.process.stdout.readline()) for worker in workers]
    states = answers[0]["states"] + answers[1]["states"]
    # Exactly one failure, the fifth overall, saw the breaker open (atomic scripts: no lost update,
    # no double transition); every later one found it open already.
    assert states.count("closed") == 4 and states.count("open") == 396
    assert one.send(op="snapshot", now=now)["failures"] == 400
