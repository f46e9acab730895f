"""The merchant and mode of a dashboard page come from its URL and are re-checked on every request.

Routes look like /dashboard/<merchant_id>/<mode>/..., mode being "test" or "live", so a stale tab or a
shared link can never act on another merchant or mode than the one it shows.
"""
import functools

from flask import abort, current_app, g
from flask_login import current_user, login_required
from sqlalchemy import select

from app.accounts.models import Membership, Merchant
from app.accounts.permissions import Action, can
from app.extensions import db
from app.scoping import Scope

MODES = {"test": False, "live": True}


def membership_for(user_id: str, merchant_id: str) -> Membership | None:
    """The user's membership in a merchant, or None."""
    return db.session.scalars(
        select(Membership).where(Membership.user_id == user_id, Membership.merchant_id == merchant_id)
    ).one_or_none()


def merchant_view(action: Action = Action.VIEW):
    """Decorate a view taking merchant_id and mode: 404 unless the user is a member, 403 unless the role may act.

    Sets g.merchant, g.membership, g.role, g.mode and g.scope for the view and its templates (and for the
    403 page). The action is kept on the view as ``required_action`` for may_open().
    """

    def decorator(view):
        @functools.wraps(view)
        @login_required
        def wrapper(merchant_id: str, mode: str, *args, **kwargs):
            if mode not in MODES:
                abort(404)
            membership = membership_for(current_user.id, merchant_id)
            if membership is None:
                abort(404)  # indistinguishable from a merchant that does not exist
            # Set before the role check, so that a 403 page still shows this merchant's navigation.
            g.merchant = db.session.get(Merchant, merchant_id)
            g.membership = membership
            g.role = membership.role
            g.mode = mode
            g.scope = Scope(merchant_id, MODES[mode])
            if not can(membership.role, action):
                abort(403)
            return view(*args, **kwargs)

        # Recorded so that the navigation can show exactly the pages a role may open (may_open below).
        wrapper.required_action = action
        return wrapper

    return decorator


def may_open(endpoint: str, role: str | None) -> bool:
    """Whether a member with this role may open the page of a @merchant_view endpoint (False if unknown)."""
    view = current_app.view_functions.get(endpoint)
    action = getattr(view, "required_action", None)
    return action is not None and can(role, action)


def platform_admin_required(view):
    """Admin pages: platform admins only; everyone else gets 404."""

    @functools.wraps(view)
    @login_required
    def wrapper(*args, **kwargs):
        if not current_user.is_platform_admin:
            abort(404)
        return view(*args, **kwargs)

    return wrapper
