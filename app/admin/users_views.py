"""/admin/users: find a user by email; their page (memberships, sessions, recent audit) and the actions:
lock, unlock, force a password reset (app/accounts/user_admin.py), reset the second factor
(app/accounts/second_factor.py)."""
from flask import abort, flash, redirect, render_template, request, url_for
from sqlalchemy import or_, select

from app.accounts import second_factor, user_admin
from app.accounts.audit import AuditEntry
from app.accounts.models import User
from app.admin import bp
from app.admin.forms import ReasonForm
from app.admin.helpers import INVALID_FORM, meta, operator, reasoned_action
from app.dashboard.context import platform_admin_required
from app.dashboard.helpers import external_url
from app.extensions import db

AUDIT_SHOWN = 30


@bp.get("/users")
@platform_admin_required
def users():
    """Users whose email contains the query (all users, by email, when there is none)."""
    q = (request.args.get("q") or "").strip()[:320]
    rows = user_admin.search_users(db.session, q)
    db.session.rollback()  # read-only
    return render_template("admin/users.html", users=rows, q=q)


def _user_page(user_id: str, forms: dict | None = None, status: int = 200):
    user = db.session.get(User, user_id)
    if user is None:
        abort(404)
    entries = list(db.session.scalars(
        select(AuditEntry).where(or_(AuditEntry.target == user.id, AuditEntry.actor_user_id == user.id))
        .order_by(AuditEntry.created_at.desc(), AuditEntry.id.desc()).limit(AUDIT_SHOWN)))
    forms = forms or {}
    for name in ACTIONS:
        forms.setdefault(name, ReasonForm(formdata=None, prefix=name))
    page = render_template("admin/user.html", user=user, memberships=user_admin.memberships_of(db.session, user.id),
                           sessions=user_admin.active_session_count(db.session, user.id), entries=entries,
                           forms=forms, has_second_factor=second_factor.confirmed_factor(db.session, user.id) is not None)
    db.session.rollback()  # read-only
    return page, status


@bp.get("/users/<user_id>")
@platform_admin_required
def user(user_id: str):
    """One user: memberships, signed-in sessions, recent audit entries, actions."""
    return _user_page(user_id)


def _force_reset(session, user_id: str, **kwargs) -> int:
    return user_admin.force_password_reset(
        session, user_id, lambda token: external_url("dashboard.reset_password", token=token), **kwargs)


def _reset_second_factor(session, user_id: str, *, operator, reason: str, meta) -> int:
    return second_factor.reset_second_factor(session, session.get(User, user_id), actor=operator, reason=reason,
                                             meta=meta)


ACTIONS = {
    "lock": (user_admin.lock_user, "The account is locked and its sessions ended."),
    "unlock": (user_admin.unlock_user, "The account is unlocked."),
    "reset_password": (_force_reset, "The password no longer works, every session ended, and a reset link was mailed."),
    "reset_second_factor": (_reset_second_factor, "The second factor is removed, every session ended, and the user "
                                                  "was told by email; they set up a new one at their next sign-in."),
}


def _act(user_id: str, name: str):
    action, done = ACTIONS[name]
    form = ReasonForm(prefix=name)
    refused = reasoned_action(
        form, lambda: action(db.session, user_id, operator=operator(), reason=form.reason.data, meta=meta()),
        (user_admin.UserAdminError, second_factor.SecondFactorError),
        lambda: _user_page(user_id, {name: form}, INVALID_FORM))
    if refused is not None:
        return refused
    flash(done, "success")
    return redirect(url_for("admin.user", user_id=user_id), code=303)


@bp.post("/users/<user_id>/lock")
@platform_admin_required
def lock_user(user_id: str):
    """Lock the account: no sign-in, every session ended."""
    return _act(user_id, "lock")


@bp.post("/users/<user_id>/unlock")
@platform_admin_required
def unlock_user(user_id: str):
    """Unlock the account."""
    return _act(user_id, "unlock")


@bp.post("/users/<user_id>/reset-password")
@platform_admin_required
def force_password_reset(user_id: str):
    """Make the password unusable, end the sessions, mail a reset link."""
    return _act(user_id, "reset_password")


@bp.post("/users/<user_id>/reset-second-factor")
@platform_admin_required
def reset_user_second_factor(user_id: str):
    """Remove the user's second factor (a lost phone), end the sessions, tell the user by email."""
    if db.session.get(User, user_id) is None:
        abort(404)
    return _act(user_id, "reset_second_factor")
