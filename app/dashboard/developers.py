"""Developers › API keys: list, create, roll (with a grace period) and revoke the keys of the current mode.

Owners, admins and developers only (Action.MANAGE_DEVELOPERS); analysts get 403 and other merchants' members
404 from @merchant_view. A new secret is shown exactly once, in the response to the POST that created it
(never in a redirect, the session or a URL), with ``Cache-Control: no-store`` so that it is not kept in the
browser's cache either. Create and roll forms carry a one-time token, so a reload that re-posts the form
does not mint a second key. The roll and revoke confirmation steps load in place with htmx and are full
pages without JavaScript.
"""
import logging
import secrets
from datetime import datetime, timezone

from flask import abort, flash, g, redirect, render_template, request
from flask_login import current_user
from wtforms import HiddenField, RadioField, StringField
from wtforms.validators import AnyOf, DataRequired, Length, Optional

from app.accounts import api_keys as service
from app.accounts.permissions import Action
from app.api.auth import hmac_key
from app.dashboard import bp
from app.dashboard.context import merchant_view
from app.dashboard.forms import KassaForm
from app.dashboard.helpers import dash_url, request_meta
from app.dashboard.reauth import demand_reauth, kept_form, reauth_required
from app.extensions import db, htmx, redis_client
from app.merchants import lifecycle
from app.models_base import utcnow

try:  # WTForms >= 3.3 deprecates (value, label) tuples as choices
    from wtforms import SelectChoice as _Choice
except ImportError:  # pragma: no cover - older WTForms
    def _Choice(value, label):
        return (value, label)

log = logging.getLogger(__name__)

INVALID_FORM = 422
# A one-time form token is remembered for a day: far longer than anyone keeps a form open before submitting.
FORM_TOKEN_TTL = 24 * 3600
_FORM_TOKEN_KEY = "kassa:form-token:api-keys:{}"


class CreateKeyForm(KassaForm):
    kind = HiddenField(validators=[DataRequired(), AnyOf(service.KINDS)])
    name = StringField("Name (optional)", validators=[
        Optional(), Length(max=100, message="Use at most 100 characters.")])
    form_token = HiddenField(validators=[DataRequired()])


class RollKeyForm(KassaForm):
    grace = RadioField("When should the old key stop working?", default="24h",
                       choices=[_Choice(value, label) for value, label in service.GRACE_LABELS.items()],
                       validators=[DataRequired("Choose when the old key stops working.")])
    form_token = HiddenField(validators=[DataRequired()])


class RevokeKeyForm(KassaForm):
    """The confirmation button (the CSRF token is the whole form)."""


def _utc(value: datetime) -> datetime:
    """Times are shown in UTC (and say so), whatever the database session's time zone."""
    return value.astimezone(timezone.utc)


def _ctx() -> service.AuditContext:
    meta = request_meta()
    return service.AuditContext(actor_user_id=current_user.id, actor_label=current_user.email, ip=meta["ip"],
                                user_agent=meta["user_agent"], request_id=meta["request_id"])


def _new_form_token() -> str:
    return secrets.token_urlsafe(16)


def _claim_form_token(token: str) -> bool:
    """True the first time a form's token is submitted; False on a re-post (reload, double click)."""
    try:
        return bool(redis_client().set(_FORM_TOKEN_KEY.format(token), "1", nx=True, ex=FORM_TOKEN_TTL))
    except Exception:  # noqa: BLE001 - Redis down: a possible duplicate key beats refusing the action
        log.warning("form token store unavailable; accepting the form", exc_info=True)
        return True


def _key_or_404(key_id: str) -> service.ApiKey:
    """A key of the current merchant and mode (another merchant's or mode's key id is a 404)."""
    try:
        return service.get_key(db.session, g.scope, key_id)
    except service.KeyNotFound:
        abort(404)


def _render_list(create_form: CreateKeyForm | None = None, status: int = 200):
    keys = service.list_keys(db.session, g.scope)
    now = utcnow()
    usable = [k for k in keys if k.usable(now)]
    inactive = [k for k in keys if not k.usable(now)]
    if create_form is None:
        kept = kept_form() if request.method == "GET" else None  # the name typed before re-authenticating
        create_form = CreateKeyForm(formdata=kept if kept and kept.get("kind") == "secret" else None,
                                    form_token=_new_form_token())
    return render_template(
        "dashboard/developers/api_keys.html", usable=usable, inactive=inactive, now=now,
        create_form=create_form, secret_form_token=_new_form_token(), publishable_form_token=_new_form_token(),
        utc=_utc,
    ), status


def _reveal(new: service.NewKey, rolled_from: service.ApiKey | None = None):
    response = render_template("dashboard/developers/api_key_created.html", key=new.row, plaintext=new.plaintext,
                               rolled_from=rolled_from, utc=_utc)
    headers = {"Cache-Control": "no-store", "Pragma": "no-cache", "Referrer-Policy": "no-referrer"}
    return response, 201, headers


@bp.route("/<merchant_id>/<mode>/developers/api-keys")
@merchant_view(Action.MANAGE_DEVELOPERS)
def api_keys():
    return _render_list()


@bp.route("/<merchant_id>/<mode>/developers/api-keys/create", methods=["POST"])
@merchant_view(Action.MANAGE_DEVELOPERS)
def create_api_key():
    form = CreateKeyForm()
    if not form.validate():
        if form.kind.errors or form.form_token.errors:
            abort(400)
        return _render_list(form, INVALID_FORM)
    if g.scope.livemode and not lifecycle.may_create_live_keys(g.merchant):
        flash("Live API keys are available once a platform operator has enabled live mode "
              "(Settings › Go live).", "error")
        return redirect(dash_url("dashboard.api_keys"), code=303)
    if form.kind.data == "secret":  # shown once, in this response: revealing a secret key needs it
        reauth = demand_reauth(form_page=dash_url("dashboard.api_keys"))
        if reauth is not None:
            return reauth
    if not _claim_form_token(form.form_token.data):
        flash("That form was already submitted; the key it created is listed below.", "info")
        return redirect(dash_url("dashboard.api_keys"), code=303)
    new = service.create_key(db.session, g.scope, form.kind.data, hmac_key=hmac_key(),
                             name=(form.name.data or "").strip() or None, ctx=_ctx())
    db.session.commit()
    return _reveal(new)


@bp.route("/<merchant_id>/<mode>/developers/api-keys/<key_id>/roll", methods=["GET", "POST"])
@merchant_view(Action.MANAGE_DEVELOPERS)
@reauth_required
def roll_api_key(key_id: str):
    key = _key_or_404(key_id)
    form = RollKeyForm() if _is_post() else RollKeyForm(formdata=kept_form(), form_token=_new_form_token())
    if _is_post():
        if not form.validate():
            if form.form_token.errors or form.csrf_token.errors:
                abort(400)
            return _confirm_page("roll", key, form, INVALID_FORM)
        if not _claim_form_token(form.form_token.data):
            flash("That form was already submitted; the new key is listed below.", "info")
            return redirect(dash_url("dashboard.api_keys"), code=303)
        try:
            new = service.roll_key(db.session, g.scope, key.id, form.grace.data, hmac_key=hmac_key(), ctx=_ctx())
        except service.KeyNotActive:
            db.session.rollback()
            flash(f"{key.masked} can no longer be rolled (it is {key.status()}).", "error")
            return redirect(dash_url("dashboard.api_keys"), code=303)
        db.session.commit()
        return _reveal(new, rolled_from=key)
    return _confirm_page("roll", key, form)


@bp.route("/<merchant_id>/<mode>/developers/api-keys/<key_id>/revoke", methods=["GET", "POST"])
@merchant_view(Action.MANAGE_DEVELOPERS)
def revoke_api_key(key_id: str):
    key = _key_or_404(key_id)
    form = RevokeKeyForm() if _is_post() else RevokeKeyForm(formdata=None)
    if _is_post():
        if not form.validate():
            abort(400)
        try:
            service.revoke_key(db.session, g.scope, key.id, ctx=_ctx())
        except service.KeyNotActive:
            db.session.rollback()
            flash(f"{key.masked} is already {key.status()}.", "info")
            return redirect(dash_url("dashboard.api_keys"), code=303)
        db.session.commit()
        flash(f"{key.masked} was revoked; requests using it now fail.", "success")
        return redirect(dash_url("dashboard.api_keys"), code=303)
    return _confirm_page("revoke", key, form)


def _is_post() -> bool:
    return request.method == "POST"


def _confirm_page(action: str, key: service.ApiKey, form, status: int = 200):
    """The confirmation step: a fragment for htmx (swapped in under the key), a full page otherwise."""
    if not key.usable():
        flash(f"{key.masked} is {key.status()}; there is nothing to {action}.", "info")
        return redirect(dash_url("dashboard.api_keys"), code=303)
    if action == "roll" and key.status() != "active":
        flash(f"{key.masked} was already rolled; revoke it to end its grace period early.", "info")
        return redirect(dash_url("dashboard.api_keys"), code=303)
    fragment = f"dashboard/developers/_{action}_confirm.html"
    if htmx and not htmx.boosted:
        return render_template(fragment, key=key, form=form), status
    return render_template("dashboard/developers/api_key_confirm.html", fragment=fragment, action=action,
                           key=key, form=form), status
