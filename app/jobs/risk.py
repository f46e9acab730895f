"""RQ entry points of risk: the sweep that voids reviews left open before their authorization would expire; the
learned score's weekly drift report and its training (a candidate for an operator's approval, issue 23).

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

# How long the training job may run before RQ stops it. RQ's default (180 s) is far below training on a large
# history: reading and fitting 1,000,000 labelled payments takes about 7 minutes (bench/RESULTS.md), more on a
# loaded machine. Whoever enqueues ``train_risk_model`` passes it as ``job_timeout``.
TRAINING_JOB_TIMEOUT_SECONDS = 3 * 3600


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


@job
def train_risk_model(actor: str | None = None) -> str | None:
    """Train a candidate on the live outcomes (what ``flask risk train`` does): its version, or None when there are
    too few labels (cold start: logged, nothing stored). The candidate waits for an operator's decision in the
    console (/admin/risk/models); it never scores before. Enqueued by the console's "Train now"."""
    from app.models_base import utcnow
    from app.risk.learning import training

    session = db.session
    window = int(current_app.config.get("RISK_DISPUTE_WINDOW_DAYS", training.DISPUTE_WINDOW_DAYS))
    try:
        with commit_or_rollback(session):
            labels = training.load_labels(session, now=utcnow(), window_days=window)
            trained = training.train(session, labels, actor=actor or "job")
            version = trained.model.version
    except training.ColdStart as refusal:
        log.warning("learned risk model not trained: %s", refusal)
        return None
    log.info("learned risk model %s trained in %.1f s; waiting for approval", version, trained.seconds)
    return version
