"""The dashboard shell: the landing redirect and the mode switch; the template globals of the layout.

The shell's placeholder pages (Home, Payments, Balances, API keys, Webhooks, Logs) each lived here as one
small function until the feature owning the page replaced it under the same endpoint name; all have been
replaced. A new page without content yet can use the `empty_state` macro of templates/dashboard/_macros.html.
"""
from flask import g, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from werkzeug.routing import BuildError

from app.accounts.audit import audit
from app.accounts.permissions import Action
from app.dashboard import bp
from app.dashboard.context import MODES, merchant_view
from app.dashboard.helpers import (
    dash_url,
    opens_test,
    request_meta,
    template_globals,
    user_merchants,
)
from app.extensions import db

bp.app_context_processor(template_globals)
bp.add_app_template_test(opens_test, "opens")


@bp.route("/")
@login_required
def index():
    """/dashboard/: the user's first merchant in test mode (login_required sends strangers to /login)."""
    merchants = user_merchants(current_user.id)
    if not merchants:
        if current_user.is_platform_admin:
            return redirect(url_for("admin.index"))  # an operator without a team of their own
        return render_template("dashboard/no_merchant.html")
    return redirect(url_for("dashboard.home", merchant_id=merchants[0].id, mode="test"))


@bp.route("/<merchant_id>/<mode>/switch-mode", methods=["POST"])
@merchant_view(Action.VIEW)
def switch_mode():
    """Go to the same page in the other mode, and record that in the audit log."""
    target = "live" if g.mode == "test" else "test"
    audit(db.session, "dashboard.mode_switched", merchant_id=g.merchant.id, livemode=MODES[target],
          actor_user_id=current_user.id, actor_label=current_user.email,
          details={"from": g.mode, "to": target}, **request_meta())
    db.session.commit()
    endpoint = request.form.get("next_endpoint", "")
    location = None
    # Only dashboard pages whose URL is merchant + mode alone can be re-targeted; anything else goes home.
    if endpoint.startswith("dashboard.") and endpoint != "dashboard.switch_mode":
        try:
            location = dash_url(endpoint, mode=target)
        except BuildError:
            location = None
    return redirect(location or dash_url("dashboard.home", mode=target), code=303)

