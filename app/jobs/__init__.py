"""RQ plumbing: jobs take ids, run inside the worker's one app, and are enqueued only after commit."""
import functools
import logging
import threading
from typing import Callable

from datetime import timedelta

from flask import Flask, current_app, has_app_context
from rq import Queue, SimpleWorker, get_current_job
from rq.utils import now
from sqlalchemy import event
from sqlalchemy.orm import Session, scoped_session

from app.observability import request_id_var

log = logging.getLogger(__name__)

# PSP work has no queue: each worker's PSP dispatcher claims it from the database (app/jobs/dispatcher.py).
QUEUES = ("webhooks", "default")

_worker_app: Flask | None = None
# Between jobs the worker renews its liveness key at most this often (RQ's worker TTL is minutes).
IDLE_HEARTBEAT_EVERY = timedelta(seconds=5)


class KassaWorker(SimpleWorker):
    """RQ's SimpleWorker (jobs run in this process: no fork per job) with fewer Redis round trips per job.

    RQ renews the worker's liveness key three times per job and writes its state twice, each a round
    trip of its own: together about 0.4 ms of CPU and 0.6 ms of wall time per job, a third of RQ's
    own cost for a short PSP job. Here the between-jobs heartbeat is sent at most every
    IDLE_HEARTBEAT_EVERY and an unchanged state is not written again. Heartbeats that RQ sends with a
    job (its own TTL, in the job's pipeline) and all job bookkeeping (status, registries, executions,
    failures) are RQ's, untouched.
    """

    # Set when the process is asked to stop (SIGTERM, SIGINT: RQ's own handlers call request_stop), so that
    # worker.py can tell a requested stop from RQ quitting on a Redis error (it then starts RQ again).
    stop_requested: threading.Event | None = None

    def request_stop(self, signum, frame):
        if self.stop_requested is not None:
            self.stop_requested.set()
        super().request_stop(signum, frame)

    def heartbeat(self, timeout: int | None = None, pipeline=None):
        recent = self.last_heartbeat is not None and now() - self.last_heartbeat < IDLE_HEARTBEAT_EVERY
        if timeout is None and pipeline is None and recent:
            return
        super().heartbeat(timeout, pipeline)

    def set_state(self, state: str, pipeline=None):
        if pipeline is None and state == getattr(self, "_state", None):
            return
        super().set_state(state, pipeline)


def set_worker_app(app: Flask) -> None:
    """The worker process builds its app once and hands it here."""
    global _worker_app
    _worker_app = app


def _app() -> Flask:
    global _worker_app
    if has_app_context():
        return current_app._get_current_object()
    if _worker_app is None:
        from app import create_app

        _worker_app = create_app()
    return _worker_app


def job(func: Callable) -> Callable:
    """Run an RQ job inside the app context, with the enqueuing request's id on every log line."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        current = get_current_job()
        token = request_id_var.set((current.meta.get("request_id") if current else None) or request_id_var.get())
        app = _app()
        try:
            if has_app_context():
                return func(*args, **kwargs)
            with app.app_context():
                from app.extensions import db

                try:
                    return func(*args, **kwargs)
                finally:
                    db.session.remove()
        finally:
            request_id_var.reset(token)

    return wrapper


def queue(name: str = "default") -> Queue:
    """An RQ queue on the app's Redis."""
    from app.extensions import redis_client

    return Queue(name, connection=redis_client())


def enqueue(func: Callable | str, *args, queue_name: str = "default", **options):
    """Enqueue now. Never call inside an open transaction that the job depends on: use enqueue_after_commit."""
    meta = {"request_id": request_id_var.get()}
    return queue(queue_name).enqueue(func, *args, meta=meta, **options)


def enqueue_after_commit(session: Session, func: Callable | str, *args, queue_name: str = "default", **options):
    """Enqueue once the session's transaction commits (never from inside it); dropped on rollback.

    The database row that the job works on is the durable record; a lost enqueue is picked up by a sweep.
    """
    app = _app()

    def _enqueue() -> None:
        try:
            with app.app_context():
                enqueue(func, *args, queue_name=queue_name, **options)
        except Exception:  # noqa: BLE001 - Redis down: the scheduled sweep finds the row later
            log.exception("enqueue after commit failed; the sweep will retry")

    call_after_commit(session, _enqueue)


def call_after_commit(session: Session, callback: Callable[[], None]) -> None:
    """Call ``callback()`` once the session's current transaction commits; never if it rolls back."""
    if isinstance(session, scoped_session):
        # Listening on the thread-shared proxy would hook every thread's session: bind to this thread's own.
        session = session()
    _prune_spent_listeners(session)
    if not session.in_transaction():
        session.begin()  # the callback's fate is this transaction's: commit calls it, rollback drops it
    pending = {"live": True}

    def _after_commit(_session):
        if not pending["live"]:
            return
        pending["live"] = False
        callback()

    def _after_rollback(_session, previous_transaction):
        if not previous_transaction.nested:  # a savepoint rollback leaves the outer transaction alive
            pending["live"] = False

    event.listen(session, "after_commit", _after_commit)
    event.listen(session, "after_soft_rollback", _after_rollback)
    session.info.setdefault("kassa_enqueue_listeners", []).append((pending, _after_commit, _after_rollback))


def _prune_spent_listeners(session: Session) -> None:
    """Remove listeners whose job was enqueued or dropped (never during dispatch, which forbids it)."""
    listeners = session.info.get("kassa_enqueue_listeners", [])
    for entry in [entry for entry in listeners if not entry[0]["live"]]:
        _, on_commit, on_rollback = entry
        event.remove(session, "after_commit", on_commit)
        event.remove(session, "after_soft_rollback", on_rollback)
        listeners.remove(entry)
