"""/v1/radar/early_fraud_warnings: Stripe's Early Fraud Warnings API over the warnings PSPs reported
(app/risk/fraud_warnings.py), in the key's merchant and mode only.

    curl -u sk_live_...: "$KASSA/v1/radar/early_fraud_warnings?payment_intent=pay_..."
    curl -u sk_live_...: $KASSA/v1/radar/early_fraud_warnings/issfr_...

Kassa has no charge objects: ``charge`` is null in the object, and the ``charge`` filter takes a payment id, like
``payment_intent``.
"""
from flask import g, jsonify

from app.api import bp
from app.api.auth import api_view
from app.api.pagination import list_page, list_response, page_args
from app.api.payments import created_range, request_params
from app.extensions import db
from app.risk.errors import RiskNotFound
from app.risk.fraud_warnings import EarlyFraudWarning, warning_object


@bp.get("/radar/early_fraud_warnings")
@api_view
def list_early_fraud_warnings():
    """The merchant's warnings, newest first; ``payment_intent`` (or ``charge``) narrows to one payment."""
    p = request_params()
    page = page_args(p)
    payment_id = p.string("payment_intent", max_length=100) or p.string("charge", max_length=100)
    window = created_range(p)
    p.done()
    statement = g.scope.select(EarlyFraudWarning)
    if payment_id:
        statement = statement.where(EarlyFraudWarning.payment_id == payment_id)
    if "created_gte" in window:
        statement = statement.where(EarlyFraudWarning.psp_created >= window["created_gte"])
    if "created_lte" in window:
        statement = statement.where(EarlyFraudWarning.psp_created <= window["created_lte"])
    rows, has_more = list_page(db.session, statement, EarlyFraudWarning, **page)
    return list_response("/v1/radar/early_fraud_warnings", rows, has_more, warning_object)


@bp.get("/radar/early_fraud_warnings/<warning_id>")
@api_view
def retrieve_early_fraud_warning(warning_id: str):
    request_params(allowed=())
    row = g.scope.get(db.session, EarlyFraudWarning, warning_id)
    if row is None:
        raise RiskNotFound(f"No such early fraud warning: '{warning_id}'.", param="id")
    body = warning_object(row)
    db.session.commit()
    return jsonify(body)
