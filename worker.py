"""RQ worker entry point: `python worker.py [--with-scheduler] [--queues psp,webhooks,default]`.

Uses app.jobs.KassaWorker, RQ's SimpleWorker with fewer Redis round trips: jobs run in this process
instead of a fork per job. Forking costs tens of milliseconds per job and would dominate short PSP
calls; scale out by running more worker processes.
"""
import argparse
import signal
import threading


from app import create_app
from app.extensions import redis_client
from app.jobs import QUEUES, KassaWorker, set_worker_app
from app.jobs.schedule import run_forever


def main() -> None:
    parser = argparse.ArgumentParser(description="Kassa background worker")
    parser.add_argument("--with-scheduler", action="store_true", help="also run the periodic sweeps")
    parser.add_argument("--queues", default=",".join(QUEUES))
    parser.add_argument("--burst", action="store_true", help="exit when the queues are empty")
    args = parser.parse_args()

    app = create_app()
    set_worker_app(app)
    stop = threading.Event()
    if args.with_scheduler:
        threading.Thread(target=run_forever, args=(app, stop), name="scheduler", daemon=True).start()
    with app.app_context():
        worker = KassaWorker(args.queues.split(","), connection=redis_client())
        signal.signal(signal.SIGTERM, lambda *_: (stop.set(), worker.request_stop(signal.SIGTERM, None)))
        try:
            worker.work(burst=args.burst, with_scheduler=False, logging_level="WARNING")
        finally:
            stop.set()


if __name__ == "__main__":
    main()
