"""CSV export of the current filtered payments or refunds list: start, watch the progress, download.

Anyone who may see the list may export it (Action.VIEW). The file is built by a job
(app/jobs/exports.py); this page polls its row with htmx once a second for the progress bar and offers
the download when it is ready. Files expire a day after they are built.
"""
from flask import Response, abort, g, redirect, request, stream_with_context
from flask_login import current_user

from app.accounts.audit import audit
from app.accounts.permissions import Action
from app.dashboard import bp
from app.dashboard.context import merchant_view
from app.dashboard.helpers import dash_url, request_meta, user_locale
from app.dashboard.reporting_helpers import render, row_or_404, zone
from app.extensions import db, htmx
from app.jobs import enqueue_after_commit
from app.models_base import utcnow
from app.reporting import exports
from app.reporting.models import DashboardExport, ExportStatus


@bp.route("/<merchant_id>/<mode>/exports", methods=["POST"])
@merchant_view(Action.VIEW)
def export_create():
    """Queue an export of the list the form came from (its filters travel as the form's fields)."""
    kind = request.form.get("kind", "")
    if kind not in exports.KINDS:
        abort(400)
    export = exports.create_export(db.session, g.scope, kind, request.form, timezone=zone().key,
                                   user_id=current_user.id, now=utcnow(), locale=user_locale())
    enqueue_after_commit(db.session, "app.jobs.exports.build_export", export.id, queue_name="default")
    # Who took a copy of which customer data, and when.
    audit(db.session, "dashboard.export_created", merchant_id=g.merchant.id, livemode=g.scope.livemode,
          actor_user_id=current_user.id, actor_label=current_user.email, target=export.id,
          details={"kind": kind, "filters": export.filters}, **request_meta())
    db.session.commit()
    if htmx:
        return render("dashboard/exports/_status.html", export=export, expired=False)
    return redirect(dash_url("dashboard.export_show", export_id=export.id), code=303)


def _export_or_404(export_id: str) -> DashboardExport:
    return row_or_404(DashboardExport, export_id)


@bp.route("/<merchant_id>/<mode>/exports/<export_id>")
@merchant_view(Action.VIEW)
def export_show(export_id: str):
    """The export's progress (a fragment for htmx polling, a page otherwise)."""
    export = _export_or_404(export_id)
    template = "dashboard/exports/_status.html" if htmx else "dashboard/exports/show.html"
    return render(template, export=export, expired=export.expires_at <= utcnow())


@bp.route("/<merchant_id>/<mode>/exports/<export_id>/download")
@merchant_view(Action.VIEW)
def export_download(export_id: str):
    """Stream the CSV (chunk by chunk from the database) as an attachment."""
    export = _export_or_404(export_id)
    if export.expires_at <= utcnow():
        abort(410)
    if export.status != ExportStatus.SUCCEEDED:
        abort(409)
    scope, name, chunks = g.scope, exports.filename(export), export.chunks
    db.session.commit()

    def generate():
        # A fresh read per chunk keeps at most one chunk in memory, however big the file.
        try:
            yield from exports.stream(db.session, scope, export_id, chunks)
        finally:
            db.session.rollback()

    return Response(stream_with_context(generate()), mimetype="text/csv", headers={
        "Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff"})
