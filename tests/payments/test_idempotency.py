"""Idempotency keys: replay, mismatch, in flight, not stored on refusal, recovery points, completer, reaper."""
import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import delete as sa_delete, event, func, select

from app.extensions import db
from app.ids import new_id
from app.models_base import utcnow
from app.payments import idempotency
from app.payments.errors import IdempotencyInFlight, IdempotencyMismatch, InvalidRequest, PaymentError
from app.payments.idempotency import STARTED, Next, Operation, Phase, Response
from app.payments.models import IdempotencyKey, Payment, PaymentAttempt, Seller
from tests.payments.helpers import make_deps

PARAMS = {"amount": 1500, "currency": "EUR", "capture_method": "automatic"}


@pytest.fixture
def deps():
    return make_deps()


def execute(session, scope, deps, operation="payment.create", params=PARAMS, key="key-1", **kw):
    return idempotency.execute(session, scope, operation, params, key=key, deps=deps, path="/v1/payments", **kw)


def key_row(session, scope, key="key-1") -> IdempotencyKey | None:
    session.expire_all()
    return session.scalars(scope.select(IdempotencyKey, IdempotencyKey.key == key)).one_or_none()


def count(session, model, scope) -> int:
    return session.scalar(select(func.count()).select_from(model).where(model.merchant_id == scope.merchant_id))


def test_retry_replays_status_and_body_exactly(db_session, scope, deps):
    first = execute(db_session, scope, deps)
    second = execute(db_session, scope, deps)
    assert (second.status, second.body) == (first.status, first.body)
    assert second.replayed and not first.replayed
    assert count(db_session, Payment, scope) == 1
    row = key_row(db_session, scope)
    assert row.recovery_point == "finished" and row.locked_at is None and row.response_status == 200


def test_the_first_response_is_replayed_even_after_the_payment_moved_on(db_session, scope, deps):
    first = execute(db_session, scope, deps, params={**PARAMS, "payment_method": "tok_1", "confirm": True})
    assert first.body["status"] == "processing"
    payment = db_session.get(Payment, first.body["id"])
    payment.status = "requires_payment_method"
    db_session.commit()
    again = execute(db_session, scope, deps, params={**PARAMS, "payment_method": "tok_1", "confirm": True})
    assert again.body["status"] == "processing" and again.body == first.body


def test_same_key_different_request_is_refused(db_session, scope, deps):
    execute(db_session, scope, deps)
    with pytest.raises(IdempotencyMismatch) as refused:
        execute(db_session, scope, deps, params={**PARAMS, "amount": 1501})
    assert (refused.value.status, refused.value.type) == (400, "idempotency_error")
    # Another operation with the same key is a different request, too.
    with pytest.raises(IdempotencyMismatch):
        execute(db_session, scope, deps, operation="seller.create", params={"name": "x"})
    assert count(db_session, Payment, scope) == 1


def test_keys_are_scoped_to_merchant_and_mode(db_session, scope, deps):
    from app.scoping import Scope
    from tests import factories

    execute(db_session, scope, deps)
    other = Scope(factories.merchant(db_session, name="Other").id, False)
    db_session.commit()
    assert not execute(db_session, other, deps).replayed
    assert not execute(db_session, Scope(scope.merchant_id, True), deps).replayed
    assert count(db_session, Payment, scope) == 2 and count(db_session, Payment, other) == 1


def test_a_retry_while_the_first_is_in_flight_gets_409(db_session, scope, deps):
    seen = {}

    def wait(ctx):
        # The first request waits outside any transaction, holding no pooled connection (and so no
        # row lock); a retry arrives meanwhile.
        seen["connections_held"] = db.engine.pool.checkedout()
        with pytest.raises(IdempotencyInFlight) as conflict:
            execute(db.session, scope, deps, operation=op.name, params={}, key="busy")
        seen["status"] = conflict.value.status

    op = idempotency.register(Operation("test.in_flight", {
        STARTED: Phase(run=lambda ctx: Next("waiting")),
        "waiting": Phase(run=lambda ctx: Response(201, {"ok": True}), wait=wait)}))
    assert execute(db_session, scope, deps, operation=op.name, params={}, key="busy").status == 201
    assert seen["status"] == 409
    assert seen["connections_held"] == 0


def test_a_request_refused_before_any_work_is_not_stored(db_session, scope, deps):
    with pytest.raises(InvalidRequest):
        execute(db_session, scope, deps, params={**PARAMS, "currency": "XXX"})
    assert key_row(db_session, scope) is None
    # The key is free: the corrected request runs.
    assert execute(db_session, scope, deps).status == 200
    assert count(db_session, Payment, scope) == 1


def test_a_refusal_after_committed_work_is_stored_and_replayed(db_session, scope, deps):
    op = idempotency.register(Operation("test.late_refusal", {
        STARTED: Phase(run=lambda ctx: _add_seller(ctx) or Next("second")),
        "second": Phase(run=lambda ctx: (_ for _ in ()).throw(PaymentError("too late", code="late")))}))
    first = execute(db_session, scope, deps, operation=op.name, params={}, key="late")
    assert first.status == 400 and first.body["error"]["code"] == "late"
    again = execute(db_session, scope, deps, operation=op.name, params={}, key="late")
    assert again.replayed and again.body == first.body
    assert count(db_session, Seller, scope) == 1


def _add_seller(ctx):
    ctx.session.add(ctx.scope.new(Seller, id=new_id("sel"), name="side effect", is_default=False, metadata_={}))
    ctx.session.flush()


def test_a_crash_between_phases_resumes_without_repeating_work(db_session, scope, deps):
    crashes = {"left": 1}

    def second(ctx):
        if crashes["left"]:
            crashes["left"] -= 1
            raise RuntimeError("process died")
        return Response(200, {"seller_created": True})

    op = idempotency.register(Operation("test.crash", {
        STARTED: Phase(run=lambda ctx: _add_seller(ctx) or Next("seller_created")),
        "seller_created": Phase(run=second)}))
    with pytest.raises(RuntimeError):
        execute(db_session, scope, deps, operation=op.name, params={}, key="crash")
    row = key_row(db_session, scope, "crash")
    assert row.recovery_point == "seller_created" and row.locked_at is None
    resumed = execute(db_session, scope, deps, operation=op.name, params={}, key="crash")
    assert resumed.body == {"seller_created": True}
    assert count(db_session, Seller, scope) == 1  # phase one committed once, never repeated


def test_completer_finishes_requests_left_between_phases(db_session, scope, deps):
    confirmed = {**PARAMS, "payment_method": "tok_1", "confirm": True}
    first = execute(db_session, scope, deps, params=confirmed, key="died")
    # Make it look like the web process died after the attempt phase, before storing the response.
    row = key_row(db_session, scope, "died")
    stale = utcnow() - idempotency.LOCK_TIMEOUT - timedelta(seconds=5)
    row.recovery_point, row.response_status, row.response_body = "attempt_created", None, None
    row.locked_at, row.locked_by, row.last_run_at, row.finished_at = stale, "dead", stale, None
    # A key stuck at "started" did nothing: the completer drops it.
    db_session.add(IdempotencyKey(
        id=new_id("idk"), merchant_id=scope.merchant_id, livemode=False, key="never", operation="payment.create",
        request_method="POST", request_path="/v1/payments", request_params=PARAMS, request_fingerprint="x",
        recovery_point=STARTED, state={}, locked_at=stale, locked_by="dead", created_at=stale, last_run_at=stale))
    db_session.commit()
    # While the lock is fresh a retry is refused; it is stale here, so the completer may take it.
    done = idempotency.complete_stuck(db_session, deps)
    assert done == [row.id]
    row = key_row(db_session, scope, "died")
    assert row.recovery_point == "finished" and row.response_body["id"] == first.body["id"]
    assert key_row(db_session, scope, "never") is None
    assert count(db_session, Payment, scope) == 1
    assert count(db_session, PaymentAttempt, scope) == 1
    replay = execute(db_session, scope, deps, params=confirmed, key="died")
    assert replay.replayed and replay.body["id"] == first.body["id"]


def test_a_stale_lock_is_taken_over_by_the_retry(db_session, scope, deps):
    confirmed = {**PARAMS, "payment_method": "tok_1", "confirm": True}
    first = execute(db_session, scope, deps, params=confirmed, key="stale")
    row = key_row(db_session, scope, "stale")
    row.recovery_point, row.locked_by = "attempt_created", "dead"
    row.locked_at = utcnow()
    db_session.commit()
    with pytest.raises(IdempotencyInFlight):
        execute(db_session, scope, deps, params=confirmed, key="stale")
    row = key_row(db_session, scope, "stale")
    row.locked_at = utcnow() - idempotency.LOCK_TIMEOUT - timedelta(seconds=1)
    db_session.commit()
    resumed = execute(db_session, scope, deps, params=confirmed, key="stale")
    assert resumed.body["id"] == first.body["id"] and count(db_session, Payment, scope) == 1


def _take_over(key: str):
    """What a retry does once this request outlived LOCK_TIMEOUT: take the key, in a transaction of its own."""
    with db.engine.begin() as other:
        other.execute(IdempotencyKey.__table__.update().where(IdempotencyKey.__table__.c.key == key)
                      .values(locked_by="retry", locked_at=utcnow()))


def test_a_phase_whose_key_was_taken_over_meanwhile_rolls_its_work_back(app, db_session, scope, deps):
    op = idempotency.register(Operation("test.overtaken", {
        STARTED: Phase(run=lambda ctx: Next("second")),
        "second": Phase(run=lambda ctx: _add_seller(ctx) or _take_over(ctx.key) or Next("third")),
        "third": Phase(run=lambda ctx: Response(200, {}))}))
    with app.app_context(), pytest.raises(IdempotencyInFlight):
        execute(db_session, scope, deps, operation=op.name, params={}, key="overtaken")
    assert count(db_session, Seller, scope) == 0          # the phase's work went with its transaction
    row = key_row(db_session, scope, "overtaken")
    assert (row.recovery_point, row.locked_by) == ("second", "retry")


def test_a_refusal_after_a_takeover_tells_the_client_to_retry_and_leaves_the_key(app, db_session, scope, deps):
    def refuse(ctx):
        _take_over(ctx.key)
        raise InvalidRequest("state moved on", param=None)

    op = idempotency.register(Operation("test.overtaken_refusal", {
        STARTED: Phase(run=lambda ctx: Next("second")), "second": Phase(run=refuse)}))
    with app.app_context(), pytest.raises(IdempotencyInFlight):
        execute(db_session, scope, deps, operation=op.name, params={}, key="overtaken-refusal")
    row = key_row(db_session, scope, "overtaken-refusal")
    assert (row.recovery_point, row.locked_by) == ("second", "retry")   # not finished with our refusal


def test_a_new_key_is_there_only_once_its_first_phase_committed(app, db_session, scope, deps):
    """The key's INSERT is part of the first phase's transaction: a concurrent request with the key waits
    at its own INSERT until that phase commits, and only then finds the key in flight."""
    first_phase_running, other_answered = threading.Event(), threading.Event()
    times = {}

    def first(ctx):
        first_phase_running.set()
        time.sleep(0.3)  # the other request reaches its INSERT of the key meanwhile
        times["first_phase_done"] = time.monotonic()
        return Next("second")

    def other_request():
        first_phase_running.wait(5)
        with app.app_context():
            try:
                execute(db.session, scope, deps, operation=op.name, params={}, key="contended")
            except IdempotencyInFlight:
                times["other_in_flight"] = time.monotonic()
            finally:
                db.session.remove()
                other_answered.set()

    op = idempotency.register(Operation("test.contended", {
        STARTED: Phase(run=first),
        "second": Phase(run=lambda ctx: Response(200, {"ok": True}), wait=lambda ctx: other_answered.wait(5))}))
    other = threading.Thread(target=other_request)
    other.start()
    response = execute(db_session, scope, deps, operation=op.name, params={}, key="contended")
    other.join(5)
    assert response.body == {"ok": True}
    assert times["other_in_flight"] > times["first_phase_done"]


def test_reaper_removes_keys_after_24_hours(db_session, scope, deps):
    execute(db_session, scope, deps, key="old")
    execute(db_session, scope, deps, key="new")
    old = key_row(db_session, scope, "old")
    old.created_at = utcnow() - timedelta(hours=24, minutes=1)
    db_session.commit()
    assert idempotency.reap(db_session) == 1
    assert key_row(db_session, scope, "old") is None and key_row(db_session, scope, "new") is not None
    # The reaped key is free again: a new request with it runs afresh.
    assert not execute(db_session, scope, deps, key="old").replayed
    assert count(db_session, Payment, scope) == 3


def test_an_expired_key_not_yet_reaped_starts_afresh(db_session, scope, deps):
    execute(db_session, scope, deps, key="expired")
    row = key_row(db_session, scope, "expired")
    row.created_at = utcnow() - timedelta(hours=25)
    db_session.commit()
    assert not execute(db_session, scope, deps, params={**PARAMS, "amount": 7}, key="expired").replayed


def test_without_a_key_nothing_is_stored(db_session, scope, deps):
    execute(db_session, scope, deps, key=None)
    execute(db_session, scope, deps, key=None)
    assert count(db_session, Payment, scope) == 2
    assert count(db_session, IdempotencyKey, scope) == 0


def test_twenty_concurrent_identical_requests_make_one_payment(app, db_session, scope, deps):
    confirmed = {**PARAMS, "payment_method": "tok_1", "confirm": True}
    barrier = threading.Barrier(20)
    outcomes, lock = [], threading.Lock()

    def client():
        with app.app_context():
            barrier.wait()
            try:
                response = execute(db.session, scope, deps, params=confirmed, key="concurrent")
                outcome = ("ok", response.body["id"])
            except IdempotencyInFlight:
                outcome = ("409", None)
            finally:
                db.session.remove()
            with lock:
                outcomes.append(outcome)

    threads = [threading.Thread(target=client) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(outcomes) == 20
    ids = {payment_id for kind, payment_id in outcomes if kind == "ok"}
    assert len(ids) == 1
    assert count(db_session, Payment, scope) == 1
    assert count(db_session, PaymentAttempt, scope) == 1


def test_completer_finishes_a_refund_left_at_its_recovery_point(db_session, scope, deps):
    from app.jobs.payments import _run_attempt
    from tests.payments.helpers import ScriptedGateway

    paid = execute(db_session, scope, deps, params={**PARAMS, "payment_method": "tok_1", "confirm": True},
                   key="to-refund")
    _run_attempt(paid.body["attempts"][0]["id"], deps, ScriptedGateway())
    first = execute(db_session, scope, deps, operation="refund.create", params={"payment": paid.body["id"]},
                    key="refund-died")
    row = key_row(db_session, scope, "refund-died")
    stale = utcnow() - idempotency.LOCK_TIMEOUT - timedelta(seconds=5)
    row.recovery_point, row.response_status, row.response_body = "refund_created", None, None
    row.locked_at, row.locked_by, row.last_run_at, row.finished_at = stale, "dead", stale, None
    db_session.commit()
    assert idempotency.complete_stuck(db_session, deps) == [row.id]
    replay = execute(db_session, scope, deps, operation="refund.create", params={"payment": paid.body["id"]},
                     key="refund-died")
    assert replay.replayed and replay.body["id"] == first.body["id"]
    from app.payments.models import Refund
    assert count(db_session, Refund, scope) == 1


def test_a_key_released_between_the_conflict_and_the_read_is_claimed_afresh(db_session, scope, deps):
    # Another request holds the key; it is refused by validation and releases the key right after our
    # INSERT ... ON CONFLICT saw it and before our read: the key is free, so this request claims it.
    in_flight = IdempotencyKey(
        id=new_id("idk"), merchant_id=scope.merchant_id, livemode=scope.livemode, key="key-1",
        operation="payment.create", request_method="POST", request_path="/v1/payments", request_params=PARAMS,
        request_fingerprint=idempotency.fingerprint("payment.create", "/v1/payments", PARAMS),
        recovery_point=STARTED, state={}, locked_at=utcnow(), locked_by="other", created_at=utcnow(),
        last_run_at=utcnow())
    db_session.add(in_flight)
    db_session.commit()
    released = []

    def release_after_conflict(conn, cursor, statement, parameters, context, executemany):
        if not released and statement.startswith("INSERT INTO idempotency_keys"):
            released.append(True)
            with db.engine.begin() as other:
                other.execute(sa_delete(IdempotencyKey).where(IdempotencyKey.id == in_flight.id))

    event.listen(db.engine, "after_cursor_execute", release_after_conflict)
    try:
        response = execute(db_session, scope, deps)
    finally:
        event.remove(db.engine, "after_cursor_execute", release_after_conflict)
    assert released and response.status == 200 and not response.replayed
    assert count(db_session, Payment, scope) == 1
    assert key_row(db_session, scope).recovery_point == "finished"
