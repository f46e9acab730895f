"""Settings › Go live: the checklist a platform operator checks before enabling live mode, and the forms
that complete it (business details; a live webhook endpoint, or the word that none is needed). Owners and
admins. The checklist itself is app/merchants/lifecycle.py's."""
from flask import flash, g, redirect, render_template
from flask_login import current_user

from app.accounts.permissions import Action
from app.accounts.service import Meta
from app.dashboard import bp
from app.dashboard.context import merchant_view
from app.dashboard.forms import BusinessDetailsForm, WebhooksNotNeededForm
from app.dashboard.helpers import dash_url, request_meta
from app.extensions import db
from app.merchants import lifecycle

INVALID_FORM = 422


def _page(details: BusinessDetailsForm | None = None, status: int = 200):
    merchant = g.merchant
    if details is None:
        details = BusinessDetailsForm(formdata=None, obj=merchant)
    webhooks = WebhooksNotNeededForm(formdata=None, not_needed=merchant.webhooks_not_needed)
    return render_template("dashboard/go_live.html", checklist=lifecycle.live_checklist(db.session, merchant),
                           details=details, webhooks=webhooks), status


@bp.route("/<merchant_id>/<mode>/settings/go-live")
@merchant_view(Action.MANAGE_SETTINGS)
def go_live():
    return _page()


@bp.route("/<merchant_id>/<mode>/settings/go-live/details", methods=["POST"])
@merchant_view(Action.MANAGE_SETTINGS)
def go_live_details():
    form = BusinessDetailsForm()
    if not form.validate():
        return _page(form, INVALID_FORM)
    changed = lifecycle.update_business_details(db.session, g.merchant, form.data, actor=current_user,
                                                meta=Meta(**request_meta()))
    db.session.commit()
    flash("Business details saved." if changed else "Nothing changed.", "success")
    return redirect(dash_url("dashboard.go_live"), code=303)


@bp.route("/<merchant_id>/<mode>/settings/go-live/webhooks", methods=["POST"])
@merchant_view(Action.MANAGE_SETTINGS)
def go_live_webhooks():
    form = WebhooksNotNeededForm()
    if not form.validate():
        return _page(status=INVALID_FORM)
    lifecycle.set_webhooks_not_needed(db.session, g.merchant, bool(form.not_needed.data), actor=current_user,
                                      meta=Meta(**request_meta()))
    db.session.commit()
    flash("Saved.", "success")
    return redirect(dash_url("dashboard.go_live"), code=303)
