"""Account › Sessions: the browsers signed in to this account (device, IP, created, last used); end any of
them, or all but this one. Every user sees and ends only their own sessions."""
from datetime import timezone

from flask import abort, flash, g, redirect, render_template, url_for
from flask_login import current_user, login_required

from app.accounts.login import idle_timeout, max_age
from app.accounts.service import Meta, audit_user_event
from app.accounts.sessions import active_sessions, device_label, revoke_session, revoke_user_sessions
from app.dashboard import bp
from app.dashboard.forms import ConfirmForm
from app.dashboard.helpers import request_meta
from app.extensions import db


def _meta() -> Meta:
    return Meta(**request_meta())


@bp.route("/account/sessions")
@login_required
def sessions():
    idle, oldest = idle_timeout(), max_age()
    rows = active_sessions(db.session, current_user.id, idle_timeout=idle, max_age=oldest)
    rows.sort(key=lambda row: row.id != g.user_session.id)  # this browser first, then the most recently used
    return render_template("auth/sessions.html", rows=rows, current_id=g.user_session.id, device=device_label,
                           confirm_form=ConfirmForm(formdata=None), utc=lambda value: value.astimezone(timezone.utc),
                           idle_minutes=round(idle.total_seconds() / 60),
                           max_hours=round(oldest.total_seconds() / 3600))


@bp.route("/account/sessions/<session_id>/end", methods=["POST"])
@login_required
def end_session(session_id: str):
    """End one of this user's other sessions (another user's session id is a 404, like an unknown one)."""
    if not ConfirmForm().validate():
        abort(400)
    if session_id == g.user_session.id:
        abort(400)  # this browser signs out with Log out
    if not revoke_session(db.session, session_id, user_id=current_user.id):
        abort(404)
    audit_user_event(db.session, current_user, "user.session_ended", _meta(), details={"session": session_id})
    db.session.commit()
    flash("That session was ended: the browser is signed out.", "success")
    return redirect(url_for("dashboard.sessions"), code=303)


@bp.route("/account/sessions/end-others", methods=["POST"])
@login_required
def end_other_sessions():
    if not ConfirmForm().validate():
        abort(400)
    ended = revoke_user_sessions(db.session, current_user.id, except_session_id=g.user_session.id)
    audit_user_event(db.session, current_user, "user.other_sessions_ended", _meta(), details={"ended": ended})
    db.session.commit()
    flash(f"{ended} other session{'s were' if ended != 1 else ' was'} ended." if ended
          else "There were no other sessions.", "success")
    return redirect(url_for("dashboard.sessions"), code=303)
