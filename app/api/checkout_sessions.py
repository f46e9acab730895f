"""/v1/checkout/sessions: create, retrieve, list and expire hosted checkout sessions.

    curl -u sk_test_...: https://kassa.example/v1/checkout/sessions \
      -d currency=eur -d "line_items[0][name]=T-shirt" -d "line_items[0][quantity]=2" \
      -d "line_items[0][unit_amount]=1500" -d success_url=https://shop.example/thanks

The answer's ``url`` is the page to send the shopper to (``/c/<unguessable id>``).
"""
from flask import current_app, g, jsonify, request

from app.api import bp
from app.api.auth import api_view
from app.api.errors import ApiError, invalid_param
from app.api.pagination import list_response, page_args, require_cursors
from app.api.payments import request_params
from app.checkout import flow
from app.checkout.models import CheckoutSession, SessionStatus
from app.checkout.routes import deps
from app.checkout.service import (
    MAX_AMOUNT,
    MAX_EXPIRES_AT,
    MAX_QUANTITY,
    CheckoutError,
    create_session,
    get_session,
    list_sessions,
    session_payload,
)
from app.extensions import db
from app.merchants.lifecycle import refuse_if_suspended


def page_url(session_id: str) -> str:
    """The shopper's page: PUBLIC_BASE_URL when configured (behind a proxy), else this request's host."""
    base = current_app.config.get("PUBLIC_BASE_URL") or request.host_url
    return f"{base.rstrip('/')}/c/{session_id}"


def _payload(cs) -> dict:
    """The session as it is now: a payment authorized or an expiry passed since the last look shows at once."""
    flow.refresh(db.session, cs, None, deps=deps(), request_id=g.get("request_id"))
    return session_payload(cs, page_url(cs.id))


def _api_error(error: CheckoutError) -> ApiError:
    if isinstance(error, flow.SessionStateError):
        return ApiError(400, "invalid_request_error", error.code, error.message, error.param)
    return invalid_param(error.param, error.message, error.code)


@bp.post("/checkout/sessions")
@api_view
def create_checkout_session():
    """A new open session; 400 naming the parameter when the order is not valid."""
    p = request_params(allowed={
        "currency", "amount", "line_items", "description", "split", "success_url", "cancel_url",
        "customer_email", "client_reference_id", "metadata", "expires_at",
    })
    line_items = None
    if p.has("line_items"):
        line_items = []
        for item in p.objects("line_items", max_items=100):
            line_items.append({
                "name": item.string("name", required=True, max_length=200),
                "quantity": item.integer("quantity", default=1, min_value=1, max_value=MAX_QUANTITY),
                "unit_amount": item.integer("unit_amount", required=True, min_value=0, max_value=MAX_AMOUNT),
            })
            item.done()
    split = None
    if p.has("split"):
        split = []
        for part in p.objects("split", max_items=100):
            split.append({
                "seller": part.string("seller", required=True, max_length=100),
                "amount": part.integer("amount", required=True, min_value=1, max_value=MAX_AMOUNT),
                "fee": part.integer("fee", default=0, min_value=0, max_value=MAX_AMOUNT),
            })
            part.done()
    values = {
        "currency": p.currency("currency", required=True),
        "amount": p.integer("amount", min_value=1, max_value=MAX_AMOUNT),
        "line_items": line_items,
        "description": p.string("description", max_length=500),
        "split": split,
        "success_url": p.string("success_url", required=True, max_length=2000),
        "cancel_url": p.string("cancel_url", max_length=2000),
        "customer_email": p.email("customer_email"),
        "client_reference_id": p.string("client_reference_id", max_length=200),
        "metadata": p.metadata(),
        "expires_at": p.integer("expires_at", min_value=0, max_value=MAX_EXPIRES_AT),
    }
    p.done()
    refuse_if_suspended(db.session, g.scope.merchant_id)  # 403 account_suspended: no new sale starts
    try:
        cs = create_session(db.session, g.scope, **values)
        flow.validate_amount(cs, deps())
        flow.validate_split(db.session, g.scope, cs)
    except CheckoutError as error:
        raise _api_error(error) from None
    payload = _payload(cs)
    db.session.commit()
    return jsonify(payload)


@bp.get("/checkout/sessions/<session_id>")
@api_view
def retrieve_checkout_session(session_id: str):
    request_params(allowed=())
    cs = get_session(db.session, g.scope, session_id)
    if cs is None:
        raise ApiError(404, "invalid_request_error", "resource_missing",
                       f"No such checkout session: {session_id!r}.", "id")
    payload = _payload(cs)
    db.session.commit()
    return jsonify(payload)


@bp.get("/checkout/sessions")
@api_view
def list_checkout_sessions():
    """Newest first; ``starting_after`` pages on, ``status``/``client_reference_id``/``payment`` filter."""
    p = request_params(allowed={"limit", "starting_after", "status", "client_reference_id", "payment"})
    page = page_args(p, ending_before=False)
    status = p.enum("status", tuple(SessionStatus))
    reference = p.string("client_reference_id", max_length=200)
    payment = p.string("payment", max_length=100)
    p.done()
    require_cursors(db.session, CheckoutSession, **page)
    rows, has_more = list_sessions(db.session, g.scope, **page, status=status, client_reference_id=reference,
                                   payment_id=payment)
    return list_response("/v1/checkout/sessions", rows, has_more, _payload)


@bp.post("/checkout/sessions/<session_id>/expire")
@api_view
def expire_checkout_session(session_id: str):
    """Close an open session now (its page stops taking payments); 400 when it is complete or paying."""
    request_params(allowed=()).done()
    cs = get_session(db.session, g.scope, session_id)
    if cs is None:
        raise ApiError(404, "invalid_request_error", "resource_missing",
                       f"No such checkout session: {session_id!r}.", "id")
    try:
        cs = flow.expire(db.session, cs, deps=deps(), request_id=g.get("request_id"))
    except CheckoutError as error:
        raise _api_error(error) from None
    payload = _payload(cs)
    db.session.commit()
    return jsonify(payload)
