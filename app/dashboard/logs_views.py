"""Developers › Logs: the API requests of the current merchant and mode, newest first, and one in full.

Rows are written by app/api/request_log.py after each response (bodies already redacted) and kept
30 days. Filters: status class, method, and a search over request id, idempotency key and path.
"""
from flask import g, request
from sqlalchemy import or_

from app.accounts.permissions import Action
from app.dashboard import bp
from app.dashboard.context import merchant_view
from app.dashboard.reporting_helpers import page_size, render, row_or_404
from app.extensions import db, htmx
from app.reporting import listing
from app.reporting.models import ApiRequestLog
from app.reporting.request_logs import RETENTION

STATUS_CLASSES = {"2xx": (200, 300), "4xx": (400, 500), "5xx": (500, 600)}
METHODS = ("GET", "POST", "DELETE")


@bp.route("/<merchant_id>/<mode>/developers/logs")
@merchant_view(Action.VIEW)
def logs():
    status = request.args.get("status", "")
    method = request.args.get("method", "").upper()
    q = request.args.get("q", "").strip()[:255]
    statement = g.scope.select(ApiRequestLog)
    if status in STATUS_CLASSES:
        low, high = STATUS_CLASSES[status]
        statement = statement.where(ApiRequestLog.status >= low, ApiRequestLog.status < high)
    if method in METHODS:
        statement = statement.where(ApiRequestLog.method == method)
    if q:
        options = [ApiRequestLog.request_id == q, ApiRequestLog.idempotency_key == q, ApiRequestLog.id == q]
        if q.startswith("/"):
            escaped = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            options.append(ApiRequestLog.path.like(escaped + "%", escape="\\"))
        statement = statement.where(or_(*options))
    limit = page_size()
    page = listing.page(db.session, g.scope, statement, ApiRequestLog, after=request.args.get("after"),
                        before=request.args.get("before"), limit=limit)
    args = {k: v for k, v in {"status": status if status in STATUS_CLASSES else "",
                              "method": method if method in METHODS else "", "q": q}.items() if v}
    any_logs = bool(page.rows) or db.session.scalar(
        g.scope.select(ApiRequestLog).with_only_columns(ApiRequestLog.id).limit(1)) is not None
    context = dict(page=page, args=args, limit=limit, any_logs=any_logs, status_classes=STATUS_CLASSES,
                   methods=METHODS, retention_days=RETENTION.days)
    if htmx and htmx.target == "logs-results":
        return render("dashboard/logs/_results.html", **context)
    return render("dashboard/logs/list.html", **context)


@bp.route("/<merchant_id>/<mode>/developers/logs/<log_id>")
@merchant_view(Action.VIEW)
def log_detail(log_id: str):
    return render("dashboard/logs/detail.html", log=row_or_404(ApiRequestLog, log_id))
