"""The collaborators and tunables of webhook delivery, built once per app (the glue; no Flask import).

Services and jobs take a ``WebhookSettings`` instead of reading ``current_app``; tests replace the clock,
the jitter's random source, the resolver or the TLS trust store by storing their own copy with
``install(app, settings)``.
"""
import random
import socket
import ssl
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Callable

from app.crypto import SecretBox
from app.models_base import utcnow
from app.webhooks.ssrf import Resolver

# After a failed attempt, the wait before the next one (Standard Webhooks / Svix's schedule, stretched to
# about three days): quick retries catch a deploy or a blip, hour-long ones ride out an outage over a
# weekend. 13 attempts in all, the last about 77.6 hours (3.2 days) after the first, so that an endpoint
# failing since the first one has been failing for more than DISABLE_AFTER when its last attempt fails.
RETRY_DELAYS: tuple[timedelta, ...] = (
    timedelta(seconds=5), timedelta(minutes=5), timedelta(minutes=30), timedelta(hours=2), timedelta(hours=5),
    *(timedelta(hours=10),) * 7,
)
# Each wait is stretched or shrunk by up to 10 % at random, so that the deliveries of a burst that failed
# together (an endpoint that was down) do not all come back in the same second.
JITTER = 0.10
# An endpoint whose every attempt failed for this long is disabled and its merchant told (the issue's
# "three days"); one success resets the count.
DISABLE_AFTER = timedelta(days=3)
# A claimed delivery belongs to its worker this long. It must outlast one attempt (DNS plus the 10 s
# total timeout) with a wide margin, and is short enough that a killed worker's deliveries are retried
# within a minute. A batch renews the lease of each row when it starts on it.
LEASE = timedelta(seconds=60)
# Connect 3 s: a healthy receiver accepts a TCP (and TLS) connection in well under a second even across
# an ocean; three seconds of silence means it is down or filtered, and the retry schedule handles that.
CONNECT_TIMEOUT = 3.0
# Total 10 s per attempt (DNS, connect, send, response headers and the 1 KiB excerpt): receivers are told
# to answer 2xx at once and queue their work; a slow receiver must not hold a worker, and a hostile one
# trickling bytes must not hold it forever (httpx's own timeouts are per read, hence the overall cap).
TOTAL_TIMEOUT = 10.0
# Parallel requests per batch job: a worker waits on the network, not the CPU, so it keeps this many in
# flight; small enough not to flood one merchant's server with a burst.
MAX_CONCURRENCY = 16
# The default grace period of a rotated secret: a day to deploy the new one while both sign.
ROTATION_GRACE = timedelta(hours=24)
ROTATION_GRACE_MAX = timedelta(days=7)


@dataclass
class WebhookSettings:
    """What the webhooks service and jobs need from the outside world."""

    secret_box: SecretBox
    allow_private: bool = False
    # The schedule's clock (next_attempt_at, leases, rotation grace). Signatures use the wall clock
    # (wall_clock) whatever this says: receivers check the timestamp against theirs.
    clock: Callable[[], datetime] = utcnow
    wall_clock: Callable[[], datetime] = utcnow
    rng: random.Random = field(default_factory=random.SystemRandom)
    retry_delays: tuple[timedelta, ...] = RETRY_DELAYS
    jitter: float = JITTER
    disable_after: timedelta = DISABLE_AFTER
    lease: timedelta = LEASE
    connect_timeout: float = CONNECT_TIMEOUT
    total_timeout: float = TOTAL_TIMEOUT
    max_concurrency: int = MAX_CONCURRENCY
    resolver: Resolver = socket.getaddrinfo
    # TLS verification for httpx: True (the system's CAs) or an ssl.SSLContext (tests trust their own CA).
    verify: Any = True
    public_base_url: str = ""

    def next_delay(self, failed_attempts: int) -> timedelta | None:
        """The wait after the n-th failed attempt (1-based), jittered; None when the schedule is over."""
        if failed_attempts < 1 or failed_attempts > len(self.retry_delays):
            return None
        base = self.retry_delays[failed_attempts - 1]
        factor = 1.0 + self.jitter * (2.0 * self.rng.random() - 1.0)
        return base * factor


def _flag(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def settings_from_config(config: dict) -> WebhookSettings:
    """WebhookSettings for a config mapping (KASSA_ENCRYPTION_KEYS, WEBHOOKS_ALLOW_PRIVATE, ...)."""
    verify: Any = True
    ca_file = config.get("WEBHOOKS_CA_FILE")
    if ca_file:
        verify = ssl.create_default_context(cafile=ca_file)
    return WebhookSettings(
        secret_box=SecretBox(config.get("KASSA_ENCRYPTION_KEYS", "")),
        allow_private=_flag(config.get("WEBHOOKS_ALLOW_PRIVATE", False)),
        verify=verify,
        public_base_url=config.get("PUBLIC_BASE_URL", ""),
    )


def settings_for(app) -> WebhookSettings:
    """The app's WebhookSettings, built on first use (tests may install their own)."""
    settings = app.extensions.get("webhooks")
    if settings is None:
        settings = app.extensions["webhooks"] = settings_from_config(app.config)
    return settings


def install(app, settings: WebhookSettings) -> WebhookSettings:
    """Replace the app's WebhookSettings (tests: a driven clock, a resolver, a CA)."""
    app.extensions["webhooks"] = settings
    return settings
