"""Developers › Logs: record every authenticated /v1 request after its response has been sent.

Registered on the api blueprint (one import in app/api/__init__.py). The row is built from the
finished response in ``after_request`` (method, path, status, request id, idempotency key, latency,
redacted bodies) and handed, once the WSGI server has sent the body (``call_on_close``), to a batch
writer that inserts it on a connection and in a transaction of its own (app/reporting/request_logs.py),
so that logging neither delays the response nor rides on (or is rolled back with) the request's
transaction. Requests whose key did not authenticate belong to no merchant
and are not logged. A failed write is logged and dropped: the log is a debugging aid, not a record
anything depends on. Rows are kept 30 days (app/jobs/dashboard.py sweeps them).
"""
import logging
import time

from flask import current_app, g, request
from sqlalchemy import inspect

from app.api import bp
from app.extensions import db
from app.models_base import utcnow
from app.reporting import request_logs

log = logging.getLogger(__name__)

# A request body kept raw (unparseable JSON, wrong content type) is read at most this far.
RAW_BODY_LIMIT = 64 * 1024


def _request_body():
    params = g.get("api_params")
    if params is not None:
        return params
    if request.method in ("POST", "PUT", "PATCH") and (request.content_length or 0) <= RAW_BODY_LIMIT:
        return request.get_data(cache=True) or None
    return dict(request.args) or None


def _response_body(response):
    if response.is_streamed or not response.is_json:
        return None
    return response.get_json(silent=True)


def _key_id(api_key) -> str | None:
    """The id of the key that made the request, read without touching the database.

    api_view's key belongs to no session (app.accounts.api_keys.authenticate), so it has no identity and
    its id is in its loaded state; a key some view attached to the session has an identity (reading
    ``api_key.id`` after that view's commit would reload the expired row, for the log's sake).
    """
    if api_key is None:
        return None
    state = inspect(api_key)
    return state.identity[0] if state.identity else state.dict.get("id")


@bp.before_request
def _forget_previous_request() -> None:
    """Only this request's key may attribute its log row: where requests share an app context (the test
    client inside a test's context), ``g`` still holds the previous request's scope until api_view runs.

    Registered after the other /v1 modules' hooks; api_view (a decorator, not a hook) sets these again.
    """
    for name in ("scope", "api_key", "api_params"):
        g.pop(name, None)


@bp.after_request
def capture_request(response):
    """Build the log row now (the request is still here) and write it after the response is sent."""
    scope = g.get("scope")
    if scope is None:
        return response
    started = g.get("request_started")
    try:
        row = request_logs.log_row(
            merchant_id=scope.merchant_id, livemode=scope.livemode,
            api_key_id=_key_id(g.get("api_key")), method=request.method, path=request.path,
            status=response.status_code, request_id=g.get("request_id"),
            idempotency_key=request.headers.get("Idempotency-Key"),
            latency_ms=round((time.perf_counter() - started) * 1000) if started is not None else 0,
            ip=request.remote_addr, request_body=_request_body(), response_body=_response_body(response),
            created_at=utcnow())
    except Exception:  # noqa: BLE001 - logging must never break the API response
        log.warning("could not build the API request log row", exc_info=True)
        return response
    writer = batch_writer(current_app._get_current_object())
    response.call_on_close(lambda: writer.add(row))
    return response


def batch_writer(app) -> request_logs.BatchWriter:
    """The app's request-log writer, made on first use in a request (REQUEST_LOG_FLUSH_SECONDS: 0 writes
    at once)."""
    writer = app.extensions.get("request_log_writer")
    if writer is None:
        interval = float(app.config.get("REQUEST_LOG_FLUSH_SECONDS") or 0)
        writer = app.extensions.setdefault("request_log_writer",
                                           request_logs.BatchWriter(db.engine, interval=interval))
    return writer
