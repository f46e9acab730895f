"""/admin/ledger: the platform trial balance (every book, per mode and currency) and the last verify.

Platform admins only (everyone else gets 404). Verify itself runs as a job (app/ledger/jobs.py) or as
`flask ledger verify`; this page shows its last platform-wide result and can ask for a new run.
"""
import logging

from flask import flash, redirect, render_template, url_for
from flask_login import current_user

from app.accounts.audit import audit
from app.admin import bp
from app.dashboard.context import platform_admin_required
from app.dashboard.helpers import request_meta
from app.extensions import db
from app.ledger.integration import last_verify
from app.ledger.queries import journal_totals, trial_balance
from app.money import format_money

log = logging.getLogger(__name__)


@bp.get("/ledger")
@platform_admin_required
def ledger():
    """Trial balance of the whole platform and the last verify result."""
    balance = trial_balance(db.session)
    totals = journal_totals(db.session)
    db.session.rollback()  # read-only
    return render_template("admin/ledger.html", balance=balance, totals=totals, verify=last_verify(),
                           money=format_money)


@bp.post("/ledger/verify")
@platform_admin_required
def ledger_verify():
    """Queue a platform-wide verify (it reads every entry: a job, not a request)."""
    from app.jobs import enqueue

    try:
        enqueue("app.ledger.jobs.verify_ledger")
    except Exception:  # noqa: BLE001 - Redis down: say so, nothing was promised
        log.exception("could not enqueue the ledger verify")
        flash("Could not queue the verify: the job queue is unavailable. Try `python3 kassa.py flask ledger verify`.", "error")
        return redirect(url_for("admin.ledger"), code=303)
    audit(db.session, "ledger.verify_requested", actor_user_id=current_user.id, actor_label=current_user.email,
          **request_meta())
    db.session.commit()
    flash("Verify queued: this page shows its result when it has run.", "success")
    return redirect(url_for("admin.ledger"), code=303)
