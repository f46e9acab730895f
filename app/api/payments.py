"""/v1/payments: create, retrieve, list, confirm, capture, cancel.

Views parse and check types (app.api.params), then hand a plain dict to an idempotent operation of the
payments service (app/payments/service.py), which owns the transactions phase by phase. The response
of a write is the stored one when the ``Idempotency-Key`` was seen before (``Idempotent-Replayed: true``).

    curl -u sk_test_...: http://localhost:5000/v1/payments -d amount=2000 -d currency=usd
    curl -u sk_test_...: http://localhost:5000/v1/payments/pay_.../confirm -d payment_method=tok_...
"""
import re
from datetime import datetime, timezone
from functools import partial

from flask import current_app, g, jsonify, request

from app.api import bp
from app.api.auth import api_view
from app.api.errors import ApiError
from app.api.pagination import list_page, list_response, page_args
from app.api.params import Params, refuse_card_number
from app.extensions import db
from app.payments import idempotency
from app.payments.deps import PaymentsDeps, deps_for
from app.payments.errors import PaymentError
from app.payments.models import Payment, PaymentStatus
from app.payments.serializers import payment_object
from app.risk.models import LEVELS, OUTCOME_TYPES
from app.payments.service import (
    CANCELLATION_REASONS,
    MAX_AMOUNT,
    MAX_SPLIT_SELLERS,
    check_payment_method,
    get_payment,
    payments_query,
)

IDEMPOTENCY_HEADER = "Idempotency-Key"
# Visible ASCII, no spaces: what survives every HTTP stack unchanged, and what the OpenAPI document states.
IDEMPOTENCY_KEY_PATTERN = r"^[\x21-\x7e]+$"


def payments_deps() -> PaymentsDeps:
    """The payments service's collaborators for this app, built once."""
    return deps_for(current_app._get_current_object())


@bp.errorhandler(PaymentError)
def handle_payment_error(error: PaymentError):
    """A refusal of the payments service, in the API's error shape (nothing was changed)."""
    db.session.rollback()
    response = jsonify(error.to_dict())
    response.status_code = error.status
    return response


def _unsafe(value) -> str | None:
    """The path (a.b[0]) of the first string PostgreSQL cannot store (NUL, lone surrogates), if any."""
    if isinstance(value, str):
        if "\x00" in value:
            return ""
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return ""
        return None
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        problem = _unsafe(key) if isinstance(key, str) else None
        if problem is None:
            problem = _unsafe(item)
        if problem is not None:
            return f"[{key}]{problem}"
    return None


def request_params(allowed=None) -> Params:
    """The request's Params, after refusing text the database cannot hold (400, or 404 for a path id).

    NUL characters and unpaired surrogates are valid in JSON strings but not in PostgreSQL text: let
    through, they would fail a query with a 500 instead of a clear 400.
    """
    for name, value in (request.view_args or {}).items():
        if _unsafe(value) is not None:
            raise ApiError(404, "invalid_request_error", "resource_missing", f"No such object: {name}.", name)
    data = g.get("api_params") or {}
    problem = _unsafe(data)
    if problem:
        name = problem[1:].split("]", 1)
        param = name[0] + (name[1] if len(name) > 1 else "")
        raise ApiError(400, "invalid_request_error", "parameter_invalid",
                       f"{param} contains characters that are not allowed (NUL or unpaired surrogates).", param)
    return Params.from_request(allowed=allowed)


def idempotency_key() -> str | None:
    """The request's Idempotency-Key header (None when absent); 400 when it is empty, too long or not
    visible ASCII."""
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is None:
        return None
    # A card number first: that refusal says why (and a spaced one would only fail the pattern below).
    refuse_card_number(IDEMPOTENCY_HEADER, key)   # the key is stored (idempotency_keys, the request log)
    if len(key) > idempotency.MAX_KEY_LENGTH or not re.fullmatch(IDEMPOTENCY_KEY_PATTERN, key):
        raise ApiError(400, "invalid_request_error", "idempotency_key_invalid",
                       f"The Idempotency-Key header must be 1 to {idempotency.MAX_KEY_LENGTH} visible ASCII "
                       "characters, without spaces.", IDEMPOTENCY_HEADER)
    return key


def payment_method_param(p: Params) -> str | None:
    """``payment_method``: a token of the vault this key's mode pays with (400 ``invalid_payment_method``
    otherwise, saying so when it is a card number), checked before anything is stored or logged."""
    value = p.string("payment_method", max_length=255, card_number_check=False)
    return check_payment_method(payments_deps(), g.scope.livemode, value)


def run_operation(operation: str, params: dict):
    """Run an idempotent operation for this request and render its (fresh or replayed) response."""
    result = idempotency.execute(
        db.session, g.scope, operation, params, key=idempotency_key(), deps=payments_deps(),
        method=request.method, path=request.path, request_id=g.get("request_id"))
    response = jsonify(result.body)
    response.status_code = result.status
    if result.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return response


def created_range(p: Params) -> dict:
    """created[gte|gt|lte|lt] (unix seconds) as datetimes for payments_query."""
    created = p.object("created")
    if created is None:
        return {}
    bounds = {op: created.integer(op, min_value=0, max_value=2**32) for op in ("gte", "gt", "lte", "lt")}
    created.done()

    def moment(seconds):
        return datetime.fromtimestamp(seconds, timezone.utc)

    result = {}
    if bounds["gte"] is not None or bounds["gt"] is not None:
        result["created_gte"] = moment(bounds["gte"] if bounds["gte"] is not None else bounds["gt"] + 1)
    if bounds["lte"] is not None or bounds["lt"] is not None:
        result["created_lte"] = moment(bounds["lte"] if bounds["lte"] is not None else bounds["lt"] - 1)
    return result


def _split_param(p: Params) -> list[dict] | None:
    if not p.has("split"):
        p.objects("split")
        return None
    parts = []
    for item in p.objects("split", required=True, max_items=MAX_SPLIT_SELLERS):
        parts.append({
            "seller": item.string("seller", required=True, max_length=100),
            "amount": item.integer("amount", required=True, min_value=1, max_value=MAX_AMOUNT),
            "fee": item.integer("fee", default=0, min_value=0, max_value=MAX_AMOUNT),
        })
        item.done()
    return parts


@bp.post("/payments")
@api_view
def create_payment():
    """Create a payment; with ``confirm=true`` and a ``payment_method`` also authorize it."""
    p = request_params()
    params = {
        "amount": p.integer("amount", required=True, min_value=1, max_value=MAX_AMOUNT),
        "currency": p.currency("currency", required=True),
        "capture_method": p.enum("capture_method", ("automatic", "manual"), default="automatic"),
        "split": _split_param(p),
        "customer_email": p.email("customer_email"),
        "description": p.string("description", max_length=1000),
        "metadata": p.metadata(),
        "payment_method": payment_method_param(p),
        "confirm": p.boolean("confirm", default=False),
        "return_url": p.string("return_url", max_length=2000),
        # The shopper's address, for the risk rules (this request's own address is the merchant's server).
        "customer_ip": p.string("customer_ip", max_length=45),
    }
    p.done()
    return run_operation("payment.create", params)


@bp.get("/payments/<payment_id>")
@api_view
def retrieve_payment(payment_id: str):
    """One payment of the key's merchant and mode (404 for anyone else's)."""
    request_params(allowed=())
    body = payment_object(db.session, get_payment(db.session, g.scope, payment_id, param="id"))
    db.session.commit()
    return jsonify(body)


@bp.get("/payments")
@api_view
def list_payments():
    """Payments, newest first, filtered by status, created range, customer email, seller, or risk (level and
    outcome type)."""
    p = request_params()
    page = page_args(p)
    filters = {
        "status": p.enum("status", tuple(PaymentStatus)),
        "customer_email": p.string("customer_email", max_length=320),
        "seller": p.string("seller", max_length=100),
        "risk_level": p.enum("risk_level", LEVELS),
        "outcome": p.enum("outcome", OUTCOME_TYPES),
        **created_range(p),
    }
    p.done()
    rows, has_more = list_page(db.session, payments_query(g.scope, **filters), Payment, **page)
    return list_response("/v1/payments", rows, has_more, partial(payment_object, db.session))


@bp.post("/payments/<payment_id>/confirm")
@api_view
def confirm_payment(payment_id: str):
    """Confirm with a card token from the PSP's tokenization; answers once the outcome is known or
    after the confirm wait with ``processing``."""
    p = request_params()
    params = {
        "payment": payment_id,
        "payment_method": payment_method_param(p),
        "return_url": p.string("return_url", max_length=2000),
        "customer_ip": p.string("customer_ip", max_length=45),
    }
    p.done()
    return run_operation("payment.confirm", params)


@bp.post("/payments/<payment_id>/capture")
@api_view
def capture_payment(payment_id: str):
    """Capture an authorized payment in full, or partially with ``amount`` (the rest is released)."""
    p = request_params()
    params = {"payment": payment_id, "amount": p.integer("amount", min_value=1, max_value=MAX_AMOUNT)}
    p.done()
    return run_operation("payment.capture", params)


@bp.post("/payments/<payment_id>/cancel")
@api_view
def cancel_payment(payment_id: str):
    """Cancel a payment that is not captured; an authorization is voided at the PSP."""
    p = request_params()
    params = {"payment": payment_id,
              "cancellation_reason": p.enum("cancellation_reason", CANCELLATION_REASONS)}
    p.done()
    return run_operation("payment.cancel", params)
