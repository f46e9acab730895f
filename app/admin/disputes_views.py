"""/admin/disputes: disputes across merchants that are due within INBOX_WINDOW with no response yet (the
operators' inbox kind, app/disputes/inbox.py), the latest ones, and a dispute's page with its evidence and files
(downloads only, as for the merchant). Platform admins only (everyone else gets 404)."""
from flask import abort, render_template
from sqlalchemy import select

from app.accounts.models import Merchant
from app.admin import bp
from app.admin.helpers import merchant_names
from app.api.files import download
from app.dashboard.context import platform_admin_required
from app.disputes import evidence as evidence_rules
from app.disputes import files as dispute_files
from app.disputes.models import Dispute
from app.disputes.queries import INBOX_WINDOW, due_without_evidence
from app.disputes.service import evidence_files
from app.events import Event
from app.extensions import db
from app.models_base import utcnow
from app.scoping import Scope

# The latest disputes listed under the due ones: enough for an incident; the inbox pages the rest.
RECENT_DISPUTES = 50


@bp.get("/disputes")
@platform_admin_required
def disputes():
    """Due soon without a response (soonest first), then the latest disputes of every merchant."""
    due, count = due_without_evidence(db.session, utcnow() + INBOX_WINDOW, limit=RECENT_DISPUTES)
    # Cross-merchant on purpose: the platform operator's view.
    recent = db.session.scalars(select(Dispute).order_by(Dispute.created_at.desc()).limit(RECENT_DISPUTES)).all()
    return render_template("admin/disputes.html", due=due, due_count=count, recent=recent, now=utcnow(),
                           window_hours=int(INBOX_WINDOW.total_seconds() // 3600),
                           merchants=merchant_names([d.merchant_id for d in [*due, *recent]]))


def _dispute_or_404(merchant_id: str, dispute_id: str) -> Dispute:
    dispute = db.session.get(Dispute, (merchant_id, dispute_id))
    if dispute is None:
        abort(404)
    return dispute


@bp.get("/disputes/<merchant_id>/<dispute_id>")
@platform_admin_required
def dispute(merchant_id: str, dispute_id: str):
    """One dispute: what the PSP reported, what the merchant prepared or submitted, what was booked."""
    row = _dispute_or_404(merchant_id, dispute_id)
    scope = Scope(row.merchant_id, row.livemode)
    events = db.session.scalars(scope.select(Event, Event.object_id == row.id).order_by(Event.created_at, Event.id)).all()
    return render_template("admin/dispute.html", dispute=row, events=events, fields=evidence_rules.FIELDS,
                           files=evidence_files(db.session, scope, row.evidence or {}),
                           merchant=db.session.get(Merchant, row.merchant_id))


@bp.get("/disputes/<merchant_id>/<dispute_id>/files/<file_id>")
@platform_admin_required
def dispute_file(merchant_id: str, dispute_id: str, file_id: str):
    """A file the dispute's evidence names, as a download only."""
    row = _dispute_or_404(merchant_id, dispute_id)
    stored = evidence_files(db.session, Scope(row.merchant_id, row.livemode), row.evidence or {}).get(file_id)
    if stored is None:
        abort(404)
    try:
        return download(stored)
    except dispute_files.FileUnavailable:
        abort(500)
