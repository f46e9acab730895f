"""Collaborators of the payments service, built once from the app's config (the glue; no Flask import).

Services take a ``PaymentsDeps`` instead of reading ``current_app``, so that a view, a job, the
completer and a test call them the same way.
"""
import functools
import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Callable, Mapping

if TYPE_CHECKING:
    from app.psp.wire import WireRules

from app.models_base import utcnow

# How long confirm (and capture, refund) waits for the worker's outcome before answering `processing`.
# Two seconds covers a sandbox or acquirer authorization plus an automatic capture at p99 in normal
# operation; a longer wait would only tie up web threads when a PSP is slow.
DEFAULT_CONFIRM_WAIT_SECONDS = 2.0
# Card networks let an authorization lapse after about 7 days; voiding it ourselves first releases
# the shopper's funds and keeps the payment's state honest (ARCHITECTURE.md).
DEFAULT_AUTHORIZATION_EXPIRY = timedelta(days=7)
# How often the router tries one connector, and at most how many connectors share a vault (the
# sandbox runs two acquirers over one vault): with the backoff this bounds one job's PSP call.
DEFAULT_PSP_TRIES = 3
DEFAULT_VAULT_CONNECTORS = 2
DEFAULT_BACKOFF_TOTAL_SECONDS = 2.0
# Margin on top of the worst case: a busy worker's scheduling, a slow commit.
STUCK_MARGIN_SECONDS = 2.0
# Jobs whose rows the PSP dispatcher claims from the database instead of an RQ queue.
DISPATCHED_JOBS = frozenset({"app.jobs.payments.run_attempt", "app.jobs.payments.run_refund"})
# An attempt or refund without a definite answer from the PSP for this long is marked as needing
# attention (PSP_UNKNOWN_ATTENTION_AFTER, seconds). The janitor asks at least every 5 minutes meanwhile,
# so half an hour is several answers that could not tell: past a blip or a restart, short of a shopper
# or merchant noticing first.
DEFAULT_ATTENTION_AFTER = timedelta(minutes=30)


def _token_patterns_from_environment() -> dict[str, re.Pattern[str]]:
    from app.psp.registry import token_patterns

    return token_patterns({})


def worst_case_call_seconds(config: dict) -> float:
    """Longest a job's PSP call may take: timeouts x tries x connectors + backoff (ARCHITECTURE.md)."""
    per_call = float(config.get("PSP_CONNECT_TIMEOUT", 1.0)) + float(config.get("PSP_READ_TIMEOUT", 5.0))
    tries = int(config.get("PSP_MAX_TRIES", DEFAULT_PSP_TRIES))
    return per_call * tries * DEFAULT_VAULT_CONNECTORS + DEFAULT_BACKOFF_TOTAL_SECONDS


def configured_wire_rules(config: Mapping[str, Any]) -> Callable[[str], tuple["WireRules", ...]]:
    """vault -> the currency rules of its configured connectors (PSP_CONNECTORS, SANDBOX_ACQUIRER_URLS, from
    ``config`` or else the environment), for refusing an amount the PSP cannot take before it is staged."""
    from app.psp.registry import connector_specs, wire_rules

    specs = connector_specs(config)
    return functools.cache(lambda vault: wire_rules(specs, vault))


@dataclass
class PaymentsDeps:
    """What the payments service needs from the outside world."""

    ledger_hmac_key: bytes
    # enqueue(session, "app.jobs.payments.run_attempt" | "...run_refund", row_id): that row is due PSP work;
    # run it once the session's transaction commits (the app's: wake the PSP dispatcher).
    enqueue: Callable[..., None] | None = None
    redis: Any = None
    # The client for BLPOP waits (a read timeout past the longest wait); ``redis`` when not given.
    redis_blocking: Any = None
    confirm_wait_seconds: float = DEFAULT_CONFIRM_WAIT_SECONDS
    # An open attempt older than this has outlived any job run: the janitor resolves it.
    attempt_stuck_after: timedelta = timedelta(seconds=40)
    authorization_expiry: timedelta = DEFAULT_AUTHORIZATION_EXPIRY
    # Still no definite answer from the PSP after this long: the row needs attention (app/payments/attention.py).
    attention_after: timedelta = DEFAULT_ATTENTION_AFTER
    test_vault: str = "sandbox"
    live_vault: str = "stripe"
    now: Callable[[], datetime] = field(default=utcnow)
    # vault -> how its PSP writes amounts (app/psp/wire.py); the environment's connectors unless given.
    wire_rules: Callable[[str], tuple["WireRules", ...]] = field(default_factory=lambda: configured_wire_rules({}))
    # Each vault's token format, declared by its connectors (app/psp/registry.py token_patterns).
    token_patterns: dict[str, re.Pattern[str]] = field(default_factory=_token_patterns_from_environment)
    # Risk screening of authorizations (app/payments/risk.py); off only for benchmarks (RISK_SCREENING=false).
    risk_screening: bool = True

    def vault_for(self, livemode: bool) -> str:
        """The PSP vault whose tokens this mode accepts (live mode never routes to the sandbox)."""
        return self.live_vault if livemode else self.test_vault

    def is_token(self, livemode: bool, value: str) -> bool:
        """Whether ``value`` has the format of a token of the vault this mode's payments go to."""
        pattern = self.token_patterns.get(self.vault_for(livemode))
        return pattern is not None and pattern.match(value) is not None


def real_session(session):
    """The thread's own Session behind a scoped_session (Flask-SQLAlchemy's db.session).

    Session events registered on a scoped_session go to its sessionmaker, i.e. to every session of
    every thread: an after-commit hook would fire on another request's commit (enqueueing a job
    before our row is committed) and threads would mutate one listener list concurrently. Hooks
    must be registered on the Session instance itself.
    """
    from sqlalchemy.orm import scoped_session

    return session() if isinstance(session, scoped_session) else session


def deps_from_app(app) -> PaymentsDeps:
    """PaymentsDeps for a Flask app (its config, its Redis, PSP work waking the dispatcher after commit)."""
    from app.jobs import enqueue_after_commit
    from app.jobs.dispatcher import wake_after_commit

    def setting(name: str, default=None):
        # App config first (tests inject it), then the environment (the launcher's processes).
        value = app.config.get(name)
        return value if value not in (None, "") else os.environ.get(name) or default

    config = app.config
    from app.psp.registry import token_patterns

    def enqueue(session, func: str, *args) -> None:
        if func in DISPATCHED_JOBS:
            # Attempts and refunds are due in the database, where the PSP dispatcher of a worker claims
            # them (app/jobs/dispatcher.py): wake one once the transaction commits.
            wake_after_commit(real_session(session), app.extensions.get("redis"))
        else:
            # Other PSP actions (a dispute's evidence or acceptance) are RQ jobs; their rows keep a sweep's
            # backstop should the job be lost.
            enqueue_after_commit(real_session(session), func, *args, queue_name="default")

    stuck = setting("PAYMENTS_ATTEMPT_STUCK_SECONDS")
    stuck_seconds = float(stuck) if stuck else worst_case_call_seconds(config) + STUCK_MARGIN_SECONDS
    expiry = setting("PAYMENTS_AUTHORIZATION_EXPIRY_SECONDS")
    attention = setting("PSP_UNKNOWN_ATTENTION_AFTER")
    hmac_key = config.get("LEDGER_HMAC_KEY") or ""
    return PaymentsDeps(
        ledger_hmac_key=hmac_key.encode() if isinstance(hmac_key, str) else bytes(hmac_key),
        enqueue=enqueue,
        redis=app.extensions.get("redis"),
        redis_blocking=app.extensions.get("redis_blocking"),
        confirm_wait_seconds=float(setting("CONFIRM_WAIT_SECONDS", DEFAULT_CONFIRM_WAIT_SECONDS)),
        attempt_stuck_after=timedelta(seconds=stuck_seconds),
        authorization_expiry=timedelta(seconds=float(expiry)) if expiry else DEFAULT_AUTHORIZATION_EXPIRY,
        attention_after=timedelta(seconds=float(attention)) if attention else DEFAULT_ATTENTION_AFTER,
        test_vault=setting("PAYMENTS_TEST_VAULT", "sandbox"),
        live_vault=setting("PAYMENTS_LIVE_VAULT", "stripe"),
        wire_rules=configured_wire_rules(config),
        token_patterns=token_patterns(config),
        risk_screening=str(setting("RISK_SCREENING", "true")).strip().lower() not in ("false", "0", "off", "no"),
    )


def deps_for(app) -> PaymentsDeps:
    """The app's PaymentsDeps, built once per process and kept in ``app.extensions``."""
    deps = app.extensions.get("payments_deps")
    if deps is None:
        deps = app.extensions["payments_deps"] = deps_from_app(app)
    return deps
