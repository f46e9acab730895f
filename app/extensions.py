"""Flask extensions, created unbound and attached in create_app()."""
import time

import redis
from flask import current_app
from flask_htmx import HTMX
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf import CSRFProtect
from sqlalchemy import event
from sqlalchemy.exc import DisconnectionError

from app.models_base import Base
from app.redis_health import RedisHealth, guarded_client

db = SQLAlchemy(model_class=Base)
migrate = Migrate()
csrf = CSRFProtect()
login_manager = LoginManager()
htmx = HTMX()
limiter = Limiter(key_func=get_remote_address, default_limits=[])


# Blocking reads (BLPOP: the confirm's wait for the worker, the PSP dispatcher's wake-up) wait up to 4 s by
# design; their socket timeout is just past that (app/payments/service.py MAX_WAIT_SECONDS).
BLOCKING_READ_TIMEOUT_SECONDS = 5.0


def init_redis(app) -> None:
    """Attach the app's Redis clients (app/redis_health.py): ``redis`` for every short call (0.5 s timeouts),
    ``redis_blocking`` for BLPOP waits, one RedisHealth latch for both, and the rate limiter's storage on the
    first client's pool (so that it has the same timeouts and latch)."""
    health = app.extensions["redis_health"] = RedisHealth()
    url = app.config["REDIS_URL"]
    app.extensions["redis"] = guarded_client(url, health)
    app.extensions["redis_blocking"] = guarded_client(url, health, read_timeout=BLOCKING_READ_TIMEOUT_SECONDS)
    app.config.setdefault("RATELIMIT_STORAGE_OPTIONS", {})["connection_pool"] = app.extensions["redis"].connection_pool


def redis_client() -> redis.Redis:
    """The current app's Redis client."""
    return current_app.extensions["redis"]


# A pooled connection idle longer than this is pinged on checkout (what pool_pre_ping does on every
# checkout). Busy processes reuse connections within milliseconds and skip the round trip; a
# connection that sat idle is the one a restart or a dropped TCP session may have killed.
IDLE_PING_SECONDS = 5.0
_CHECKED_IN = "kassa_checked_in_at"


def ping_idle_connections(engine, idle_seconds: float = IDLE_PING_SECONDS) -> None:
    """pool_pre_ping, but only for connections that were idle in the pool longer than ``idle_seconds``."""

    @event.listens_for(engine, "checkin")
    def _checkin(dbapi_connection, record):
        record.info[_CHECKED_IN] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checkout(dbapi_connection, record, proxy):
        checked_in = record.info.pop(_CHECKED_IN, None)
        if checked_in is None or time.monotonic() - checked_in < idle_seconds:
            return  # new, or in use moments ago
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:  # noqa: BLE001 - any failure: the pool discards it and connects anew
            raise DisconnectionError("idle pooled connection failed its ping") from exc
