"""Flask-Login wiring: how a session cookie becomes the current user.

The signed Flask session cookie carries one thing for authentication: SESSION_KEY, a random token whose
hash names a row of user_sessions (app/accounts/sessions.py). The user is loaded from that row on every
request, so logging out (revoking the row) kills every copy of the cookie, and a password change can end
the other browsers. Flask-Login's own "_user_id" in the cookie is not used, hence a request_loader and no
user_loader.
"""
from flask import g, session
from flask_login import logout_user

from app.accounts.models import User
from app.accounts.sessions import (
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
    user_session = resolve_session(db.session, token, now=now)
    if user_session is None or user_session.user.locked_at is not None:  # locking also ends sessions
        session.pop(SESSION_KEY, None)
        return None
    if needs_touch(user_session, now):
        # Its own short transaction: recording activity must not commit or roll back the request's work.
        with db.engine.begin() as connection:
            connection.execute(touch_statement(user_session.id, now))
    g.user_session = user_session
    return user_session.user


def log_in(user: User, *, ip: str | None, user_agent: str | None) -> UserSession:
    """Start a fresh server-side session for the user and put only its token in the cookie.

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
    return user_session


def log_out() -> None:
    """Revoke the current server-side session and empty the cookie. The caller commits."""
    user_session = g.get("user_session")
    if user_session is not None:
        revoke_session(db.session, user_session.id)
    logout_user()
    session.clear()


def current_session_id() -> str | None:
    """The id of the current request's user_sessions row, if signed in."""
    user_session = g.get("user_session")
    return user_session.id if user_session is not None else None
