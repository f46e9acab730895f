"""/admin/psp: each connector's circuit breaker (state, recent failures) with a manual override, and the
latest disputes PSPs reported. Platform admins only (everyone else gets 404)."""
import logging

from flask import current_app, flash, g, redirect, render_template, request, url_for
from flask_login import current_user
from redis import RedisError
from sqlalchemy import select

from app.accounts.audit import audit
from app.admin import bp
from app.dashboard.context import platform_admin_required
from app.extensions import db
from app.psp.models import Dispute
from app.psp.router import router_for_app

log = logging.getLogger(__name__)

ACTIONS = {
    "force_open": "forced open",
    "force_close": "forced closed",
    "reset": "reset to automatic",
}
# Disputes shown on the page: the latest ones; the dispute workflow (a later issue) will page them.
RECENT_DISPUTES = 20


@bp.get("/psp")
@platform_admin_required
def psp_status():
    """Breaker state of every configured connector, plus recent disputes."""
    router = router_for_app(current_app)
    rows, redis_error = [], None
    for name in router.connector_names():
        spec = router.specs[name]
        breaker = router.breaker(name)
        snapshot = None
        if breaker is not None:
            try:
                snapshot = breaker.snapshot()
            except RedisError as exc:
                redis_error = f"{type(exc).__name__}"
        rows.append({"name": name, "vault": spec.vault, "test_only": spec.test_only, "snapshot": snapshot,
                     "settings": breaker.settings if breaker else None})
    # Cross-merchant on purpose: the platform operator's view.
    disputes = db.session.scalars(select(Dispute).order_by(Dispute.created_at.desc()).limit(RECENT_DISPUTES)).all()
    return render_template("admin/psp.html", rows=rows, redis_error=redis_error, disputes=disputes,
                           actions=ACTIONS)


@bp.post("/psp/<connector>/breaker")
@platform_admin_required
def psp_breaker_override(connector: str):
    """Force a connector's breaker open or closed, or hand it back to automatic control."""
    router = router_for_app(current_app)
    action = request.form.get("action", "")
    breaker = router.breaker(connector) if connector in router.specs else None
    if breaker is None or action not in ACTIONS:
        return render_template("errors/404.html", error=None), 404
    try:
        state = getattr(breaker, action)()
    except RedisError:
        log.exception("breaker override of %s failed", connector)
        flash(f"Could not change the breaker of {connector}: Redis is unavailable.", "error")
        return redirect(url_for("admin.psp_status"))
    audit(db.session, f"psp.breaker.{action}", actor_user_id=current_user.id, actor_label=current_user.email,
          target=connector, ip=request.remote_addr, user_agent=request.user_agent.string,
          request_id=g.get("request_id"), details={"state": state.value})
    db.session.commit()
    flash(f"Breaker of {connector} {ACTIONS[action]}; it is now {state.value.replace('_', '-')}.", "success")
    return redirect(url_for("admin.psp_status"))
