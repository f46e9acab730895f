"""Flask-Login wiring: how a session cookie becomes the current user.

The signed Flask session cookie carries one thing for authentication: SESSION_KEY, a random token whose
hash names a row of user_sessions (app/accounts/sessions.py). The user is loaded from that row on every
request, so logging out (revoking the row) kills every copy of the cookie, and a password change can end
the other browsers. Flask-Login's own "_user_id" in the cookie is not used, hence a request_loader and no
user_loader.

A session that still has to pass the second factor, or set one up (app/accounts/second_factor.py
SessionStep), loads no user at all: to every view, template and decorator it is anonymous, so nothing can
forget to check it. Only the second-factor pages read it (``pending_sign_in``), and where a page needs a
signed-in user, the unauthorized handler sends such a session to its second-factor page instead of the login.
"""
from datetime import timedelta

from flask import current_app, flash, g, redirect, request, session, url_for
from flask_login import current_user, login_url, logout_user

from app.accounts.models import User
from app.accounts.second_factor import SessionStep, session_step
from app.accounts.sessions import (
    ABSOLUTE_LIFETIME,
    IDLE_TIMEOUT,
    UserSession,
    needs_touch,
    resolve_session,
    revoke_session,
    start_session,
    touch_statement,
)
from app.extensions import db, login_manager
from app.models_base import utcnow

SESSION_KEY = "sid"

login_manager.login_view = "dashboard.login"
login_manager.login_message = "Please log in to continue."
login_manager.login_message_category = "info"
# Flask-Login's "session protection" hashes IP and user agent into the cookie; server-side sessions that
# are created fresh at login and revoked at logout make it redundant (and it would add keys to the cookie).
login_manager.session_protection = None


@login_manager.request_loader
def load_user_from_session(_request) -> User | None:
    """The user behind the session cookie's token, when that server-side session is still active."""
    token = session.get(SESSION_KEY)
    if not token:
        return None
    now = utcnow()
    user_session = resolve_session(db.session, token, now=now, idle_timeout=idle_timeout(), max_age=max_age())
    if user_session is None or user_session.user.locked_at is not None:  # locking also ends sessions
        session.pop(SESSION_KEY, None)
        return None
    if needs_touch(user_session, now):
        # Its own short transaction: recording activity must not commit or roll back the request's work.
        with db.engine.begin() as connection:
            connection.execute(touch_statement(user_session.id, now))
    g.user_session = user_session
    g.session_step = session_step(db.session, user_session)
    if g.session_step != SessionStep.COMPLETE:
        return None  # anonymous everywhere but the second-factor pages
    return user_session.user


def idle_timeout() -> timedelta:
    """SESSION_IDLE_TIMEOUT_SECONDS: a session unused this long has ended."""
    return _seconds("SESSION_IDLE_TIMEOUT_SECONDS", IDLE_TIMEOUT)


def max_age() -> timedelta:
    """SESSION_MAX_AGE_SECONDS: a session this old has ended, however busy."""
    return _seconds("SESSION_MAX_AGE_SECONDS", ABSOLUTE_LIFETIME)


def _seconds(name: str, default: timedelta) -> timedelta:
    value = current_app.config.get(name)
    return timedelta(seconds=float(value)) if value else default


def pending_sign_in() -> tuple[UserSession, SessionStep] | None:
    """The current browser's session and what it still has to pass (COMPLETE once signed in); None without one."""
    current_user.is_authenticated  # noqa: B018  (runs the request loader, which sets g.user_session, g.session_step)
    user_session = g.get("user_session")
    if user_session is None:
        return None
    return user_session, g.session_step


SECOND_FACTOR_PAGES = {SessionStep.SECOND_FACTOR: "dashboard.second_factor",
                       SessionStep.ENROL: "dashboard.second_factor_setup"}


@login_manager.unauthorized_handler
def unauthorized():
    """A page for signed-in users: a session halfway through signing in goes to its second-factor page,
    anyone else to the login page (Flask-Login's own behaviour), both coming back here afterwards."""
    step = g.get("session_step")
    if g.get("user_session") is not None and step in SECOND_FACTOR_PAGES:
        return redirect(url_for(SECOND_FACTOR_PAGES[step], next=_here()))
    flash(login_manager.login_message, login_manager.login_message_category)
    return redirect(login_url(login_manager.login_view, next_url=request.url))


def _here() -> str:
    """This request's path and query string, as a next= target."""
    return request.full_path.rstrip("?") if request.query_string else request.path


def log_in(user: User, *, ip: str | None, user_agent: str | None) -> SessionStep:
    """Start a fresh server-side session for a user who gave their password and put only its token in the
    cookie; returns what the session still has to pass (the second factor, its set-up, or nothing).

    The old cookie content is discarded (a fresh session id: a session planted before login is useless),
    and a session this browser still had is revoked. The caller commits.
    """
    previous = resolve_session(db.session, session.get(SESSION_KEY, ""))
    if previous is not None:  # signing in again in the same browser: the old session ends here
        revoke_session(db.session, previous.id)
    user_session, token = start_session(db.session, user, ip=ip, user_agent=user_agent)
    session.clear()
    session[SESSION_KEY] = token
    g.user_session = user_session
    g.session_step = session_step(db.session, user_session)
    return g.session_step


def log_out() -> None:
    """Revoke the current server-side session (complete or halfway through signing in) and empty the cookie.
    The caller commits."""
    pending_sign_in()
    user_session = g.get("user_session")
    if user_session is not None:
        revoke_session(db.session, user_session.id)
    logout_user()
    session.clear()


def current_session_id() -> str | None:
    """The id of the current request's user_sessions row, if signed in."""
    user_session = g.get("user_session")
    return user_session.id if user_session is not None else None
