"""Shared fixtures: each test module gets its own database cloned from the migrated template.

Run through `python3 kassa.py test`, which migrates the template and provides the environment.
"""
import os
import re
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from sqlalchemy.engine import make_url


def _isolate_parallel_worker() -> None:
    """Under pytest-xdist (`kassa.py test` runs modules on one worker per CPU), each worker gets its own
    Redis database and metrics directory: the app fixture flushes Redis, and metrics tests add up every
    process's files. Databases are already per module. Done before the app is imported, since its
    processes and the metrics library read the environment."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")  # gw0, gw1, ...
    if not worker or not os.environ.get("REDIS_URL"):
        return
    index = int(worker.removeprefix("gw")) + 1  # database 0 stays the launcher's own
    parts = urlsplit(os.environ["REDIS_URL"])
    os.environ["REDIS_URL"] = urlunsplit(parts._replace(path=f"/{index}"))
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        metrics = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]) / worker
        metrics.mkdir(parents=True, exist_ok=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics)


_isolate_parallel_worker()

from app import create_app  # noqa: E402  (after the worker's environment is set)
from app.extensions import db as _db  # noqa: E402
from app.scoping import Scope  # noqa: E402
from tests import factories  # noqa: E402


def _env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        pytest.exit(f"{name} is not set: run the suite with `python3 kassa.py test`", returncode=3)
    return value


def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


# Raw connections in tests give up on a lock after 10 s, so a test that forgot an open transaction
# fails with a clear LockNotAvailable instead of hanging the suite.
_RAW_OPTIONS = "-c lock_timeout=10s"


def _with_database(url: str, name: str) -> str:
    return make_url(url).set(database=name).render_as_string(hide_password=False)


def create_test_database(label: str) -> dict[str, str]:
    """CREATE DATABASE ... TEMPLATE <migrated template>: milliseconds, and the triggers come along."""
    name = f"t_{re.sub(r'[^a-z0-9]', '_', label.lower())[-30:]}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(_libpq(_env("DATABASE_ADMIN_URL")), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{_env("KASSA_TEMPLATE_DB")}" OWNER kassa_owner')
    return {
        "name": name,
        "app_url": _with_database(_env("DATABASE_URL"), name),
        "owner_url": _with_database(_env("DATABASE_OWNER_URL"), name),
        "admin_url": _with_database(_env("DATABASE_ADMIN_URL"), name),
    }


def drop_test_database(name: str) -> None:
    with psycopg.connect(_libpq(_env("DATABASE_ADMIN_URL")), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def database(request):
    """A fresh database at Alembic head for this test module (URLs for the app, owner and admin roles)."""
    info = create_test_database(request.module.__name__)
    yield info
    drop_test_database(info["name"])


def app_config(database: dict, **overrides) -> dict:
    """Config for an app bound to a test database."""
    config = {
        "TESTING": True,
        "KASSA_ENV": "test",
        "SQLALCHEMY_DATABASE_URI": database["app_url"].replace("postgresql://", "postgresql+psycopg://", 1),
        "DATABASE_OWNER_URL": database["owner_url"],
        "RATELIMIT_ENABLED": True,
        "SERVER_NAME": None,
        # Request log rows written as the response closes, so tests can read them at once
        # (the batching itself: tests/dashboard/test_request_logs.py).
        "REQUEST_LOG_FLUSH_SECONDS": 0,
    }
    config.update(overrides)
    return config


@pytest.fixture(scope="module")
def app(database):
    """The Kassa app bound to this module's database (pytest-flask pushes a request context per test)."""
    application = create_app(app_config(database))
    with application.app_context():
        application.extensions["redis"].flushdb()
    yield application
    # No other thread may hold a pooled connection past this point: one returned to the pool after
    # dispose() is never closed, and psycopg warns when the garbage collector finds it. The live server
    # (tests/browser.py), which depends on this fixture and so stops first, joins its request threads, in
    # which werkzeug also runs the after-response writers (call_on_close: API request log, key last use).
    with application.app_context():
        _db.session.remove()
        _db.engine.dispose()


@pytest.fixture
def db_session(app):
    """The app's SQLAlchemy session; rolled back after the test (what a test commits stays)."""
    yield _db.session
    _db.session.rollback()
    _db.session.remove()


@pytest.fixture
def redis(app):
    return app.extensions["redis"]


@pytest.fixture
def merchant(db_session):
    """A committed merchant with an owner."""
    merchant = factories.merchant(db_session)
    db_session.commit()
    return merchant


@pytest.fixture
def scope(merchant) -> Scope:
    """The test-mode book of the `merchant` fixture."""
    return Scope(merchant.id, livemode=False)


def admin_connect(database: dict) -> psycopg.Connection:
    """A superuser connection to the test database (tamper tests only)."""
    return psycopg.connect(_libpq(database["admin_url"]), options=_RAW_OPTIONS)


def app_connect(database: dict) -> psycopg.Connection:
    """A connection as the application role (raw-SQL tests of what the database refuses)."""
    return psycopg.connect(_libpq(database["app_url"]), options=_RAW_OPTIONS)


def owner_connect(database: dict) -> psycopg.Connection:
    """A connection as the table owner (what triggers still refuse even to the owner)."""
    return psycopg.connect(_libpq(database["owner_url"]), options=_RAW_OPTIONS)
