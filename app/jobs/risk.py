"""RQ entry points of risk: the sweep that voids reviews left open before their authorization would expire.

The voids it stages are attempts due in the database, run by the PSP dispatcher (app/jobs/dispatcher.py).
"""
import logging

from flask import current_app

from app.extensions import db
from app.jobs import job
from app.jobs.transactions import commit_or_rollback
from app.payments.deps import deps_for
from app.risk.reviews import expire_due_reviews

log = logging.getLogger(__name__)


@job
def expire_reviews() -> list[str]:
    """Time out open reviews due now (each voided, closed ``timed_out``, with an alert)."""
    session = db.session
    deps = deps_for(current_app._get_current_object())
    with commit_or_rollback(session):
        return expire_due_reviews(session, deps)


@job
def report_score_drift() -> str | None:
    """Last ISO week's score drift (PSI) report, once per week (app/risk/learning/drift.py)."""
    from app.risk.learning.drift import report_week

    session = db.session
    with commit_or_rollback(session):
        report = report_week(session)
        return report.week if report else None
