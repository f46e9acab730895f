"""Redis clients that give up quickly and skip Redis for a moment once it failed (no Flask here).

Redis carries wake-ups, rate limits, breaker state and RQ's queues, never the only copy of anything that
matters, so a Redis that stalls or restarts must cost a request milliseconds, not seconds. Two things
make that so:

* **Short timeouts, one quick retry.** Request-path clients connect and read with REDIS_TIMEOUT_SECONDS
  (0.5 s: Redis answers in well under a millisecond on its own network, so half a second means it is
  stalled or gone) and retry once at once on a broken connection (a pooled connection that Redis' restart
  closed), never on a timeout. redis-py's own default would retry three times with backoff of up to
  seconds: 27 s per call with the old 5 s timeout, the hang of issue 16.
* **A per-process latch** (``RedisHealth``): once a call failed, every client built on it refuses at once
  (``redis.ConnectionError``, which callers already handle) for RETRY_SECONDS; then one caller probes
  again. So a stalled Redis costs one timeout per second per process, not one per call. Callers log
  these refusals quietly (``log_level_for``): the latch logs the outage once, and its end.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

log = logging.getLogger(__name__)

# Half a second: Redis answers in well under a millisecond on its own network (a slow AOF fsync may take a
# few tens of milliseconds); anything near this means it is stalled or gone.
REDIS_TIMEOUT_SECONDS = 0.5
# While Redis is away, one call per process probes it this often; every other call is refused at once.
RETRY_SECONDS = 1.0


class RedisHealth:
    """Whether Redis answered this process's last call; thread-safe; ``clock`` is injectable for tests."""

    def __init__(self, retry_seconds: float = RETRY_SECONDS, clock: Callable[[], float] = time.monotonic):
        self.retry_seconds = retry_seconds
        self.clock = clock
        self._lock = threading.Lock()
        self._away_since: float | None = None
        self._next_probe = 0.0

    @property
    def away(self) -> bool:
        """Redis failed and has not answered since."""
        return self._away_since is not None

    def may_call(self) -> bool:
        """True when Redis is up, or when this caller is the one probe allowed per RETRY_SECONDS while away."""
        with self._lock:
            if self._away_since is None:
                return True
            now = self.clock()
            if now < self._next_probe:
                return False
            self._next_probe = now + self.retry_seconds  # others keep skipping while this probe runs
            return True

    def failed(self, error: BaseException) -> None:
        """A call could not reach Redis (refused, reset, timed out)."""
        with self._lock:
            now = self.clock()
            self._next_probe = now + self.retry_seconds
            if self._away_since is not None:
                return
            self._away_since = now
        log.warning("Redis unavailable (%s): calls skip it, probing every %g s", error, self.retry_seconds)

    def answered(self) -> None:
        """Redis answered a call."""
        if self._away_since is None:
            return
        with self._lock:
            if self._away_since is None:
                return
            away_for, self._away_since = self.clock() - self._away_since, None
        log.warning("Redis is back after %.1f s", away_for)


class RedisUnavailable(redis.ConnectionError):
    """Refused without trying: Redis failed moments ago (a RedisHealth latch; it logged the outage once)."""


def log_level_for(error: BaseException) -> int:
    """How loudly to log a failed Redis call: DEBUG when the latch refused it (the outage is logged once,
    by RedisHealth), WARNING for a real failure."""
    return logging.DEBUG if isinstance(error, RedisUnavailable) else logging.WARNING


class _GuardedConnection(redis.Connection):
    """A connection that tells its RedisHealth whether Redis answered (subclassed per health object)."""

    health: RedisHealth

    def connect(self, *args, **kwargs):
        try:
            return super().connect(*args, **kwargs)
        except (redis.ConnectionError, redis.TimeoutError) as error:
            self.health.failed(error)
            raise

    def read_response(self, *args, **kwargs):
        try:
            response = super().read_response(*args, **kwargs)
        except (redis.ConnectionError, redis.TimeoutError) as error:
            self.health.failed(error)
            raise
        self.health.answered()
        return response


class _GuardedPool(redis.ConnectionPool):
    """Refuses at once while its health says Redis is away (between probes)."""

    def get_connection(self, *args, **kwargs):
        if not self.connection_class.health.may_call():
            raise RedisUnavailable("Redis is unavailable (it failed moments ago); not waiting for it")
        return super().get_connection(*args, **kwargs)


def guarded_client(url: str, health: RedisHealth, *, timeout: float = REDIS_TIMEOUT_SECONDS,
                   read_timeout: float | None = None) -> redis.Redis:
    """A Redis client on its own pool: ``timeout`` to connect and (unless ``read_timeout``) to read, one
    immediate retry on a broken connection, none on a timeout, and ``health``'s latch."""
    connection_class = type("GuardedConnection", (_GuardedConnection,), {"health": health})
    pool = _GuardedPool.from_url(
        url, connection_class=connection_class, socket_connect_timeout=timeout,
        socket_timeout=read_timeout if read_timeout is not None else timeout,
        retry=Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)))
    return redis.Redis(connection_pool=pool)
