"""Small helpers shared by the dashboard views: request metadata for audit rows, the template globals."""
import logging
from urllib.parse import urlsplit

from flask import current_app, g, request, url_for
from flask_login import current_user
from sqlalchemy import select

from app.accounts.models import Membership, Merchant
from app.accounts.permissions import Action, can
from app.dashboard.context import may_open
from app.extensions import db
from app.money import negotiate_locale

logger = logging.getLogger(__name__)

DEV_ENVIRONMENTS = ("development", "test")


def request_meta() -> dict:
    """Who is asking, from where: keyword arguments for app.accounts.audit.audit()."""
    return {
        "ip": request.remote_addr,
        "user_agent": request.headers.get("User-Agent"),
        "request_id": g.get("request_id"),
    }


def user_locale() -> str:
    """The person's locale from their browser's languages (amounts are shown and typed in it)."""
    cached = request.environ.get("kassa.user_locale")  # per request: g may outlive one in tests
    if cached is None:
        cached = request.environ["kassa.user_locale"] = negotiate_locale(list(request.accept_languages))
    return cached


def dev_mail_enabled() -> bool:
    """The mail outbox page exists only in development and test: in production mail is really sent."""
    return current_app.config.get("KASSA_ENV") in DEV_ENVIRONMENTS


def user_merchants(user_id: str) -> list[Merchant]:
    """The merchants a user belongs to, oldest membership first (the first one is the default)."""
    return list(db.session.scalars(
        select(Merchant).join(Membership, Membership.merchant_id == Merchant.id)
        .where(Membership.user_id == user_id)
        .order_by(Membership.created_at, Merchant.id)
    ))


def external_url(endpoint: str, **values) -> str:
    """An absolute URL for emails. PUBLIC_BASE_URL when configured, so that a forged Host header cannot
    point a password reset link at someone else's site; the request's own host otherwise (development)."""
    base = (current_app.config.get("PUBLIC_BASE_URL") or "").rstrip("/")
    if base:
        return base + url_for(endpoint, **values)
    return url_for(endpoint, _external=True, **values)


def safe_next(target: str | None) -> str | None:
    """A redirect target from a form or query string, only when it stays on this site."""
    if not target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return None
    return target


def dash_url(endpoint: str, **values) -> str:
    """url_for a page of the current merchant in the current mode."""
    values.setdefault("merchant_id", g.merchant.id)
    values.setdefault("mode", g.mode)
    return url_for(endpoint, **values)


def opens_test(endpoint: str) -> bool:
    """Jinja test: `pages | selectattr(0, "opens")` keeps the pages the current role may open."""
    return may_open(endpoint, g.get("role"))


def template_globals() -> dict:
    """Names every template may use (the error pages render the shell too)."""

    def nav_merchants():
        if not current_user.is_authenticated:
            return []
        if "nav_merchants" not in g:
            try:
                g.nav_merchants = user_merchants(current_user.id)
            except Exception:  # the 500 page renders this too, maybe with the database gone: degrade, never fail
                logger.exception("could not list the user's merchants for the navigation")
                g.nav_merchants = []
        return g.nav_merchants

    def may(action: Action) -> bool:
        return can(g.get("role"), action)

    def opens(endpoint: str) -> bool:
        return may_open(endpoint, g.get("role"))

    return {
        "Action": Action,
        "can": may,
        "may_open": opens,
        "dash_url": dash_url,
        "nav_merchants": nav_merchants,
        "dev_mail_enabled": dev_mail_enabled,
    }
