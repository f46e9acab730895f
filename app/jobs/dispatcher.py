"""The PSP dispatcher: each worker process runs many PSP calls at once, fairly, within bulkheads.

A PSP answers in hundreds of milliseconds, so one call at a time caps a worker at a few payments per
second whatever its CPU could do (Little's law: throughput = calls in flight / latency). The dispatcher
keeps up to ``PSP_CONCURRENCY`` attempts and refunds in flight per process, each on a thread of its pool
(httpx and the stripe library release the GIL while they wait; the database work of a run is a few
milliseconds, in transactions that never span the call).

**The database is the schedule.** An attempt or refund is due when it is new, when its backoff after an
ambiguous answer ended, or when the lease of a run that died ran out (what the janitor did). One dispatcher
thread per process picks due rows fairly across merchants (processing.pick_due: each merchant's oldest
first, round robin), enters the bulkhead of the connector each will call first (app/psp/bulkhead.py; a
row whose bulkhead is full is not claimed and stays due), claims them with the existing conditional UPDATE
(leases: two processes never run one row), and hands each to a pool thread. It claims only as many rows
as it has free threads, so a claimed row starts at once and its lease means what it says.

**Redis only wakes it.** The web process, after committing PSP work, pushes a token to a Redis list
(``wake_after_commit``); each worker's listener thread blocks on that list while its process has free
threads and wakes the dispatcher. Without Redis (stalled, restarting) nothing waits for it: the listener
backs off and retries, and the dispatcher polls the database every ``POLL_WITHOUT_REDIS_SECONDS`` instead
of every ``POLL_SECONDS``. The confirm's wait for the outcome (app/payments/service.py) is separate.
"""
from __future__ import annotations

import logging
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import redis
from flask import Flask
from prometheus_client import Gauge
from sqlalchemy.orm import Session, scoped_session

from app.extensions import db
from app.jobs import call_after_commit
from app.jobs.payments import first_connector, run_claimed_attempt, run_claimed_refund
from app.jobs.transactions import commit_or_rollback
from app.payments import processing
from app.payments.deps import PaymentsDeps, deps_for
from app.payments.gateway import Gateway, gateway_for_app
from app.psp.bulkhead import Bulkheads, Key, concurrency_from_config

log = logging.getLogger(__name__)

WAKE_KEY = "kassa:psp:wake"
# Tokens kept in the wake list at most: a listener empties it on every wake-up, so more would only pile up
# while no worker runs (each token just means "look at the database").
WAKE_TOKENS_KEPT = 64
# The listener's BLPOP blocks this long before it looks again at its process's free threads and at the
# stop flag (well below the blocking client's 5 s read timeout, app/extensions.py).
LISTEN_SECONDS = 1.0
# Without a wake-up the dispatcher looks at the database this often anyway: rows become due by time
# (backoff after an ambiguous answer, 1 s at first; a lease that ran out), and a lost wake-up costs at
# most this much. With Redis away every row is found by polling, so it polls four times as often (an
# indexed query of a few due rows costs well under a millisecond).
POLL_SECONDS = 1.0
POLL_WITHOUT_REDIS_SECONDS = 0.25
# The listener retries an unreachable Redis after 0.25 s, doubling up to 5 s, each wait drawn from
# [half, full] (jitter), so that many workers do not reconnect in lockstep.
RECONNECT_BASE_SECONDS = 0.25
RECONNECT_MAX_SECONDS = 5.0
# A pass that failed (the database away) is retried after this pause rather than in a tight loop.
ERROR_PAUSE_SECONDS = 1.0
# Rows looked at per pass: twice the free threads (more when bulkheads turn rows away), at most this many
# (the fair query ranks every due row anyway; this bounds what a pass reads and sorts through).
MAX_PICK = 1000

WORKER_HEARTBEAT = Gauge(
    "kassa_worker_heartbeat_timestamp_seconds",
    "When each worker process's PSP dispatcher last went round its loop (at least every second).",
    multiprocess_mode="liveall")
PSP_CONCURRENCY = Gauge(
    "kassa_psp_concurrency", "PSP calls the live worker processes may have in flight together.",
    multiprocess_mode="livesum")


def wake_after_commit(session: Session, redis_client: Any) -> None:
    """Wake a PSP dispatcher once this transaction commits (one token per transaction; none on rollback).
    Best effort: without it the row is found by the next poll."""
    if redis_client is None:
        return
    if isinstance(session, scoped_session):
        session = session()  # this thread's own session (app.jobs.call_after_commit)
    if not session.in_transaction():
        session.begin()
    transaction = session.get_transaction()
    if session.info.get("kassa_wake") is transaction:
        return
    session.info["kassa_wake"] = transaction

    def _wake() -> None:
        try:
            pipe = redis_client.pipeline(transaction=False)
            pipe.lpush(WAKE_KEY, "1")
            pipe.ltrim(WAKE_KEY, 0, WAKE_TOKENS_KEPT - 1)
            pipe.execute()
        except redis.RedisError:
            log.debug("could not wake the PSP dispatcher; its poll finds the work", exc_info=True)

    call_after_commit(session, _wake)


class Backoff:
    """Capped exponential backoff with jitter (the listener's reconnects)."""

    def __init__(self, base: float = RECONNECT_BASE_SECONDS, cap: float = RECONNECT_MAX_SECONDS,
                 rng: random.Random | None = None):
        self.base, self.cap, self.rng = base, cap, rng or random.Random()
        self.failures = 0

    def next(self) -> float:
        delay = min(self.cap, self.base * 2 ** self.failures)
        self.failures += 1
        return self.rng.uniform(delay / 2, delay)

    def reset(self) -> None:
        self.failures = 0


class PspDispatcher:
    """Claims due PSP work and runs it on a bounded pool (see the module docstring)."""

    def __init__(self, app: Flask, deps: PaymentsDeps, gateway: Gateway, bulkheads: Bulkheads, *,
                 concurrency: int, redis_client: Any = None, redis_blocking: Any = None,
                 executor: Any = None):
        self.app = app
        self.deps = deps
        self.gateway = gateway
        self.bulkheads = bulkheads
        self.concurrency = concurrency
        self.redis = redis_client
        self.redis_blocking = redis_blocking
        self.executor = executor or ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="psp")
        self.redis_ok = redis_blocking is not None
        self._lock = threading.Lock()
        self._in_flight = 0
        self._idle = threading.Condition(self._lock)
        self._starved = False      # the last pass left due rows unclaimed (no free thread, or bulkheads full)
        self._wake = threading.Event()
        self._slot_freed = threading.Event()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    @classmethod
    def for_app(cls, app: Flask) -> "PspDispatcher":
        """The dispatcher of a worker process: the app's deps, router (and its bulkheads) and Redis."""
        gateway = gateway_for_app(app)
        return cls(app, deps_for(app), gateway, gateway.router.bulkheads,
                   concurrency=concurrency_from_config(app.config), redis_client=app.extensions.get("redis"),
                   redis_blocking=app.extensions.get("redis_blocking"))

    # -- running -----------------------------------------------------------------------------------------

    def start(self) -> "PspDispatcher":
        """Start the dispatcher thread and (with Redis) the wake-up listener."""
        PSP_CONCURRENCY.set(self.concurrency)
        targets: list[tuple[str, Callable[[], None]]] = [("psp-dispatcher", self._dispatch_forever)]
        if self.redis_blocking is not None:
            targets.append(("psp-listener", self._listen_forever))
        for name, target in targets:
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self, timeout: float) -> bool:
        """Stop claiming, and wait up to ``timeout`` for the runs in flight; True when none is left.

        A run still going after that keeps its lease: once it runs out the row is due again (another
        process, or this one after its restart, asks the PSP before it would send anything again)."""
        self._stopping.set()
        self._wake.set()
        self._slot_freed.set()
        for thread in self._threads:
            thread.join(timeout=LISTEN_SECONDS + 1)
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._in_flight and time.monotonic() < deadline:
                self._idle.wait(deadline - time.monotonic())
            left = self._in_flight
        self.executor.shutdown(wait=False)
        if left:
            log.warning("stopping with %d PSP runs in flight; their rows are due again when their leases end",
                        left)
        return left == 0

    @property
    def in_flight(self) -> int:
        with self._lock:
            return self._in_flight

    def _dispatch_forever(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(POLL_SECONDS if self.redis_ok else POLL_WITHOUT_REDIS_SECONDS)
            self._wake.clear()
            if self._stopping.is_set():
                return
            WORKER_HEARTBEAT.set(time.time())
            try:
                self.dispatch_once()
            except Exception:  # noqa: BLE001 - the database away: nothing is lost, the rows stay due
                log.exception("PSP dispatcher pass failed; retrying in %g s", ERROR_PAUSE_SECONDS)
                self._stopping.wait(ERROR_PAUSE_SECONDS)

    def _listen_forever(self) -> None:
        """Block on the wake list while this process has free threads; wake the dispatcher on a token."""
        backoff = Backoff()
        while not self._stopping.is_set():
            if self.in_flight >= self.concurrency:
                # Full: leave the tokens to processes with room; a freed thread triggers a pass anyway.
                self._slot_freed.wait(LISTEN_SECONDS)
                self._slot_freed.clear()
                continue
            try:
                popped = self.redis_blocking.blpop([WAKE_KEY], timeout=LISTEN_SECONDS)
                if popped is not None:
                    # Everything committed before this DEL is visible to the pass it triggers; a commit
                    # after it leaves a token of its own.
                    self.redis.delete(WAKE_KEY)
            except redis.RedisError as error:
                if self.redis_ok:
                    log.warning("PSP dispatcher: Redis unavailable (%s); polling the database every %g s",
                                error, POLL_WITHOUT_REDIS_SECONDS)
                self.redis_ok = False
                self._wake.set()  # poll at the faster pace from now on
                self._stopping.wait(backoff.next())
                continue
            if not self.redis_ok:
                log.warning("PSP dispatcher: Redis is back; woken by it again")
            self.redis_ok = True
            backoff.reset()
            if popped is not None:
                self._wake.set()

    def _nudge_others(self) -> None:
        """Leave a token for another process: this one left due rows it had no room for."""
        if self.redis is None or not self.redis_ok:
            return
        try:
            self.redis.lpush(WAKE_KEY, "1")
        except redis.RedisError:
            pass  # their polls find the rows

    # -- one pass ----------------------------------------------------------------------------------------

    def dispatch_once(self) -> int:
        """Claim what is due (fairly, within free threads and bulkheads) and start running it; returns how
        many runs were started."""
        free = self.concurrency - self.in_flight
        if free <= 0:
            self._starved = True
            return 0
        with self.app.app_context():
            try:
                claimed, left_over = self._claim_due(db.session, free)
            finally:
                db.session.remove()
        for claim, key in claimed:
            with self._lock:
                self._in_flight += 1
            self.executor.submit(self._run, claim, key)
        self._starved = left_over
        if left_over and len(claimed) == free:
            self._nudge_others()
        return len(claimed)

    def _claim_due(self, session: Session, free: int) -> tuple[list[tuple[Any, Key]], bool]:
        """Pick due rows, enter their bulkheads and claim them: (claims with their keys, rows left due)."""
        now = self.deps.now()
        chosen: list[tuple[processing.DueItem, Key]] = []
        full: set[Key] = set()
        credentials: dict[tuple, str] = {}
        limit = min(2 * free + 8, MAX_PICK)
        left_over = False
        try:
            with commit_or_rollback(session):
                while True:
                    due = processing.pick_due(session, now, limit=limit)
                    chosen_ids = {item.id for item, _ in chosen}
                    for item in due:
                        if item.id in chosen_ids:
                            continue
                        if len(chosen) == free:
                            left_over = True
                            break
                        key = self._key(item, credentials)
                        if key in full or not self.bulkheads.try_enter(key):
                            full.add(key)
                            left_over = True
                            continue
                        chosen.append((item, key))
                    if len(chosen) == free or len(due) < limit or limit >= MAX_PICK:
                        left_over = left_over or len(due) == limit
                        break
                    limit = min(limit * 4, MAX_PICK)  # bulkheads turned rows away: look further
                attempts = [(processing.claim_attempt(session, item.id, self.deps), key)
                            for item, key in chosen if item.kind == "attempt"]
        except Exception:
            for _, key in chosen:
                self.bulkheads.leave(key)
            raise
        refunds = [(item, key) for item, key in chosen if item.kind == "refund"]
        claimed = self._keep_claimed(attempts)
        if refunds:
            # Their own transaction: claim_refund relaxes the commit's durability, which an attempt's may not.
            try:
                with commit_or_rollback(session):
                    claims = [(processing.claim_refund(session, item.id, self.deps), key) for item, key in refunds]
            except Exception:
                log.exception("could not claim refunds; they stay due")
                claims = [(None, key) for _, key in refunds]
            claimed += self._keep_claimed(claims)
        return claimed, left_over

    def _keep_claimed(self, claims: list[tuple[Any, Key]]) -> list[tuple[Any, Key]]:
        """The claims won; the slots of rows another process claimed first are left at once."""
        kept = []
        for claim, key in claims:
            if claim is None:
                self.bulkheads.leave(key)
            else:
                kept.append((claim, key))
        return kept

    def _key(self, item: processing.DueItem, credentials: dict[tuple, str]) -> Key:
        connector = first_connector(item, self.gateway)
        if item.credential is not None:
            # A follow-up (or a lookup) of a payment calls with the credential the payment was made with.
            return connector, item.credential
        which = (connector, item.merchant_id, item.livemode)
        if which not in credentials:
            credentials[which] = self.gateway.credential(connector, item.merchant_id, item.livemode)
        return connector, credentials[which]

    def _run(self, claim, key: Key) -> None:
        """One claimed row, on a pool thread, in the bulkhead slot entered for it."""
        try:
            with self.bulkheads.holding(key), self.app.app_context():
                try:
                    if isinstance(claim, processing.RefundClaim):
                        run_claimed_refund(claim, self.deps, self.gateway)
                    else:
                        run_claimed_attempt(claim, self.deps, self.gateway)
                except Exception:  # noqa: BLE001 - logged; the row is due again when its lease ends
                    log.exception("PSP run of %s failed", claim.id)
                finally:
                    db.session.remove()
        finally:
            with self._idle:
                self._in_flight -= 1
                self._idle.notify_all()
            self._slot_freed.set()
            if self._starved:
                self._wake.set()
