"""Worker entry point: `python worker.py [--with-scheduler] [--queues webhooks,default] [--burst]`.

A worker process runs two things side by side:

* the PSP dispatcher (app/jobs/dispatcher.py): up to PSP_CONCURRENCY attempts and refunds in flight on
  a thread pool, claimed from the database fairly across merchants and within each connector's
  bulkhead; Redis only wakes it, so payments go on while Redis is away;
* an RQ work loop for webhooks and the other jobs (app.jobs.KassaWorker: RQ's SimpleWorker, jobs run in
  this process: forking costs tens of milliseconds per job), and with --with-scheduler the periodic
  sweeps (app/jobs/schedule.py).

The process never exits because Redis is away: RQ's loop quits on some Redis errors, so it is started
again after a capped, jittered backoff, while the dispatcher goes on. SIGTERM or SIGINT stop it: nothing
new is claimed, and PSP calls in flight get DRAIN_SECONDS to finish (a run cut short keeps its lease, and
its row is due again once that runs out). Scale out with more worker processes (KASSA_WORKERS for
`kassa.py run`).
"""
import argparse
import logging
import signal
import threading
import time

import redis

from app import create_app
from app.jobs import QUEUES, KassaWorker, set_worker_app
from app.jobs.dispatcher import Backoff, PspDispatcher
from app.jobs.schedule import run_forever
from app.redis_health import REDIS_TIMEOUT_SECONDS

log = logging.getLogger("kassa.worker")

# PSP calls in flight get this long to finish on SIGTERM: more than one call's read timeout (5 s), less
# than the launcher waits before it kills (launcher/processes.py STOP_TIMEOUT, 15 s).
DRAIN_SECONDS = 10.0
# RQ's loop is started again after 1 s, doubling up to 30 s while Redis stays away; a loop that ran for a
# minute was healthy, and the next failure starts the backoff over.
RQ_RESTART_BASE_SECONDS = 1.0
RQ_RESTART_MAX_SECONDS = 30.0
RQ_STABLE_SECONDS = 60.0


def rq_connection(app) -> redis.Redis:
    """RQ's own Redis client. RQ raises the socket timeout of the pool it is given above its 405 s BLPOP,
    which must not happen to the app's short-timeout clients (app/redis_health.py)."""
    return redis.Redis.from_url(app.config["REDIS_URL"], socket_connect_timeout=REDIS_TIMEOUT_SECONDS)


def run_rq(app, queues: list[str], stop: threading.Event, burst: bool) -> None:
    """RQ's work loop until ``stop``; started again (with backoff) whenever it quits on its own."""
    backoff = Backoff(RQ_RESTART_BASE_SECONDS, RQ_RESTART_MAX_SECONDS)
    while not stop.is_set():
        started = time.monotonic()
        try:
            with app.app_context():
                worker = KassaWorker(queues, connection=rq_connection(app))
                worker.stop_requested = stop
                worker.work(burst=burst, with_scheduler=False, logging_level="WARNING")
        except (redis.RedisError, OSError) as error:
            log.warning("RQ work loop could not run: %s", error)
        finally:
            _stop_on_signals(stop)  # RQ installed its own handlers; ours again outside its loop
        if stop.is_set() or burst:
            return
        if time.monotonic() - started > RQ_STABLE_SECONDS:
            backoff.reset()
        delay = backoff.next()
        log.warning("RQ work loop quit (Redis unavailable?); starting it again in %.1f s", delay)
        stop.wait(delay)


def _stop_on_signals(stop: threading.Event) -> None:
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())


def main() -> None:
    parser = argparse.ArgumentParser(description="Kassa background worker")
    parser.add_argument("--with-scheduler", action="store_true", help="also run the periodic sweeps")
    parser.add_argument("--queues", default=",".join(QUEUES))
    parser.add_argument("--burst", action="store_true", help="exit when the queues are empty")
    args = parser.parse_args()

    app = create_app()
    set_worker_app(app)
    stop = threading.Event()
    _stop_on_signals(stop)
    dispatcher = PspDispatcher.for_app(app).start()
    if args.with_scheduler:
        threading.Thread(target=run_forever, args=(app, stop), name="scheduler", daemon=True).start()
    try:
        run_rq(app, args.queues.split(","), stop, args.burst)
    finally:
        stop.set()
        dispatcher.stop(DRAIN_SECONDS)


if __name__ == "__main__":
    main()
