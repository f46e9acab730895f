"""Fixtures of the payments tests.

In-process: the shared ``app`` / ``client`` fixtures (tests/conftest.py) plus API keys. The confirm wait
is switched off there (no worker runs; tests run jobs inline with a scripted PSP).

Live: ``live`` starts the sandbox PSP, gunicorn (threads) and a real worker (PSP dispatcher, RQ, scheduler)
through launcher/processes.py against this module's own database, for the end-to-end and chaos tests.
"""
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from app.accounts.api_keys import SECRET, create_key
from app.api.auth import hmac_key
from app.scoping import Scope
from tests import factories


@pytest.fixture(scope="module")
def app(database):
    """The shared app fixture, with the confirm wait off: in-process tests have no worker to wait for."""
    from app import create_app
    from app.extensions import db
    from tests.conftest import app_config

    # No rate limit in the way of schemathesis' bursts (the limit itself is tested with the API keys).
    application = create_app(app_config(database, CONFIRM_WAIT_SECONDS=0, API_RATE_LIMIT="1000000/second"))
    with application.app_context():
        application.extensions["redis"].flushdb()
    yield application
    with application.app_context():
        db.session.remove()
        db.engine.dispose()


def mint_key(session, merchant_id: str, livemode: bool = False) -> str:
    new = create_key(session, Scope(merchant_id, livemode), SECRET, hmac_key=hmac_key())
    session.commit()
    return new.plaintext


@pytest.fixture
def api_key(db_session, merchant) -> str:
    return mint_key(db_session, merchant.id)


@pytest.fixture
def auth(api_key) -> dict:
    return {"Authorization": f"Bearer {api_key}"}


@pytest.fixture
def other_auth(db_session) -> dict:
    other = factories.merchant(db_session, name="Merchant B")
    db_session.commit()
    return {"Authorization": f"Bearer {mint_key(db_session, other.id)}"}


# -- live processes --------------------------------------------------------------------------------------

def live_env(database: dict, **extra) -> dict:
    """The launcher's environment, pointed at this module's database."""
    env = dict(os.environ)
    env.update(DATABASE_URL=database["app_url"], DATABASE_OWNER_URL=database["owner_url"],
               DATABASE_ADMIN_URL=database["admin_url"])
    env.setdefault("SANDBOX_PSP_SECRET", "payments-live-secret")
    env.setdefault("SANDBOX_WEBHOOK_SECRET", "payments-live-webhook-secret")
    env.update({k: str(v) for k, v in extra.items()})
    return env


class Live:
    """Handle on the running services: URLs, the environment, and the children (to kill one)."""

    def __init__(self, services, data_dir: Path):
        self.services = services
        self.data_dir = data_dir

    @property
    def url(self) -> str:
        return self.services.web_url

    @property
    def sandbox_url(self) -> str:
        return self.services.sandbox_url

    def child(self, name: str):
        return next(c for c in self.services.children if c.name == name)


@pytest.fixture(scope="module")
def live(database, app, request):
    """Sandbox PSP + gunicorn + worker (with scheduler) on free ports against this module's database.

    Modules may set ``LIVE_ENV = {...}`` for extra environment (e.g. a short lease), and ``LIVE_SERVICES =
    {...}`` for options of launcher.processes.Services (e.g. ``supervise=True``: dead children restart).
    Depends on ``app`` so that its Redis flush happens before the worker registers there.
    """
    from launcher.processes import Ports, Services

    extra = getattr(request.module, "LIVE_ENV", {})
    options = {"web_workers": 2, "web_threads": 8, **getattr(request.module, "LIVE_SERVICES", {})}
    data_dir = Path(tempfile.mkdtemp(prefix="kassa-payments-live-"))
    # The processes' own metrics directory: /metrics then counts what they did, not what this pytest process
    # (whose in-process tests open breakers on purpose) or an earlier module's processes wrote.
    metrics_dir = data_dir / "prometheus"
    metrics_dir.mkdir()
    extra = {"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir), **extra}
    services = Services(live_env(database, **extra), Ports.pick(), data_dir, log_dir=data_dir / "logs", **options)
    services.start()
    try:
        yield Live(services, data_dir)
    finally:
        services.stop()
        if request.session.testsfailed:
            print(f"\nlive logs kept in {data_dir / 'logs'}")
        else:
            shutil.rmtree(data_dir, ignore_errors=True)
