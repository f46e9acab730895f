"""Fixtures of the dashboard tests (Home, Payments, Refunds, exports, Developers › Logs).

In-process tests use the module's app with the confirm wait off and a ``PaymentsDeps`` whose enqueue
records jobs instead of sending them to RQ (``jobs``); ``run_jobs`` then runs them inline against a
scripted PSP (tests/payments/helpers.py), the synchronous path of app/jobs/payments.py. Live tests
(test_e2e_live.py) use the real sandbox PSP, gunicorn and RQ worker instead.
"""
from datetime import datetime, timedelta, timezone

import pytest

from app import create_app
from app.accounts.sessions import start_session
from app.extensions import db as _db
from app.ids import new_id
from app.jobs.payments import _run_attempt, _run_refund
from app.payments import idempotency
from app.payments.models import Payment, PaymentOrder
from app.payments.service import default_seller
from app.scoping import Scope
from tests import factories
from tests.browser import browser, live_server, page  # noqa: F401  (pytest fixtures)
from tests.conftest import app_config
from tests.payments.helpers import ScriptedGateway, make_deps

RELAXED_LIMITS = {
    "LOGIN_RATE_LIMIT_PER_IP": "1000 per minute",
    "LOGIN_RATE_LIMIT_PER_ACCOUNT": "1000 per minute",
}


@pytest.fixture(scope="module")
def app(database):
    """The shared app with the confirm wait off (no worker here) and a fast new-payments poll."""
    application = create_app(app_config(database, CONFIRM_WAIT_SECONDS=0, DASHBOARD_POLL_SECONDS=1,
                                         **RELAXED_LIMITS))
    with application.app_context():
        application.extensions["redis"].flushdb()
    yield application
    with application.app_context():
        _db.session.remove()
        _db.engine.dispose()


class Jobs:
    """Jobs the payments service staged, run on demand against a scripted PSP."""

    def __init__(self):
        self.staged: list[tuple[str, tuple]] = []
        self.gateway = ScriptedGateway()
        self.deps = make_deps(enqueued=self.staged)

    def run(self) -> int:
        """Run every staged job (and those they stage) inline; returns how many ran."""
        count = 0
        while self.staged:
            func, args = self.staged.pop(0)
            if func.endswith("run_attempt"):
                _run_attempt(args[0], self.deps, self.gateway)
            elif func.endswith("run_refund"):
                _run_refund(args[0], self.deps, self.gateway)
            count += 1
        return count


@pytest.fixture
def jobs(app) -> Jobs:
    """Installs in-process PaymentsDeps on the app (dashboard actions use them) for this test."""
    staged = Jobs()
    previous = app.extensions.get("payments_deps")
    app.extensions["payments_deps"] = staged.deps
    yield staged
    if previous is None:
        app.extensions.pop("payments_deps", None)
    else:
        app.extensions["payments_deps"] = previous


def login_as(client, session, user) -> None:
    """Sign the test client in with a real server-side session (no argon2, no rate limit)."""
    _row, token = start_session(session, user, second_factor_passed=True)
    session.commit()
    with client.session_transaction() as cookie:
        cookie.clear()
        cookie["sid"] = token


def browser_login(app, context, session, user, base_url: str) -> None:
    """Give a Playwright browser context the signed session cookie of a fresh server-side session."""
    _row, token = start_session(session, user, second_factor_passed=True)
    session.commit()
    value = app.session_interface.get_signing_serializer(app).dumps({"sid": token})
    context.add_cookies([{"name": app.config.get("SESSION_COOKIE_NAME", "session"), "value": value,
                          "url": base_url}])


@pytest.fixture
def shop(db_session):
    """A merchant with one member per role: shop.merchant, shop.users[role], shop.scope."""

    class Shop:
        def __init__(self, name: str = "Dash Shop", timezone_name: str = "UTC"):
            self.merchant = factories.merchant(db_session, name=name, timezone=timezone_name)
            self.users = {role: factories.member(db_session, self.merchant, role=role)
                          for role in ("owner", "admin", "developer", "analyst")}
            db_session.commit()
            self.scope = Scope(self.merchant.id, False)

        def url(self, path: str = "", mode: str = "test") -> str:
            return f"/dashboard/{self.merchant.id}/{mode}/{path}"

    return Shop


# -- data -----------------------------------------------------------------------------------------------------

def paid(session, scope: Scope, jobs: Jobs, *, amount: int = 1000, currency: str = "USD", manual: bool = False,
         **params) -> str:
    """A payment created and confirmed through the payments service, its jobs run: succeeded (or uncaptured)."""
    body = idempotency.execute(session, scope, "payment.create", {
        "amount": amount, "currency": currency, "capture_method": "manual" if manual else "automatic",
        # A token pays for one payment only (payment_token_bindings): each payment gets its own.
        "payment_method": new_id("tok"), "confirm": True, **params}, key=None, deps=jobs.deps).body
    jobs.run()
    return body["id"]


_T0 = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


def stored_payment(session, scope: Scope, *, created_at: datetime | None = None, seller_id: str | None = None,
                   **values) -> Payment:
    """A payment row written directly (list and filter tests need many varied rows, not flows)."""
    values.setdefault("amount", 1000)
    values.setdefault("currency", "USD")
    values.setdefault("status", "succeeded")
    values.setdefault("capture_method", "automatic")
    if values["status"] == "succeeded":
        values.setdefault("amount_received", values["amount"])
    created = created_at or _T0
    payment = scope.new(Payment, id=new_id("pay"), created_at=created, updated_at=created,
                        amount_capturable=0, amount_received=values.pop("amount_received", 0),
                        amount_refunded=values.pop("amount_refunded", 0), capture_count=0, **values)
    session.add(payment)
    session.flush()
    seller = seller_id or default_seller(session, scope).id
    session.add(scope.new(PaymentOrder, id=new_id("po"), payment_id=payment.id, seller_id=seller, position=0,
                          amount=payment.amount, fee=0, amount_captured=payment.amount_received, fee_captured=0,
                          amount_refunded=payment.amount_refunded, fee_refunded=0))
    session.flush()
    return payment


def minutes(n: int) -> timedelta:
    return timedelta(minutes=n)


def T(offset_minutes: int = 0) -> datetime:
    return _T0 + timedelta(minutes=offset_minutes)


def all_ids(session, scope: Scope) -> list[str]:
    return list(session.scalars(scope.select(Payment).with_only_columns(Payment.id)))

