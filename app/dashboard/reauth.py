"""Re-authentication before sensitive actions, for any view of the dashboard or the admin console.

The user confirms who they are (password or second-factor code; platform admins with the code) on the
confirmation page, and that holds for REAUTH_WINDOW_SECONDS (300) in this browser's session. Logging in counts
as a confirmation.

- ``@reauth_required()`` under ``@merchant_view``/``@platform_admin_required`` guards a whole view: without a
  recent confirmation, a GET goes to the confirmation page and comes back to the same URL; a POST first keeps
  the submitted fields (never a password, a code, the CSRF token or a card number) on the session row, goes
  through the confirmation and comes back to the page of its form, which fills the form in again with
  ``kept_form()``: the user sees what they typed and submits it once more (a money move never goes through
  without that click). ``form_page`` says where that page is when it is not the same URL (a POST-only route).
- ``demand_reauth()`` is the same check for a view that decides by itself (a refund above the merchant's
  threshold): it returns None when the confirmation is recent, else the response to return.
- The admin console: every POST of the admin blueprint requires it (app/admin/__init__.py), with the code.
"""
import functools
from datetime import timedelta
from urllib.parse import urlsplit

from flask import current_app, g, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from werkzeug.datastructures import MultiDict

from app import pan
from app.accounts.passwords import verify_password
from app.accounts.second_factor import SecondFactorError, confirmed_factor, verify
from app.accounts.service import Meta, audit_user_event
from app.accounts.sessions import (
    forget_pending_form_statement,
    keep_pending_form,
    mark_reauthenticated,
    pending_form_for,
)
from app.crypto import SecretBox
from app.dashboard import bp
from app.dashboard.forms import ConfirmIdentityForm
from app.dashboard.helpers import request_meta, safe_next
from app.dashboard.throttle import Throttle, hit_ip_limit, minutes_text, throttled
from app.extensions import db, htmx
from app.models_base import utcnow

# Five minutes: long enough to finish the form that asked for it and a few actions after it, short enough
# that a session left open (or a stolen cookie) does not carry the confirmation far. GitHub's sudo mode and
# most banks' step-up prompts are in this range. REAUTH_WINDOW_SECONDS overrides it.
REAUTH_WINDOW = timedelta(minutes=5)
INVALID_FORM = 422
# Fields never kept across the confirmation: secrets the user typed, and the page's own CSRF token.
_NEVER_KEPT = ("password", "code", "csrf_token", "secret")


def reauth_window() -> timedelta:
    value = current_app.config.get("REAUTH_WINDOW_SECONDS")
    return timedelta(seconds=float(value)) if value else REAUTH_WINDOW


def secret_box() -> SecretBox:
    """The key ring that seals TOTP secrets (KASSA_ENCRYPTION_KEYS)."""
    return SecretBox(current_app.config.get("KASSA_ENCRYPTION_KEYS", ""))


def second_factor_only(user) -> bool:
    """Platform admins re-authenticate with the second factor (when they have one: a first set-up is done with
    the password just given at login)."""
    return bool(user.is_platform_admin) and confirmed_factor(db.session, user.id) is not None


def recently_reauthenticated() -> bool:
    """Whether the current session confirmed who its user is within the window."""
    user_session = g.get("user_session")
    return user_session is not None and user_session.reauthenticated_within(reauth_window(), utcnow())


def demand_reauth(form_page: str | None = None):
    """None when the session re-authenticated recently; else the response that sends the user to confirm and
    back to ``form_page`` (default: this URL when it answers GET, else the page the form was on), keeping a
    POST's fields for that page."""
    if recently_reauthenticated():
        return None
    back = safe_next(form_page) or _default_form_page()
    if request.method == "POST":
        keep_pending_form(g.user_session, urlsplit(back).path, _keepable_fields())
        db.session.commit()
    target = url_for("dashboard.confirm_identity", next=back)
    if htmx:  # a fragment request: the whole page goes to the confirmation, not the swapped element
        return "", 200, {"HX-Redirect": target}
    return redirect(target, code=303)


def reauth_required(view=None, *, form_page=None):
    """Decorator: the view runs only after a recent re-authentication (see the module docstring).
    ``form_page``: a function of the view's arguments returning the URL of the page with the form."""

    def decorator(inner):
        @functools.wraps(inner)
        @login_required
        def wrapper(*args, **kwargs):
            response = demand_reauth(form_page(*args, **kwargs) if form_page else None)
            return response if response is not None else inner(*args, **kwargs)

        return wrapper

    return decorator(view) if view is not None else decorator


def kept_form() -> MultiDict | None:
    """The fields kept for this page's form when re-authentication interrupted it, once (then forgotten)."""
    user_session = g.get("user_session")
    if user_session is None or not user_session.pending_form:
        return None
    fields = pending_form_for(user_session, request.path)
    if fields is None:
        return None
    user_session.pending_form = None
    # Its own short transaction, like the session's last-seen time: a GET view does not commit.
    with db.engine.begin() as connection:
        connection.execute(forget_pending_form_statement(user_session.id))
    return MultiDict(fields)


def _keepable_fields() -> list[tuple[str, str]]:
    kept = []
    for name, value in request.form.items(multi=True):
        if any(word in name.lower() for word in _NEVER_KEPT) or pan.find_card_number(value) is not None:
            continue
        kept.append((name, value[:2000]))
    return kept


def _default_form_page() -> str:
    """Where a form posted here comes from: this URL when it answers GET, else the referring page of this
    site, else the dashboard's front door."""
    if request.method == "GET" or (request.url_rule is not None and "GET" in request.url_rule.methods):
        return request.full_path.rstrip("?") if request.query_string else request.path
    referrer = urlsplit(request.referrer or "")
    if referrer.netloc == request.host and safe_next(referrer.path):
        return referrer.path + (f"?{referrer.query}" if referrer.query else "")
    return url_for("dashboard.index")


# --- the confirmation page ----------------------------------------------------------------------------------

@bp.route("/account/confirm", methods=["GET", "POST"])
@login_required
def confirm_identity():
    """Confirm who you are before a sensitive action; then back to where you were."""
    user = current_user
    methods = _methods(user)
    target = safe_next(request.values.get("next")) or url_for("dashboard.index")
    form = ConfirmIdentityForm()
    if request.method == "GET":
        if recently_reauthenticated():
            return redirect(target)
        form.next.data = target
        return _page(form, methods)
    method = form.method.data if form.method.data in methods else methods[0]
    config, scope, key = (("SECOND_FACTOR_RATE_LIMIT", "second_factor", user.id) if method == "code"
                          else ("LOGIN_RATE_LIMIT", "login", user.email))
    wait = hit_ip_limit(f"{config}_PER_IP", scope)
    if wait is not None:
        return throttled("auth/confirm_identity.html", f"Too many attempts from your network. Try again in "
                         f"{minutes_text(wait)}.", wait, form=form, methods=methods)
    if not form.validate():
        return _page(form, methods, INVALID_FORM)
    account = Throttle(f"{config}_PER_ACCOUNT", scope, "account", key)
    if not account.allows():
        wait = account.retry_after()
        return throttled("auth/confirm_identity.html", "Too many wrong attempts for your account. Try again in "
                         f"{minutes_text(wait)}.", wait, form=form, methods=methods)
    meta = Meta(**request_meta())
    try:
        used = _check(user, method, form, meta)
    except SecondFactorError as error:
        db.session.commit()  # the failure's audit rows
        account.hit()
        getattr(form, "code" if method == "code" else "password").errors.append(error.message)
        form.password.data = ""
        return _page(form, methods, INVALID_FORM)
    account.clear()
    mark_reauthenticated(g.user_session)
    audit_user_event(db.session, user, "user.reauthenticated", meta, details={"method": used})
    db.session.commit()
    return redirect(target, code=303)


def _methods(user) -> list[str]:
    """The ways this user may confirm, the preferred first."""
    if second_factor_only(user):
        return ["code"]
    if confirmed_factor(db.session, user.id) is not None:
        return ["password", "code"]
    return ["password"]


def _check(user, method: str, form: ConfirmIdentityForm, meta: Meta) -> str:
    """The method used ("password", "totp", "recovery_code"), or SecondFactorError with a message."""
    if method == "code":
        return verify(db.session, user, secret_box(), form.code.data or "", purpose="reauthentication",
                      meta=meta).method
    if not form.password.data:
        raise SecondFactorError("Enter your password.", "missing_password")
    if not verify_password(user.password_hash, form.password.data):
        audit_user_event(db.session, user, "user.reauthentication_failed", meta, details={"reason": "wrong_password"})
        raise SecondFactorError("This password is not correct.", "wrong_password")
    return "password"


def _page(form: ConfirmIdentityForm, methods: list[str], status: int = 200):
    if status == 200 and not form.next.data:
        form.next.data = safe_next(request.values.get("next")) or url_for("dashboard.index")
    return render_template("auth/confirm_identity.html", form=form, methods=methods), status
