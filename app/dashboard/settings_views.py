"""Settings › Branding and the audit log (owners and admins), Settings › Security (owners)."""
from datetime import datetime

from flask import flash, g, redirect, render_template, request
from flask_login import current_user
from sqlalchemy import select, tuple_

from app.accounts.audit import AuditEntry, audit
from app.accounts.permissions import Action
from app.accounts.security import SecuritySettingsError, refund_threshold, update_security_settings
from app.accounts.service import Meta
from app.dashboard import bp
from app.dashboard.context import merchant_view
from app.dashboard.forms import BrandingForm, SecuritySettingsForm
from app.dashboard.helpers import dash_url, request_meta, user_locale
from app.dashboard.reauth import demand_reauth, kept_form
from app.extensions import db, htmx
from app.money import AmountInputError, Money, format_amount_input, parse_amount_input

AUDIT_PAGE_SIZE = 50
INVALID_FORM = 422


@bp.route("/<merchant_id>/<mode>/settings/branding", methods=["GET", "POST"])
@merchant_view(Action.MANAGE_SETTINGS)
def branding():
    merchant = g.merchant
    form = BrandingForm(obj=merchant if request.method == "GET" else None)
    if request.method == "GET":
        if not form.display_name.data:
            form.display_name.data = merchant.name
        return render_template("dashboard/branding.html", form=form)
    if not form.validate():
        return render_template("dashboard/branding.html", form=form), INVALID_FORM
    before = {"display_name": merchant.display_name, "accent_color": merchant.accent_color,
              "logo_url": merchant.logo_url}
    merchant.display_name = form.display_name.data.strip()
    merchant.accent_color = form.accent_color.data.strip().lower()
    merchant.logo_url = (form.logo_url.data or "").strip() or None
    after = {"display_name": merchant.display_name, "accent_color": merchant.accent_color,
             "logo_url": merchant.logo_url}
    changed = {key: {"from": before[key], "to": after[key]} for key in after if before[key] != after[key]}
    if changed:
        audit(db.session, "merchant.branding_updated", merchant_id=merchant.id, actor_user_id=current_user.id,
              actor_label=current_user.email, target=merchant.id, details=changed, **request_meta())
    db.session.commit()
    flash("Branding saved." if changed else "Nothing changed.", "success")
    return redirect(dash_url("dashboard.branding"), code=303)


def _parse_cursor(value: str | None) -> tuple[datetime, str] | None:
    """The keyset cursor "<iso time>|<id>" of the last row shown, or None when absent or malformed."""
    if not value or "|" not in value:
        return None
    stamp, _, entry_id = value.partition("|")
    try:
        return datetime.fromisoformat(stamp), entry_id
    except ValueError:
        return None


@bp.route("/<merchant_id>/<mode>/settings/audit-log")
@merchant_view(Action.VIEW_AUDIT_LOG)
def audit_log():
    """The merchant's audit entries, newest first, in keyset pages ("Show older" loads the next with htmx)."""
    statement = select(AuditEntry).where(AuditEntry.merchant_id == g.merchant.id)
    cursor = _parse_cursor(request.args.get("before"))
    if cursor is not None:
        statement = statement.where(tuple_(AuditEntry.created_at, AuditEntry.id) < cursor)
    rows = list(db.session.scalars(
        statement.order_by(AuditEntry.created_at.desc(), AuditEntry.id.desc()).limit(AUDIT_PAGE_SIZE + 1)))
    more = len(rows) > AUDIT_PAGE_SIZE
    rows = rows[:AUDIT_PAGE_SIZE]
    next_cursor = f"{rows[-1].created_at.isoformat()}|{rows[-1].id}" if more else None
    template = "dashboard/_audit_rows.html" if htmx and cursor is not None else "dashboard/audit_log.html"
    return render_template(template, entries=rows, next_cursor=next_cursor)


@bp.route("/<merchant_id>/<mode>/settings/security", methods=["GET", "POST"])
@merchant_view(Action.MANAGE_SECURITY)
def security_settings():
    """Whether every member must use two-step sign-in, and the refund amount up to which no re-authentication
    is asked. Saving needs a recent re-authentication (weakening either is what an intruder would do first)."""
    merchant = g.merchant
    if request.method == "GET":
        kept = kept_form()
        if kept is not None:
            form = SecuritySettingsForm(formdata=kept)
        else:
            threshold = refund_threshold(merchant)
            form = SecuritySettingsForm(formdata=None, require_second_factor=merchant.require_second_factor,
                                        refund_currency=threshold.currency if threshold else "EUR",
                                        refund_threshold=format_amount_input(threshold.amount, threshold.currency,
                                                                             user_locale()) if threshold else "")
        return render_template("dashboard/security_settings.html", form=form)
    form = SecuritySettingsForm()
    reauth = demand_reauth()
    if reauth is not None:
        return reauth
    if not form.validate():
        return render_template("dashboard/security_settings.html", form=form), INVALID_FORM
    threshold = None
    if (form.refund_threshold.data or "").strip():
        try:
            amount = parse_amount_input(form.refund_threshold.data, form.refund_currency.data, user_locale(),
                                        allow_zero=True)
            threshold = Money(amount, form.refund_currency.data)
        except AmountInputError as error:
            form.refund_threshold.errors.append(error.message)
            return render_template("dashboard/security_settings.html", form=form), INVALID_FORM
    try:
        changed = update_security_settings(db.session, g.membership,
                                           require_second_factor=form.require_second_factor.data,
                                           threshold=threshold, meta=Meta(**request_meta()))
    except SecuritySettingsError as error:
        db.session.rollback()
        getattr(form, error.field or "require_second_factor").errors.append(error.message)
        return render_template("dashboard/security_settings.html", form=form), INVALID_FORM
    db.session.commit()
    flash("Security settings saved." if changed else "Nothing changed.", "success")
    return redirect(dash_url("dashboard.security_settings"), code=303)
