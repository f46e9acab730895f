"""/v1/refunds: create (partial, several, per seller or pro rata), retrieve, list.

A refund is ``pending`` until the PSP answers, then ``succeeded`` (booked in the ledger) or ``failed``
(nothing booked). Creating one waits briefly for that answer, like confirm does.
"""
from flask import g, jsonify

from app.api import bp
from app.api.auth import api_view
from app.api.pagination import list_page, list_response, page_args
from app.api.payments import request_params, run_operation
from app.extensions import db
from app.payments.models import Refund
from app.payments.serializers import refund_object
from app.payments.service import MAX_AMOUNT, MAX_SPLIT_SELLERS, REFUND_REASONS, get_refund


@bp.post("/refunds")
@api_view
def create_refund():
    """Refund a captured payment: all that is left, ``amount``, or named ``sellers`` amounts."""
    p = request_params()
    sellers = None
    if p.has("sellers"):
        sellers = []
        for item in p.objects("sellers", required=True, max_items=MAX_SPLIT_SELLERS):
            sellers.append({"seller": item.string("seller", required=True, max_length=100),
                            "amount": item.integer("amount", required=True, min_value=1, max_value=MAX_AMOUNT)})
            item.done()
    else:
        p.objects("sellers")
    params = {
        "payment": p.string("payment", required=True, max_length=100),
        "amount": p.integer("amount", min_value=1, max_value=MAX_AMOUNT),
        "sellers": sellers,
        "reason": p.enum("reason", REFUND_REASONS),
        "metadata": p.metadata(),
    }
    p.done()
    return run_operation("refund.create", params)


@bp.get("/refunds/<refund_id>")
@api_view
def retrieve_refund(refund_id: str):
    request_params(allowed=())
    body = refund_object(get_refund(db.session, g.scope, refund_id))
    db.session.commit()
    return jsonify(body)


@bp.get("/refunds")
@api_view
def list_refunds():
    """Refunds, newest first; ``payment`` narrows to one payment's."""
    p = request_params()
    page = page_args(p)
    payment = p.string("payment", max_length=100)
    p.done()
    statement = g.scope.select(Refund)
    if payment:
        statement = statement.where(Refund.payment_id == payment)
    rows, has_more = list_page(db.session, statement, Refund, **page)
    return list_response("/v1/refunds", rows, has_more, refund_object)
