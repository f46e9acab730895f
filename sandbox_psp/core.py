"""The sandbox's shared state: configuration, storage, clock, faults, callback sender.

One ``Sandbox`` object is shared by the public app and every acquirer app of the
process. Fault settings and call counters live in memory (a restart clears them);
payment data, the clock offset and the vault key live in SQLite.
"""
import contextlib
import dataclasses
import fractions
import logging
import os
import secrets
import threading
import time
from collections import Counter

from . import callbacks as callbacks_mod
from . import disputes, operations, transfers
from . import store as store_mod
from .callbacks import CallbackSender
from .clock import Clock

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Config:
    """Command-line settings (see ``python -m sandbox_psp --help``)."""

    data_dir: str
    secret: str
    webhook_secret: str
    acquirers: dict  # name -> port
    host: str = "127.0.0.1"
    port: int = 8200
    public_url: str = "http://127.0.0.1:8200"
    hook_url: str | None = None
    cors_origins: tuple = ()
    timeout_delay: float = 8.0
    dispute_decision_days: int = disputes.DEFAULT_DECISION_DAYS


@dataclasses.dataclass
class Faults:
    """Injected faults of one acquirer."""

    latency_ms: int = 0
    error_rate: fractions.Fraction = fractions.Fraction(0)
    refuse_connections: bool = False
    read_error_status: int | None = None  # every GET (status query) answers this HTTP status
    posts_seen: int = 0  # POSTs counted since error_rate was last set

    def public(self) -> dict:
        """The settings as JSON."""
        return {
            "latency_ms": self.latency_ms,
            "error_rate": float(self.error_rate),
            "refuse_connections": self.refuse_connections,
            "read_error_status": self.read_error_status,
        }

    def next_post_fails(self) -> bool:
        """Count one POST and tell whether it must answer 503 processing_error.

        Deterministic instead of random, so tests can rely on it: the k-th POST fails
        when floor(k * rate) > floor((k - 1) * rate). A rate of 0.5 fails every 2nd call,
        0.25 every 4th, 1.0 every call.
        """
        self.posts_seen += 1
        k = self.posts_seen
        return int(k * self.error_rate) > int((k - 1) * self.error_rate)


class Sandbox:
    """Everything the web apps share."""

    def __init__(self, config: Config):
        self.config = config
        self.store = store_mod.Store(os.path.join(config.data_dir, "sandbox_psp.sqlite3"))
        with self.store.write() as conn:
            vault_key = store_mod.get_meta(conn, "vault_key")
            if vault_key is None:
                vault_key = secrets.token_hex(32)
                store_mod.set_meta(conn, "vault_key", vault_key)
            offset = int(store_mod.get_meta(conn, "clock_offset") or 0)
        self.vault_key = bytes.fromhex(vault_key)
        self.clock = Clock(offset)
        self.callbacks = CallbackSender(self.store, config.hook_url, config.webhook_secret,
                                        tick=self.advance_due_work)
        self._lock = threading.Lock()  # guards faults and counters
        # Serialises opening/closing listening sockets, which waits for a serve loop to
        # notice the shutdown; acquirer calls never wait on it.
        self._listener_lock = threading.Lock()
        self.faults = {name: Faults() for name in config.acquirers}
        # Reconciliation faults per acquirer (sandbox_psp/settlement.py): what reports and statements misstate.
        self.settlement_faults: dict[str, list[dict]] = {name: [] for name in config.acquirers}
        self.calls = Counter()
        self.injected_errors = Counter()
        # Acquirer listeners (objects with start()/stop()), set by __main__; empty when the
        # apps run without real sockets (refuse_connections then only records the setting).
        self.listeners: dict = {}

    # -------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Start background work (callback delivery, what falls due: disputes, pending refunds)."""
        self.callbacks.start()

    def stop(self) -> None:
        """Stop background work and close the store."""
        self.callbacks.stop()
        self.store.close()

    @contextlib.contextmanager
    def write(self):
        """A write transaction; wakes the callback sender after the commit if a callback was enqueued.

        Only then: waking it after every authorization and capture made it query its outbox for nothing.
        """
        before = callbacks_mod.enqueued_count()
        with self.store.write() as conn:
            yield conn
        if callbacks_mod.enqueued_count() != before:
            self.callbacks.wake()

    # -------------------------------------------------------------- clock

    def move_clock(self, advance_seconds=None, now=None, reset=False) -> int:
        """Advance, set or reset the sandbox clock, persist it, do what fell due (disputes, pending refunds)."""
        if reset:
            value = self.clock.reset()
        elif now is not None:
            value = self.clock.set(now)
        else:
            value = self.clock.advance(advance_seconds or 0)
        with self.write() as conn:
            store_mod.set_meta(conn, "clock_offset", str(self.clock.offset))
        self.advance_due_work()
        return value

    def advance_due_work(self) -> list[dict]:
        """What fell due at the current sandbox time: disputes of dispute cards open, issuers decide disputes,
        pending refunds settle, bank transfers become paid or failed (announced by callback). Returns the disputes
        opened or changed."""
        # store.write(), not self.write(): the callback thread calls this on every loop,
        # and waking itself each time would make it spin. Wake only if there is news.
        now = self.clock.now()
        with self.store.write() as conn:
            changed = disputes.open_due_disputes(conn, now)
            changed += disputes.decide_due(conn, now, self.config.dispute_decision_days)
            operations.settle_pending_refunds(conn, now)
            announced = transfers.announce_due(conn, now)
        if changed or announced:
            self.callbacks.wake()
        return changed

    # -------------------------------------------------------------- faults

    def get_faults(self) -> dict:
        """Fault settings of every acquirer."""
        with self._lock:
            return {name: faults.public() for name, faults in self.faults.items()}

    def set_faults(self, acquirer: str, latency_ms=None, error_rate=None, refuse_connections=None,
                   read_error_status=None) -> dict:
        """Change some fault settings of one acquirer (None keeps one; ``read_error_status`` 0 clears it);
        return all of its settings."""
        if refuse_connections is not None:
            with self._listener_lock:
                listener = self.listeners.get(acquirer)
                if listener is not None:
                    if refuse_connections:
                        listener.stop()
                    else:
                        listener.start()
                with self._lock:
                    if self.faults[acquirer].refuse_connections != refuse_connections:
                        log.info("acquirer %s %s connections", acquirer,
                                 "refuses" if refuse_connections else "accepts")
                    self.faults[acquirer].refuse_connections = refuse_connections
        with self._lock:
            faults = self.faults[acquirer]
            if latency_ms is not None:
                faults.latency_ms = latency_ms
            if error_rate is not None:
                # Exact fractions: the every-Nth rule must not drift with float rounding.
                faults.error_rate = fractions.Fraction(str(error_rate)).limit_denominator(10**6)
                faults.posts_seen = 0
            if read_error_status is not None:
                faults.read_error_status = read_error_status or None
            return faults.public()

    def before_acquirer_call(self, acquirer: str, method: str) -> int | None:
        """Count a call and apply latency; the HTTP status this call must fail with, if any (503 for an
        injected POST error, ``read_error_status`` for a GET status query; none for the vault's VAULT_READ)."""
        with self._lock:
            faults = self.faults[acquirer]
            self.calls[acquirer] += 1
            latency_ms = faults.latency_ms
            if method == "POST":
                fails = 503 if faults.next_post_fails() else None
            elif method == "GET":
                fails = faults.read_error_status
            else:  # the vault's card reads (VAULT_READ): not status queries, read faults leave them alone
                fails = None
            if fails:
                self.injected_errors[acquirer] += 1
        if latency_ms:
            time.sleep(latency_ms / 1000)
        return fails

    def add_settlement_fault(self, acquirer: str, fault: dict) -> list[dict]:
        """Add one reconciliation fault to an acquirer's reports; return them all."""
        with self._lock:
            self.settlement_faults[acquirer].append(dict(fault))
            return [dict(f) for f in self.settlement_faults[acquirer]]

    def get_settlement_faults(self, acquirer: str | None = None) -> dict[str, list[dict]]:
        """The reconciliation faults, per acquirer (copies)."""
        with self._lock:
            return {name: [dict(f) for f in faults] for name, faults in self.settlement_faults.items()
                    if acquirer in (None, name)}

    # -------------------------------------------------------------- admin

    def stats(self, idempotency_key: str | None = None) -> dict:
        """Counts per acquirer (storage counts plus in-memory call counters)."""
        result = {}
        with self.store.read() as conn:
            for name in self.config.acquirers:
                result[name] = operations.stats(conn, name, idempotency_key)
        with self._lock:
            for name in self.config.acquirers:
                result[name]["calls"] = self.calls[name]
                result[name]["injected_errors"] = self.injected_errors[name]
        return result

    def reset(self) -> None:
        """Wipe payment data, clock offset, faults and counters (tests)."""
        self.store.wipe()
        self.clock.reset()
        for name in self.config.acquirers:
            self.set_faults(name, latency_ms=0, error_rate=0, refuse_connections=False, read_error_status=0)
        with self._lock:
            self.calls.clear()
            self.injected_errors.clear()
            for faults in self.settlement_faults.values():
                faults.clear()

