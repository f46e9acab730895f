"""Dashboard > Sellers: the marketplace's sellers, each with its payout bank account (issue 22).

Everyone in the team reads; owners and admins (Action.MANAGE_PAYOUTS) create and edit sellers and change bank
accounts. A bank account changes only after a recent re-authentication (app/dashboard/reauth.py): its page
asks for one before it shows the form, and a POST without one is refused and sent to the confirmation page
*without* keeping the submitted fields (unlike the other re-authenticated forms): an account number never rests
on the session row; the person types it again. The merchant's own payout account (its revenue) is the
``own`` page. Everything is read through the page's Scope: another merchant's seller is a 404.
"""
from datetime import timedelta

from flask import Response, abort, current_app, flash, g, redirect, render_template, request, url_for
from flask_login import current_user

from app.accounts.audit import audit
from app.accounts.permissions import Action, can
from app.accounts.service import Meta
from app.dashboard import bp
from app.dashboard.context import merchant_view
from app.dashboard.helpers import dash_url, request_meta
from app.dashboard.reauth import recently_reauthenticated
from app.dashboard.forms import ConfirmForm
from app.dashboard.sellers_forms import BankAccountForm, RailForm, ScheduleForm, SellerForm
from app.extensions import db
from app.models_base import utcnow
from app.payments.errors import PaymentError
from app.payments.models import Seller
from app.payments.service import create_seller, default_seller, update_seller
from app.accounts.models import Merchant
from app.payouts import balances, sepa
from app.payouts import service as payout_service
from app.payouts.bank_account_models import BankAccount, PayoutExport
from app.payouts.models import Payout
from app.payouts.bank_accounts import (
    Actor, BankAccountError, active_bank_account, bank_account_history, masked, set_bank_account,
)

INVALID_FORM = 422
RECENT = 20  # payouts, balance transactions and exports shown on a seller's page (the newest)
OWN = "own"  # the merchant itself, in URLs: seller ids are "sel_..."


def _seller_or_404(seller_id: str) -> Seller | None:
    """The page's seller (None for the merchant's own account); 404 for another book's or an unknown one."""
    if seller_id == OWN:
        return None
    seller = g.scope.get(db.session, Seller, seller_id)
    if seller is None:
        abort(404)
    return seller


def _base_url() -> str:
    return (current_app.config.get("PUBLIC_BASE_URL") or request.host_url).rstrip("/")


def _cooling() -> timedelta:
    return timedelta(days=float(current_app.config.get("PAYOUT_COOLING_DAYS", 3)))


def _actor() -> Actor:
    return Actor(user_id=current_user.id, label=current_user.email, meta=Meta(**request_meta()))


def account_status(row: BankAccount | None) -> str:
    """What the page says about an account: none, flagged, cooling until ..., active."""
    if row is None:
        return "none"
    if row.flagged_at is not None:
        return "flagged"
    if row.cooling_until is not None and row.cooling_until > utcnow():
        return "cooling"
    return "active"


@bp.app_template_global("bank_account_status")
def _status_global(row):
    return account_status(row)


@bp.app_template_filter("masked_account")
def _masked_filter(row):
    return masked(row)


# -- the list and new sellers --------------------------------------------------------------------------------

def _render_list(form: SellerForm | None = None, status: int = 200):
    default_seller(db.session, g.scope)  # every book has one: always listed
    sellers = list(db.session.scalars(g.scope.select(Seller).order_by(Seller.is_default.desc(),
                                                                      Seller.created_at.desc(), Seller.id.desc())))
    accounts = {row.seller_id: row for row in db.session.scalars(
        g.scope.select(BankAccount, BankAccount.replaced_at.is_(None)))}
    money = {seller.id: balances.seller_balances(db.session, g.scope, seller.id) for seller in sellers}
    money[OWN] = balances.seller_balances(db.session, g.scope, None)
    html = render_template("dashboard/sellers/list.html", sellers=sellers, accounts=accounts, money=money,
                           own_account=accounts.get(None), form=form or SellerForm(formdata=None),
                           can_manage=can(g.role, Action.MANAGE_PAYOUTS))
    db.session.commit()  # the default seller, when this view created it
    return html, status


@bp.route("/<merchant_id>/<mode>/sellers")
@merchant_view()
def sellers():
    """Every seller of the book with its payout account (masked)."""
    return _render_list()


@bp.route("/<merchant_id>/<mode>/sellers", methods=["POST"])
@merchant_view(Action.MANAGE_PAYOUTS)
def create_seller_view():
    form = SellerForm()
    if not form.validate():
        return _render_list(form, INVALID_FORM)
    seller = create_seller(db.session, g.scope, name=form.name.data.strip(), email=(form.email.data or "").strip()
                           or None)
    audit(db.session, "seller.created", merchant_id=g.merchant.id, livemode=g.scope.livemode,
          actor_user_id=current_user.id, actor_label=current_user.email, target=seller.id,
          details={"name": seller.name}, **request_meta())
    db.session.commit()
    flash(f"Seller {seller.name} created. Add its bank account so that it can be paid out.", "success")
    return redirect(dash_url("dashboard.seller", seller_id=seller.id), code=303)


# -- one seller ----------------------------------------------------------------------------------------------

def _render_seller(seller: Seller | None, form: SellerForm | None = None, status: int = 200, *,
                   rail_form=None, export_error: str | None = None, schedule_form=None):
    seller_id = seller.id if seller else None
    if form is None and seller is not None:
        form = SellerForm(formdata=None, name=seller.name, email=seller.email)
    payouts = list(db.session.scalars(
        g.scope.select(Payout, Payout.seller_id.is_(None) if seller is None else Payout.seller_id == seller_id)
        .order_by(Payout.created_at.desc(), Payout.id.desc()).limit(RECENT)))
    movements = balances.balance_transactions(db.session, g.scope, seller_id)[-RECENT:][::-1]
    exports = (list(db.session.scalars(g.scope.select(PayoutExport).order_by(PayoutExport.created_at.desc())
                                       .limit(RECENT))) if seller is None else [])
    merchant = db.session.get(Merchant, g.merchant.id)
    schedule = payout_service.get_schedule(db.session, g.scope, seller_id)
    html = render_template(
        "dashboard/sellers/detail.html", seller=seller, form=form, slug=seller.id if seller else OWN,
        account=active_bank_account(db.session, g.scope, seller_id),
        history=bank_account_history(db.session, g.scope, seller_id),
        can_manage=can(g.role, Action.MANAGE_PAYOUTS),
        balances=balances.seller_balances(db.session, g.scope, seller_id), payouts=payouts, movements=movements,
        schedule=schedule, exports=exports,
        schedule_form=schedule_form or ScheduleForm(formdata=None, **schedule.__dict__),
        payout_rail=merchant.payout_rail, rail_form=rail_form or RailForm(formdata=None, rail=merchant.payout_rail),
        due=len(sepa.due_payouts(db.session, g.scope, now=utcnow())) if seller is None else 0,
        confirm_form=ConfirmForm(formdata=None), export_error=export_error)
    db.session.rollback()  # read-only
    return html, status


@bp.route("/<merchant_id>/<mode>/sellers/<seller_id>")
@merchant_view()
def seller(seller_id: str):
    """A seller (or ``own``: the merchant itself): details and its payout bank account."""
    return _render_seller(_seller_or_404(seller_id))


@bp.route("/<merchant_id>/<mode>/sellers/<seller_id>", methods=["POST"])
@merchant_view(Action.MANAGE_PAYOUTS)
def edit_seller(seller_id: str):
    seller = _seller_or_404(seller_id)
    if seller is None:
        abort(404)
    form = SellerForm()
    if not form.validate():
        return _render_seller(seller, form, INVALID_FORM)
    before = {"name": seller.name, "email": seller.email}
    try:
        update_seller(db.session, g.scope, seller.id, name=form.name.data.strip(),
                      email=(form.email.data or "").strip() or None)
    except PaymentError as error:
        db.session.rollback()
        form.name.errors = [*form.name.errors, str(error)]
        return _render_seller(_seller_or_404(seller_id), form, INVALID_FORM)
    audit(db.session, "seller.updated", merchant_id=g.merchant.id, livemode=g.scope.livemode,
          actor_user_id=current_user.id, actor_label=current_user.email, target=seller.id,
          details={"before": before, "after": {"name": seller.name, "email": seller.email}}, **request_meta())
    db.session.commit()
    flash("Seller saved.", "success")
    return redirect(dash_url("dashboard.seller", seller_id=seller.id), code=303)


# -- bank accounts -------------------------------------------------------------------------------------------

def _render_bank_form(seller: Seller | None, form: BankAccountForm, status: int = 200):
    seller_id = seller.id if seller else None
    html = render_template("dashboard/sellers/bank_account.html", seller=seller, form=form,
                           slug=seller.id if seller else OWN,
                           account=active_bank_account(db.session, g.scope, seller_id),
                           cooling_days=_cooling().total_seconds() / 86400)
    db.session.rollback()
    return html, status


def _confirm_first(seller_id: str):
    back = dash_url("dashboard.bank_account", seller_id=seller_id)
    return redirect(url_for("dashboard.confirm_identity", next=back), code=303)


@bp.route("/<merchant_id>/<mode>/sellers/<seller_id>/bank_account")
@merchant_view(Action.MANAGE_PAYOUTS)
def bank_account(seller_id: str):
    """The form that adds or changes the payout account: only after a recent re-authentication."""
    seller = _seller_or_404(seller_id)
    if not recently_reauthenticated():
        return _confirm_first(seller_id)
    account = active_bank_account(db.session, g.scope, seller.id if seller else None)
    form = BankAccountForm(formdata=None, holder_name=account.holder_name if account else
                           (seller.name if seller else g.merchant.name),
                           currency=account.currency if account else "EUR",
                           country=account.country if account else "")
    return _render_bank_form(seller, form)


@bp.route("/<merchant_id>/<mode>/sellers/<seller_id>/bank_account", methods=["POST"])
@merchant_view(Action.MANAGE_PAYOUTS)
def change_bank_account(seller_id: str):
    seller = _seller_or_404(seller_id)
    form = BankAccountForm()
    if not recently_reauthenticated():
        # Refused, and nothing typed is kept (see the module docstring): confirm, then type it again.
        flash("Confirm who you are, then enter the bank account again: for your safety, account numbers are "
              "never kept while you confirm.", "error")
        return _confirm_first(seller_id)
    if not form.validate():
        return _render_bank_form(seller, form, INVALID_FORM)
    try:
        row = set_bank_account(
            db.session, g.scope, seller_id=seller.id if seller else None, holder_name=form.holder_name.data,
            country=form.country.data, currency=form.currency.data, iban=form.iban.data, bic=form.bic.data,
            account_number=form.account_number.data, routing_code=form.routing_code.data, actor=_actor(),
            cooling=_cooling(), base_url=_base_url())
    except BankAccountError as error:
        db.session.rollback()
        field = getattr(form, error.field or "iban", None) or form.iban
        field.errors = [*field.errors, error.message]
        return _render_bank_form(seller, form, INVALID_FORM)
    db.session.commit()
    wait = (f" The first payout to it waits until {row.cooling_until:%Y-%m-%d %H:%M} UTC."
            if row.cooling_until else "")
    flash(f"Bank account {masked(row)} saved; the owners were told by email.{wait}", "success")
    return redirect(dash_url("dashboard.seller", seller_id=seller_id), code=303)


# -- the merchant's payout rail and SEPA exports (owners and admins) ------------------------------------------

@bp.route("/<merchant_id>/<mode>/sellers/own/payout_rail", methods=["POST"])
@merchant_view(Action.MANAGE_PAYOUTS)
def set_payout_rail():
    """Pay out through the sandbox's transfers or through SEPA files; applies to payouts created from now on."""
    form = RailForm()
    if not form.validate():
        return _render_seller(None, rail_form=form, status=INVALID_FORM)
    merchant = db.session.get(Merchant, g.merchant.id, with_for_update=True)
    before, merchant.payout_rail = merchant.payout_rail, form.rail.data
    audit(db.session, "merchant.payout_rail_changed", merchant_id=g.merchant.id, livemode=g.scope.livemode,
          actor_user_id=current_user.id, actor_label=current_user.email, target=g.merchant.id,
          details={"before": before, "after": merchant.payout_rail}, **request_meta())
    db.session.commit()
    flash("Payouts created from now on leave " + ("in SEPA files you export here." if merchant.payout_rail == "sepa"
                                                   else "through the sandbox's bank transfers."), "success")
    return redirect(dash_url("dashboard.seller", seller_id=OWN), code=303)


@bp.route("/<merchant_id>/<mode>/sellers/own/exports", methods=["POST"])
@merchant_view(Action.MANAGE_PAYOUTS)
def export_sepa():
    """Put every due SEPA payout in one new pain.001 file (each payout once, ever) and download it."""
    if not ConfirmForm().validate():
        abort(400)
    if not recently_reauthenticated():  # money leaves with this file
        return redirect(url_for("dashboard.confirm_identity", next=dash_url("dashboard.seller", seller_id=OWN)),
                        code=303)
    try:
        export, document = sepa.export_due_payouts(db.session, g.scope, execution_date=utcnow().date(),
                                                   actor_user_id=current_user.id, actor_label=current_user.email)
    except sepa.SepaExportError as error:
        db.session.rollback()
        return _render_seller(None, status=INVALID_FORM, export_error=error.message)
    db.session.commit()
    return _download(export, document)


@bp.route("/<merchant_id>/<mode>/sellers/own/exports/<export_id>")
@merchant_view(Action.MANAGE_PAYOUTS)
def download_export(export_id: str):
    """An export's file again, as first handed out (it lists the same payouts: nothing is exported anew)."""
    export = db.session.scalars(g.scope.select(PayoutExport, PayoutExport.id == export_id)).one_or_none()
    if export is None:
        abort(404)
    document = sepa.export_document(export)
    db.session.rollback()
    return _download(export, document)


def _download(export: PayoutExport, document: bytes) -> Response:
    return Response(document, mimetype="application/xml", headers={
        "Content-Disposition": f'attachment; filename="{export.id}.xml"', "Cache-Control": "no-store"})


@bp.route("/<merchant_id>/<mode>/sellers/<seller_id>/schedule", methods=["POST"])
@merchant_view(Action.MANAGE_PAYOUTS)
def set_schedule(seller_id: str):
    """A seller's (or the merchant's own) payout schedule and reserve."""
    seller = _seller_or_404(seller_id)
    form = ScheduleForm()
    if not form.validate():
        return _render_seller(seller, status=INVALID_FORM, schedule_form=form)
    params = {name: getattr(form, name).data for name in (
        "interval", "weekly_anchor", "monthly_anchor", "minimum_amount", "delay_days", "reserve_percent_bp",
        "reserve_days", "reserve_minimum")}
    params = {name: (0 if value is None else value) for name, value in params.items()}
    try:
        schedule = payout_service.set_schedule(db.session, g.scope, seller.id if seller else None, params)
    except PaymentError as error:
        db.session.rollback()
        field = getattr(form, error.param or "interval", form.interval)
        field.errors = [*field.errors, error.message]
        return _render_seller(_seller_or_404(seller_id), status=INVALID_FORM, schedule_form=form)
    audit(db.session, "payout_schedule.updated", merchant_id=g.merchant.id, livemode=g.scope.livemode,
          actor_user_id=current_user.id, actor_label=current_user.email, target=seller.id if seller else OWN,
          details=dict(schedule.__dict__), **request_meta())
    db.session.commit()
    flash("Schedule and reserve saved.", "success")
    return redirect(dash_url("dashboard.seller", seller_id=seller_id), code=303)
