"""Bulkheads: PSP calls in flight per connector and credential, bounded in each worker process.

A worker process runs up to ``PSP_CONCURRENCY`` PSP calls at once (app/jobs/dispatcher.py). Each connector
with each credential (the platform's account, or a merchant's own: ConnectorProvider.resolve, the key of
its circuit breaker too) may hold at most ``PSP_BULKHEAD_SIZE`` of them, so an acquirer that answers slowly
or not at all (its calls wait for the read timeout) cannot take the slots of a healthy one: the rest stay
free for every other connector and credential.

The dispatcher enters a slot for the first connector an item will call *before* it claims the item, and
an item whose bulkhead is full is not claimed: it stays due in the database, where it waits its turn.
The item's thread then runs ``holding(key)``, and the router's calls to that connector use that slot. A
call to another connector (failover, a status query at every connector of a vault) must enter that
connector's bulkhead for its duration; when it is full the router answers ``bulkhead_full`` at once, as for
an open breaker (not processed, so an authorization fails over or fails; a lookup could not ask) and never
waits for a slot on a pool thread.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Mapping

from prometheus_client import Gauge

from app.psp.registry import config_value

# Key of a bulkhead: (connector, credential).
Key = tuple[str, str]

# 32 calls in flight per worker process: by Little's law 32 / 0.3 s ~ 100 authorizations per second per
# process at an acquirer's typical 300 ms, more than the CPU of one process does (about 7 ms per payment);
# a thread waiting on a socket costs next to nothing (bench/RESULTS.md, Capacity).
DEFAULT_CONCURRENCY = 32
# A connector and credential may hold three quarters of a process's slots: enough for the default test
# route, which sends every authorization to one acquirer, while a quarter always stays free for the others.
DEFAULT_BULKHEAD_SHARE = 0.75

PSP_IN_FLIGHT = Gauge(
    "kassa_psp_in_flight", "PSP calls in flight per connector, over all worker processes.", ["connector"],
    multiprocess_mode="livesum")


def concurrency_from_config(config: Mapping[str, Any]) -> int:
    """PSP_CONCURRENCY: PSP calls in flight per worker process."""
    return max(1, int(config_value(config, "PSP_CONCURRENCY", DEFAULT_CONCURRENCY)))


def bulkhead_size_from_config(config: Mapping[str, Any]) -> int:
    """PSP_BULKHEAD_SIZE: calls in flight per connector and credential per worker process (default: three
    quarters of PSP_CONCURRENCY)."""
    concurrency = concurrency_from_config(config)
    default = max(1, int(concurrency * DEFAULT_BULKHEAD_SHARE))
    return max(1, min(concurrency, int(config_value(config, "PSP_BULKHEAD_SIZE", default))))


@dataclass
class Slot:
    """One call's use of a bulkhead: ``owned`` when the call entered it (and so leaves it)."""

    bulkheads: "Bulkheads"
    key: Key
    owned: bool

    def release(self) -> None:
        if self.owned:
            self.owned = False
            self.bulkheads.leave(self.key)


class Bulkheads:
    """Slots in use per (connector, credential) in this process, at most ``size`` each; thread-safe."""

    def __init__(self, size: int):
        self.size = size
        self._lock = threading.Lock()
        self._in_flight: dict[Key, int] = {}
        self._local = threading.local()

    def try_enter(self, key: Key) -> bool:
        """Take a slot of ``key`` if one is free."""
        with self._lock:
            used = self._in_flight.get(key, 0)
            if used >= self.size:
                return False
            self._in_flight[key] = used + 1
        PSP_IN_FLIGHT.labels(key[0]).inc()
        return True

    def leave(self, key: Key) -> None:
        """Give a slot of ``key`` back."""
        with self._lock:
            used = self._in_flight.get(key, 0) - 1
            if used > 0:
                self._in_flight[key] = used
            else:
                self._in_flight.pop(key, None)
        PSP_IN_FLIGHT.labels(key[0]).dec()

    def in_flight(self, key: Key) -> int:
        with self._lock:
            return self._in_flight.get(key, 0)

    def full(self, key: Key) -> bool:
        with self._lock:
            return self._in_flight.get(key, 0) >= self.size

    def _held(self) -> list[Key]:
        held = getattr(self._local, "held", None)
        if held is None:
            held = self._local.held = []
        return held

    @contextmanager
    def holding(self, key: Key) -> Iterator[None]:
        """Run the block as the holder of a slot of ``key`` entered already (by the dispatcher): this thread's
        calls to that connector with that credential use it. The slot is left when the block ends."""
        held = self._held()
        held.append(key)
        try:
            yield
        finally:
            held.remove(key)
            self.leave(key)

    def enter_for_call(self, key: Key) -> Slot | None:
        """A slot for one call: the one this thread holds for ``key``, else a new one; None when full."""
        if key in self._held():
            return Slot(self, key, owned=False)
        return Slot(self, key, owned=True) if self.try_enter(key) else None
