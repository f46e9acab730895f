"""Job plumbing: enqueue only after commit, on the committing thread's own session; the worker class."""
import threading

from rq import Queue
from rq.registry import FailedJobRegistry

from app.extensions import db
from app.jobs import IDLE_HEARTBEAT_EVERY, KassaWorker, enqueue_after_commit, queue


def test_enqueue_waits_for_commit_and_is_dropped_on_rollback(app, redis):
    q = queue("default")
    q.empty()
    enqueue_after_commit(db.session, "builtins.print", "rolled back")
    db.session.rollback()
    db.session.commit()
    assert q.count == 0
    enqueue_after_commit(db.session, "builtins.print", "committed")
    assert q.count == 0
    db.session.commit()
    assert q.count == 1
    q.empty()


def test_another_threads_commit_does_not_fire_my_enqueue(app, redis):
    q = queue("default")
    q.empty()
    enqueue_after_commit(db.session, "builtins.print", "mine")

    def other_thread_commits():
        with app.app_context():
            db.session.commit()
            db.session.remove()

    worker = threading.Thread(target=other_thread_commits)
    worker.start()
    worker.join()
    assert q.count == 0
    db.session.commit()
    assert q.count == 1
    q.empty()


def test_kassa_worker_runs_jobs_and_keeps_rqs_bookkeeping(app, redis):
    q = Queue("kassa-worker-test", connection=redis)
    q.empty()
    ok = q.enqueue("builtins.len", [1, 2, 3], result_ttl=60)
    bad = q.enqueue("builtins.int", "not a number")
    worker = KassaWorker([q], connection=redis)
    worker.work(burst=True, logging_level="WARNING")
    assert ok.get_status(refresh=True) == "finished" and ok.return_value() == 3
    assert bad.get_status(refresh=True) == "failed" and bad.id in FailedJobRegistry(queue=q).get_job_ids()


def test_kassa_worker_renews_its_idle_heartbeat_at_most_every_few_seconds(app, redis):
    worker = KassaWorker([Queue("kassa-worker-test", connection=redis)], connection=redis)
    worker.register_birth()
    try:
        worker.heartbeat()
        first = redis.hget(worker.key, "last_heartbeat")
        worker.heartbeat()  # moments later: nothing sent
        assert redis.hget(worker.key, "last_heartbeat") == first
        worker.last_heartbeat -= IDLE_HEARTBEAT_EVERY
        worker.heartbeat()
        assert redis.hget(worker.key, "last_heartbeat") != first
        assert redis.ttl(worker.key) > 0
    finally:
        worker.register_death()


def test_the_worker_starts_rqs_loop_again_when_redis_drops_it(app, monkeypatch, caplog):
    import redis as redis_lib

    import worker

    stop = threading.Event()
    runs = []

    class FlakyWorker:
        """RQ's loop: twice it cannot reach Redis (raises, or quits on its own), then it is asked to stop."""

        stop_requested = None

        def __init__(self, queues, connection):
            pass

        def work(self, **options):
            runs.append(options)
            if len(runs) == 1:
                raise redis_lib.ConnectionError("Connection refused")
            if len(runs) == 3:
                stop.set()  # SIGTERM

    monkeypatch.setattr(worker, "KassaWorker", FlakyWorker)
    monkeypatch.setattr(worker, "RQ_RESTART_BASE_SECONDS", 0.001)
    monkeypatch.setattr(worker, "_stop_on_signals", lambda stop: None)  # pytest keeps its own handlers
    caplog.set_level("WARNING", logger="kassa.worker")
    worker.run_rq(app, ["default"], stop, burst=False)
    assert len(runs) == 3 and stop.is_set()
    assert sum("starting it again" in message for message in caplog.messages) == 2
