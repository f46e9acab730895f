"""RQ entry points of the dashboard's upkeep: folding rollup deltas, expiring the API request log."""
import logging

from app.extensions import db
from app.jobs import job
from app.models_base import utcnow
from app.reporting import request_logs, rollups

log = logging.getLogger(__name__)


@job
def fold_rollups() -> int:
    """Move committed rollup deltas into the rollups until none are left (each batch its own commit)."""
    session = db.session
    total = 0
    try:
        while True:
            moved = rollups.fold_deltas(session)
            session.commit()
            total += moved
            if moved < rollups.FOLD_BATCH:
                return total
    except Exception:
        session.rollback()
        raise


@job
def sweep_request_logs() -> int:
    """Delete API request log rows older than 30 days."""
    try:
        return request_logs.sweep(db.session, utcnow())
    except Exception:
        db.session.rollback()
        raise
