"""Small helpers of the console's views and templates: who acts (for the domain services' audit rows),
ages and amounts as operators read them, the inbox count of the navigation."""
from datetime import datetime
from typing import Callable, Iterable

from flask import flash, redirect, request, url_for
from flask_login import current_user

from sqlalchemy import select

from app.accounts.audit import ReasonRequired
from app.accounts.models import Merchant
from app.accounts.service import Meta
from app.dashboard.auth_views import safe_next
from app.dashboard.helpers import request_meta, user_locale
from app.extensions import db
from app.models_base import utcnow
from app.money import format_money

INVALID_FORM = 422  # a re-rendered form with its messages


def meta() -> Meta:
    """Where the operator's request comes from, for the audit rows the services write."""
    return Meta(**request_meta())


def operator():
    """The signed-in platform admin (a User row)."""
    return current_user._get_current_object()


def reasoned_action(form, action: Callable[[], object], refused: type[Exception] | tuple[type[Exception], ...],
                    page: Callable[[], object]):
    """Run a console action that carries the operator's reason and commit it; None once committed.

    An invalid form, a missing reason or the service's refusal (``refused``, with a ``message``) rolls back and
    returns ``page()``: the page re-rendered with the message, nothing changed.
    """
    if not form.validate():
        return page()
    try:
        action()
    except ReasonRequired as error:
        db.session.rollback()
        form.reason.errors = [*form.reason.errors, error.message]
        return page()
    except refused as error:
        # Shown above the page: this action's form may not be on it (the state changed meanwhile).
        db.session.rollback()
        flash(error.message, "error")
        return page()
    db.session.commit()
    return None


def merchant_names(ids: Iterable[str | None]) -> dict[str, str]:
    """Merchant id -> the name operators know it by, for the merchants of a page's rows (one query)."""
    wanted = {merchant_id for merchant_id in ids if merchant_id}
    if not wanted:
        return {}
    return {m.id: m.display_name or m.name
            for m in db.session.scalars(select(Merchant).where(Merchant.id.in_(wanted)))}


def back_or(endpoint: str, **values):
    """303 to the form's ``next`` (a path on this site) or else to the endpoint."""
    return redirect(safe_next(request.form.get("next")) or url_for(endpoint, **values), code=303)


def age(moment: datetime | None, now: datetime | None = None) -> str:
    """How long ago, in the largest whole unit: "45 min", "5 h", "3 d"."""
    if moment is None:
        return ""
    seconds = max(0, int(((now or utcnow()) - moment).total_seconds()))
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 86400:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} d"


def utc(moment: datetime | None) -> str:
    """A time as operators compare it across merchants: UTC, to the minute."""
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment else ""


def money(amount: int | None, currency: str | None) -> str:
    """An amount in the operator's locale ("" when there is none)."""
    if amount is None or not currency:
        return ""
    return format_money(amount, currency, user_locale())


def inbox_count() -> int:
    """Items in the whole inbox (the navigation's count), computed once per request."""
    from app.inbox import total

    cached = request.environ.get("kassa.inbox_total")  # per request: g may outlive one in tests
    if cached is None:
        cached = request.environ["kassa.inbox_total"] = total(db.session)
    return cached


def template_globals() -> dict:
    return {"age": age, "utc": utc, "money": money, "inbox_count": inbox_count}
