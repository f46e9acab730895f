"""RQ entry points of payouts: the scheduled payouts of every book (test mode on the sandbox clock's day), and the
rail's work on due payouts (send, check, watch for a return). Thin wrappers over app/payouts/service.py."""
import logging

from flask import current_app

from app.extensions import db
from app.jobs import job
from app.ledger.integration import ledger_hmac_key
from app.models_base import utcnow
from app.payouts import service
from app.payouts.clock import payout_today
from app.payouts.rail import SandboxRail
from app.scoping import Scope

log = logging.getLogger(__name__)


@job
def run_payout_schedules(livemode: bool = False) -> dict:
    """Create the scheduled payouts due today in every book of a mode (each subject and currency in its own
    transaction; the business key per period makes a second run, or a second scheduler, pay nothing twice)."""
    today = payout_today(current_app.config, livemode)
    books = service.books_with_payables(db.session, livemode)
    db.session.rollback()
    created = 0
    for merchant_id in books:
        results = service.run_schedules(lambda: db.session, Scope(merchant_id, livemode), today=today,
                                        hmac_key=ledger_hmac_key(), commit=db.session.commit)
        created += sum(1 for r in results if r.created)
    return {"day": today.isoformat(), "books": len(books), "created": created}


@job
def process_due_payouts() -> dict:
    """Send pending payouts to the rail, ask in-transit ones for their outcome, watch paid ones for a return."""
    rail = SandboxRail(current_app.config)
    claimed = service.claim_due(db.session, utcnow())
    db.session.commit()
    outcomes: dict[str, int] = {}
    for scope, payout_id in claimed:
        try:
            result = service.process_payout(db.session, scope, payout_id, rail, hmac_key=ledger_hmac_key(),
                                            commit=db.session.commit)
        except Exception:  # noqa: BLE001 - one payout's trouble must not stop the others; its lease runs out
            db.session.rollback()
            log.warning("payouts: rail step of %s failed; asked again after the lease", payout_id, exc_info=True)
            result = "error"
        outcomes[result] = outcomes.get(result, 0) + 1
    return outcomes
