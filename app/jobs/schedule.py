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


# Every periodic sweep, in one place. Each sweep finds its own due rows, so a missed or doubled tick is harmless.
PERIODIC: list[Periodic] = [
    # Every second, on the webhooks queue: new events reach endpoints and due retries go out promptly.
    Periodic("app.jobs.webhooks.fan_out_events", 1, "webhooks"),
    Periodic("app.jobs.webhooks.sweep_due_deliveries", 1, "webhooks"),
    # Every 5 s: keeps the rollup delta table a few seconds deep, so Home's read of it stays small.
    Periodic("app.jobs.dashboard.fold_rollups", 5),
    # Every 30 s: a request dies between phases rarely; its key waits LOCK_TIMEOUT (60 s) anyway.
    Periodic("app.jobs.payments.complete_idempotency_keys", 30),
    # Every 30 s: an expired checkout page refuses to pay by itself; the sweep only records it.
    Periodic("app.jobs.checkout.sweep_checkout_sessions", 30),
    # Every 30 s: PSP callbacks whose handler failed are retried.
    Periodic("app.jobs.psp.process_due_callbacks", 30),
    # Every minute: dispute actions whose job was lost are re-sent, and deadline reminders go out (a day's
    # notice counts in hours, and a dispute deadline in days).
    Periodic("app.jobs.disputes.sweep_disputes", 60),
    # Every minute: expired exports go soon after their day is up; a lost export job is re-run.
    Periodic("app.jobs.exports.sweep_exports", 60),
    # Every 5 min: authorizations expire after days; minutes of slack are irrelevant.
    Periodic("app.jobs.payments.expire_authorizations", 300),
    # Every 5 min: open risk reviews are voided a day before their authorization would expire.
    Periodic("app.jobs.risk.expire_reviews", 300),
    # Hourly: the weekly score drift report is written once per ISO week (the sweep finds the week without one).
    Periodic("app.jobs.risk.report_score_drift", 3600),
    # Hourly: idempotency keys live 24 h and API request logs 30 days; an hour of slack keeps deletes batched.
    Periodic("app.jobs.payments.reap_idempotency_keys", 3600),
    Periodic("app.jobs.dashboard.sweep_request_logs", 3600),
    # Every 15 min: settlement reports and bank statements of past days not imported yet (a day's file exists once
    # the day is over; a failed fetch is asked again at the next sweep, the day without a file being the schedule).
    Periodic("app.jobs.reconciliation.fetch_due_reports", 900),
    # Every 30 s: payouts to send, in-transit payouts to ask about (each due row says when; a minute's slack is
    # nothing next to a transfer that takes days).
    Periodic("app.jobs.payouts.process_due_payouts", 30),
    # Every 15 min: the day's scheduled payouts (the business key per period pays each once however often it runs).
    Periodic("app.jobs.payouts.run_payout_schedules", 900),
    # Hourly: recompute every ledger account's hash chain and balance (the admin page shows the result).
    Periodic("app.ledger.jobs.verify_ledger", 3600),
]

# One second is fine-grained enough for the shortest sweep interval and costs nothing when idle.
TICK_SECONDS = 1.0


def run_once(app, last_run: dict[str, float], now: float | None = None) -> list[str]:
    """Enqueue every sweep whose interval has elapsed; returns the names enqueued.

    With Redis away the tick ends at the first failure (the others would only wait for it too) and the
    sweeps run once it is back: each finds its own due rows, so nothing is lost meanwhile. PSP work does
    not wait for this: the PSP dispatcher finds due rows itself (app/jobs/dispatcher.py).
    """
    from app.jobs import enqueue

    now = time.monotonic() if now is None else now
    started = []
    with app.app_context():
        for periodic in PERIODIC:
            if now - last_run.get(periodic.func, float("-inf")) >= periodic.seconds:
                try:
                    enqueue(periodic.func, queue_name=periodic.queue_name,
                            job_id=f"periodic-{periodic.func.replace('.', '_')}-{int(now // periodic.seconds)}")
                except Exception:  # noqa: BLE001 - Redis away: the sweeps wait for it (app/redis_health.py logs it)
                    log.debug("could not enqueue %s; the sweeps run again once Redis is back", periodic.func,
                              exc_info=True)
                    break
                last_run[periodic.func] = now
                started.append(periodic.func)
    return started


def run_forever(app, stop: threading.Event) -> None:
    """The scheduler loop, run in a thread of the worker process."""
    last_run: dict[str, float] = {}
    while not stop.is_set():
        run_once(app, last_run)
        stop.wait(TICK_SECONDS)
