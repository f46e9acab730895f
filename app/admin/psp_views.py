"""/admin/psp: the circuit breaker of each connector and credential (state, the window's figures, any
rate-limit backoff) with a manual override, how each Stripe account's deposits are confirmed (a merchant's own
account editable, with a reason, audited), and the latest disputes PSPs reported. Platform admins only
(everyone else gets 404)."""
import logging
import re
from datetime import datetime, timezone

from flask import abort, current_app, flash, g, redirect, render_template, request, url_for
from flask_login import current_user
from redis import RedisError
from sqlalchemy import func, select

from app.accounts.audit import audit, operator_reason
from app.accounts.models import Merchant
from app.admin import bp
from app.admin.forms import DepositConfirmationForm
from app.admin.helpers import INVALID_FORM, meta, operator, reasoned_action
from app.dashboard.context import platform_admin_required
from app.extensions import db
from app.psp.breaker import PLATFORM_CREDENTIAL, BreakerSnapshot
from app.psp.credentials import DepositConfirmationError, set_deposit_confirmation
from app.psp.models import PspCredential
from app.psp.stripe_keys import platform_stripe
from app.scoping import Scope
from app.disputes.models import Dispute
from app.psp.router import router_for_app

log = logging.getLogger(__name__)

ACTIONS = {
    "force_open": "forced open",
    "force_close": "forced closed",
    "reset": "reset to automatic",
}
# Disputes shown on the page: the latest ones; the dispute workflow (a later issue) will page them.
RECENT_DISPUTES = 20
# Merchants' credential breakers shown, the most recently used first: enough for an incident (the
# breakers that matter are the ones in use), bounded so that the page stays fast on a large platform.
MERCHANT_BREAKERS_SHOWN = 100
# A merchant's own credential: its psp_credentials id (what payments record and the router calls with), or
# as app/psp/breaker.py credential_id names one without an id (routers over ready-made credentials).
MERCHANT_CREDENTIAL = re.compile(r"^(?P<merchant>mer_[A-Za-z0-9]+):(?P<mode>test|live)$")
STORED_CREDENTIAL = re.compile(r"^pcr_[A-Za-z0-9]+$")


@bp.get("/psp")
@platform_admin_required
def psp_status():
    """Breaker of every configured connector (the platform's credential) and of every merchant credential
    used lately, with its window's figures; plus recent disputes."""
    router = router_for_app(current_app)
    rows, redis_error = [], None
    keys = [(name, PLATFORM_CREDENTIAL) for name in router.connector_names()]
    if router.breakers is not None:
        try:
            merchant_keys = [(connector, credential) for connector, credential in router.breakers.known()
                             if credential != PLATFORM_CREDENTIAL and connector in router.specs]
            keys += merchant_keys[:MERCHANT_BREAKERS_SHOWN]
        except RedisError as exc:
            redis_error = type(exc).__name__
    labels = _credential_labels([credential for _, credential in keys])
    for connector, credential in keys:
        spec = router.specs[connector]
        breaker = router.breaker(connector, credential)
        snapshot = None
        if breaker is not None and redis_error is None:
            try:
                snapshot = breaker.snapshot()
            except RedisError as exc:
                redis_error = type(exc).__name__
        rows.append({"connector": connector, "credential": credential, "label": labels.get(credential, credential),
                     "vault": spec.vault, "test_only": spec.test_only, "snapshot": snapshot,
                     "times": _times(snapshot), "settings": breaker.settings if breaker else None})
    # Cross-merchant on purpose: the platform operator's view.
    disputes = db.session.scalars(select(Dispute).order_by(Dispute.created_at.desc()).limit(RECENT_DISPUTES)).all()
    merchant_names = dict(db.session.execute(
        select(Merchant.id, func.coalesce(Merchant.display_name, Merchant.name))
        .where(Merchant.id.in_({d.merchant_id for d in disputes}))).all()) if disputes else {}
    accounts = _stripe_accounts()
    merchant_names.update(_names({row.merchant_id for row in accounts["merchants"]}))
    page = render_template("admin/psp.html", rows=rows, redis_error=redis_error, disputes=disputes,
                           merchant_names=merchant_names, actions=ACTIONS, stripe_accounts=accounts)
    db.session.rollback()
    return page


# Merchants' own Stripe accounts listed on the page (the most recently changed first), bounded like the breakers.
STRIPE_ACCOUNTS_SHOWN = 100


def _names(merchant_ids: set[str]) -> dict[str, str]:
    if not merchant_ids:
        return {}
    return dict(db.session.execute(select(Merchant.id, func.coalesce(Merchant.display_name, Merchant.name))
                                   .where(Merchant.id.in_(merchant_ids))).all())


def _stripe_accounts() -> dict:
    """The platform's Stripe account per mode (deposit confirmation from the configuration) and every merchant's
    current own Stripe credential (cross-merchant on purpose: the platform operator's view)."""
    platform = [platform_stripe(current_app.config, livemode) for livemode in (False, True)]
    merchants = db.session.scalars(
        select(PspCredential).where(PspCredential.psp == "stripe", PspCredential.retired_at.is_(None))
        .order_by(PspCredential.updated_at.desc()).limit(STRIPE_ACCOUNTS_SHOWN)).all()
    return {"platform": platform, "merchants": merchants}


def _current_stripe_credential(credential_id: str) -> PspCredential:
    """A merchant's current Stripe credential by id, else 404 (a retired one is no longer reconciled)."""
    row = db.session.get(PspCredential, credential_id) if STORED_CREDENTIAL.match(credential_id) else None
    if row is None or row.psp != "stripe" or row.retired_at is not None:
        abort(404)
    return row


def _deposit_page(row: PspCredential, form: DepositConfirmationForm, status: int = 200):
    page = render_template("admin/psp_deposit_confirmation.html", credential=row, form=form,
                           merchant_names=_names({row.merchant_id}))
    db.session.rollback()
    return page, status


@bp.get("/psp/credentials/<credential_id>/deposit-confirmation")
@platform_admin_required
def psp_deposit_confirmation(credential_id: str):
    """The form to declare how a merchant's own Stripe account's deposits are confirmed."""
    row = _current_stripe_credential(credential_id)
    form = DepositConfirmationForm(formdata=None, deposit_confirmation=row.deposit_confirmation)
    return _deposit_page(row, form)


@bp.post("/psp/credentials/<credential_id>/deposit-confirmation")
@platform_admin_required
def set_psp_deposit_confirmation(credential_id: str):
    """Change how the account's deposits are confirmed (app/reconciliation/payout_events.py); reason required,
    audited. An invalid choice or a missing reason re-renders the form with its message, nothing changed."""
    row = _current_stripe_credential(credential_id)
    scope = Scope(row.merchant_id, row.livemode)
    previous = row.deposit_confirmation
    form = DepositConfirmationForm()

    def change():
        reason = operator_reason(form.reason.data)
        user = operator()
        set_deposit_confirmation(db.session, scope, "stripe", form.deposit_confirmation.data)
        audit(db.session, "psp_credentials.deposit_confirmation_set", merchant_id=scope.merchant_id,
              livemode=scope.livemode, actor_user_id=user.id, actor_label=user.email, target=row.id,
              details={"reason": reason, "psp": "stripe", "deposit_confirmation": form.deposit_confirmation.data,
                       "previous": previous}, **meta().as_kwargs())

    refused = reasoned_action(form, change, DepositConfirmationError,
                              lambda: _deposit_page(row, form, INVALID_FORM))
    if refused is not None:
        return refused
    flash(f"Deposits of {row.id} are now confirmed by {form.deposit_confirmation.data.replace('_', ' ')}.",
          "success")
    return redirect(url_for("admin.psp_status"), code=303)


@bp.post("/psp/<connector>/breaker")
@platform_admin_required
def psp_breaker_override(connector: str):
    """Force the breaker of a connector and credential (form field ``credential``, the platform's by
    default) open or closed, or hand it back to automatic control."""
    router = router_for_app(current_app)
    action = request.form.get("action", "")
    credential = request.form.get("credential") or PLATFORM_CREDENTIAL
    known_credential = credential == PLATFORM_CREDENTIAL or (
        (match := MERCHANT_CREDENTIAL.match(credential)) is not None
        and db.session.get(Merchant, match["merchant"]) is not None) or (
        STORED_CREDENTIAL.match(credential) is not None and db.session.get(PspCredential, credential) is not None)
    breaker = router.breaker(connector, credential) if connector in router.specs and known_credential else None
    if breaker is None or action not in ACTIONS:
        return render_template("errors/404.html", error=None), 404
    try:
        state = getattr(breaker, action)()
    except RedisError:
        log.exception("breaker override of %s failed", breaker.name)
        flash(f"Could not change the breaker of {breaker.name}: Redis is unavailable.", "error")
        return redirect(url_for("admin.psp_status"))
    audit(db.session, f"psp.breaker.{action}", actor_user_id=current_user.id, actor_label=current_user.email,
          target=breaker.name, ip=request.remote_addr, user_agent=request.user_agent.string,
          request_id=g.get("request_id"), details={"state": state.value, "connector": connector,
                                                   "credential": credential})
    db.session.commit()
    flash(f"Breaker of {breaker.name} {ACTIONS[action]}; it is now {state.value.replace('_', '-')}.", "success")
    return redirect(url_for("admin.psp_status"))


def _credential_labels(credentials: list[str]) -> dict[str, str]:
    """"platform", or the merchant's name and mode (and "retired" for a replaced credential that payments made
    with it still use), per credential id."""
    matches = {credential: m for credential in credentials if (m := MERCHANT_CREDENTIAL.match(credential))}
    stored_ids = [credential for credential in credentials if STORED_CREDENTIAL.match(credential)]
    stored = db.session.execute(
        select(PspCredential.id, PspCredential.merchant_id, PspCredential.livemode, PspCredential.retired_at)
        .where(PspCredential.id.in_(stored_ids))).all() if stored_ids else []
    merchant_ids = {m["merchant"] for m in matches.values()} | {row.merchant_id for row in stored}
    names = dict(db.session.execute(
        select(Merchant.id, Merchant.name).where(Merchant.id.in_(merchant_ids))).all()) if merchant_ids else {}
    labels = {PLATFORM_CREDENTIAL: "platform"}
    for credential, m in matches.items():
        labels[credential] = f"{names.get(m['merchant'], m['merchant'])} ({m['mode']})"
    for row in stored:
        mode = "live" if row.livemode else "test"
        labels[row.id] = (f"{names.get(row.merchant_id, row.merchant_id)} ({mode}"
                          f"{', retired' if row.retired_at is not None else ''})")
    return labels


def _times(snapshot: BreakerSnapshot | None) -> dict[str, str]:
    """The snapshot's moments as UTC clock times for the page."""
    if snapshot is None:
        return {}
    moments = {"opened_at": snapshot.opened_at, "retry_at": snapshot.retry_at,
               "backoff_until": snapshot.backoff_until}
    return {name: datetime.fromtimestamp(value, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
            for name, value in moments.items() if value is not None}
