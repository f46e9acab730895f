"""Sign-up, log in, log out, password change and reset, invitation acceptance.

These pages sit at the top of the site (/login, /signup, ...), not under /dashboard, yet belong to the
dashboard blueprint (one blueprint per audience): `_route` registers them on the app with a
"dashboard." endpoint name, so the blueprint's hooks and url_for("dashboard.login") apply as usual.
"""
from flask import (
    abort,
    flash,
    g,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user, login_required
from flask_wtf.csrf import CSRFError

from app.accounts import recovery, team
from app.accounts.login import SECOND_FACTOR_PAGES, current_session_id, log_in, log_out, pending_sign_in
from app.accounts.models import User
from app.accounts.service import (
    AccountError,
    AccountLocked,
    Meta,
    audit_user_event,
    authenticate,
    create_user,
    find_user_by_email,
    sign_up,
)
from app.accounts.service import change_password as change_user_password
from app.accounts.tokens import normalize_email
from app.dashboard import bp
from app.dashboard.forms import (
    AcceptInvitationForm,
    AcceptInvitationSignupForm,
    ChangePasswordForm,
    ForgotPasswordForm,
    LoginForm,
    ResetPasswordForm,
    SignupForm,
)
from app.dashboard.helpers import external_url, request_meta, safe_next
from app.dashboard.throttle import Throttle, hit_ip_limit, minutes_text, throttled
from app.extensions import db

INVALID_FORM = 422  # the status of a re-rendered form with messages (htmx is configured to swap it)


def _route(rule: str, endpoint: str, **options):
    """Register a view of the dashboard blueprint at an absolute URL (outside /dashboard)."""

    def decorator(view):
        bp.record(lambda state: state.app.add_url_rule(rule, f"{bp.name}.{endpoint}", view, **options))
        return view

    return decorator


def _meta() -> Meta:
    return Meta(**request_meta())


# What the dashboard caches on `g` during a request. An app context can outlive one request (pytest-flask
# keeps one per test and the test client reuses it), so each request starts without them: the user is
# always resolved from this request's cookie.
_PER_REQUEST = ("_login_user", "user_session", "session_step", "nav_merchants", "merchant", "membership", "role",
                "mode", "scope", "csrf_token")


@bp.before_app_request
def _forget_previous_request():
    for name in _PER_REQUEST:
        g.pop(name, None)


@bp.app_errorhandler(CSRFError)
def csrf_error(error: CSRFError):
    """An expired or missing form token: a clean 400 page that says what to do."""
    return render_template("errors/csrf.html", error=error), 400


# --- log in, log out ---------------------------------------------------------------------------------------

@_route("/", "root")
def root():
    """The site's front door: the dashboard for someone signed in (admins without a team: the console), else login."""
    return redirect(url_for("dashboard.index" if current_user.is_authenticated else "dashboard.login"))


@_route("/login", "login", methods=["GET", "POST"])
def login():
    form = LoginForm()
    if request.method == "GET":
        if current_user.is_authenticated:
            return redirect(safe_next(request.args.get("next")) or url_for("dashboard.index"))
        pending = pending_sign_in()
        if pending is not None and pending[1] in SECOND_FACTOR_PAGES:  # halfway through signing in: go on there
            return redirect(url_for(SECOND_FACTOR_PAGES[pending[1]], next=safe_next(request.args.get("next"))))
        form.next.data = safe_next(request.args.get("next")) or ""
        return render_template("auth/login.html", form=form)

    wait = hit_ip_limit("LOGIN_RATE_LIMIT_PER_IP", "login")
    if wait is not None:
        return throttled("auth/login.html", "Too many sign-in attempts from your network. "
                          f"Try again in {minutes_text(wait)}.", wait, form=form)
    if not form.validate():
        return render_template("auth/login.html", form=form), INVALID_FORM

    email = normalize_email(form.email.data)
    account = Throttle("LOGIN_RATE_LIMIT_PER_ACCOUNT", "login", "account", email)
    if not account.allows():
        wait = account.retry_after()
        user = find_user_by_email(db.session, email)
        audit_user_event(db.session, user, "user.sign_in_failed", _meta(), label=email,
                         details={"reason": "rate_limited"})
        db.session.commit()
        return throttled("auth/login.html", "Too many failed sign-in attempts for this account. "
                          f"Try again in {minutes_text(wait)}, or reset your password.", wait, form=form)

    try:
        user = authenticate(db.session, email, form.password.data, _meta())
    except AccountLocked as locked:
        db.session.commit()  # the refused sign-in's audit rows
        form.password.data = ""
        return render_template("auth/login.html", form=form, form_error=locked.message), INVALID_FORM
    if user is None:
        db.session.commit()  # the failed sign-in's audit rows
        account.hit()
        form.password.data = ""
        return render_template("auth/login.html", form=form,
                               form_error="The email or password is not correct."), INVALID_FORM
    account.clear()
    step = log_in(user, ip=request.remote_addr, user_agent=request.headers.get("User-Agent"))
    db.session.commit()
    target = safe_next(form.next.data) or url_for("dashboard.index")
    if step in SECOND_FACTOR_PAGES:  # the password alone opens nothing else
        return redirect(url_for(SECOND_FACTOR_PAGES[step], next=target), code=303)
    return redirect(target, code=303)


@_route("/logout", "logout", methods=["POST"])
def logout():
    if current_user.is_authenticated:
        audit_user_event(db.session, current_user, "user.signed_out", _meta())
    log_out()
    db.session.commit()
    flash("You have been logged out.", "info")
    return redirect(url_for("dashboard.login"), code=303)


# --- sign up -----------------------------------------------------------------------------------------------

@_route("/signup", "signup", methods=["GET", "POST"])
def signup():
    form = SignupForm()
    if request.method == "GET":
        return render_template("auth/signup.html", form=form)
    wait = hit_ip_limit("SIGNUP_RATE_LIMIT_PER_IP", "signup")
    if wait is not None:
        return throttled("auth/signup.html", f"Too many sign-ups from your network. Try again in {minutes_text(wait)}.",
                          wait, form=form)
    if not form.validate():
        return render_template("auth/signup.html", form=form), INVALID_FORM
    try:
        user, merchant = sign_up(db.session, email=form.email.data, password=form.password.data,
                                 name=form.name.data, business_name=form.business_name.data, meta=_meta())
    except AccountError as error:
        db.session.rollback()
        getattr(form, error.field or "email").errors.append(error.message)
        return render_template("auth/signup.html", form=form), INVALID_FORM
    log_in(user, ip=request.remote_addr, user_agent=request.headers.get("User-Agent"))
    db.session.commit()
    flash(f"Welcome to Kassa! {merchant.name} is ready in test mode.", "success")
    return redirect(url_for("dashboard.home", merchant_id=merchant.id, mode="test"), code=303)


# --- passwords ---------------------------------------------------------------------------------------------

@bp.route("/account/password", methods=["GET", "POST"])
@login_required
def change_password():
    form = ChangePasswordForm()
    if request.method == "GET":
        return render_template("auth/change_password.html", form=form)
    if not form.validate():
        return render_template("auth/change_password.html", form=form), INVALID_FORM
    try:
        ended = change_user_password(db.session, current_user, current_password=form.current_password.data,
                                     new_password=form.new_password.data,
                                     current_session_id=current_session_id(), meta=_meta())
    except AccountError as error:
        db.session.rollback()
        getattr(form, error.field).errors.append(error.message)
        return render_template("auth/change_password.html", form=form), INVALID_FORM
    db.session.commit()
    others = f" {ended} other session{'s were' if ended != 1 else ' was'} signed out." if ended else ""
    flash(f"Your password has been changed.{others}", "success")
    return redirect(url_for("dashboard.change_password"), code=303)


@_route("/password/forgot", "forgot_password", methods=["GET", "POST"])
def forgot_password():
    form = ForgotPasswordForm()
    if request.method == "GET":
        return render_template("auth/forgot_password.html", form=form)
    wait = hit_ip_limit("RESET_RATE_LIMIT_PER_IP", "reset")
    if wait is not None:
        return throttled("auth/forgot_password.html", "Too many reset requests from your network. "
                          f"Try again in {minutes_text(wait)}.", wait, form=form)
    if not form.validate():
        return render_template("auth/forgot_password.html", form=form), INVALID_FORM
    recovery.request_password_reset(
        db.session, form.email.data,
        lambda token: external_url("dashboard.reset_password", token=token), meta=_meta())
    db.session.commit()
    # The same answer whether or not the account exists, so the form does not reveal who has one.
    return render_template("auth/forgot_password_sent.html", email=normalize_email(form.email.data))


@_route("/password/reset/<token>", "reset_password", methods=["GET", "POST"])
def reset_password(token: str):
    if recovery.find_reset_token(db.session, token) is None:
        return render_template("auth/link_invalid.html", what="password reset link",
                               again_url=url_for("dashboard.forgot_password"),
                               again_label="Ask for a new reset link"), 404
    form = ResetPasswordForm()
    if request.method == "GET":
        return render_template("auth/reset_password.html", form=form)
    if not form.validate():
        return render_template("auth/reset_password.html", form=form), INVALID_FORM
    try:
        recovery.reset_password(db.session, token, form.password.data, meta=_meta())
    except recovery.InvalidResetToken:
        db.session.rollback()
        return render_template("auth/link_invalid.html", what="password reset link",
                               again_url=url_for("dashboard.forgot_password"),
                               again_label="Ask for a new reset link"), 404
    log_out()  # whoever was signed in in this browser: the reset ended every session
    db.session.commit()
    flash("Your password has been reset. Log in with the new password.", "success")
    return redirect(url_for("dashboard.login"), code=303)


# --- invitations -------------------------------------------------------------------------------------------

@_route("/invitations/<token>", "accept_invitation", methods=["GET", "POST"])
def accept_invitation(token: str):
    invitation = team.find_invitation(db.session, token)
    if invitation is None:
        return render_template("auth/link_invalid.html", what="invitation",
                               again_url=None, again_label=None), 404
    existing = find_user_by_email(db.session, invitation.email)
    context = {"invitation": invitation, "existing_user": existing}

    if current_user.is_authenticated:
        form = AcceptInvitationForm()
        if normalize_email(current_user.email) != invitation.email:
            return render_template("auth/invitation.html", wrong_user=True, form=form, **context), 403
        if request.method == "POST":
            if not form.validate():
                abort(400)
            return _join(token, current_user)
        return render_template("auth/invitation.html", form=form, **context)

    if existing is not None:
        # They have an account: log in first, then come back here to accept.
        return render_template("auth/invitation.html", login_url=url_for(
            "dashboard.login", next=url_for("dashboard.accept_invitation", token=token)), **context)

    form = AcceptInvitationSignupForm()
    if request.method == "POST":
        if not form.validate():
            return render_template("auth/invitation.html", form=form, **context), INVALID_FORM
        user = create_user(db.session, email=invitation.email, password=form.password.data, name=form.name.data)
        return _join(token, user, new_user=True)
    return render_template("auth/invitation.html", form=form, **context)


def _join(token: str, user: User, *, new_user: bool = False):
    try:
        membership = team.accept_invitation(db.session, token, user, meta=_meta())
    except team.TeamError as error:
        db.session.rollback()
        flash(error.message, "error")
        return redirect(url_for("dashboard.index"), code=303)
    if new_user:
        log_in(user, ip=request.remote_addr, user_agent=request.headers.get("User-Agent"))
    merchant = membership.merchant
    db.session.commit()
    flash(f"You joined {merchant.display_name or merchant.name} as {membership.role}.", "success")
    return redirect(url_for("dashboard.home", merchant_id=merchant.id, mode="test"), code=303)

