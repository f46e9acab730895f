"""Periodic sweeps. The database is the schedule: each sweep finds due rows itself, so a missed tick loses nothing."""
import logging
import threading
import time
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Periodic:
    """Enqueue ``func`` (a dotted path) every ``seconds`` on ``queue_name``."""

    func: str
    seconds: float
    queue_name: str = "default"


# Features append their sweeps here (janitor, completer, reaper, webhook sweep, ...).
PERIODIC: list[Periodic] = []

# One second is fine-grained enough for the shortest sweep interval and costs nothing when idle.
TICK_SECONDS = 1.0


def run_once(app, last_run: dict[str, float], now: float | None = None) -> list[str]:
    """Enqueue every sweep whose interval has elapsed; returns the names enqueued."""
    from app.jobs import enqueue

    now = time.monotonic() if now is None else now
    started = []
    with app.app_context():
        for periodic in PERIODIC:
            if now - last_run.get(periodic.func, float("-inf")) >= periodic.seconds:
                try:
                    enqueue(periodic.func, queue_name=periodic.queue_name,
                            job_id=f"periodic:{periodic.func}:{int(now // periodic.seconds)}")
                    last_run[periodic.func] = now
                    started.append(periodic.func)
                except Exception:  # noqa: BLE001 - Redis down: try again next tick
                    log.exception("could not enqueue %s", periodic.func)
    return started


def run_forever(app, stop: threading.Event) -> None:
    """The scheduler loop, run in a thread of the worker process."""
    last_run: dict[str, float] = {}
    while not stop.is_set():
        run_once(app, last_run)
        stop.wait(TICK_SECONDS)
