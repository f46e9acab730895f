"""/v1/webhook_endpoints: create, list, retrieve, update, delete the endpoints of the key's merchant and mode,
and send a re-enabled endpoint the events it missed while disabled (send_missed_events).

The signing secret is in the response to the create call only (``secret``); the dashboard reveals it later
to permitted roles. Live-mode endpoints need https://; test mode also takes http:// for local receivers.

    curl -u sk_test_...: http://localhost:5000/v1/webhook_endpoints \\
         -d url=https://example.com/hooks -d "enabled_events[]=payment.succeeded"
"""
from flask import current_app, g, jsonify, request

from app.accounts.audit import audit
from app.api import bp
from app.api.auth import api_view
from app.api.errors import ApiError, invalid_param
from app.api.pagination import list_page, list_response, page_args
from app.api.payments import request_params
from app.extensions import db
from app.webhooks import service
from app.webhooks.models import WebhookEndpoint
from app.webhooks.settings import settings_for


def endpoint_object(endpoint: WebhookEndpoint, secret: str | None = None) -> dict:
    """The public JSON shape of an endpoint (the secret only when just created)."""
    body = {
        "id": endpoint.id,
        "object": "webhook_endpoint",
        "url": endpoint.url,
        "description": endpoint.description,
        "enabled_events": list(endpoint.enabled_events),
        "status": endpoint.status,
        "disabled_reason": endpoint.disabled_reason,
        "disabled_detail": endpoint.disabled_detail,
        "livemode": endpoint.livemode,
        "created": int(endpoint.created_at.timestamp()),
    }
    if secret is not None:
        body["secret"] = secret
    return body


def _missing(endpoint_id: str) -> ApiError:
    return ApiError(404, "invalid_request_error", "resource_missing",
                    f"No such webhook endpoint: '{endpoint_id}'.", "id")


def _audit(action: str, endpoint: WebhookEndpoint, **details) -> None:
    audit(db.session, action, merchant_id=g.scope.merchant_id, livemode=g.scope.livemode,
          actor_label=f"api_key:{g.api_key.id}", target=endpoint.id, ip=request.remote_addr,
          user_agent=request.headers.get("User-Agent"), request_id=g.get("request_id"), details=details)


def _invalid(error: service.EndpointInvalid) -> ApiError:
    return invalid_param(error.param, error.message)


@bp.post("/webhook_endpoints")
@api_view
def create_webhook_endpoint():
    """Create an endpoint; the response carries its signing secret (whsec_...) this once."""
    p = request_params()
    url = p.string("url", required=True, max_length=service.URL_MAX)
    events = p.strings("enabled_events", required=True, max_items=service.MAX_EVENT_TYPES, max_length=100)
    description = p.string("description", max_length=service.DESCRIPTION_MAX, allow_empty=True)
    p.done()
    try:
        endpoint, secret = service.create_endpoint(db.session, g.scope, settings_for(current_app), url=url,
                                                   enabled_events=events, description=description)
    except service.EndpointInvalid as error:
        raise _invalid(error) from None
    _audit("webhook_endpoint.created", endpoint, url=endpoint.url)
    body = endpoint_object(endpoint, secret)
    db.session.commit()
    return jsonify(body)


@bp.get("/webhook_endpoints")
@api_view
def list_webhook_endpoints():
    """The endpoints of the key's merchant and mode, newest first."""
    p = request_params()
    page = page_args(p)
    p.done()
    statement = g.scope.select(WebhookEndpoint, WebhookEndpoint.deleted_at.is_(None))
    rows, has_more = list_page(db.session, statement, WebhookEndpoint, **page)
    return list_response("/v1/webhook_endpoints", rows, has_more, endpoint_object)


@bp.get("/webhook_endpoints/<endpoint_id>")
@api_view
def retrieve_webhook_endpoint(endpoint_id: str):
    request_params(allowed=())
    try:
        endpoint = service.get_endpoint(db.session, g.scope, endpoint_id)
    except service.NotFound:
        raise _missing(endpoint_id) from None
    body = endpoint_object(endpoint)
    db.session.commit()
    return jsonify(body)


@bp.post("/webhook_endpoints/<endpoint_id>")
@api_view
def update_webhook_endpoint(endpoint_id: str):
    """Change url, enabled_events, description; ``disabled=true|false`` switches it off or back on."""
    p = request_params()
    changes = {}
    if p.has("url"):
        changes["url"] = p.string("url", max_length=service.URL_MAX)
    if p.has("enabled_events"):
        changes["enabled_events"] = p.strings("enabled_events", max_items=service.MAX_EVENT_TYPES, max_length=100)
    if p.has("description"):
        changes["description"] = p.string("description", max_length=service.DESCRIPTION_MAX, allow_empty=True)
    if p.has("disabled"):
        changes["disabled"] = p.boolean("disabled")
    p.done()
    try:
        endpoint = service.update_endpoint(db.session, g.scope, settings_for(current_app), endpoint_id, **changes)
    except service.NotFound:
        raise _missing(endpoint_id) from None
    except service.EndpointInvalid as error:
        raise _invalid(error) from None
    _audit("webhook_endpoint.updated", endpoint, changed=sorted(changes))
    body = endpoint_object(endpoint)
    db.session.commit()
    return jsonify(body)


@bp.delete("/webhook_endpoints/<endpoint_id>")
@api_view
def delete_webhook_endpoint(endpoint_id: str):
    request_params(allowed=())
    try:
        endpoint = service.delete_endpoint(db.session, g.scope, settings_for(current_app), endpoint_id)
    except service.NotFound:
        raise _missing(endpoint_id) from None
    _audit("webhook_endpoint.deleted", endpoint)
    db.session.commit()
    return jsonify({"id": endpoint_id, "object": "webhook_endpoint", "deleted": True})


@bp.post("/webhook_endpoints/<endpoint_id>/send_missed_events")
@api_view
def send_missed_webhook_events(endpoint_id: str):
    """Schedule the events the (re-enabled) endpoint missed while disabled, of the last 30 days, each once."""
    request_params(allowed=())
    try:
        endpoint, missed = service.send_missed_events(db.session, g.scope, settings_for(current_app), endpoint_id)
    except service.NotFound:
        raise _missing(endpoint_id) from None
    except service.NotResendable:
        raise ApiError(400, "invalid_request_error", "webhook_endpoint_disabled",
                       "The endpoint is disabled: enable it first (POST /v1/webhook_endpoints/"
                       f"{endpoint_id} with disabled=false), then send its missed events.") from None
    _audit("webhook_endpoint.missed_events_sent", endpoint, scheduled=missed.count, since=missed.since.isoformat())
    body = {"object": "webhook_missed_events", "webhook_endpoint": endpoint.id, "livemode": endpoint.livemode,
            "since": int(missed.since.timestamp()), "scheduled": missed.count}
    db.session.commit()
    return jsonify(body)
