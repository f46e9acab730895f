"""The circuit breaker: opening by a failure rate over a minimum of calls in a sliding window, transitions
driven by a hand-moved clock, rate-limit backoff, overrides, metrics and logs, shared state between
separate worker processes on one Redis, and failing open when Redis is gone."""
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

from app.psp.breaker import BreakerRegistry, BreakerSettings, BreakerState, CircuitBreaker

REPO_ROOT = Path(__file__).resolve().parents[2]


def transitions(connector: str, from_state: str, to_state: str, credential: str = "platform") -> float:
    value = REGISTRY.get_sample_value("kassa_psp_breaker_transitions_total",
                                      {"connector": connector, "credential": credential,
                                       "from_state": from_state, "to_state": to_state})
    return value or 0.0


def gauge(connector: str) -> float | None:
    return REGISTRY.get_sample_value("kassa_psp_breaker_state", {"connector": connector})


def call(breaker: CircuitBreaker, *, failed: bool) -> BreakerState:
    """One call through the breaker, as the router makes it: a permit, then its outcome once."""
    permit = breaker.allow()
    assert permit.allowed
    return breaker.record_failure(permit) if failed else breaker.record_success(permit)


@pytest.fixture
def default_breakers(redis_conn, clock, breaker_prefix):
    """Breakers with the production defaults (50 % of at least 20 calls within 60 s)."""
    return BreakerRegistry(redis_conn, BreakerSettings(), clock=clock, prefix=breaker_prefix)


def test_defaults_open_at_half_of_twenty_calls_and_never_below_the_minimum(default_breakers):
    settings = default_breakers.settings
    assert (settings.failure_rate_threshold, settings.minimum_calls, settings.window_seconds) == (50, 20, 60)
    breaker = default_breakers.get("acq_rate")
    for _ in range(10):
        call(breaker, failed=False)
    for _ in range(9):
        assert call(breaker, failed=True) == BreakerState.CLOSED  # 9 of 19: below the minimum of 20 calls
    assert call(breaker, failed=True) == BreakerState.OPEN        # 10 of 20: half failed
    snap = breaker.snapshot()
    assert (snap.calls, snap.failures, snap.failure_rate) == (20, 10, 50.0)

    below_rate = default_breakers.get("acq_below_rate")
    for _ in range(11):
        call(below_rate, failed=False)
    for _ in range(9):
        call(below_rate, failed=True)
    assert below_rate.state() == BreakerState.CLOSED  # 9 of 20 is 45 %

    all_failing = default_breakers.get("acq_few_calls")
    for _ in range(19):
        assert call(all_failing, failed=True) == BreakerState.CLOSED  # every call failed, but only 19 of them
    assert all_failing.snapshot().failure_rate == 100.0


def test_the_window_slides_calls_older_than_it_do_not_count(default_breakers, clock):
    breaker = default_breakers.get("acq_window")
    for _ in range(15):
        call(breaker, failed=True)
    clock.advance(30)
    for _ in range(4):
        call(breaker, failed=True)
    assert breaker.snapshot().calls == 19
    clock.advance(31)  # the first fifteen left the 60 s window
    snap = breaker.snapshot()
    assert (snap.calls, snap.failures) == (4, 4)
    for _ in range(15):
        assert call(breaker, failed=True) == BreakerState.CLOSED
    assert call(breaker, failed=True) == BreakerState.OPEN  # 20 calls in the window, all failed


def test_a_rate_limit_backs_the_credential_off_without_opening_or_counting_a_failure(default_breakers, clock):
    breaker = default_breakers.get("acq_limited", "mer_01LIMITED:live")
    for _ in range(20):
        call(breaker, failed=False)
    until = breaker.back_off(5)  # the PSP said Retry-After: 5
    assert until == clock.now + 5
    refused = breaker.allow()
    assert not refused.allowed and refused.backoff_until == until and refused.state == BreakerState.CLOSED
    snap = breaker.snapshot()
    assert snap.state == BreakerState.CLOSED and snap.failures == 0 and snap.calls == 20
    assert snap.backoff_until == until
    clock.advance(5)
    assert breaker.allow().allowed and breaker.snapshot().backoff_until is None

    # Without a Retry-After: the default second; an absurd one is bounded.
    assert breaker.back_off(None) == clock.now + 1
    assert breaker.back_off(3600) == clock.now + 30
    # Other credentials of the same connector are not backing off.
    assert default_breakers.get("acq_limited").allow().allowed
    assert default_breakers.get("acq_limited", "mer_01OTHER:live").allow().allowed
    # An operator forcing it closed lets calls through at once.
    breaker.force_close()
    assert breaker.allow().allowed


def test_open_short_circuits_then_one_half_open_probe_closes_it(breakers, clock, caplog):
    breaker = breakers.get("acq_cycle")
    before = transitions("acq_cycle", "closed", "open")
    with caplog.at_level(logging.WARNING, logger="app.psp.breaker"):
        for _ in range(3):
            breaker.record_failure()
    assert transitions("acq_cycle", "closed", "open") == before + 1
    assert gauge("acq_cycle") == 2
    assert any("acq_cycle:platform: closed -> open" in record.getMessage() for record in caplog.records)

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
    monkeypatch.setenv("PSP_BREAKER_RATE_LIMIT_MAX_BACKOFF_SECONDS", "10")
    settings = BreakerSettings.from_config({"PSP_BREAKER_MINIMUM_CALLS": "7", "PSP_BREAKER_FAILURE_RATE": "80"})
    assert settings.minimum_calls == 7 and settings.failure_rate_threshold == 80.0 and settings.open_seconds == 12.0
    assert settings.rate_limit_max_backoff_seconds == 10.0
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
    # Failures seen by different processes add up: 3 in one, 2 in the other open it (5 calls, all failed).
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
