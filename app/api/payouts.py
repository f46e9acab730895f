"""/v1/payouts, /v1/balance_transactions and /v1/payout_schedules (issue 22; Stripe's shapes).

Bank accounts are changed only in the dashboard behind re-authentication (payouts-banks); the API reads payouts,
creates manual ones (``amount`` ≤ available) and cancels pending ones.
"""
from flask import current_app, g, jsonify, make_response, request

from app.accounts.audit import audit
from app.api import bp
from app.api.auth import api_view
from app.api.errors import invalid_param
from app.api.pagination import list_page, list_response, page_args
from app.api.payments import request_params, run_operation
from app.extensions import db
from app.payments.service import MAX_AMOUNT, get_seller
from app.payouts import balances, operations  # noqa: F401  (operations: registers payout.create / payout.cancel)
from app.payouts import service
from app.payouts.clock import payout_today
from app.payouts.fees import FEE_BEARERS
from app.payouts.models import INTERVALS, MERCHANT_SUBJECT, WEEKDAYS, Payout, PayoutStatus
from app.payouts.serializers import balance_transaction_object, payout_object


def _seller_param(p, name="seller"):
    """A seller id of the key's book (404-style 400 when unknown), or None."""
    seller_id = p.string(name, max_length=100)
    if seller_id is not None:
        get_seller(db.session, g.scope, seller_id)
    return seller_id


@bp.post("/payouts")
@api_view
def create_payout():
    """A manual payout of ``amount`` (≤ what is available) to a seller's bank account, or (no ``seller``) to the
    merchant's own."""
    p = request_params()
    params = {"seller": _seller_param(p), "amount": p.integer("amount", required=True, min_value=1,
                                                              max_value=MAX_AMOUNT),
              "currency": p.currency("currency", required=True), "description": p.string("description",
                                                                                        max_length=500)}
    p.done()
    db.session.commit()
    params["today"] = payout_today(current_app.config, g.scope.livemode).isoformat()
    return run_operation("payout.create", params)


@bp.get("/payouts/<payout_id>")
@api_view
def retrieve_payout(payout_id: str):
    request_params(allowed=())
    body = payout_object(service.get_payout(db.session, g.scope, payout_id))
    db.session.commit()
    return jsonify(body)


@bp.post("/payouts/<payout_id>/cancel")
@api_view
def cancel_payout(payout_id: str):
    """Cancel a pending payout (the money goes back to the balance)."""
    request_params(allowed=())
    service.get_payout(db.session, g.scope, payout_id)
    db.session.commit()
    return run_operation("payout.cancel", {"payout": payout_id})


@bp.get("/payouts/<payout_id>/reconciliation.csv")
@api_view
def payout_reconciliation(payout_id: str):
    """The balance transactions a scheduled payout pays, as CSV (their net adds up to its amount)."""
    request_params(allowed=())
    body = service.reconciliation_csv(db.session, g.scope, payout_id)
    db.session.commit()
    response = make_response(body)
    response.headers["Content-Type"] = "text/csv; charset=utf-8"
    response.headers["Content-Disposition"] = f'attachment; filename="{payout_id}-reconciliation.csv"'
    return response


@bp.get("/payouts")
@api_view
def list_payouts():
    """Payouts, newest first; filters ``seller`` (``merchant``: the merchant's own), ``status``, ``currency``."""
    p = request_params()
    page = page_args(p)
    seller_id = p.string("seller", max_length=100)
    status = p.enum("status", [s.value for s in PayoutStatus])
    currency = p.currency("currency")
    p.done()
    statement = g.scope.select(Payout)
    if seller_id == MERCHANT_SUBJECT:
        statement = statement.where(Payout.seller_id.is_(None))
    elif seller_id:
        statement = statement.where(Payout.seller_id == seller_id)
    if status:
        statement = statement.where(Payout.status == status)
    if currency:
        statement = statement.where(Payout.currency == currency)
    rows, has_more = list_page(db.session, statement, Payout, **page)
    return list_response("/v1/payouts", rows, has_more, payout_object)


@bp.get("/balance_transactions")
@api_view
def list_balance_transactions():
    """A seller's (``seller``; none: the merchant's own) balance transactions, newest first; filters ``type``,
    ``payout``, ``currency``; ``limit`` and ``starting_after`` page them."""
    p = request_params()
    limit = p.integer("limit", default=10, min_value=1, max_value=100)
    after = p.string("starting_after", max_length=100)
    seller_id = p.string("seller", max_length=100)
    type_ = p.enum("type", balances.TYPES)
    payout_id = p.string("payout", max_length=100)
    currency = p.currency("currency")
    p.done()
    if seller_id and seller_id != MERCHANT_SUBJECT:
        get_seller(db.session, g.scope, seller_id)
    subject = None if seller_id in (None, MERCHANT_SUBJECT) else seller_id
    if payout_id:
        payout = service.get_payout(db.session, g.scope, payout_id)
        subject = payout.seller_id
    rows = balances.balance_transactions(db.session, g.scope, subject, currency=currency, payout_id=payout_id)
    rows = [t for t in reversed(rows) if type_ is None or t.type == type_]
    if after:
        ids = [t.id for t in rows]
        if after not in ids:
            raise invalid_param("starting_after", f"starting_after must be the id of an object of this list; there "
                                                  f"is no {after!r}.", "resource_missing")
        rows = rows[ids.index(after) + 1:]
    body = {"object": "list", "url": "/v1/balance_transactions",
            "data": [balance_transaction_object(t) for t in rows[:limit]], "has_more": len(rows) > limit}
    db.session.commit()
    return jsonify(body)


def _schedule_object(subject: str, schedule: service.Schedule) -> dict:
    from app.accounts.models import Merchant

    body = {"object": "payout_schedule", "subject": subject, **schedule.__dict__}
    if subject == MERCHANT_SUBJECT:
        body["fee_bearer"] = db.session.get(Merchant, g.scope.merchant_id).fee_bearer
    return body


def _subject(subject: str) -> str | None:
    if subject == MERCHANT_SUBJECT:
        return None
    get_seller(db.session, g.scope, subject)
    return subject


@bp.get("/payout_schedules/<subject>")
@api_view
def retrieve_payout_schedule(subject: str):
    """A seller's (or ``merchant``: the merchant's own) payout schedule and reserve."""
    request_params(allowed=())
    body = _schedule_object(subject, service.get_schedule(db.session, g.scope, _subject(subject)))
    db.session.commit()
    return jsonify(body)


@bp.post("/payout_schedules/<subject>")
@api_view
def update_payout_schedule(subject: str):
    """Change a schedule: ``interval`` (daily, weekly, monthly, manual), ``weekly_anchor``, ``monthly_anchor``,
    ``minimum_amount``, ``delay_days``, ``reserve_percent_bp``, ``reserve_days``, ``reserve_minimum``; for
    ``merchant`` also ``fee_bearer`` (platform or seller)."""
    from app.accounts.models import Merchant

    p = request_params()
    params = {"interval": p.enum("interval", INTERVALS), "weekly_anchor": p.enum("weekly_anchor", WEEKDAYS)}
    for name, high in (("monthly_anchor", 31), ("minimum_amount", MAX_AMOUNT), ("delay_days", 365),
                       ("reserve_percent_bp", 10000), ("reserve_days", 365), ("reserve_minimum", MAX_AMOUNT)):
        params[name] = p.integer(name, min_value=1 if name == "monthly_anchor" else 0, max_value=high)
    fee_bearer = p.enum("fee_bearer", FEE_BEARERS) if subject == MERCHANT_SUBJECT else None
    p.done()
    seller_id = _subject(subject)
    schedule = service.set_schedule(db.session, g.scope, seller_id, params)
    details = {name: value for name, value in params.items() if value is not None}
    if fee_bearer:
        merchant = db.session.get(Merchant, g.scope.merchant_id, with_for_update=True)
        details["fee_bearer"] = {"from": merchant.fee_bearer, "to": fee_bearer}
        merchant.fee_bearer = fee_bearer
    # Who changed where money goes, and when (the dashboard's forms audit the same way).
    audit(db.session, "payout_schedule.updated", merchant_id=g.scope.merchant_id, livemode=g.scope.livemode,
          actor_label=f"api_key:{g.api_key.id}", target=subject, ip=request.remote_addr,
          user_agent=request.headers.get("User-Agent"), request_id=g.get("request_id"), details=details)
    body = _schedule_object(subject, schedule)
    db.session.commit()
    return jsonify(body)
