"""/v1/events: the append-only record of state changes, each with the object as it was.

Only the types a merchant can receive (app.events.MERCHANT_EVENT_TYPES); internal ones (``psp.*``) are
neither listed nor retrievable.
"""
from flask import g, jsonify

from app.api import bp
from app.api.auth import api_view
from app.api.errors import ApiError
from app.api.pagination import list_page, list_response, page_args
from app.api.payments import request_params
from app.events import Event, event_payload, is_internal_event, merchant_visible
from app.extensions import db


@bp.get("/events/<event_id>")
@api_view
def retrieve_event(event_id: str):
    request_params(allowed=())
    event = g.scope.get(db.session, Event, event_id)
    if event is None or is_internal_event(event.type):
        raise ApiError(404, "invalid_request_error", "resource_missing", f"No such event: '{event_id}'.", "id")
    body = event_payload(event)
    db.session.commit()
    return jsonify(body)


@bp.get("/events")
@api_view
def list_events():
    """Events, newest first; filter by ``type`` (e.g. payment.succeeded) or ``object`` id."""
    p = request_params()
    page = page_args(p)
    event_type = p.string("type", max_length=100)
    object_id = p.string("object", max_length=100)
    p.done()
    statement = g.scope.select(Event, merchant_visible(Event.type))
    if event_type:
        statement = statement.where(Event.type == event_type)
    if object_id:
        statement = statement.where(Event.object_id == object_id)
    rows, has_more = list_page(db.session, statement, Event, **page)
    return list_response("/v1/events", rows, has_more, event_payload)
