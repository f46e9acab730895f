"""RQ entry points of the hosted checkout (thin: the work is in app.checkout.flow)."""
from flask import current_app

from app.jobs import job


@job
def sweep_checkout_sessions() -> dict:
    """Complete open sessions whose payment is authorized and expire those past expires_at.

    Scheduled every 30 s (app/jobs/schedule.py): an expired page refuses to pay by itself (the page
    checks expires_at), so the sweep only has to deliver the sessions' events reasonably soon.
    """
    from app.checkout.flow import sweep
    from app.extensions import db
    from app.payments.deps import deps_for

    return sweep(db.session, deps=deps_for(current_app._get_current_object()))
