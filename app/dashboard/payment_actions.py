"""Money-moving actions on a payment's page: refund, capture, cancel, each with a confirmation step.

Owners and admins only (Action.MOVE_MONEY): the buttons are not rendered for other roles and the
routes answer 403 to them (GET and POST), 404 to anyone outside the merchant.

Each action is two steps: the form (amount, reason), then a review page with the exact effect and a
"Confirm" button; nothing moves before that. The review page carries a one-time form token, which
becomes the idempotency key of the payments service's operation (app/payments/idempotency.py, the
same one the API uses): a double click, a reload that re-posts or a second tab sends the same key, so
the operation runs once; a repeat gets the stored result (or "still in progress") and is not audited
again. The operation commits its own phases; the audit entry follows in a transaction of its own,
written only by the request that did the work.

Capture and cancel of a payment held for a platform-owned risk review are refused with 409 and the reason, as
the API refuses them (``payment_in_review``, the same guard: app/risk/reviews.py).
"""
import logging
import re
import secrets

from flask import abort, flash, g, redirect, request
from flask_login import current_user

from app.accounts.audit import audit
from app.accounts.permissions import Action
from app.accounts.security import refund_needs_reauth
from app.api.payments import payments_deps
from app.dashboard import bp
from app.dashboard.context import merchant_view
from app.dashboard.helpers import dash_url, request_meta, user_locale
from app.dashboard.payments_views import payment_context
from app.dashboard.reauth import demand_reauth, kept_form
from app.dashboard.reporting_helpers import render, row_or_404
from app.extensions import db
from app.money import AmountInputError, format_amount_input, format_money, parse_amount_input
from app.payments import idempotency
from app.payments.errors import IdempotencyInFlight, IdempotencyMismatch, PaymentError
from app.payments.models import Payment, PaymentStatus
from app.payments.service import CANCELLATION_REASONS, REFUND_REASONS
from app.risk.errors import PaymentInReview
from app.risk.reviews import refuse_during_platform_review

log = logging.getLogger(__name__)

INVALID_FORM = 422
_TOKEN = re.compile(r"^[A-Za-z0-9_\-]{16,64}$")
REFUND_REASON_LABELS = {"requested_by_customer": "Requested by the customer", "duplicate": "Duplicate payment",
                        "fraudulent": "Fraudulent"}
CANCEL_REASON_LABELS = {"requested_by_customer": "Requested by the customer", "duplicate": "Duplicate",
                        "fraudulent": "Fraudulent", "abandoned": "Abandoned"}
ACTIONS = {
    "refund": {"title": "Refund payment", "operation": "refund.create", "audit": "payment.refund_created",
               "verb": "refund"},
    "capture": {"title": "Capture payment", "operation": "payment.capture", "audit": "payment.captured",
                "verb": "capture"},
    "cancel": {"title": "Cancel payment", "operation": "payment.cancel", "audit": "payment.canceled",
               "verb": "cancellation"},
}


def _limits(action: str, payment: Payment, context: dict) -> tuple[int, str]:
    """The most this action may move, and what to call it."""
    if action == "refund":
        return context["refundable"], "refundable"
    if action == "capture":
        return payment.amount_capturable, "capturable"
    return 0, ""


def _available(action: str, context: dict) -> bool:
    return {"refund": context["can_refund"], "capture": context["can_capture"],
            "cancel": context["can_cancel"]}[action]


@bp.route("/<merchant_id>/<mode>/payments/<payment_id>/<any(refund, capture, cancel):action>",
          methods=["GET", "POST"])
@merchant_view(Action.MOVE_MONEY)
def payment_action(payment_id: str, action: str):
    """Step 1 (GET: the form; POST step=review: the review page) and step 2 (POST step=confirm)."""
    payment = row_or_404(Payment, payment_id)
    if action in ("capture", "cancel"):
        # The payments service's own guard, asked before any form and on every POST (the service asks it again,
        # under the lock, when the operation runs): while the platform's review is open, it decides.
        try:
            refuse_during_platform_review(db.session, payment, action, lock=False)
        except PaymentInReview as refused:
            db.session.rollback()
            return render("dashboard/payments/action.html", step="refused", payment=payment, action=action,
                          spec=ACTIONS[action], refusal=refused), refused.status
    context = payment_context(payment)
    if not _available(action, context):
        db.session.commit()
        flash(_unavailable_message(action, payment), "info")
        return redirect(dash_url("dashboard.payment_detail", payment_id=payment.id), code=303)
    limit, limit_name = _limits(action, payment, context)
    # What the person typed: this POST's form, or the form kept while they re-authenticated.
    typed = request.form if request.method == "POST" else (kept_form() or {})
    values = {
        "amount": typed.get("amount", format_amount_input(limit, payment.currency, user_locale())
                            if limit else "").strip(),
        "reason": typed.get("reason", "").strip(),
    }
    base = dict(payment=payment, action=action, spec=ACTIONS[action], limit=limit, limit_name=limit_name,
                values=values, refund_reasons=REFUND_REASON_LABELS, cancel_reasons=CANCEL_REASON_LABELS,
                context=context)
    if request.method == "GET":
        return render("dashboard/payments/action.html", step="form", errors={}, **base)
    params, errors = _params(action, payment, values, limit)
    if errors:
        return render("dashboard/payments/action.html", step="form", errors=errors, **base), INVALID_FORM
    if action == "refund" and refund_needs_reauth(g.merchant, params["amount"] or limit, payment.currency):
        reauth = demand_reauth()  # back to this form, filled in, to review and confirm again
        if reauth is not None:
            return reauth
    if request.form.get("step") != "confirm":
        return render("dashboard/payments/action.html", step="review", errors={}, params=params,
                      form_token=secrets.token_urlsafe(24), **base)
    token = request.form.get("form_token", "")
    if not _TOKEN.match(token):
        abort(400)
    return _execute(action, payment, params, token)


def _unavailable_message(action: str, payment: Payment) -> str:
    if action == "refund":
        return "This payment has nothing left to refund." if payment.status == PaymentStatus.SUCCEEDED \
            else "Only captured payments can be refunded."
    if action == "capture":
        return "This payment cannot be captured now (it is not an uncaptured authorization, or a capture is running)."
    return "This payment cannot be canceled now."


def _params(action: str, payment: Payment, values: dict, limit: int) -> tuple[dict, dict]:
    """The service operation's parameters from the form, or errors for the person at the form."""
    errors = {}
    if action == "cancel":
        reason = values["reason"] or None
        if reason is not None and reason not in CANCELLATION_REASONS:
            errors["reason"] = "Choose a reason from the list."
        return {"payment": payment.id, "cancellation_reason": reason}, errors
    minor = None
    try:
        minor = parse_amount_input(values["amount"], payment.currency, user_locale())
    except AmountInputError as error:
        errors["amount"] = error.message
    if minor is not None and minor > limit:
        errors["amount"] = f"The most you can {action} is {format_money(limit, payment.currency, user_locale())}."
    if action == "capture":
        return {"payment": payment.id, "amount": minor}, errors
    reason = values["reason"] or None
    if reason is not None and reason not in REFUND_REASONS:
        errors["reason"] = "Choose a reason from the list."
    return {"payment": payment.id, "amount": minor, "sellers": None, "reason": reason, "metadata": {}}, errors


def _execute(action: str, payment: Payment, params: dict, token: str):
    """Run the payments service's operation once per form token, audit it, and go back to the payment."""
    spec = ACTIONS[action]
    back = dash_url("dashboard.payment_detail", payment_id=payment.id)
    try:
        result = idempotency.execute(
            db.session, g.scope, spec["operation"], params, key=f"dashboard:{token}", deps=payments_deps(),
            method="POST", path=request.path, request_id=g.get("request_id"))
    except IdempotencyInFlight:
        db.session.rollback()
        flash("This was already submitted and is being processed; the payment below shows its progress.", "info")
        return redirect(back, code=303)
    except IdempotencyMismatch:
        db.session.rollback()
        flash("This form was already used for a different amount. Start again from the payment.", "error")
        return redirect(back, code=303)
    except PaymentError as error:
        db.session.rollback()
        flash(error.message, "error")
        return redirect(back, code=303)
    body = result.body or {}
    if result.status >= 400:
        flash((body.get("error") or {}).get("message") or "The payment processor refused this.", "error")
    elif result.replayed:
        flash("This was already submitted; nothing was done twice.", "info")
    else:
        _audit(action, payment, params, body)
        flash(_success_message(action, payment, body), "success")
    return redirect(back, code=303)


def _audit(action: str, payment: Payment, params: dict, body: dict) -> None:
    details = {key: value for key, value in params.items() if key != "payment" and value not in (None, {}, [])}
    if action == "refund":
        details.update(refund=body.get("id"), status=body.get("status"))
    else:
        details.update(status=body.get("status"))
    try:
        audit(db.session, ACTIONS[action]["audit"], merchant_id=g.merchant.id, livemode=g.scope.livemode,
              actor_user_id=current_user.id, actor_label=current_user.email, target=payment.id, details=details,
              **request_meta())
        db.session.commit()
    except Exception:  # noqa: BLE001 - the money moved; a lost audit row is logged loudly, not a 500
        db.session.rollback()
        log.exception("could not audit %s of payment %s", action, payment.id)


def _success_message(action: str, payment: Payment, body: dict) -> str:
    if action == "refund":
        amount = format_money(body.get("amount") or 0, payment.currency, user_locale())
        if body.get("status") == "succeeded":
            return f"Refunded {amount}."
        if body.get("status") == "failed":
            return f"The refund of {amount} failed: {body.get('failure_message') or 'the processor declined it'}."
        return f"Refund of {amount} created; it completes when the payment processor confirms it."
    if action == "capture":
        if body.get("status") == "succeeded":
            return f"Captured {format_money(body.get('amount_received') or 0, payment.currency, user_locale())}."
        return "Capture started; the payment updates when the payment processor confirms it."
    return "Payment canceled; any authorization on the card is released."

