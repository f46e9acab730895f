"""Payouts in the dashboard (issue 22): the list with filters (seller, status, currency), a payout's page (its
balance transactions, its events, the reconciliation CSV), and a manual payout behind a confirmation page.

Everyone in the merchant reads; owners and admins pay out (Action.MOVE_MONEY). Every read goes through ``g.scope``,
so another merchant's payout is a 404. The manual payout runs the idempotent ``payout.create`` operation (the API's)
keyed by the confirmation's one-time form token, so a double submit pays once.
"""
import logging
import re
import secrets

from flask import abort, current_app, flash, g, make_response, redirect, request
from flask_login import current_user

from app.accounts.audit import audit
from app.accounts.permissions import Action
from app.api.payments import payments_deps
from app.dashboard import bp
from app.dashboard.context import merchant_view
from app.dashboard.helpers import dash_url, request_meta, user_locale
from app.dashboard.reporting_helpers import render, row_or_404
from app.events import Event
from app.extensions import db
from app.money import AmountInputError, CURRENCY_EXPONENTS, parse_amount_input
from app.payments import idempotency
from app.payments.errors import IdempotencyInFlight, IdempotencyMismatch, PaymentError
from app.payments.models import Seller
from app.payouts import balances, operations  # noqa: F401  (operations: registers payout.create)
from app.payouts import service
from app.payouts.clock import payout_today
from app.payouts.models import MERCHANT_SUBJECT, Payout, PayoutStatus

log = logging.getLogger(__name__)

PAGE_SIZE = 50
INVALID_FORM = 422
_TOKEN = re.compile(r"^[A-Za-z0-9_\-]{16,64}$")


def _sellers() -> list[Seller]:
    return db.session.scalars(g.scope.select(Seller).order_by(Seller.is_default.desc(), Seller.name)).all()


@bp.route("/<merchant_id>/<mode>/payouts")
@merchant_view(Action.VIEW)
def payouts():
    """The book's payouts, newest first, filtered by seller (``merchant``: its own), status and currency."""
    seller = request.args.get("seller") or ""
    status = request.args.get("status") or ""
    currency = (request.args.get("currency") or "").upper()
    statement = g.scope.select(Payout)
    if seller == MERCHANT_SUBJECT:
        statement = statement.where(Payout.seller_id.is_(None))
    elif seller:
        statement = statement.where(Payout.seller_id == seller)
    if status in {s.value for s in PayoutStatus}:
        statement = statement.where(Payout.status == status)
    else:
        status = ""
    if currency in CURRENCY_EXPONENTS:
        statement = statement.where(Payout.currency == currency)
    else:
        currency = ""
    before = request.args.get("before")
    if before:
        statement = statement.where(Payout.id < before)
    rows = db.session.scalars(statement.order_by(Payout.id.desc()).limit(PAGE_SIZE + 1)).all()
    sellers = _sellers()
    return render("dashboard/payouts/list.html", rows=rows[:PAGE_SIZE], sellers=sellers,
                  seller_names={s.id: s.name for s in sellers}, statuses=[s.value for s in PayoutStatus],
                  filters={"seller": seller, "status": status, "currency": currency},
                  older=rows[PAGE_SIZE - 1].id if len(rows) > PAGE_SIZE else None)


@bp.route("/<merchant_id>/<mode>/payouts/<payout_id>")
@merchant_view(Action.VIEW)
def payout_detail(payout_id: str):
    """One payout: amount, status, destination (masked), its balance transactions and its timeline."""
    payout = row_or_404(Payout, payout_id)
    items = service.payout_items(db.session, g.scope, payout.id)
    events = db.session.scalars(g.scope.select(Event, Event.object_id == payout.id)
                                .order_by(Event.created_at, Event.id)).all()
    seller = g.scope.get(db.session, Seller, payout.seller_id) if payout.seller_id else None
    return render("dashboard/payouts/detail.html", payout=payout, items=items, events=events, seller=seller,
                  total=sum(t.net for t in items))


@bp.route("/<merchant_id>/<mode>/payouts/<payout_id>/reconciliation.csv")
@merchant_view(Action.VIEW)
def payout_csv(payout_id: str):
    """The payout reconciliation report of one payout (its balance transactions) as CSV."""
    payout = row_or_404(Payout, payout_id)
    body = service.reconciliation_csv(db.session, g.scope, payout.id)
    db.session.commit()
    response = make_response(body)
    response.headers["Content-Type"] = "text/csv; charset=utf-8"
    response.headers["Content-Disposition"] = f'attachment; filename="{payout.id}-reconciliation.csv"'
    return response


def _form_context(values: dict, errors: dict) -> dict:
    today = payout_today(current_app.config, g.scope.livemode)
    sellers = _sellers()
    available = {}
    for seller in [None] + [s.id for s in sellers]:
        for b in balances.subject_balances(db.session, g.scope, seller, today):
            available[(seller or MERCHANT_SUBJECT, b.currency)] = b.available
    return dict(values=values, errors=errors, sellers=sellers, available=available)


def _read_form() -> tuple[dict, dict, dict]:
    """The typed form, the errors per field, and the parsed payout (seller, currency, amount)."""
    values = {name: (request.form.get(name) or "").strip() for name in ("seller", "currency", "amount")}
    errors, parsed = {}, {}
    seller = values["seller"]
    if seller != MERCHANT_SUBJECT and (not seller or g.scope.get(db.session, Seller, seller) is None):
        errors["seller"] = "Choose who is paid."
    parsed["seller"] = None if seller == MERCHANT_SUBJECT else seller
    currency = values["currency"].upper()
    if currency not in CURRENCY_EXPONENTS:
        errors["currency"] = "Choose a currency."
    else:
        parsed["currency"] = currency
        try:
            parsed["amount"] = parse_amount_input(values["amount"], currency, user_locale())
        except AmountInputError as error:
            errors["amount"] = str(error)
    return values, errors, parsed


@bp.route("/<merchant_id>/<mode>/payouts/new", methods=["GET", "POST"])
@merchant_view(Action.MOVE_MONEY)
def payout_new():
    """The manual payout form; a valid form goes to its confirmation page (nothing is paid before that)."""
    if request.method == "GET":
        return render("dashboard/payouts/new.html", **_form_context({"seller": request.args.get("seller", "")}, {}))
    values, errors, parsed = _read_form()
    if errors:
        html = render("dashboard/payouts/new.html", **_form_context(values, errors))
        return html, INVALID_FORM
    seller = g.scope.get(db.session, Seller, parsed["seller"]) if parsed["seller"] else None
    return render("dashboard/payouts/confirm.html", values=values, parsed=parsed, seller=seller,
                  form_token=secrets.token_urlsafe(24))


@bp.post("/<merchant_id>/<mode>/payouts/confirm")
@merchant_view(Action.MOVE_MONEY)
def payout_confirm():
    """Pay out, once per confirmation page (its form token is the idempotency key)."""
    token = request.form.get("form_token", "")
    if not _TOKEN.match(token):
        abort(400)
    values, errors, parsed = _read_form()
    if errors:
        html = render("dashboard/payouts/new.html", **_form_context(values, errors))
        return html, INVALID_FORM
    params = {"seller": parsed["seller"], "amount": parsed["amount"], "currency": parsed["currency"],
              "description": None, "created_by": current_user.email,
              "today": payout_today(current_app.config, g.scope.livemode).isoformat()}
    try:
        result = idempotency.execute(db.session, g.scope, "payout.create", params, key=f"dashboard:{token}",
                                     deps=payments_deps(), method="POST", path=request.path,
                                     request_id=g.get("request_id"))
    except IdempotencyInFlight:
        db.session.rollback()
        flash("This payout was already sent and is being processed.", "info")
        return redirect(dash_url("dashboard.payouts"), code=303)
    except (IdempotencyMismatch, PaymentError) as error:
        db.session.rollback()
        html = render("dashboard/payouts/new.html", **_form_context(values, {"amount": error.message}))
        return html, INVALID_FORM
    payout_id = result.body["id"]
    if result.replayed:
        flash("This payout was already made; nothing was paid twice.", "info")
    else:
        try:
            audit(db.session, "payout.created", merchant_id=g.merchant.id, livemode=g.scope.livemode,
                  actor_user_id=current_user.id, actor_label=current_user.email, target=payout_id,
                  details={"amount": parsed["amount"], "currency": parsed["currency"], "seller": parsed["seller"]},
                  **request_meta())
            db.session.commit()
        except Exception:  # noqa: BLE001 - the payout is made; a lost audit row is logged loudly, not a 500
            db.session.rollback()
            log.exception("could not audit payout %s", payout_id)
        flash("Payout created. It is sent to the bank account on file.", "success")
    return redirect(dash_url("dashboard.payout_detail", payout_id=payout_id), code=303)
