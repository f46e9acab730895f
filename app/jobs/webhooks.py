"""RQ entry points of webhook delivery: the fan-out sweep, the due sweep, batches, bulk resends.

The database is the record of what is owed (app/webhooks/service.py): Redis and RQ only run it. Each
job phase is one short transaction, and no transaction is open during HTTP:

    fan_out_events        pending events -> delivery rows (born leased when the queue has room) -> deliver_batch
    sweep_due_deliveries  due, unleased rows -> leased to a fresh token -> deliver_batch jobs
    deliver_batch         renew leases (commit) -> HTTP, concurrently -> attempts + schedule (commit)

A worker killed mid-batch leaves leased rows behind; the lease runs out (LEASE, a minute) and the due
sweep hands them to another worker. A Redis that loses its queues loses only jobs, never rows: the
sweeps find the rows again. Delivery is therefore at least once, with the same webhook-id every time.

``run_*`` functions take the session and settings and are what tests and the benchmark call directly.
"""
import logging
import math
import secrets
import time
from datetime import timedelta
from typing import Callable

from flask import current_app

from app.extensions import db
from app.jobs import enqueue, job, queue
from app.jobs.transactions import commit_or_rollback
from app.webhooks import service
from app.webhooks.delivery import send_all
from app.webhooks.service import AttemptResult
from app.webhooks.settings import WebhookSettings, settings_for

log = logging.getLogger(__name__)

WEBHOOKS_QUEUE = "webhooks"
# Deliveries per deliver_batch job: enough to keep MAX_CONCURRENCY requests in flight and to spread
# the two transactions of a batch over many deliveries; few enough that one job ends within seconds.
DELIVER_BATCH = 25
# Backpressure: the sweeps lease new rows only while fewer jobs than this wait in the webhooks queue.
# Rows leased into a long queue would see their lease run out before a worker reaches them.
MAX_QUEUED_JOBS = 40
# One sweep run stops after this long even if rows remain: the next tick continues, and the worker is
# free for the batches in between.
SWEEP_TIME_BUDGET = 5.0
# After its own batch, a deliver_batch job goes on with whatever else is due for up to this long: long
# enough to drain a backlog without a queue hop per batch, short enough that PSP jobs on the same worker
# (a higher-priority queue) wait at most about a second behind it.
CONTINUE_BUDGET = 1.0
# A bulk-resend job that was queued this long without starting is presumed lost (Redis) and re-enqueued.
RESEND_QUEUED_GRACE = timedelta(seconds=60)

Dispatch = Callable[[list[str], str], None]


def new_token() -> str:
    """A claim token: whoever holds it owns the leased rows (random, so a reused worker name cannot collide)."""
    return "wk_" + secrets.token_hex(8)


def _settings() -> WebhookSettings:
    return settings_for(current_app)


def _chunks(ids: list[str], size: int) -> list[list[str]]:
    return [ids[i:i + size] for i in range(0, len(ids), size)]


def queue_room() -> int:
    """How many more deliver_batch jobs the webhooks queue may take now (0 when Redis is unreachable)."""
    try:
        return max(0, MAX_QUEUED_JOBS - len(queue(WEBHOOKS_QUEUE)))
    except Exception:  # noqa: BLE001 - Redis down: lease nothing; the rows wait for the next tick
        log.warning("webhooks queue unavailable; not leasing deliveries", exc_info=True)
        return 0


def enqueue_batches(delivery_ids: list[str], token: str) -> None:
    """Enqueue deliver_batch jobs for rows leased to ``token`` (called after the lease committed)."""
    for chunk in _chunks(delivery_ids, DELIVER_BATCH):
        try:
            enqueue(deliver_batch, chunk, token, queue_name=WEBHOOKS_QUEUE)
        except Exception:  # noqa: BLE001 - Redis down: the lease runs out and the due sweep retries
            log.warning("could not enqueue webhook deliveries; the due sweep will retry them", exc_info=True)
            return


def _lease_due(session, settings: WebhookSettings, limit: int,
               ids: list[str] | None = None) -> tuple[str, list[str]]:
    """Lease up to ``limit`` due rows (of ``ids``, if given) to a new token and commit: (token, leased ids)."""
    token = new_token()
    with commit_or_rollback(session):
        leased = service.claim_due(session, settings, token, limit=limit, ids=ids)
    return token, leased


# -- fan-out ---------------------------------------------------------------------------------------------

def run_fanout(session, settings: WebhookSettings, *, dispatch: Dispatch | None = None,
               room: int = 0, time_budget: float = SWEEP_TIME_BUDGET) -> int:
    """Fan out pending events batch by batch; new deliveries are leased and dispatched while ``room`` lasts."""
    started = time.monotonic()
    events = 0
    while True:
        token = new_token() if dispatch is not None and room > 0 else None
        with commit_or_rollback(session):
            result = service.fan_out(session, settings, claim_token=token)
        events += len(result.event_ids)
        if token and result.delivery_ids:
            dispatch(result.delivery_ids, token)
            room -= math.ceil(len(result.delivery_ids) / DELIVER_BATCH)
        if len(result.event_ids) < service.FANOUT_BATCH or time.monotonic() - started > time_budget:
            return events


@job
def fan_out_events() -> int:
    """Periodic: turn newly committed events into deliveries and start sending them."""
    return run_fanout(db.session, _settings(), dispatch=enqueue_batches, room=queue_room())


# -- due deliveries --------------------------------------------------------------------------------------

def run_due_sweep(session, settings: WebhookSettings, *, dispatch: Dispatch, room: int,
                  time_budget: float = SWEEP_TIME_BUDGET) -> int:
    """Lease due rows (as many as ``room`` batches hold) and dispatch them; returns how many."""
    started = time.monotonic()
    claimed = 0
    while room > 0:
        token, ids = _lease_due(session, settings, room * DELIVER_BATCH)
        if not ids:
            break
        dispatch(ids, token)
        claimed += len(ids)
        room -= math.ceil(len(ids) / DELIVER_BATCH)
        if time.monotonic() - started > time_budget:
            break
    return claimed


@job
def sweep_due_deliveries() -> int:
    """Periodic: send what is due (retries, and anything whose worker or queue was lost); resume bulk resends."""
    session, settings = db.session, _settings()
    claimed = run_due_sweep(session, settings, dispatch=enqueue_batches, room=queue_room())
    with commit_or_rollback(session):
        stale = service.stale_resend_jobs(session, settings, queued_grace=RESEND_QUEUED_GRACE)
    for job_id in stale:
        try:
            enqueue(run_bulk_resend, job_id, queue_name=WEBHOOKS_QUEUE)
        except Exception:  # noqa: BLE001 - Redis down: next tick
            log.warning("could not re-enqueue resend job %s", job_id, exc_info=True)
            break
    return claimed


# -- sending ---------------------------------------------------------------------------------------------

def run_deliver(session, settings: WebhookSettings, delivery_ids: list[str], token: str) -> list[AttemptResult]:
    """Send the rows leased to ``token``: renew leases (commit), HTTP with no transaction, record (commit)."""
    with commit_or_rollback(session):
        outgoing = service.prepare(session, settings, delivery_ids, token)
    results = send_all(outgoing, settings)
    with commit_or_rollback(session):
        service.record_results(session, settings, results)
    return results


def run_batch_and_continue(session, settings: WebhookSettings, delivery_ids: list[str], token: str, *,
                           budget: float = CONTINUE_BUDGET) -> int:
    """Send the batch, then keep claiming and sending due rows until none is left or ``budget`` is spent.

    A busy worker thus feeds itself instead of waiting for the next sweep tick and a queue hop; the
    budget bounds how long other queues on the same worker (PSP calls) wait behind a webhook backlog.
    """
    started = time.monotonic()
    attempted = len(run_deliver(session, settings, delivery_ids, token))
    while time.monotonic() - started < budget:
        token, ids = _lease_due(session, settings, DELIVER_BATCH)
        if not ids:
            break
        attempted += len(run_deliver(session, settings, ids, token))
    return attempted


@job
def deliver_batch(delivery_ids: list[str], token: str) -> int:
    """Send one batch of leased deliveries (and more that are due, for a second); returns how many were tried."""
    return run_batch_and_continue(db.session, _settings(), delivery_ids, token)


@job
def deliver_now(delivery_id: str) -> int:
    """Send one delivery at once if it is due and free (dashboard resend, test event)."""
    session, settings = db.session, _settings()
    token, ids = _lease_due(session, settings, 1, ids=[delivery_id])
    return len(run_deliver(session, settings, ids, token)) if ids else 0


def run_due(session, settings: WebhookSettings, *, limit: int = 10_000) -> list[AttemptResult]:
    """Inline, without RQ (tests, benchmark): fan out, then send everything due now, batch by batch."""
    run_fanout(session, settings)
    results: list[AttemptResult] = []
    while len(results) < limit:
        token, ids = _lease_due(session, settings, min(DELIVER_BATCH * 4, limit - len(results)))
        if not ids:
            break
        results.extend(run_deliver(session, settings, ids, token))
    return results


# -- bulk resend -----------------------------------------------------------------------------------------

def run_resend(session, settings: WebhookSettings, job_id: str) -> bool:
    """Run a bulk resend to the end (committing each batch, which is the progress bar's step)."""
    with commit_or_rollback(session):
        claimed = service.claim_resend_job(session, settings, job_id)
    if claimed is None:
        return False
    while True:
        with commit_or_rollback(session):
            done = service.resend_batch(session, settings, job_id)
        if done:
            return True


@job
def run_bulk_resend(job_id: str) -> bool:
    """Re-queue every failed delivery a bulk resend covers; the due sweep then sends them."""
    return run_resend(db.session, _settings(), job_id)
