"""RQ entry points of the PSP layer: the sweep that (re)processes stored callbacks."""
import logging

from app.extensions import db
from app.jobs import job
from app.psp import callbacks

log = logging.getLogger(__name__)


def process_stored_callback(session, row_id: str) -> str | None:
    """Process one stored callback in its own transaction; a failure is recorded for a later retry.

    Shared by the hook views (right after storing) and the sweep. Commits (it owns its transactions).
    """
    try:
        result = callbacks.process_callback(session, row_id)
        session.commit()
        return result
    except Exception as exc:  # noqa: BLE001 - any handler failure: roll back, note it, retry later
        session.rollback()
        log.exception("processing callback %s failed; the sweep retries it", row_id)
        try:
            callbacks.record_failure(session, row_id, f"{type(exc).__name__}: {exc}")
            session.commit()
        except Exception:  # noqa: BLE001 - the sweep finds the row again either way
            session.rollback()
            log.exception("could not record the failure of callback %s", row_id)
        return None


@job
def process_due_callbacks() -> list[str]:
    """Process callbacks whose processing failed earlier (or never ran) and is due again."""
    session = db.session
    due = callbacks.due_callbacks(session)
    session.rollback()  # end the read transaction: each callback gets its own
    done = []
    for row_id in due:
        if process_stored_callback(session, row_id) is not None:
            done.append(row_id)
    if due:
        log.info("callback sweep: %d due, %d processed", len(due), len(done))
    return done
