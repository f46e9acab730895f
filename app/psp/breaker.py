"""A circuit breaker per connector and credential, opened by a failure rate, its state in Redis so that
every web and worker process shares it.

**Per credential.** A PSP limits and fails per account: Stripe rate-limits each account on its own, and a
merchant's revoked or throttled key says nothing about the platform's key or another merchant's. So a
breaker is keyed by (connector, credential): ``platform`` for the platform's own account (connectors
without per-merchant credentials, or a merchant who has none), else the id of the merchant's own
credential row (``pcr_...``, see PspCredential): the credential a payment records and all its follow-ups
call with, so a replaced (retired) credential still serving old payments has a breaker of its own. A
credential without a row id (a router over ready-made credentials: tests, scripts) is named
``<merchant_id>:<test|live>``. Never a secret, nor a hash of one: Redis keys are
``kassa:breaker:<connector>:<credential>``.

**Opened by a failure rate.** States: **closed** (calls pass; every call and every failure is counted in
a sliding window of per-second buckets), **open** (calls are refused without touching the PSP until
``open_seconds`` have passed), **half-open** (up to ``half_open_probes`` calls pass as probes; that many
successes close the breaker, one failure opens it again). A closed breaker opens when, within the
window, at least ``minimum_calls`` calls were made and at least ``failure_rate_threshold`` percent of
them failed. The router counts one logical call once, however often it retried it (app/psp/router.py),
and only transport and server errors are failures: a decline, a 3-D Secure request or a card error is
the PSP answering. A rate limit (429) opens nothing: it puts that credential into a short local
**backoff** (the PSP's Retry-After, bounded) during which calls are refused without being sent.

An operator can force a breaker open or closed from /admin/psp; a forced state holds until reset.

Every read-modify-write is one Lua script, so concurrent processes never lose a count or open a breaker
twice. Time comes from an injectable clock and is passed into the scripts (not Redis' TIME), so tests
drive it without sleeping. Transitions are logged and exported as Prometheus metrics.

If Redis itself fails, the breaker lets calls through (fails open) and logs it: Redis is never the
only copy of anything that matters, and a broken breaker must not stop all payments.
"""
from __future__ import annotations

import logging
import math
import os
import time
import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Callable, Mapping

import redis as redis_lib
from prometheus_client import Counter, Gauge

from app.redis_health import log_level_for

log = logging.getLogger(__name__)

KEY_PREFIX = "kassa:breaker"
PLATFORM_CREDENTIAL = "platform"

# Result errors (PspResult.error) that count as a failure of the PSP: it could not be reached, or it broke
# (transport errors, 5xx, the sandbox's 503 "not processed"). Declines, 3-D Secure, client and card
# errors, our own credential problems and rate limits are answers, not outages; they never open a breaker.
FAILURE_ERRORS = frozenset({
    "connect_refused", "connect_timeout", "read_timeout", "dropped", "server_error", "not_processed",
})
# The PSP refused because this credential sent too much: back off, open nothing.
RATE_LIMITED_ERROR = "rate_limited"

# Breakers that were used or overridden within this long are listed on /admin/psp.
INDEX_RETENTION_SECONDS = 24 * 3600


def credential_id(merchant_id: str, livemode: bool) -> str:
    """The breaker's name for a merchant's own credential in one mode when it has no row id (never the secret)."""
    return f"{merchant_id}:{'live' if livemode else 'test'}"


def credential_kind(credential: str) -> str:
    """``platform`` or ``merchant``: the only credential label metrics carry."""
    return PLATFORM_CREDENTIAL if credential == PLATFORM_CREDENTIAL else "merchant"


class BreakerState(StrEnum):
    CLOSED = "closed"
    HALF_OPEN = "half_open"
    OPEN = "open"


STATE_VALUES = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}

# Metrics keep a bounded label set: the connector and the credential's kind ("platform" or "merchant"),
# never one series per merchant (thousands of merchants would mean thousands of series per connector).
# The state gauge is therefore the platform credential's breaker only; merchants' breakers show in the
# transitions counter (e.g. how many merchant breakers of stripe opened in the last 5 minutes) and, one
# by one, on /admin/psp.
BREAKER_STATE = Gauge(
    "kassa_psp_breaker_state",
    "State of the platform credential's circuit breaker per connector: 0 closed, 1 half-open, 2 open.",
    ["connector"], multiprocess_mode="mostrecent",
)
BREAKER_TRANSITIONS = Counter(
    "kassa_psp_breaker_transitions_total", "Circuit breaker state changes per connector and credential kind.",
    ["connector", "credential", "from_state", "to_state"],
)
BREAKER_BACKOFFS = Counter(
    "kassa_psp_rate_limit_backoffs_total", "Rate limits (429) that put a credential into backoff.",
    ["connector", "credential"],
)


def _setting(config: Mapping[str, Any], name: str, default):
    value = config.get(name)
    if value in (None, ""):
        value = os.environ.get(name)
    return type(default)(value) if value not in (None, "") else default


@dataclass(frozen=True)
class BreakerSettings:
    """Thresholds (config PSP_BREAKER_*).

    The opening rule follows resilience4j's failure-rate breaker (failureRateThreshold 50 %,
    minimumNumberOfCalls 100 over a slidingWindowSize of 100 calls, waitDurationInOpenState 60 s) and
    Semian's error-rate breaker (error_percent_threshold over a time_window once request_volume_threshold
    calls were seen; Semian ships no defaults, its examples open after 3-4 errors per worker for 10-20 s).
    Ours differ where a payment platform differs from a busy microservice, see each field.
    """

    # Half of the calls failing: resilience4j's default. Ordinary trouble stays far below it (declines
    # do not count; the sandbox's timeout card or a flaky issuer is a few percent of traffic), while an
    # acquirer that is down fails nearly everything. With 5 % of calls timing out, 10 or more failures
    # among 20 calls has a probability of about 1e-8 per window.
    failure_rate_threshold: float = 50.0
    # At least 20 calls in the window before the rate means anything: six unlucky calls (the issue-14
    # outage: six timeout-card payments) can never open a breaker alone. Lower than resilience4j's 100
    # because a breaker here is one merchant's credential, which may see only a few calls a minute: 100
    # would leave a small merchant's dead account never detected.
    minimum_calls: int = 20
    # A time-based window of 60 s (resilience4j's TIME_BASED kind, Semian's time_window) rather than the
    # last N calls: a quiet credential must not remember this morning's failures. One minute holds enough
    # calls of a busy credential and forgets an incident a minute after it ends.
    window_seconds: int = 60
    # Thirty seconds open: long enough for a restarting acquirer to come back, short enough that
    # payments resume soon after it does. Failover covers the gap where a second acquirer exists.
    open_seconds: float = 30.0
    # One probe at a time in half-open, and one success closes: a recovered PSP is back at once,
    # a still-broken one costs a single call per open period.
    half_open_probes: int = 1
    # A probe that never reported (its process died) is forgotten after this, freeing its slot.
    # Longer than any single call (connect + read timeout) with margin.
    probe_timeout_seconds: float = 30.0
    # A 429 without Retry-After backs the credential off for 1 s: Stripe's limits are per second.
    rate_limit_backoff_seconds: float = 1.0
    # A Retry-After is honoured up to 30 s (as long as an open breaker): a PSP's (or a proxy's) "come back
    # in an hour" must not stop a merchant's payments for an hour without an operator seeing it.
    rate_limit_max_backoff_seconds: float = 30.0

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "BreakerSettings":
        """Read PSP_BREAKER_FAILURE_RATE, _MINIMUM_CALLS, _WINDOW_SECONDS, _OPEN_SECONDS, _HALF_OPEN_PROBES,
        _PROBE_TIMEOUT_SECONDS, _RATE_LIMIT_BACKOFF_SECONDS, _RATE_LIMIT_MAX_BACKOFF_SECONDS from the app
        config, then the environment."""
        d = cls()
        return cls(
            failure_rate_threshold=_setting(config, "PSP_BREAKER_FAILURE_RATE", d.failure_rate_threshold),
            minimum_calls=_setting(config, "PSP_BREAKER_MINIMUM_CALLS", d.minimum_calls),
            window_seconds=_setting(config, "PSP_BREAKER_WINDOW_SECONDS", d.window_seconds),
            open_seconds=_setting(config, "PSP_BREAKER_OPEN_SECONDS", d.open_seconds),
            half_open_probes=_setting(config, "PSP_BREAKER_HALF_OPEN_PROBES", d.half_open_probes),
            probe_timeout_seconds=_setting(config, "PSP_BREAKER_PROBE_TIMEOUT_SECONDS", d.probe_timeout_seconds),
            rate_limit_backoff_seconds=_setting(config, "PSP_BREAKER_RATE_LIMIT_BACKOFF_SECONDS",
                                                d.rate_limit_backoff_seconds),
            rate_limit_max_backoff_seconds=_setting(config, "PSP_BREAKER_RATE_LIMIT_MAX_BACKOFF_SECONDS",
                                                    d.rate_limit_max_backoff_seconds),
        )


@dataclass(frozen=True)
class Permit:
    """The breaker's answer to "may I call?"; hand it back with record_success / record_failure."""

    allowed: bool
    state: BreakerState
    probe_token: str | None = None   # set when this call is a half-open probe
    counted_at: float | None = None  # when the call was counted: its failure goes into the same bucket
    backoff_until: float | None = None  # refused because the credential is backing off from a rate limit


@dataclass(frozen=True)
class BreakerSnapshot:
    """What the admin page shows about one breaker."""

    connector: str
    credential: str
    state: BreakerState
    forced: str | None          # "open" | "closed" | None
    calls: int                  # calls counted within the window
    failures: int               # failures within the window
    opened_at: float | None
    retry_at: float | None      # when an open breaker lets a probe through
    backoff_until: float | None  # when a rate-limited credential may call again

    @property
    def failure_rate(self) -> float:
        """Failures as a percentage of the window's calls (0 without calls)."""
        return 100.0 * self.failures / self.calls if self.calls else 0.0


# KEYS[1] state hash (state, forced, opened_at, successes), KEYS[2] window hash ("c:<second>" calls and
# "f:<second>" failures per second), KEYS[3] probes zset, KEYS[4] backoff (the time it ends), KEYS[5] the
# index of breakers (zset: "<connector>:<credential>" -> last use).
_WINDOW = """
local function tally(key, now, window)
  -- Sums the calls and failures of the buckets inside the window and deletes the older buckets.
  local oldest = math.floor(now) - window
  local fields = redis.call('HGETALL', key)
  local calls, failures, stale = 0, 0, {}
  for i = 1, #fields, 2 do
    local kind, second = string.match(fields[i], '^(%a):(%-?%d+)$')
    if tonumber(second) <= oldest then
      stale[#stale + 1] = fields[i]
    elseif kind == 'c' then
      calls = calls + tonumber(fields[i + 1])
    else
      failures = failures + tonumber(fields[i + 1])
    end
  end
  if #stale > 0 then redis.call('HDEL', key, unpack(stale)) end
  return calls, failures
end

local function count(key, kind, at, now, window)
  -- One more call or failure in the bucket of second ``at``. The first count of a bucket also drops the
  -- buckets that left the window, so the hash holds at most two fields per second of the window.
  if redis.call('HINCRBY', key, kind .. ':' .. math.floor(at), 1) == 1 then tally(key, now, window) end
  -- Real seconds, only to collect the hash of a breaker nobody calls any more.
  redis.call('EXPIRE', key, window + 60)
end
"""

_ALLOW = _WINDOW + """
local now = tonumber(ARGV[1])
local open_seconds = tonumber(ARGV[2])
local max_probes = tonumber(ARGV[3])
local probe_timeout = tonumber(ARGV[4])
local token = ARGV[5]
local window = tonumber(ARGV[6])
redis.call('ZADD', KEYS[5], now, ARGV[7])
local forced = redis.call('HGET', KEYS[1], 'forced')
if forced == 'open' then return {0, 'open', '', 0, ''} end
if forced == 'closed' then
  count(KEYS[2], 'c', now, now, window)
  return {1, 'closed', '', 0, ''}
end
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
local previous = ''
if state == 'open' then
  local opened = tonumber(redis.call('HGET', KEYS[1], 'opened_at') or '0')
  if now < opened + open_seconds then return {0, 'open', '', 0, ''} end
end
local backoff = redis.call('GET', KEYS[4])
if backoff and now < tonumber(backoff) then return {0, state, '', 0, backoff} end
if state == 'open' then
  state = 'half_open'
  previous = 'open'
  redis.call('HSET', KEYS[1], 'state', 'half_open', 'successes', 0)
  redis.call('DEL', KEYS[3])
end
if state == 'half_open' then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - probe_timeout)
  if redis.call('ZCARD', KEYS[3]) < max_probes then
    redis.call('ZADD', KEYS[3], now, token)
    count(KEYS[2], 'c', now, now, window)
    return {1, 'half_open', previous, 1, ''}
  end
  return {0, 'half_open', previous, 0, ''}
end
count(KEYS[2], 'c', now, now, window)
return {1, 'closed', '', 0, ''}
"""

# ARGV: now, window, failure rate threshold (percent), minimum calls, probe token, the second the call was
# counted in ('' when it was not: then it is counted here).
_FAILURE = _WINDOW + """
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local threshold = tonumber(ARGV[3])
local minimum = tonumber(ARGV[4])
local token = ARGV[5]
local at = tonumber(ARGV[6])
if not at then
  at = now
  count(KEYS[2], 'c', at, now, window)
end
count(KEYS[2], 'f', at, now, window)
local calls, failures = tally(KEYS[2], now, window)
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
if state == 'closed' and calls >= minimum and failures * 100 >= threshold * calls then
  redis.call('HSET', KEYS[1], 'state', 'open', 'opened_at', now, 'successes', 0)
  return {'open', 'closed'}
end
return {state, ''}
"""

# ARGV: probes needed, probe token, now, window, count ('1' when the call was not counted by allow).
_SUCCESS = _WINDOW + """
local needed = tonumber(ARGV[1])
local token = ARGV[2]
local now = tonumber(ARGV[3])
if ARGV[5] == '1' then count(KEYS[2], 'c', now, now, tonumber(ARGV[4])) end
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

# ARGV[1] action (force_open | force_close | reset), ARGV[2] now, ARGV[3] the index member.
_OVERRIDE = """
local action = ARGV[1]
local now = tonumber(ARGV[2])
redis.call('ZADD', KEYS[5], now, ARGV[3])
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
  redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
  return {'closed', previous}
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
return {'closed', previous}
"""


class CircuitBreaker:
    """The breaker of one connector and credential; cheap to create (state lives in Redis)."""

    def __init__(self, redis: redis_lib.Redis, connector: str, settings: BreakerSettings | None = None, *,
                 credential: str = PLATFORM_CREDENTIAL, clock: Callable[[], float] = time.time,
                 prefix: str = KEY_PREFIX):
        self.redis = redis
        self.connector = connector
        self.credential = credential
        self.kind = credential_kind(credential)
        self.name = f"{connector}:{credential}"
        self.settings = settings or BreakerSettings()
        self.clock = clock
        base = f"{prefix}:{self.name}"
        self.keys = [base, f"{base}:window", f"{base}:probes", f"{base}:backoff", f"{prefix}:index"]
        self._allow = redis.register_script(_ALLOW)
        self._failure = redis.register_script(_FAILURE)
        self._success = redis.register_script(_SUCCESS)
        self._override = redis.register_script(_OVERRIDE)

    # -- calls -----------------------------------------------------------------------------------------

    def allow(self) -> Permit:
        """May a call go to the PSP now? Open or backing off: no. Half-open: only as one of the probes.
        An allowed call is counted in the window here, so that a success costs no second round trip."""
        token = uuid.uuid4().hex
        s = self.settings
        now = self.clock()
        try:
            answer = self._allow(keys=self.keys, args=[now, s.open_seconds, s.half_open_probes,
                                                       s.probe_timeout_seconds, token, s.window_seconds,
                                                       self.name])
        except redis_lib.RedisError as error:
            log.log(log_level_for(error), "breaker %s: Redis unavailable, letting the call through", self.name, exc_info=True)
            return Permit(True, BreakerState.CLOSED)
        allowed, state, previous = int(answer[0]), BreakerState(_decode(answer[1])), _decode(answer[2])
        is_probe, backoff = int(answer[3]) == 1, _decode(answer[4])
        self._observe(state, previous)
        return Permit(bool(allowed), state, token if is_probe else None, now if allowed else None,
                      float(backoff) if backoff else None)

    def record_success(self, permit: Permit | None = None) -> BreakerState:
        """The call was answered (a decline is an answer too); a probe's success may close the breaker."""
        if permit is not None and permit.probe_token is None:
            # allow() counted the call already; only a half-open probe's success changes anything else.
            # This keeps a PSP call at one Redis round trip while the breaker is closed.
            return permit.state
        try:
            answer = self._success(keys=self.keys, args=[self.settings.half_open_probes,
                                                         (permit.probe_token if permit else None) or "",
                                                         self.clock(), self.settings.window_seconds,
                                                         "0" if permit else "1"])
        except redis_lib.RedisError as error:
            log.log(log_level_for(error), "breaker %s: Redis unavailable, success not recorded", self.name, exc_info=True)
            return BreakerState.CLOSED
        return self._observe(BreakerState(_decode(answer[0])), _decode(answer[1]))

    def record_failure(self, permit: Permit | None = None) -> BreakerState:
        """The PSP failed (connection, timeout, 5xx): counted in the window; may open the breaker.
        Without a permit the call is counted here as well."""
        s = self.settings
        counted_at = permit.counted_at if permit is not None else None
        try:
            answer = self._failure(keys=self.keys, args=[self.clock(), s.window_seconds, s.failure_rate_threshold,
                                                         s.minimum_calls,
                                                         (permit.probe_token if permit else None) or "",
                                                         "" if counted_at is None else counted_at])
        except redis_lib.RedisError as error:
            log.log(log_level_for(error), "breaker %s: Redis unavailable, failure not recorded", self.name, exc_info=True)
            return BreakerState.CLOSED
        return self._observe(BreakerState(_decode(answer[0])), _decode(answer[1]))

    def back_off(self, retry_after: float | None = None) -> float:
        """The PSP rate-limited this credential: refuse its calls locally for ``retry_after`` seconds (the
        default without one; bounded). Opens nothing and counts no failure. Returns when it ends."""
        s = self.settings
        seconds = s.rate_limit_backoff_seconds if retry_after is None else retry_after
        seconds = min(max(seconds, 0.0), s.rate_limit_max_backoff_seconds)
        until = self.clock() + seconds
        BREAKER_BACKOFFS.labels(self.connector, self.kind).inc()
        log.warning("breaker %s: rate limited, backing off for %.1f s", self.name, seconds,
                    extra={"connector": self.connector, "credential": self.credential})
        try:
            # The key's real-time expiry only collects it; the backoff's end is compared on our clock.
            self.redis.set(self.keys[3], repr(until), px=math.ceil((seconds + 60) * 1000))
        except redis_lib.RedisError as error:
            log.log(log_level_for(error), "breaker %s: Redis unavailable, backoff not recorded", self.name, exc_info=True)
        return until

    # -- operator overrides ----------------------------------------------------------------------------

    def force_open(self) -> BreakerState:
        """Refuse every call until reset (e.g. the PSP announced maintenance)."""
        return self._apply_override("force_open")

    def force_close(self) -> BreakerState:
        """Let every call through until reset, whatever fails (a rate limit's backoff is lifted too)."""
        return self._apply_override("force_close")

    def reset(self) -> BreakerState:
        """Clear any override, backoff and all counts: closed, under automatic control again."""
        return self._apply_override("reset")

    def _apply_override(self, action: str) -> BreakerState:
        answer = self._override(keys=self.keys, args=[action, self.clock(), self.name])
        state, previous = BreakerState(_decode(answer[0])), _decode(answer[1])
        log.warning("breaker %s: %s by operator (was %s)", self.name, action, previous)
        return self._observe(state, previous if previous != state else "")

    # -- reading ---------------------------------------------------------------------------------------

    def snapshot(self) -> BreakerSnapshot:
        """State, override, the window's figures and any backoff, as the next call would see them (an
        expired open period reads as half-open)."""
        now = self.clock()
        pipe = self.redis.pipeline(transaction=True)
        pipe.hgetall(self.keys[0])
        pipe.hgetall(self.keys[1])
        pipe.get(self.keys[3])
        fields, window, backoff = pipe.execute()
        fields = {_decode(k): _decode(v) for k, v in fields.items()}
        calls, failures = _tally(window, now, self.settings.window_seconds)
        forced = fields.get("forced") or None
        state = BreakerState(forced or fields.get("state") or "closed")
        opened_at = float(fields["opened_at"]) if fields.get("opened_at") else None
        retry_at = opened_at + self.settings.open_seconds if state == BreakerState.OPEN and opened_at else None
        if state == BreakerState.OPEN and not forced and retry_at is not None and now >= retry_at:
            state = BreakerState.HALF_OPEN
        backoff_until = float(_decode(backoff)) if backoff else None
        if backoff_until is not None and (now >= backoff_until or forced):
            backoff_until = None
        self._set_gauge(state)
        return BreakerSnapshot(self.connector, self.credential, state, forced, calls, failures, opened_at,
                               None if forced else retry_at, backoff_until)

    def state(self) -> BreakerState:
        """The current state (see snapshot)."""
        return self.snapshot().state

    def _set_gauge(self, state: BreakerState) -> None:
        if self.kind == PLATFORM_CREDENTIAL:
            BREAKER_STATE.labels(self.connector).set(STATE_VALUES[state])

    def _observe(self, state: BreakerState, previous: str) -> BreakerState:
        self._set_gauge(state)
        if previous and previous != state.value:
            BREAKER_TRANSITIONS.labels(self.connector, self.kind, previous, state.value).inc()
            log.warning("breaker %s: %s -> %s", self.name, previous, state.value,
                        extra={"connector": self.connector, "credential": self.credential,
                               "from_state": previous, "to_state": state.value})
        return state


class BreakerRegistry:
    """One breaker per connector and credential, all on one Redis with the same settings and clock."""

    def __init__(self, redis: redis_lib.Redis, settings: BreakerSettings | None = None, *,
                 clock: Callable[[], float] = time.time, prefix: str = KEY_PREFIX):
        self.redis = redis
        self.settings = settings or BreakerSettings()
        self.clock = clock
        self.prefix = prefix
        self._breakers: dict[tuple[str, str], CircuitBreaker] = {}

    def get(self, connector: str, credential: str = PLATFORM_CREDENTIAL) -> CircuitBreaker:
        """The breaker of a connector with one credential (the platform's unless told)."""
        key = (connector, credential)
        breaker = self._breakers.get(key)
        if breaker is None:
            # A dict assignment is atomic under the GIL; two threads building the same breaker is harmless.
            breaker = self._breakers[key] = CircuitBreaker(self.redis, connector, self.settings,
                                                           credential=credential, clock=self.clock,
                                                           prefix=self.prefix)
        return breaker

    def known(self) -> list[tuple[str, str]]:
        """(connector, credential) of every breaker used or overridden lately, most recent first."""
        index = f"{self.prefix}:index"
        now = self.clock()
        pipe = self.redis.pipeline(transaction=True)
        pipe.zremrangebyscore(index, "-inf", now - INDEX_RETENTION_SECONDS)
        pipe.zrevrange(index, 0, -1)
        _, members = pipe.execute()
        # Connector names never contain ":" (they are configuration identifiers); credentials may.
        return [tuple(_decode(member).split(":", 1)) for member in members]


def _tally(window: Mapping, now: float, window_seconds: int) -> tuple[int, int]:
    """Calls and failures of a window hash's buckets that are still inside the window (as the scripts)."""
    oldest = math.floor(now) - window_seconds
    calls = failures = 0
    for field, value in window.items():
        kind, _, second = _decode(field).partition(":")
        if int(second) <= oldest:
            continue
        if kind == "c":
            calls += int(value)
        else:
            failures += int(value)
    return calls, failures


def _decode(value) -> str:
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else str(value)
