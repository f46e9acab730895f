"""/admin/merchants: find a merchant; its page (team, modes, volumes, balances, checklist, open items,
audit log) and the lifecycle actions: enable live mode, suspend, reinstate (app/merchants/lifecycle.py)."""
from datetime import date, datetime, time, timedelta, timezone

from flask import abort, flash, redirect, render_template, request, url_for
from sqlalchemy import func, or_, select, tuple_

from app.accounts.audit import AuditEntry
from app.accounts.models import Membership, Merchant, User
from app.admin import bp
from app.admin.forms import ReasonForm
from app.admin.helpers import INVALID_FORM, meta, operator, reasoned_action
from app.dashboard.context import platform_admin_required
from app.extensions import db
from app.inbox import InboxFilters, collect
from app.ledger.queries import book_accounts
from app.merchants import lifecycle
from app.models_base import utcnow
from app.reconciliation.models import PLATFORM_MERCHANT_ID
from app.reporting.rollups import merchant_zone, period_for, summarize
from app.scoping import Scope

PAGE_SIZE = 50
AUDIT_SHOWN = 50
OPEN_ITEMS_SHOWN = 20
YES_NO = ("yes", "no")


def _date(value: str | None) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None


def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


@bp.get("/merchants")
@platform_admin_required
def merchants():
    """Merchants, newest first, by name, id or a team member's email; filtered by live, suspended, created."""
    args = request.args
    q = (args.get("q") or "").strip()[:320]
    live = args.get("live") if args.get("live") in YES_NO else ""
    suspended = args.get("suspended") if args.get("suspended") in YES_NO else ""
    created_from, created_to = _date(args.get("created_from")), _date(args.get("created_to"))
    statement = select(Merchant).where(Merchant.id != PLATFORM_MERCHANT_ID)  # the platform's own book is no merchant
    if q:
        pattern = _like(q.lower())
        members = select(Membership.merchant_id).join(User, User.id == Membership.user_id) \
            .where(func.lower(User.email).like(pattern, escape="\\"))
        statement = statement.where(or_(Merchant.id == q, func.lower(Merchant.name).like(pattern, escape="\\"),
                                        func.lower(Merchant.display_name).like(pattern, escape="\\"),
                                        Merchant.id.in_(members)))
    if live:
        statement = statement.where(Merchant.live_enabled.is_(live == "yes"))
    if suspended:
        statement = statement.where(Merchant.suspended_at.is_not(None) if suspended == "yes"
                                    else Merchant.suspended_at.is_(None))
    if created_from:
        statement = statement.where(Merchant.created_at >= datetime.combine(created_from, time.min, timezone.utc))
    if created_to:
        next_day = datetime.combine(created_to, time.min, timezone.utc) + timedelta(days=1)
        statement = statement.where(Merchant.created_at < next_day)  # the whole last day, in UTC
    before = args.get("before", "")
    if "|" in before:
        stamp, _, merchant_id = before.partition("|")
        try:
            statement = statement.where(tuple_(Merchant.created_at, Merchant.id) < (datetime.fromisoformat(stamp),
                                                                                   merchant_id))
        except ValueError:
            pass
    rows = list(db.session.scalars(statement.order_by(Merchant.created_at.desc(), Merchant.id.desc())
                                   .limit(PAGE_SIZE + 1)))
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    filters = {"q": q, "live": live, "suspended": suspended, "created_from": args.get("created_from", ""),
               "created_to": args.get("created_to", "")}
    older = url_for("admin.merchants", **{k: v for k, v in filters.items() if v},
                    before=f"{rows[-1].created_at.isoformat()}|{rows[-1].id}") if more else None
    db.session.rollback()  # read-only
    return render_template("admin/merchants.html", merchants=rows, filters=filters, older=older)


def _merchant_page(merchant_id: str, forms: dict | None = None, status: int = 200):
    merchant = db.session.get(Merchant, merchant_id)
    if merchant is None:
        abort(404)
    team = db.session.execute(
        select(Membership, User).join(User, User.id == Membership.user_id)
        .where(Membership.merchant_id == merchant.id).order_by(Membership.created_at)).all()
    now = utcnow()
    period = period_for("30d", merchant_zone(merchant.timezone), now)
    modes = []
    for livemode in (False, True):
        scope = Scope(merchant.id, livemode)
        modes.append({"name": scope.mode, "volumes": summarize(db.session, scope, period),
                      "accounts": [a for a in book_accounts(db.session, scope) if a.balance]})
    items, _counts = collect(db.session, InboxFilters(merchant_id=merchant.id, limit=OPEN_ITEMS_SHOWN))
    entries = list(db.session.scalars(select(AuditEntry).where(AuditEntry.merchant_id == merchant.id)
                                      .order_by(AuditEntry.created_at.desc(), AuditEntry.id.desc()).limit(AUDIT_SHOWN)))
    forms = forms or {}
    for name in ("enable_live", "suspend", "reinstate"):
        forms.setdefault(name, ReasonForm(formdata=None, prefix=name))
    page = render_template("admin/merchant.html", merchant=merchant, team=team, modes=modes, period=period,
                           checklist=lifecycle.live_checklist(db.session, merchant), items=items, entries=entries,
                           forms=forms)
    db.session.rollback()  # read-only
    return page, status


@bp.get("/merchants/<merchant_id>")
@platform_admin_required
def merchant(merchant_id: str):
    """One merchant: team, modes, volumes and balances, checklist, open items, audit log, actions."""
    return _merchant_page(merchant_id)


ACTIONS = {
    "enable_live": (lifecycle.enable_live, "Live mode is enabled; the owners were told."),
    "suspend": (lifecycle.suspend, "The merchant is suspended: new payments are refused. The owners were told."),
    "reinstate": (lifecycle.reinstate, "The merchant is reinstated and takes payments again. The owners were told."),
}


def _act(merchant_id: str, name: str):
    action, done = ACTIONS[name]
    form = ReasonForm(prefix=name)
    refused = reasoned_action(
        form, lambda: action(db.session, merchant_id, operator=operator(), reason=form.reason.data, meta=meta()),
        lifecycle.LifecycleError, lambda: _merchant_page(merchant_id, {name: form}, INVALID_FORM))
    if refused is not None:
        return refused
    flash(done, "success")
    return redirect(url_for("admin.merchant", merchant_id=merchant_id), code=303)


@bp.post("/merchants/<merchant_id>/enable-live")
@platform_admin_required
def enable_live(merchant_id: str):
    """Enable live mode (refused, with the missing items, until the merchant's checklist is complete)."""
    return _act(merchant_id, "enable_live")


@bp.post("/merchants/<merchant_id>/suspend")
@platform_admin_required
def suspend_merchant(merchant_id: str):
    """Suspend: new payments refused, reads and refunds kept."""
    return _act(merchant_id, "suspend")


@bp.post("/merchants/<merchant_id>/reinstate")
@platform_admin_required
def reinstate_merchant(merchant_id: str):
    """Lift a suspension."""
    return _act(merchant_id, "reinstate")
