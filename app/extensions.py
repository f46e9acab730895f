"""Flask extensions, created unbound and attached in create_app()."""
import redis
from flask import current_app
from flask_htmx import HTMX
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf import CSRFProtect

from app.models_base import Base

db = SQLAlchemy(model_class=Base)
migrate = Migrate()
csrf = CSRFProtect()
login_manager = LoginManager()
htmx = HTMX()
limiter = Limiter(key_func=get_remote_address, default_limits=[])


def init_redis(app) -> None:
    """Attach one Redis client (a connection pool) to the app."""
    app.extensions["redis"] = redis.Redis.from_url(
        app.config["REDIS_URL"],
        # Redis answers in well under a millisecond locally; seconds mean it is unreachable.
        socket_connect_timeout=2,
        socket_timeout=5,
    )


def redis_client() -> redis.Redis:
    """The current app's Redis client."""
    return current_app.extensions["redis"]
