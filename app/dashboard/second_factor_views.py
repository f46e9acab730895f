"""Two-step sign-in: the code after the password, setting up an authenticator (QR code rendered here, no
network), recovery codes, turning it off, and the Account security page.

A session that gave only the password is anonymous to every other page (app/accounts/login.py); these pages
read it with ``pending_sign_in``. The set-up page serves a session that must set one up before anything else
(SessionStep.ENROL) and a signed-in user adding one (after re-authentication); never a session that still owes
the code of the second factor it has, which could otherwise replace it.
"""
import segno
from flask import abort, flash, g, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required

from app.accounts import second_factor as service
from app.accounts.login import SESSION_KEY, pending_sign_in
from app.accounts.second_factor import SecondFactorError, SessionStep
from app.accounts.service import Meta
from app.accounts.sessions import mark_second_factor_passed, rotate_token
from app.dashboard import bp
from app.dashboard.auth_views import _route
from app.dashboard.forms import ConfirmForm, EnrolmentForm, SecondFactorForm
from app.dashboard.helpers import request_meta, safe_next
from app.dashboard.reauth import demand_reauth, reauth_required, secret_box
from app.dashboard.throttle import Throttle, hit_ip_limit, minutes_text, throttled
from app.extensions import db

INVALID_FORM = 422
# A page showing recovery codes is not kept by the browser or any proxy.
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def _meta() -> Meta:
    return Meta(**request_meta())


def _next() -> str:
    return safe_next(request.values.get("next")) or url_for("dashboard.index")


def _code_throttles(template: str, user_id: str, **context):
    """(the account's limit, a 429 response or None): per IP every attempt counts, per account the failures."""
    wait = hit_ip_limit("SECOND_FACTOR_RATE_LIMIT_PER_IP", "second_factor")
    if wait is not None:
        return None, throttled(template, f"Too many attempts from your network. Try again in {minutes_text(wait)}.",
                               wait, **context)
    account = Throttle("SECOND_FACTOR_RATE_LIMIT_PER_ACCOUNT", "second_factor", "account", user_id)
    if not account.allows():
        wait = account.retry_after()
        return account, throttled(template, "Too many wrong codes for this account. Try again in "
                                  f"{minutes_text(wait)}.", wait, **context)
    return account, None


def _passed(user_session) -> None:
    """The session passed the second factor: it gets a new token (the privilege changed: a cookie copied
    before this moment is worthless) and reaches everything. The caller commits."""
    mark_second_factor_passed(user_session)
    session[SESSION_KEY] = rotate_token(user_session)


# --- sign-in's second step ----------------------------------------------------------------------------------

@_route("/login/second-factor", "second_factor", methods=["GET", "POST"])
def second_factor():
    """The code after the password (an authenticator code or a recovery code)."""
    pending = pending_sign_in()
    if pending is None:
        return redirect(url_for("dashboard.login"))
    user_session, step = pending
    if step == SessionStep.COMPLETE:
        return redirect(_next())
    if step == SessionStep.ENROL:
        return redirect(url_for("dashboard.second_factor_setup", next=_next()))
    user = user_session.user
    form = SecondFactorForm()
    context = {"form": form, "user": user}
    if request.method == "GET":
        form.next.data = _next()
        return render_template("auth/second_factor.html", **context)
    account, refused = _code_throttles("auth/second_factor.html", user.id, **context)
    if refused is not None:
        return refused
    if not form.validate():
        return render_template("auth/second_factor.html", **context), INVALID_FORM
    try:
        verified = service.verify(db.session, user, secret_box(), form.code.data, purpose="sign_in", meta=_meta())
    except SecondFactorError as error:
        db.session.commit()  # the failure's audit rows
        account.hit()
        form.code.errors.append(error.message)
        form.code.data = ""
        return render_template("auth/second_factor.html", **context), INVALID_FORM
    account.clear()
    _passed(user_session)
    db.session.commit()
    if verified.method == "recovery_code":
        flash(f"You signed in with a recovery code. {_codes_left(verified.recovery_codes_left)} "
              "We emailed you about it.", "info")
    return redirect(safe_next(form.next.data) or url_for("dashboard.index"), code=303)


def _codes_left(left: int) -> str:
    if left == 0:
        return "You have no recovery codes left: make new ones under Account security now."
    return f"{left} recovery code{'s' if left != 1 else ''} left."


# --- setting up an authenticator ----------------------------------------------------------------------------

def _qr_svg(uri: str) -> str:
    """The otpauth URI as inline SVG markup (rendered here: the secret never leaves Kassa for a QR service),
    dark on white whatever the page's colours, so that phone cameras read it."""
    svg = segno.make(uri, error="m").svg_inline(scale=5, light="#fff", svgclass="qr-code")
    return svg.replace("<svg ", '<svg role="img" aria-label="QR code to scan with your authenticator app" ', 1)


@bp.route("/account/second-factor/setup", methods=["GET", "POST"])
def second_factor_setup():
    """Scan the QR code (or type the key), then confirm with the app's first code; shows the recovery codes."""
    pending = pending_sign_in()
    if pending is None:
        return redirect(url_for("dashboard.login", next=request.full_path.rstrip("?")))
    user_session, step = pending
    if step == SessionStep.SECOND_FACTOR:
        return redirect(url_for("dashboard.second_factor", next=_next()))
    user = user_session.user
    if step == SessionStep.COMPLETE:
        if service.confirmed_factor(db.session, user.id) is not None:
            flash("Two-step sign-in is already set up for your account.", "info")
            return redirect(url_for("dashboard.account_security"), code=303)
        reauth = demand_reauth()  # a stolen session must not tie the account to someone else's phone
        if reauth is not None:
            return reauth
    secret = service.enrolment_secret(db.session, user, secret_box())
    db.session.commit()  # the secret drawn on the first visit is the one the QR code shows next time too
    form = EnrolmentForm()
    context = {"form": form, "user": user, "secret": secret, "forced": step == SessionStep.ENROL,
               "qr_svg": _qr_svg(service.provisioning_uri(secret, user.email)), "next_url": _next()}
    if request.method == "GET":
        return render_template("auth/second_factor_setup.html", **context), 200, NO_STORE
    account, refused = _code_throttles("auth/second_factor_setup.html", user.id, **context)
    if refused is not None:
        return refused
    if not form.validate():
        return render_template("auth/second_factor_setup.html", **context), INVALID_FORM, NO_STORE
    try:
        codes = service.confirm_enrolment(db.session, user, secret_box(), form.code.data, meta=_meta())
    except SecondFactorError as error:
        db.session.commit()
        account.hit()
        form.code.errors.append(error.message)
        form.code.data = ""
        return render_template("auth/second_factor_setup.html", **context), INVALID_FORM, NO_STORE
    account.clear()
    _passed(user_session)
    db.session.commit()
    return render_template("auth/recovery_codes.html", codes=codes, just_enrolled=True,
                           next_url=_next()), 200, NO_STORE


# --- Account security ---------------------------------------------------------------------------------------

@bp.route("/account/security")
@login_required
def account_security():
    """Two-step sign-in: on or off, recovery codes left; links to the sessions page."""
    factor = service.confirmed_factor(db.session, current_user.id)
    return render_template(
        "auth/account_security.html", factor=factor, confirm_form=ConfirmForm(formdata=None),
        codes_left=service.recovery_codes_left(db.session, current_user.id) if factor else 0,
        required=service.second_factor_required(db.session, current_user))


@bp.route("/account/second-factor/recovery-codes", methods=["POST"])
@reauth_required(form_page=lambda: url_for("dashboard.account_security"))
def regenerate_recovery_codes():
    """New recovery codes; the old ones stop working."""
    if not ConfirmForm().validate():
        abort(400)
    try:
        codes = service.regenerate_recovery_codes(db.session, current_user, meta=_meta())
    except SecondFactorError as error:
        db.session.rollback()
        flash(error.message, "error")
        return redirect(url_for("dashboard.account_security"), code=303)
    db.session.commit()
    return render_template("auth/recovery_codes.html", codes=codes, just_enrolled=False,
                           next_url=url_for("dashboard.account_security")), 200, NO_STORE


@bp.route("/account/second-factor/disable", methods=["POST"])
@reauth_required(form_page=lambda: url_for("dashboard.account_security"))
def disable_second_factor():
    """Turn two-step sign-in off (not when it is required); the other sessions end."""
    if not ConfirmForm().validate():
        abort(400)
    try:
        ended = service.disable_second_factor(db.session, current_user, current_session_id=g.user_session.id,
                                              meta=_meta())
    except SecondFactorError as error:
        db.session.rollback()
        flash(error.message, "error")
        return redirect(url_for("dashboard.account_security"), code=303)
    db.session.commit()
    others = f" {ended} other session{'s were' if ended != 1 else ' was'} signed out." if ended else ""
    flash(f"Two-step sign-in is off.{others}", "success")
    return redirect(url_for("dashboard.account_security"), code=303)
