"""/admin/inbox: one queue of everything that needs an operator (app/inbox), with claims and filters; and
the pages where two of its kinds are worked: a PSP callback (reprocess or dismiss) and a webhook endpoint."""
from datetime import timedelta

from flask import abort, flash, redirect, render_template, request, url_for

from app import pan
from app.accounts.audit import audit
from app.accounts.models import Merchant, User
from app.admin import bp
from app.admin.forms import ReasonForm
from app.admin.helpers import INVALID_FORM, back_or, meta, merchant_names, operator, reasoned_action
from app.dashboard.context import platform_admin_required
from app.extensions import db
from app.inbox import InboxFilters, claims, collect, kinds
from app.jobs.psp import process_stored_callback
from app.models_base import utcnow
from app.psp import callbacks
from app.psp.models import PspCallback
from app.scoping import Scope
from app.webhooks.models import WebhookEndpoint
from app.webhooks.service import endpoint_attempts

# "Older than" choices of the age filter: the inbox's usual horizons.
AGES = {"1h": ("1 hour", timedelta(hours=1)), "1d": ("1 day", timedelta(days=1)),
        "3d": ("3 days", timedelta(days=3)), "7d": ("7 days", timedelta(days=7))}
ATTEMPTS_SHOWN = 20


@bp.get("/inbox")
@platform_admin_required
def inbox():
    """Every open item, soonest due then oldest first; filtered by kind, merchant and age."""
    known = {k.name: k for k in kinds()}
    kind = request.args.get("kind") if request.args.get("kind") in known else None
    merchant_id = (request.args.get("merchant") or "").strip()[:64] or None
    age = request.args.get("age") if request.args.get("age") in AGES else None
    filters = InboxFilters(merchant_id=merchant_id, since_before=utcnow() - AGES[age][1] if age else None)
    items, counts = collect(db.session, filters, kind)
    claimed = claims.claims_of(db.session, [(item.kind, item.id) for item in items])
    names = merchant_names(item.merchant_id for item in items)
    page = render_template("admin/inbox.html", items=items, counts=counts, kinds=known, claimed=claimed, names=names,
                           filters={"kind": kind or "", "merchant": merchant_id or "", "age": age or ""}, ages=AGES,
                           shown_total=sum(counts.values()))
    db.session.rollback()  # read-only
    return page


def _item_or_404(kind: str, item_id: str) -> None:
    """404 unless ``kind`` is registered and ``item_id`` can name one of its items (a Kassa id: no longer
    than a claim keeps, no card number in a URL that an audit row would keep)."""
    if kind not in {k.name for k in kinds()} or len(item_id) > claims.InboxClaim.item_id.type.length \
            or pan.find_card_number(item_id) is not None:
        abort(404)


@bp.post("/inbox/<kind>/<item_id>/claim")
@platform_admin_required
def claim_item(kind: str, item_id: str):
    """Take the item: the inbox shows who works on it."""
    _item_or_404(kind, item_id)
    claims.claim(db.session, kind, item_id, operator().id)
    audit(db.session, "inbox.claimed", actor_user_id=operator().id, actor_label=operator().email,
          target=f"{kind}:{item_id}", **meta().as_kwargs())
    db.session.commit()
    return back_or("admin.inbox")


@bp.post("/inbox/<kind>/<item_id>/release")
@platform_admin_required
def release_item(kind: str, item_id: str):
    """Give the item back to the queue."""
    _item_or_404(kind, item_id)
    claims.release(db.session, kind, item_id)
    audit(db.session, "inbox.released", actor_user_id=operator().id, actor_label=operator().email,
          target=f"{kind}:{item_id}", **meta().as_kwargs())
    db.session.commit()
    return back_or("admin.inbox")


# -- PSP callbacks ------------------------------------------------------------------------------------------

def _callback_page(callback_id: str, forms: dict | None = None, status: int = 200):
    row = db.session.get(PspCallback, callback_id)
    if row is None:
        abort(404)
    forms = forms or {}
    for name in ("reprocess", "dismiss"):
        forms.setdefault(name, ReasonForm(formdata=None, prefix=name))
    dismissed_by = db.session.get(User, row.dismissed_by_user_id) if row.dismissed_by_user_id else None
    page = render_template("admin/callback.html", row=row, forms=forms, dismissed_by=dismissed_by)
    db.session.rollback()  # read-only
    return page, status


@bp.get("/callbacks/<callback_id>")
@platform_admin_required
def callback(callback_id: str):
    """A stored PSP callback: what it said, what became of it, and the operator's actions."""
    return _callback_page(callback_id)


@bp.post("/callbacks/<callback_id>/reprocess")
@platform_admin_required
def reprocess_callback(callback_id: str):
    """Process a callback that failed for good again, now (its cause is fixed)."""
    form = ReasonForm(prefix="reprocess")
    refused = reasoned_action(
        form, lambda: callbacks.reopen_failed(db.session, callback_id, operator=operator(), reason=form.reason.data, meta=meta()),
        callbacks.CallbackActionError, lambda: _callback_page(callback_id, {"reprocess": form}, INVALID_FORM))
    if refused is not None:
        return refused
    result = process_stored_callback(db.session, callback_id)  # its own transactions, as the sweep's
    if result is None:
        flash("Processing failed again; the callback's last error says why.", "error")
    else:
        flash(f"Processed again: {result}.", "success")
    return redirect(url_for("admin.callback", callback_id=callback_id), code=303)


@bp.post("/callbacks/<callback_id>/dismiss")
@platform_admin_required
def dismiss_callback(callback_id: str):
    """Close a failed or rejected callback with a note."""
    form = ReasonForm(prefix="dismiss")
    refused = reasoned_action(
        form, lambda: callbacks.dismiss(db.session, callback_id, operator=operator(), reason=form.reason.data, meta=meta()),
        callbacks.CallbackActionError, lambda: _callback_page(callback_id, {"dismiss": form}, INVALID_FORM))
    if refused is not None:
        return refused
    flash("The callback is dismissed.", "success")
    return redirect(url_for("admin.callback", callback_id=callback_id), code=303)


# -- webhook endpoints --------------------------------------------------------------------------------------

@bp.get("/webhook-endpoints/<endpoint_id>")
@platform_admin_required
def webhook_endpoint(endpoint_id: str):
    """A merchant's endpoint as operators see it: its state, why, and its latest attempts."""
    endpoint = db.session.get(WebhookEndpoint, endpoint_id)
    if endpoint is None:
        abort(404)
    scope = Scope(endpoint.merchant_id, endpoint.livemode)
    page = render_template("admin/webhook_endpoint.html", endpoint=endpoint,
                           merchant=db.session.get(Merchant, endpoint.merchant_id),
                           attempts=endpoint_attempts(db.session, scope, endpoint.id, limit=ATTEMPTS_SHOWN))
    db.session.rollback()  # read-only
    return page
