"""Authentication, rate limiting and request bodies for every /v1 route: the ``api_view`` decorator.

Stable API (other /v1 routes rely on it)::

    from flask import g
    from app.api import bp
    from app.api.auth import api_view
    from app.api.params import Params

    @bp.post("/payments")
    @api_view                          # secret keys only; same as @api_view()
    def create_payment():
        p = Params.from_request(allowed={"amount", "currency", "metadata"})
        amount = p.integer("amount", required=True, min_value=1)
        ...
        g.scope          # app.scoping.Scope(merchant_id, livemode) of the key: read rows only through it
        g.api_key        # the ApiKey row (id, kind, livemode, ...); never holds the secret
        db.session.commit()                # the view owns its transaction, as everywhere
        return jsonify(...)

    @bp.get("/checkout/config")
    @api_view(publishable_ok=True)      # browser-safe: pk_... keys accepted as well as sk_...

What the decorator does, in order, before the view runs:

1. Reads the key from ``Authorization: Bearer <key>`` or HTTP Basic with the key as the user name
   (``curl -u sk_test_...:``), like Stripe. No key -> 401 ``api_key_missing``; unknown, malformed or
   revoked -> 401 ``api_key_invalid``; rolled and past its grace period -> 401 ``api_key_expired``.
   A publishable key on a route not marked ``publishable_ok`` -> 403 ``secret_key_required``.
   401 bodies: ``{"error": {"type": "authentication_error", "code": ..., "message": ..., "param": null}}``.
2. Sets ``g.api_key`` and ``g.scope`` (merchant and mode come from the key, never from the request).
3. Applies the per-key rate limit (config ``API_RATE_LIMIT``, e.g. ``"100/second"``; optional
   ``API_RATE_LIMIT_LIVE`` for live keys) on the Flask-Limiter storage (Redis) -> 429 ``rate_limited``
   with ``Retry-After`` (seconds). If Redis is unreachable the limit is skipped (logged), not the API.
4. Parses the request parameters into ``g.api_params`` (see app.api.params.load_request_params): JSON
   or form-encoded bodies on POST/PUT/PATCH, the query string otherwise; other content types -> 415,
   malformed JSON -> 400 ``invalid_json``, bodies over MAX_CONTENT_LENGTH -> 413.
5. After the response has been sent, records ``last_used_at`` at most once a minute per key (a Redis
   ``SET NX EX 60`` throttle), on its own short database transaction: the API request's transaction
   never writes the key row, so it never waits on it. (With Flask's test client the write happens when
   the response is closed: ``client.get(..., buffered=True)`` or ``response.close()``.)
"""
import functools
import logging
import math
import time
from base64 import b64decode
from binascii import Error as BinasciiError

from flask import after_this_request, current_app, g, request
from flask.typing import ResponseReturnValue
from limits import parse as parse_limit
from limits.storage import MemoryStorage
from sqlalchemy import text

from app.accounts.api_keys import PUBLISHABLE, ApiKey, AuthenticationFailed, authenticate, touch_last_used
from app.api.errors import ApiError
from app.extensions import db, limiter, redis_client
from app.models_base import utcnow
from app.scoping import Scope

log = logging.getLogger(__name__)

DEFAULT_RATE_LIMIT = "100/second"
# last_used_at precision: one write per key per minute at most, whatever the request rate.
LAST_USED_THROTTLE_SECONDS = 60
_LAST_USED_KEY = "kassa:api-key-used:{}"

__all__ = ["api_view", "authentication_error", "hmac_key"]


def authentication_error(code: str, message: str) -> ApiError:
    """A 401 in the API's error shape."""
    return ApiError(401, "authentication_error", code, message, None,
                    headers={"WWW-Authenticate": 'Bearer realm="Kassa API"'})


def hmac_key() -> bytes:
    """API_KEY_HMAC_KEY as bytes (what app.accounts.api_keys expects)."""
    value = current_app.config.get("API_KEY_HMAC_KEY") or ""
    if not value:
        raise RuntimeError("API_KEY_HMAC_KEY is not configured")
    return value.encode() if isinstance(value, str) else bytes(value)


def _presented_key() -> str:
    """The key from the Authorization header (Bearer, or Basic with the key as user name)."""
    header = request.headers.get("Authorization", "").strip()
    if not header:
        raise authentication_error(
            "api_key_missing",
            "No API key provided. Send it as 'Authorization: Bearer sk_...' (or HTTP Basic, key as user name).",
        )
    scheme, _, credentials = header.partition(" ")
    credentials = credentials.strip()
    if scheme.lower() == "bearer" and credentials:
        return credentials
    if scheme.lower() == "basic" and credentials:
        try:
            user, _, _password = b64decode(credentials, validate=True).decode("utf-8").partition(":")
        except (BinasciiError, UnicodeDecodeError, ValueError):
            raise authentication_error("api_key_invalid", "Malformed HTTP Basic credentials.") from None
        if user:
            return user
    raise authentication_error(
        "api_key_invalid", "Invalid Authorization header. Use 'Authorization: Bearer sk_...'."
    )


def _rate_limit(key: ApiKey) -> None:
    """Per-key limit on the shared Flask-Limiter storage; 429 with Retry-After when exceeded."""
    if not (limiter.enabled and limiter.initialized):
        return
    config = current_app.config
    spec = (config.get("API_RATE_LIMIT_LIVE") if key.livemode else None) or config.get(
        "API_RATE_LIMIT", DEFAULT_RATE_LIMIT)
    item = parse_limit(spec)
    identifiers = (config.get("RATELIMIT_KEY_PREFIX", "kassa-rl"), "api-key", key.id)
    try:
        allowed, reset_at = _hit(limiter.limiter, item, identifiers)
    except Exception:  # noqa: BLE001 - Redis away (app/redis_health.py): meter in this process's memory meanwhile
        log.debug("API rate limit storage unavailable; limiting in memory", exc_info=True)
        allowed, reset_at = _hit(_memory_limiter(), item, identifiers)
    if allowed:
        return
    retry_after = max(1, math.ceil(reset_at - time.time()))
    raise ApiError(429, "rate_limit_error", "rate_limited",
                   f"Too many requests with this API key (limit {spec}). Retry after {retry_after} s.",
                   None, headers={"Retry-After": str(retry_after)})


def _hit(strategy, item, identifiers: tuple) -> tuple[bool, float]:
    """Count one request: (allowed, when the window resets)."""
    if strategy.hit(item, *identifiers):
        return True, 0.0
    return False, strategy.get_window_stats(item, *identifiers)[0]


def _memory_limiter():
    """The app's in-process fallback for API key limits, the same strategy as Redis' on MemoryStorage."""
    fallback = current_app.extensions.get("api_rate_limit_fallback")
    if fallback is None:
        fallback = current_app.extensions["api_rate_limit_fallback"] = type(limiter.limiter)(MemoryStorage())
    return fallback


def _record_last_used_after_response(key_id: str) -> None:
    """Schedule the throttled last_used_at write for when the response has been sent."""
    app = current_app._get_current_object()
    used_at = utcnow()

    def write() -> None:
        try:
            with app.app_context():
                # SET NX EX: only the first use in each minute gets to write the row.
                if not redis_client().set(_LAST_USED_KEY.format(key_id), "1", nx=True,
                                          ex=LAST_USED_THROTTLE_SECONDS):
                    return
                # A separate connection and a tiny transaction of its own, never the request's.
                with db.engine.begin() as connection:
                    # A dashboard roll/revoke may hold this row briefly; last-used is not worth waiting for.
                    connection.execute(text("SET LOCAL lock_timeout = '1s'"))
                    touch_last_used(connection, key_id, used_at)
        except Exception:  # noqa: BLE001 - best effort: a lost last-used time hurts nobody
            log.warning("could not record API key last use", exc_info=True)

    @after_this_request
    def _schedule(response):
        # call_on_close: the WSGI server calls it once the body has been sent to the client.
        response.call_on_close(write)
        return response


def _authenticate(publishable_ok: bool) -> ApiKey:
    presented = _presented_key()
    try:
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            key = authenticate(connection, presented, hmac_key=hmac_key())
    except AuthenticationFailed as failure:
        raise authentication_error(failure.code, failure.message) from None
    if key.kind == PUBLISHABLE and not publishable_ok:
        raise ApiError(403, "permission_error", "secret_key_required",
                       "This call needs a secret key (sk_...); publishable keys only work for browser-safe calls.")
    return key


# What a multipart upload carries besides its file (boundaries, part headers, a few form fields).
UPLOAD_OVERHEAD_BYTES = 64 * 1024


def api_view(view=None, *, publishable_ok: bool = False, upload_max_bytes: int | None = None):
    """Decorate a /v1 view: authenticate the key, set g.scope/g.api_key, rate-limit, parse parameters.

    Usable bare (``@api_view``) or with options (``@api_view(publishable_ok=True)``). ``upload_max_bytes``:
    the route takes ``multipart/form-data`` (a file in ``request.files``) of a file up to that size, instead of
    the usual MAX_CONTENT_LENGTH; larger bodies are 413.
    """

    def decorator(func):
        @functools.wraps(func)
        def wrapper(*args, **kwargs) -> ResponseReturnValue:
            from app.api.params import load_request_params

            key = _authenticate(publishable_ok)
            g.api_key = key
            g.scope = Scope(key.merchant_id, key.livemode)
            _rate_limit(key)
            _record_last_used_after_response(key.id)
            if upload_max_bytes is not None:
                request.max_content_length = upload_max_bytes + UPLOAD_OVERHEAD_BYTES
            g.api_params = load_request_params(multipart=upload_max_bytes is not None)
            return func(*args, **kwargs)

        wrapper.api_publishable_ok = publishable_ok
        return wrapper

    if view is not None:
        return decorator(view)
    return decorator
