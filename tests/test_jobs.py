"""Job plumbing: enqueue only after commit, on the committing thread's own session."""
import threading

from app.extensions import db
from app.jobs import enqueue_after_commit, queue


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
