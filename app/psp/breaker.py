"""A circuit breaker per connector, its state in Redis so that every web and worker process shares it.

States: **closed** (calls pass; failures are counted in a sliding window), **open** (calls are refused
without touching the PSP until ``open_seconds`` have passed), **half-open** (up to ``half_open_probes``
calls pass as probes; that many successes close the breaker, one failure opens it again). An operator
can force it open or closed from /admin/psp; a forced state holds until reset.

Every read-modify-write is one Lua script, so concurrent processes never lose a failure or open the
breaker twice. Time comes from an injectable clock and is passed into the scripts (not Redis' TIME), so
tests drive it without sleeping. Transitions are logged and exported as Prometheus metrics.

If Redis itself fails, the breaker lets calls through (fails open) and logs it: Redis is never the
only copy of anything that matters, and a broken breaker must not stop all payments.
"""
from __future__ import annotations

import logging
import os
import time
import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Callable, Mapping

import redis as redis_lib
from prometheus_client import Counter, Gauge

log = logging.getLogger(__name__)

KEY_PREFIX = "kassa:breaker"

# Result errors (PspResult.error) that count as a failure of the PSP. Declines, client errors and our own
# credential problems are answers, not outages; they never open a breaker.
FAILURE_ERRORS = frozenset({
    "connect_refused", "connect_timeout", "read_timeout", "dropped", "server_error", "not_processed",
    "rate_limited",
})


class BreakerState(StrEnum):
    CLOSED = "closed"
    HALF_OPEN = "half_open"
    OPEN = "open"


STATE_VALUES = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}

BREAKER_STATE = Gauge(
    "kassa_psp_breaker_state", "Circuit breaker state per connector: 0 closed, 1 half-open, 2 open.",
    ["connector"], multiprocess_mode="mostrecent",
)
BREAKER_TRANSITIONS = Counter(
    "kassa_psp_breaker_transitions_total", "Circuit breaker state changes per connector.",
    ["connector", "from_state", "to_state"],
)


def _setting(config: Mapping[str, Any], name: str, default):
    value = config.get(name)
    if value in (None, ""):
        value = os.environ.get(name)
    return type(default)(value) if value not in (None, "") else default


@dataclass(frozen=True)
class BreakerSettings:
    """Thresholds (config PSP_BREAKER_*)."""

    # Five failures within 30 s: one or two blips (a dropped connection, a single 503) are normal
    # for a busy acquirer and are handled by retries; five in half a minute is an outage pattern.
    failure_threshold: int = 5
    window_seconds: float = 30.0
    # Thirty seconds open: long enough for a restarting acquirer to come back, short enough that
    # payments resume soon after it does. Failover covers the gap where a second acquirer exists.
    open_seconds: float = 30.0
    # One probe at a time in half-open, and one success closes: a recovered PSP is back at once,
    # a still-broken one costs a single call per open period.
    half_open_probes: int = 1
    # A probe that never reported (its process died) is forgotten after this, freeing its slot.
    # Longer than any single call (connect + read timeout) with margin.
    probe_timeout_seconds: float = 30.0

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "BreakerSettings":
        """Read PSP_BREAKER_FAILURES, _WINDOW_SECONDS, _OPEN_SECONDS, _HALF_OPEN_PROBES, _PROBE_TIMEOUT_SECONDS
        from the app config, then the environment."""
        defaults = cls()
        return cls(
            failure_threshold=_setting(config, "PSP_BREAKER_FAILURES", defaults.failure_threshold),
            window_seconds=_setting(config, "PSP_BREAKER_WINDOW_SECONDS", defaults.window_seconds),
            open_seconds=_setting(config, "PSP_BREAKER_OPEN_SECONDS", defaults.open_seconds),
            half_open_probes=_setting(config, "PSP_BREAKER_HALF_OPEN_PROBES", defaults.half_open_probes),
            probe_timeout_seconds=_setting(config, "PSP_BREAKER_PROBE_TIMEOUT_SECONDS",
                                           defaults.probe_timeout_seconds),
        )


@dataclass(frozen=True)
class Permit:
    """The breaker's answer to "may I call?"; hand it back with record_success / record_failure."""

    allowed: bool
    state: BreakerState
    probe_token: str | None = None   # set when this call is a half-open probe


@dataclass(frozen=True)
class BreakerSnapshot:
    """What the admin page shows about one breaker."""

    name: str
    state: BreakerState
    forced: str | None          # "open" | "closed" | None
    failures: int               # failures within the window
    opened_at: float | None
    retry_at: float | None      # when an open breaker lets a probe through


# KEYS[1] state hash, KEYS[2] failures zset, KEYS[3] probes zset. Fields: state, forced, opened_at,
# successes. Every script returns {effective state, previous state if it changed else ""}.
_ALLOW = """
local now = tonumber(ARGV[1])
local open_seconds = tonumber(ARGV[2])
local max_probes = tonumber(ARGV[3])
local probe_timeout = tonumber(ARGV[4])
local token = ARGV[5]
local forced = redis.call('HGET', KEYS[1], 'forced')
if forced == 'open' then return {0, 'open', ''} end
if forced == 'closed' then return {1, 'closed', ''} end
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
local previous = ''
if state == 'open' then
  local opened = tonumber(redis.call('HGET', KEYS[1], 'opened_at') or '0')
  if now < opened + open_seconds then return {0, 'open', ''} end
  state = 'half_open'
  previous = 'open'
  redis.call('HSET', KEYS[1], 'state', 'half_open', 'successes', 0)
  redis.call('DEL', KEYS[3])
end
if state == 'half_open' then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - probe_timeout)
  if redis.call('ZCARD', KEYS[3]) < max_probes then
    redis.call('ZADD', KEYS[3], now, token)
    return {1, 'half_open', previous, 1}
  end
  return {0, 'half_open', previous}
end
return {1, 'closed', ''}
"""

_FAILURE = """
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local threshold = tonumber(ARGV[3])
local token = ARGV[4]
local member = ARGV[5]
redis.call('ZADD', KEYS[2], now, member)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - window)
redis.call('EXPIRE', KEYS[2], math.ceil(window) + 60)
local forced = redis.call('HGET', KEYS[1], 'forced')
if forced then return {forced, ''} end
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
if state == 'half_open' then
  if token ~= '' and redis.call('ZREM', KEYS[3], token) == 1 then
    redis.call('HSET', KEYS[1], 'state', 'open', 'opened_at', now, 'successes', 0)
    redis.call('DEL', KEYS[3])
    return {'open', 'half_open'}
  end
  return {'half_open', ''}
end
if state == 'closed' and redis.call('ZCARD', KEYS[2]) >= threshold then
  redis.call('HSET', KEYS[1], 'state', 'open', 'opened_at', now, 'successes', 0)
  return {'open', 'closed'}
end
return {state, ''}
"""

_SUCCESS = """
local needed = tonumber(ARGV[1])
local token = ARGV[2]
local forced = redis.call('HGET', KEYS[1], 'forced')
if forced then return {forced, ''} end
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
if state == 'half_open' and token ~= '' and redis.call('ZREM', KEYS[3], token) == 1 then
  local successes = redis.call('HINCRBY', KEYS[1], 'successes', 1)
  if successes >= needed then
    redis.call('HSET', KEYS[1], 'state', 'closed', 'successes', 0)
    redis.call('HDEL', KEYS[1], 'opened_at')
    redis.call('DEL', KEYS[2], KEYS[3])
    return {'closed', 'half_open'}
  end
end
return {state, ''}
"""

# ARGV[1] action (force_open | force_close | reset), ARGV[2] now.
_OVERRIDE = """
local action = ARGV[1]
local now = tonumber(ARGV[2])
local forced = redis.call('HGET', KEYS[1], 'forced')
local previous = forced or redis.call('HGET', KEYS[1], 'state') or 'closed'
if action == 'force_open' then
  redis.call('HSET', KEYS[1], 'forced', 'open', 'state', 'open', 'opened_at', now, 'successes', 0)
  redis.call('DEL', KEYS[3])
  return {'open', previous}
end
if action == 'force_close' then
  redis.call('HSET', KEYS[1], 'forced', 'closed', 'state', 'closed', 'successes', 0)
  redis.call('HDEL', KEYS[1], 'opened_at')
  redis.call('DEL', KEYS[2], KEYS[3])
  return {'closed', previous}
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
return {'closed', previous}
"""


class CircuitBreaker:
    """The breaker of one connector; cheap to create (state lives in Redis)."""

    def __init__(self, redis: redis_lib.Redis, name: str, settings: BreakerSettings | None = None, *,
                 clock: Callable[[], float] = time.time, prefix: str = KEY_PREFIX):
        self.redis = redis
        self.name = name
        self.settings = settings or BreakerSettings()
        self.clock = clock
        base = f"{prefix}:{name}"
        self.keys = [base, f"{base}:failures", f"{base}:probes"]
        self._allow = redis.register_script(_ALLOW)
        self._failure = redis.register_script(_FAILURE)
        self._success = redis.register_script(_SUCCESS)
        self._override = redis.register_script(_OVERRIDE)

    # -- calls -----------------------------------------------------------------------------------------

    def allow(self) -> Permit:
        """May a call go to the PSP now? Open: no. Half-open: only as one of the probes."""
        token = uuid.uuid4().hex
        s = self.settings
        try:
            answer = self._allow(keys=self.keys, args=[self.clock(), s.open_seconds, s.half_open_probes,
                                                       s.probe_timeout_seconds, token])
        except redis_lib.RedisError:
            log.warning("breaker %s: Redis unavailable, letting the call through", self.name, exc_info=True)
            return Permit(True, BreakerState.CLOSED)
        allowed, state, previous = int(answer[0]), _decode(answer[1]), _decode(answer[2])
        is_probe = len(answer) > 3 and int(answer[3]) == 1
        self._observe(BreakerState(state), previous)
        return Permit(bool(allowed), BreakerState(state), token if is_probe else None)

    def record_success(self, permit: Permit | None = None) -> BreakerState:
        """The call answered normally; a probe's success may close the breaker."""
        if permit is not None and permit.probe_token is None:
            # Only a half-open probe's success changes anything (the script would just read the state):
            # this saves a Redis round trip per PSP call while the breaker is closed.
            return permit.state
        try:
            answer = self._success(keys=self.keys, args=[self.settings.half_open_probes,
                                                         (permit.probe_token if permit else None) or ""])
        except redis_lib.RedisError:
            log.warning("breaker %s: Redis unavailable, success not recorded", self.name, exc_info=True)
            return BreakerState.CLOSED
        return self._observe(BreakerState(_decode(answer[0])), _decode(answer[1]))

    def record_failure(self, permit: Permit | None = None) -> BreakerState:
        """The PSP failed (connection, timeout, 5xx): counted in the window; may open the breaker."""
        s = self.settings
        now = self.clock()
        try:
            answer = self._failure(keys=self.keys, args=[now, s.window_seconds, s.failure_threshold,
                                                         (permit.probe_token if permit else None) or "",
                                                         f"{now}:{uuid.uuid4().hex}"])
        except redis_lib.RedisError:
            log.warning("breaker %s: Redis unavailable, failure not recorded", self.name, exc_info=True)
            return BreakerState.CLOSED
        return self._observe(BreakerState(_decode(answer[0])), _decode(answer[1]))

    # -- operator overrides ----------------------------------------------------------------------------

    def force_open(self) -> BreakerState:
        """Refuse every call until reset (e.g. the PSP announced maintenance)."""
        return self._apply_override("force_open")

    def force_close(self) -> BreakerState:
        """Let every call through until reset, whatever fails."""
        return self._apply_override("force_close")

    def reset(self) -> BreakerState:
        """Clear any override and all counts: closed, under automatic control again."""
        return self._apply_override("reset")

    def _apply_override(self, action: str) -> BreakerState:
        answer = self._override(keys=self.keys, args=[action, self.clock()])
        state, previous = BreakerState(_decode(answer[0])), _decode(answer[1])
        log.warning("breaker %s: %s by operator (was %s)", self.name, action, previous)
        return self._observe(state, previous if previous != state else "")

    # -- reading ---------------------------------------------------------------------------------------

    def snapshot(self) -> BreakerSnapshot:
        """State, override and recent failures, as the next call would see them (an expired open period
        reads as half-open)."""
        now = self.clock()
        pipe = self.redis.pipeline(transaction=True)
        pipe.hgetall(self.keys[0])
        pipe.zcount(self.keys[1], now - self.settings.window_seconds, "+inf")
        fields, failures = pipe.execute()
        fields = {_decode(k): _decode(v) for k, v in fields.items()}
        forced = fields.get("forced") or None
        state = BreakerState(forced or fields.get("state") or "closed")
        opened_at = float(fields["opened_at"]) if fields.get("opened_at") else None
        retry_at = opened_at + self.settings.open_seconds if state == BreakerState.OPEN and opened_at else None
        if state == BreakerState.OPEN and not forced and retry_at is not None and now >= retry_at:
            state = BreakerState.HALF_OPEN
        BREAKER_STATE.labels(self.name).set(STATE_VALUES[state])
        return BreakerSnapshot(self.name, state, forced, int(failures), opened_at,
                               None if forced else retry_at)

    def state(self) -> BreakerState:
        """The current state (see snapshot)."""
        return self.snapshot().state

    def _observe(self, state: BreakerState, previous: str) -> BreakerState:
        BREAKER_STATE.labels(self.name).set(STATE_VALUES[state])
        if previous and previous != state.value:
            BREAKER_TRANSITIONS.labels(self.name, previous, state.value).inc()
            log.warning("breaker %s: %s -> %s", self.name, previous, state.value,
                        extra={"connector": self.name, "from_state": previous, "to_state": state.value})
        return state


class BreakerRegistry:
    """One breaker per connector name, all on one Redis with the same settings and clock."""

    def __init__(self, redis: redis_lib.Redis, settings: BreakerSettings | None = None, *,
                 clock: Callable[[], float] = time.time, prefix: str = KEY_PREFIX):
        self.redis = redis
        self.settings = settings or BreakerSettings()
        self.clock = clock
        self.prefix = prefix
        self._breakers: dict[str, CircuitBreaker] = {}

    def get(self, name: str) -> CircuitBreaker:
        """The breaker of a connector."""
        breaker = self._breakers.get(name)
        if breaker is None:
            breaker = self._breakers[name] = CircuitBreaker(self.redis, name, self.settings, clock=self.clock,
                                                            prefix=self.prefix)
        return breaker


def _decode(value) -> str:
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else str(value)
