"""RQ entry point: a platform-wide verify whose result the admin page shows.

Scheduled hourly in app/jobs/schedule.py (a
verify reads every entry once, which on a large ledger is minutes of sequential reading), or enqueue it
from /admin/ledger.
"""
import logging

from app.extensions import db
from app.jobs import job
from app.ledger.integration import ledger_hmac_key, run_verify, save_last_verify

log = logging.getLogger(__name__)


@job
def verify_ledger() -> bool:
    """Verify every book, store the result for /admin/ledger, log an error on any discrepancy."""
    report = run_verify(db.session, ledger_hmac_key())
    save_last_verify(report)
    if report.ok:
        log.info("ledger verify OK: %d accounts, %d entries", report.accounts, report.entries)
    else:
        log.error("ledger verify found %d discrepancies; first: %s", report.discrepancy_count, report.first.message)
    return report.ok
