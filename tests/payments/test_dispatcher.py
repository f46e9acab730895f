"""The PSP dispatcher in-process: fair picks across merchants, bulkheads that keep a slow connector's work
from taking every slot, claims that two dispatchers never share, many runs in flight at once, and the
wake-up after commit. A scripted PSP stands in (tests/payments/helpers.py); over HTTP with the sandbox's
latency and the timeout card: test_capacity_e2e.py.
"""
import threading
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import update

from app.extensions import db
from app.jobs.dispatcher import WAKE_KEY, PspDispatcher, wake_after_commit
from app.models_base import utcnow
from app.payments import idempotency, processing
from app.payments.models import Payment, PaymentAttempt, Refund
from app.psp.breaker import PLATFORM_CREDENTIAL
from app.psp.bulkhead import Bulkheads
from app.scoping import Scope
from tests import factories
from tests.payments.helpers import ScriptedGateway, make_deps


class RoutedGateway(ScriptedGateway):
    """Routes each merchant to the connector the test names (``routes``); ``hold`` blocks a connector's
    authorizations until released, as an acquirer that does not answer."""

    def __init__(self, routes: dict[str, str], **kwargs):
        super().__init__(**kwargs)
        self.routes = routes
        self.hold: dict[str, threading.Event] = {}
        self.lock = threading.Lock()
        self.authorized: list[str] = []

    def route(self, vault, *, merchant_id, currency, livemode):
        return [self.routes[merchant_id]]

    def authorize(self, vault, request):
        connector = self.routes[request.merchant_id]
        if connector in self.hold:
            assert self.hold[connector].wait(30), "the test never released the held connector"
        with self.lock:
            self.authorized.append(request.reference)
            answer = super().authorize(vault, request)
        return type(answer)(**{**answer.__dict__, "connector": connector, "status": "captured",
                               "amount": request.amount})


class Recorder:
    """An executor that only records what the dispatcher started (the runs stay "in flight")."""

    def __init__(self):
        self.started = []

    def submit(self, fn, *args):
        self.started.append((fn, args))

    def run_all(self):
        for fn, args in self.started:
            fn(*args)
        self.started.clear()

    def claimed(self) -> list[str]:
        return [args[0].id for _, args in self.started]

    def shutdown(self, wait=True):
        pass


@pytest.fixture
def deps():
    return make_deps()


@pytest.fixture(autouse=True)
def nothing_due_left_over(db_session):
    """Each test sees only its own due rows: whatever an earlier test left due is pushed a year away."""
    _push_all_due(db_session)
    yield
    _push_all_due(db_session)


def _push_all_due(db_session) -> None:
    later = utcnow() + timedelta(days=365)
    db_session.execute(update(PaymentAttempt).where(PaymentAttempt.next_attempt_at.is_not(None))
                       .values(next_attempt_at=later))
    db_session.execute(update(Refund).where(Refund.next_attempt_at.is_not(None)).values(next_attempt_at=later))
    db_session.commit()


def new_scope(db_session, name: str) -> Scope:
    merchant = factories.merchant(db_session, name=name)
    db_session.commit()
    return Scope(merchant.id, False)


def confirmed(db_session, scope, deps, count: int = 1) -> list[str]:
    """``count`` confirmed payments (automatic capture) of the book, oldest first: their attempt ids."""
    ids = []
    for _ in range(count):
        body = idempotency.execute(db_session, scope, "payment.create", {
            "amount": 1000, "currency": "USD", "payment_method": f"tok_{uuid.uuid4().hex[:12]}", "confirm": True,
        }, key=None, deps=deps, path="/test").body
        ids.append(body["attempts"][0]["id"])
    return ids


def dispatcher(app, deps, gateway, *, concurrency: int, bulkhead: int | None = None, executor=None):
    return PspDispatcher(app, deps, gateway, Bulkheads(bulkhead or concurrency), concurrency=concurrency,
                         executor=executor)


def test_every_merchant_gets_a_turn_before_any_gets_a_second(app, db_session, deps):
    a, b, c = (new_scope(db_session, name) for name in ("Flood", "Small", "Other"))
    flood = confirmed(db_session, a, deps, 6)
    [small] = confirmed(db_session, b, deps)
    [other] = confirmed(db_session, c, deps)
    picked = [item.id for item in processing.pick_due(db_session, deps.now(), limit=5)]
    db_session.commit()
    # Round robin by turn, each turn by due time: the flood's later payments wait behind the others' first.
    assert picked == [flood[0], small, other, flood[1], flood[2]]


def test_a_pass_claims_fairly_within_its_free_threads(app, db_session, deps):
    a, b = new_scope(db_session, "Flood"), new_scope(db_session, "Small")
    flood = confirmed(db_session, a, deps, 10)
    [small] = confirmed(db_session, b, deps)
    recorder = Recorder()
    gateway = RoutedGateway({a.merchant_id: "sandbox", b.merchant_id: "sandbox"})
    psp = dispatcher(app, deps, gateway, concurrency=3, executor=recorder)
    assert psp.dispatch_once() == 3
    assert recorder.claimed() == [flood[0], small, flood[1]]
    assert psp.in_flight == 3 and psp.dispatch_once() == 0  # no free thread: nothing more is claimed
    db_session.expire_all()
    assert db_session.get(PaymentAttempt, small).lease_until is not None
    assert db_session.get(PaymentAttempt, flood[2]).lease_until is None  # still due, unclaimed
    recorder.run_all()
    assert psp.in_flight == 0
    db_session.expire_all()
    assert db_session.get(Payment, db_session.get(PaymentAttempt, small).payment_id).status == "succeeded"


def test_a_full_bulkhead_leaves_its_rows_due_and_the_others_go_ahead(app, db_session, deps):
    slow, fast = new_scope(db_session, "Slow acquirer"), new_scope(db_session, "Fast acquirer")
    waiting = confirmed(db_session, slow, deps, 5)
    gateway = RoutedGateway({slow.merchant_id: "sandbox", fast.merchant_id: "sandbox_b"})
    recorder = Recorder()
    psp = dispatcher(app, deps, gateway, concurrency=4, bulkhead=2, executor=recorder)
    assert psp.dispatch_once() == 2  # sandbox's bulkhead is full; two threads stay free for others
    assert recorder.claimed() == waiting[:2]
    assert psp.bulkheads.in_flight(("sandbox", PLATFORM_CREDENTIAL)) == 2
    [later] = confirmed(db_session, fast, deps)  # due after all of the slow acquirer's rows
    assert psp.dispatch_once() == 1
    assert recorder.claimed() == [*waiting[:2], later]
    recorder.run_all()
    assert psp.bulkheads.in_flight(("sandbox", PLATFORM_CREDENTIAL)) == 0


def test_two_dispatchers_never_claim_the_same_row(app, db_session, deps):
    scope = new_scope(db_session, "Shared")
    attempts = confirmed(db_session, scope, deps, 6)
    gateway = RoutedGateway({scope.merchant_id: "sandbox"})
    first, second = Recorder(), Recorder()
    one = dispatcher(app, deps, gateway, concurrency=4, executor=first)
    two = dispatcher(app, deps, gateway, concurrency=4, executor=second)
    # Both look at the same due rows at once; the conditional UPDATE gives each row to one of them (the
    # loser of a row finds the next ones on its next pass).
    for _ in range(2):
        threads = [threading.Thread(target=d.dispatch_once) for d in (one, two)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    claimed = first.claimed() + second.claimed()
    assert sorted(claimed) == sorted(attempts) and len(claimed) == 6
    assert one.bulkheads.in_flight(("sandbox", PLATFORM_CREDENTIAL)) == len(first.claimed())
    first.run_all()
    second.run_all()


def test_runs_overlap_and_a_held_connector_does_not_hold_up_the_other(app, db_session, deps):
    slow, fast = new_scope(db_session, "Held acquirer"), new_scope(db_session, "Free acquirer")
    gateway = RoutedGateway({slow.merchant_id: "sandbox", fast.merchant_id: "sandbox_b"})
    gateway.hold["sandbox"] = threading.Event()
    psp = dispatcher(app, deps, gateway, concurrency=8, bulkhead=6)
    try:
        held = confirmed(db_session, slow, deps, 10)
        free = confirmed(db_session, fast, deps, 3)
        started = psp.dispatch_once()
        assert started == 8  # turns alternate: five held rows and the free acquirer's three
        free_payments = [db_session.get(PaymentAttempt, attempt_id).payment_id for attempt_id in free]
        deadline = threading.Event()
        for _ in range(200):  # the free acquirer's payments complete while sandbox holds six threads
            psp.dispatch_once()
            db_session.expire_all()
            if all(db_session.get(Payment, pid).status == "succeeded" for pid in free_payments):
                break
            deadline.wait(0.05)
        assert all(db_session.get(Payment, pid).status == "succeeded" for pid in free_payments)
        psp.dispatch_once()  # the freed threads take held rows only up to sandbox's bulkhead
        assert psp.in_flight == 6 and not any(ref in gateway.authorized for ref in held)
    finally:
        gateway.hold["sandbox"].set()
        assert psp.stop(timeout=30)
    db_session.expire_all()
    succeeded = [db_session.get(Payment, db_session.get(PaymentAttempt, a).payment_id).status for a in held[:6]]
    assert succeeded == ["succeeded"] * 6


def test_work_committed_wakes_a_dispatcher_once_and_a_rollback_does_not(app, db_session, redis):
    redis.delete(WAKE_KEY)
    wake_after_commit(db.session, redis)
    wake_after_commit(db.session, redis)  # the same transaction: one token
    assert redis.llen(WAKE_KEY) == 0
    db_session.commit()
    assert redis.llen(WAKE_KEY) == 1
    wake_after_commit(db.session, redis)
    db_session.rollback()
    db_session.commit()
    assert redis.llen(WAKE_KEY) == 1
    redis.delete(WAKE_KEY)


def _metric(text: str, name: str, default: float | None = None, **labels) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        if line.startswith(f"{name}{{{wanted}}}" if wanted else f"{name} "):
            return float(line.rsplit(" ", 1)[1])
    if default is not None:
        return default
    raise AssertionError(f"{name}{labels} not in /metrics")


def test_saturation_is_visible_in_the_metrics(app, client, db_session, deps):
    scope = new_scope(db_session, "Backlog")
    attempts = confirmed(db_session, scope, deps, 3)
    db_session.execute(update(PaymentAttempt).where(PaymentAttempt.id == attempts[0])
                       .values(next_attempt_at=utcnow() - timedelta(seconds=90)))
    db_session.commit()
    headers = {"Authorization": f"Bearer {app.config['METRICS_TOKEN']}"}
    scraped = client.get("/metrics", headers=headers).get_data(as_text=True)
    assert _metric(scraped, "kassa_queue_depth", queue="psp") == 3
    assert _metric(scraped, "kassa_queue_oldest_due_seconds", queue="psp") >= 90
    assert _metric(scraped, "kassa_queue_depth", queue="webhooks") >= 0

    def in_flight() -> float:  # over every process of the test run that wrote the gauge
        text = client.get("/metrics", headers=headers).get_data(as_text=True)
        return _metric(text, "kassa_psp_in_flight", 0.0, connector="sandbox")

    recorder = Recorder()
    psp = dispatcher(app, deps, RoutedGateway({scope.merchant_id: "sandbox"}), concurrency=2, executor=recorder)
    before = in_flight()
    assert psp.dispatch_once() == 2
    scraped = client.get("/metrics", headers=headers).get_data(as_text=True)
    assert _metric(scraped, "kassa_queue_depth", queue="psp") == 1  # two claimed, one waits
    assert in_flight() == before + 2
    recorder.run_all()
    assert in_flight() == before


def test_a_running_dispatcher_beats_and_drains_on_stop(app, client, db_session, deps):
    scope = new_scope(db_session, "Beat")
    [attempt] = confirmed(db_session, scope, deps)
    psp = dispatcher(app, deps, RoutedGateway({scope.merchant_id: "sandbox"}), concurrency=2).start()
    try:
        payment_id = db_session.get(PaymentAttempt, attempt).payment_id
        for _ in range(200):  # polled within POLL_SECONDS without any wake-up
            db_session.expire_all()
            if db_session.get(Payment, payment_id).status == "succeeded":
                break
            threading.Event().wait(0.05)
        assert db_session.get(Payment, payment_id).status == "succeeded"
    finally:
        assert psp.stop(timeout=10)
    scraped = client.get("/metrics", headers={"Authorization": f"Bearer {app.config['METRICS_TOKEN']}"})
    assert "kassa_worker_heartbeat_timestamp_seconds" in scraped.get_data(as_text=True)


def test_a_follow_up_enters_the_bulkhead_of_the_credential_its_payment_was_made_with(app, db_session, deps):
    """Issue 14 review: the run calls with the recorded credential (app/psp/router.py), so its bulkhead slot is
    that credential's, not the merchant's current one's."""
    scope = new_scope(db_session, "Moved accounts")
    [attempt_id] = confirmed(db_session, scope, deps)
    db_session.execute(update(PaymentAttempt).where(PaymentAttempt.id == attempt_id).values(
        status="requires_action", connector="sandbox", psp_reference="auth_moved", credential="pcr_recorded"))
    db_session.commit()
    recorder = Recorder()
    psp = dispatcher(app, deps, RoutedGateway({scope.merchant_id: "sandbox"}), concurrency=2, executor=recorder)
    assert psp.dispatch_once() == 1 and recorder.claimed() == [attempt_id]
    assert recorder.started[0][1][0].credential == "pcr_recorded"
    assert psp.bulkheads.in_flight(("sandbox", "pcr_recorded")) == 1
    assert psp.bulkheads.in_flight(("sandbox", PLATFORM_CREDENTIAL)) == 0
    recorder.run_all()
    assert psp.bulkheads.in_flight(("sandbox", "pcr_recorded")) == 0
