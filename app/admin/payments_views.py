"""/admin/payments: find payments across merchants (each search audited as a read of other tenants' data);
a payment's page with its attempts, refunds, disputes and issuers' early fraud warnings, where an outcome the PSP left unknown is worked:
ask the PSP again, or record the outcome found at the PSP (app/payments/operator.py)."""
from flask import abort, current_app, flash, redirect, render_template, request, url_for
from sqlalchemy import select

from app import pan
from app.accounts.audit import audit
from app.accounts.models import Merchant
from app.admin import bp
from app.admin.forms import OutcomeForm, ReasonForm
from app.admin.helpers import INVALID_FORM, meta, merchant_names, operator, reasoned_action
from app.dashboard.context import platform_admin_required
from app.dashboard.helpers import user_locale
from app.dashboard.risk_views import payment_risk
from app.disputes.models import Dispute
from app.extensions import db
from app.money import CURRENCY_EXPONENTS, MoneyError, normalize_currency, parse_amount_input
from app.payments import operator as payment_operator
from app.payments.deps import deps_for
from app.payments.models import Payment, PaymentAttempt, Refund
from app.payments.platform_search import PaymentQuery, find_payments
from app.risk.fraud_warnings import warnings_for_payment
from app.scoping import Scope

_LAST4_DIGITS = 4


def _query_from(args) -> tuple[PaymentQuery, dict, str | None]:
    """The search form's values, the query they make, and what is wrong with them (or None)."""
    values = {name: (args.get(name) or "").strip()[:320] for name in ("reference", "email", "last4", "amount",
                                                                      "currency")}
    if not any(values.values()):
        return PaymentQuery(), values, None
    if any(pan.find_card_number(value) for value in values.values()):
        # Neither searched for nor kept (the search is audited with its query): Kassa has none to find.
        return PaymentQuery(), {name: "" for name in values}, \
            "Kassa keeps no card numbers: search by the card's last 4 digits and the amount instead."
    last4 = values["last4"]
    if last4 and not (last4.isdigit() and len(last4) == _LAST4_DIGITS):
        return PaymentQuery(), values, "Card last 4 is four digits."
    amount = currency = None
    if values["amount"] or values["currency"]:
        try:
            currency = normalize_currency(values["currency"])
        except MoneyError:
            return PaymentQuery(), values, "Choose the currency of the amount."
        if values["amount"]:
            try:
                amount = parse_amount_input(values["amount"], currency, user_locale())
            except MoneyError as error:
                return PaymentQuery(), values, str(error)
    if (last4 or amount is not None) and not (last4 and amount is not None) and not (values["reference"]
                                                                                    or values["email"]):
        return PaymentQuery(), values, "Search by card with both its last 4 digits and the amount."
    return PaymentQuery(reference=values["reference"] or None, email=values["email"] or None, last4=last4 or None,
                        amount=amount, currency=currency), values, None


@bp.get("/payments")
@platform_admin_required
def payments():
    """Payments of every merchant by id, PSP reference, customer email, or card last 4 and amount."""
    query, values, problem = _query_from(request.args)
    rows = [] if problem else find_payments(db.session, query)
    searched = not query.empty and not problem
    if searched:
        # A read of other tenants' data: each merchant whose payments were shown gets its own audit row.
        shown = sorted({row.merchant_id for row in rows})
        for merchant_id in shown or [None]:
            audit(db.session, "admin.payment_search", merchant_id=merchant_id, actor_user_id=operator().id,
                  actor_label=operator().email,
                  details={"query": {k: v for k, v in values.items() if v}, "results": len(rows), "merchants": shown},
                  **meta().as_kwargs())
    names = merchant_names({row.merchant_id for row in rows})
    page = render_template("admin/payments.html", rows=rows, values=values, problem=problem, searched=searched,
                           names=names, currencies=sorted(CURRENCY_EXPONENTS))
    db.session.commit()  # the audit rows
    return page, 400 if problem else 200



def _payment_page(payment_id: str, forms: dict | None = None, status: int = 200, *, audited: bool = True):
    payment = db.session.get(Payment, payment_id)
    if payment is None:
        abort(404)
    attempts = list(db.session.scalars(select(PaymentAttempt).where(PaymentAttempt.payment_id == payment.id)
                                       .order_by(PaymentAttempt.id)))
    refunds = list(db.session.scalars(select(Refund).where(Refund.payment_id == payment.id).order_by(Refund.id)))
    disputes = list(db.session.scalars(select(Dispute).where(Dispute.merchant_id == payment.merchant_id,
                                                             Dispute.payment_id == payment.id)))
    forms = forms or {}
    undecided = []
    for row in [*attempts, *refunds]:
        item = payment_operator.Undecided(row, payment)
        if not item.is_open:
            continue
        ask = forms.get(("ask", row.id)) or ReasonForm(formdata=None, prefix=f"ask-{row.id}")
        record = forms.get(("record", row.id)) or OutcomeForm(formdata=None, prefix=f"record-{row.id}")
        record.outcome.choices = item.outcomes()
        undecided.append({"item": item, "ask": ask, "record": record})
    if audited:
        audit(db.session, "admin.payment_viewed", merchant_id=payment.merchant_id, livemode=payment.livemode,
              actor_user_id=operator().id, actor_label=operator().email, target=payment.id, **meta().as_kwargs())
    scope = Scope(payment.merchant_id, payment.livemode)
    risk = payment_risk(db.session, scope, payment, show_platform_wide=True)
    page = render_template("admin/payment.html", payment=payment, attempts=attempts, refunds=refunds,
                           disputes=disputes, undecided=undecided, risk=risk,
                           fraud_warnings=warnings_for_payment(db.session, scope, payment.id),
                           merchant=db.session.get(Merchant, payment.merchant_id))
    db.session.commit()
    return page, status


@bp.get("/payments/<payment_id>")
@platform_admin_required
def payment(payment_id: str):
    """One payment of any merchant (audited as a read of its data)."""
    return _payment_page(payment_id)


@bp.post("/payments/<payment_id>/objects/<object_id>/ask-again")
@platform_admin_required
def ask_psp_again(payment_id: str, object_id: str):
    """Ask the PSP about an open attempt or refund now (its job runs after the commit)."""
    form = ReasonForm(prefix=f"ask-{object_id}")
    return _act(payment_id, object_id, ("ask", object_id), form, lambda: payment_operator.ask_psp_again(
        db.session, object_id, deps_for(current_app._get_current_object()), operator=operator(),
        reason=form.reason.data, meta=meta()), "The PSP is being asked again; reload in a moment for the answer.")


@bp.post("/payments/<payment_id>/objects/<object_id>/record-outcome")
@platform_admin_required
def record_outcome(payment_id: str, object_id: str):
    """Record the outcome the operator confirmed with the PSP, applied as the PSP's answer would be."""
    form = OutcomeForm(prefix=f"record-{object_id}")
    try:
        form.outcome.choices = payment_operator.find_undecided(db.session, object_id).outcomes()
    except payment_operator.OperatorActionError:
        abort(404)
    return _act(payment_id, object_id, ("record", object_id), form, lambda: payment_operator.record_outcome(
        db.session, object_id, form.outcome.data, deps_for(current_app._get_current_object()), operator=operator(),
        reason=form.reason.data, meta=meta(), psp_reference=form.psp_reference.data),
        "The outcome is recorded and applied to the payment.")


def _act(payment_id: str, object_id: str, key: tuple, form, action, done: str):
    found = db.session.get(Refund if object_id.startswith("re_") else PaymentAttempt, object_id)
    if found is None or found.payment_id != payment_id:
        abort(404)
    refused = reasoned_action(form, action, payment_operator.OperatorActionError,
                              lambda: _payment_page(payment_id, {key: form}, INVALID_FORM, audited=False))
    if refused is not None:
        return refused
    flash(done, "success")
    return redirect(url_for("admin.payment", payment_id=payment_id), code=303)
