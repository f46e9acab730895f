"""Payment flows in-process: the service's operations, the jobs' logic and the ledger, with a scripted PSP.

The PSP here is an in-process script (tests/payments/helpers.py): these tests pin the state machine,
the bookings and idempotent outcome application. The same flows over HTTP against the real sandbox
PSP, web server and worker are in test_e2e.py.
"""
from contextlib import contextmanager
from datetime import timedelta

import pytest
from sqlalchemy import event, select, update

from app.ids import new_id
from app.jobs.payments import _run_attempt, _run_refund
from app.payments import idempotency, processing
from app.payments.errors import AmountTooLarge, InvalidRequest, InvalidTransition
from app.payments.models import Payment, PaymentAttempt, Refund, Seller
from app.payments.serializers import payment_object
from app.payments.service import create_seller, default_seller_id, notify_outcome, wait_for_outcome
from app.psp.interfaces import CREDENTIAL_MISSING, Lookup, Outcome, PspResult
from tests.payments.helpers import (
    ScriptedGateway,
    assert_ledger_balanced,
    authorized,
    event_types,
    ledger_balances,
    make_deps,
    result,
)


@pytest.fixture
def enqueued():
    return []


@pytest.fixture
def deps(enqueued):
    return make_deps(enqueued=enqueued)


def run(db_session, scope, deps, operation, params, key=None):
    return idempotency.execute(db_session, scope, operation, params, key=key, deps=deps, path="/test")


def create(db_session, scope, deps, **params):
    body = {"amount": 1000, "currency": "USD", "capture_method": "automatic", **params}
    return run(db_session, scope, deps, "payment.create", body).body


def due_ids(db_session, deps) -> list[str]:
    return [item.id for item in processing.pick_due(db_session, deps.now(), limit=10_000)]


def payment_row(db_session, payment_id) -> Payment:
    db_session.expire_all()
    return db_session.get(Payment, payment_id)


def test_create_then_confirm_stages_one_authorization(db_session, scope, deps, enqueued):
    created = create(db_session, scope, deps)
    assert created["status"] == "requires_payment_method"
    assert created["split"][0]["amount"] == 1000
    confirmed = run(db_session, scope, deps, "payment.confirm", {"payment": created["id"], "payment_method": "tok_1"})
    assert confirmed.body["status"] == "processing"
    [attempt] = confirmed.body["attempts"]
    assert attempt["operation"] == "authorize" and attempt["status"] == "processing"
    assert enqueued == [("app.jobs.payments.run_attempt", (attempt["id"],))]
    assert event_types(db_session, scope, created["id"]) == ["payment.created", "payment.processing"]


def split_payment(db_session, scope, deps) -> tuple[dict, dict[str, int]]:
    """A confirmed 100.00 payment split A 60.00 (fee 1.80) / B 40.00 (fee 1.20), and its capture's balances."""
    seller_a = create_seller(db_session, scope, name="A")
    seller_b = create_seller(db_session, scope, name="B")
    db_session.commit()
    body = create(db_session, scope, deps, amount=10000, payment_method="tok_1", confirm=True,
                  split=[{"seller": seller_a.id, "amount": 6000, "fee": 180},
                         {"seller": seller_b.id, "amount": 4000, "fee": 120}])
    return body, {"psp_receivable:sandbox:USD": 10000, f"seller_payable:{seller_a.id}:USD": 5820,
                  f"seller_payable:{seller_b.id}:USD": 3880, "merchant_revenue:USD": 300}


def test_automatic_capture_books_the_split(db_session, scope, deps):
    body, booked = split_payment(db_session, scope, deps)
    gateway = ScriptedGateway()
    _run_attempt(body["attempts"][0]["id"], deps, gateway)
    payment = payment_row(db_session, body["id"])
    assert payment.status == "succeeded" and payment.amount_received == 10000
    assert payment.card_last4 == "4242" and payment.connector == "sandbox"
    assert [c[0] for c in gateway.calls] == ["authorize", "capture"]
    assert event_types(db_session, scope, payment.id) == ["payment.created", "payment.processing", "payment.succeeded"]
    assert ledger_balances(db_session, scope) == booked
    assert_ledger_balanced(db_session, scope)


def sold(reference: str, amount: int) -> PspResult:
    """An authorization the PSP captured in the same call (a sale)."""
    return authorized(reference, status="captured", amount=amount)


def test_sale_books_the_capture_with_the_authorization(db_session, scope, deps):
    body, booked = split_payment(db_session, scope, deps)
    gateway = ScriptedGateway(authorize_results=[sold("auth_s", 10000)])
    _run_attempt(body["attempts"][0]["id"], deps, gateway)
    assert [c[0] for c in gateway.calls] == ["authorize"]  # no second call for the capture
    assert gateway.authorize_requests[0].capture is True
    payment = payment_row(db_session, body["id"])
    assert (payment.status, payment.amount_received, payment.amount_capturable, payment.capture_count) == (
        "succeeded", 10000, 0, 1)
    attempts = db_session.scalars(select(PaymentAttempt).where(PaymentAttempt.payment_id == payment.id)
                                  .order_by(PaymentAttempt.id)).all()
    assert [(a.operation, a.status, a.psp_reference, a.amount) for a in attempts] == [
        ("authorize", "succeeded", "auth_s", 10000), ("capture", "succeeded", "auth_s", 10000)]
    assert attempts[1].finished_at is not None and attempts[1].next_attempt_at is None
    assert event_types(db_session, scope, payment.id) == ["payment.created", "payment.processing", "payment.succeeded"]
    assert ledger_balances(db_session, scope) == booked
    # The same answer again (a late callback, the janitor) books nothing more.
    again = processing.apply_attempt_result(db_session, attempts[0].id, sold("auth_s", 10000), deps)
    db_session.commit()
    assert not again.changed and ledger_balances(db_session, scope)["psp_receivable:sandbox:USD"] == 10000
    assert_ledger_balanced(db_session, scope)


@pytest.mark.parametrize("capture_method, answer", [
    ("automatic", sold("auth_s", 1000)),
    ("manual", authorized("auth_m")),
    ("automatic", result(Outcome.DECLINED, decline_code="card_declined", psp_reference="auth_d", status="declined")),
    ("automatic", result(Outcome.REQUIRES_ACTION, psp_reference="auth_3", status="requires_action",
                         action_url="https://acs.example/challenge")),
])
def test_the_waiters_snapshot_is_the_payment_as_committed(db_session, scope, deps, capture_method, answer):
    body = create(db_session, scope, deps, capture_method=capture_method, payment_method="tok_1", confirm=True)
    applied = processing.apply_attempt_result(db_session, body["attempts"][0]["id"], answer, deps)
    db_session.commit()
    assert applied.notify == [body["attempts"][0]["id"]]
    db_session.expire_all()
    assert applied.snapshot == payment_object(db_session, db_session.get(Payment, body["id"]))


def test_no_snapshot_once_a_follow_up_was_added(db_session, scope, deps):
    body = create(db_session, scope, deps, payment_method="tok_1", confirm=True)
    applied = processing.apply_attempt_result(db_session, body["attempts"][0]["id"], authorized(), deps)
    db_session.commit()
    assert applied.follow_ups and applied.notify == [] and applied.snapshot is None


def test_the_wake_up_carries_the_snapshot(redis):
    deps = make_deps(redis=redis, confirm_wait_seconds=1)
    notify_outcome(redis, ["att_x"], {"id": "pay_x", "status": "succeeded"})
    assert wait_for_outcome(deps, "att_x") == {"id": "pay_x", "status": "succeeded"}
    notify_outcome(redis, ["att_y"])  # a wake-up without a snapshot: the waiter reads the payment
    assert wait_for_outcome(deps, "att_y") is None


def test_manual_capture_asks_for_no_sale(db_session, scope, deps):
    body = create(db_session, scope, deps, capture_method="manual", payment_method="tok_1", confirm=True)
    gateway = ScriptedGateway()
    _run_attempt(body["attempts"][0]["id"], deps, gateway)
    assert gateway.authorize_requests[0].capture is False
    assert payment_row(db_session, body["id"]).status == "requires_capture"


def test_unknown_sale_found_captured_is_booked_once(db_session, scope, deps):
    body = create(db_session, scope, deps, payment_method="tok_timeout", confirm=True)
    attempt_id = body["attempts"][0]["id"]
    gateway = ScriptedGateway(authorize_results=[result(Outcome.UNKNOWN, message="read timeout")])
    _run_attempt(attempt_id, deps, gateway)
    db_session.execute(update(PaymentAttempt).where(PaymentAttempt.id == attempt_id)
                       .values(next_attempt_at=deps.now() - timedelta(seconds=1)))
    db_session.commit()
    # The lookup by idempotency key finds the sale captured: booked, and nothing is sent again.
    gateway.retrieve_results = [Lookup.of(PspResult(Outcome.SUCCEEDED, "sandbox", "auth_t", status="captured",
                                                    amount=1000))]
    _run_attempt(attempt_id, deps, gateway)
    assert [c[0] for c in gateway.calls] == ["authorize", "retrieve"]
    payment = payment_row(db_session, body["id"])
    assert (payment.status, payment.amount_received) == ("succeeded", 1000)
    assert ledger_balances(db_session, scope)["psp_receivable:sandbox:USD"] == 1000
    assert_ledger_balanced(db_session, scope)


def test_applying_an_outcome_twice_changes_nothing(db_session, scope, deps):
    body = create(db_session, scope, deps, capture_method="manual", payment_method="tok_1", confirm=True)
    attempt_id = body["attempts"][0]["id"]
    applied = processing.apply_attempt_result(db_session, attempt_id, authorized(), deps)
    db_session.commit()
    assert applied.changed
    events = event_types(db_session, scope, body["id"])
    again = processing.apply_attempt_result(db_session, attempt_id, authorized(), deps)
    db_session.commit()
    assert not again.changed and again.notify == []
    # A contradicting late answer for a resolved attempt changes nothing either.
    processing.apply_attempt_result(db_session, attempt_id, result(Outcome.DECLINED, decline_code="x"), deps)
    db_session.commit()
    assert event_types(db_session, scope, body["id"]) == events
    assert payment_row(db_session, body["id"]).status == "requires_capture"


def test_manual_capture_partial_allocates_pro_rata(db_session, scope, deps):
    sellers = [create_seller(db_session, scope, name=n) for n in "ABC"]
    db_session.commit()
    body = create(db_session, scope, deps, amount=300, capture_method="manual", payment_method="tok_1",
                  confirm=True, split=[{"seller": s.id, "amount": 100, "fee": 10} for s in sellers])
    _run_attempt(body["attempts"][0]["id"], deps, ScriptedGateway())
    assert payment_row(db_session, body["id"]).status == "requires_capture"
    with pytest.raises(AmountTooLarge):
        run(db_session, scope, deps, "payment.capture", {"payment": body["id"], "amount": 301})
    captured = run(db_session, scope, deps, "payment.capture", {"payment": body["id"], "amount": 100})
    capture_attempt = captured.body["attempts"][-1]
    assert capture_attempt["operation"] == "capture" and capture_attempt["amount"] == 100
    # A second capture while one is in flight is refused.
    with pytest.raises(InvalidTransition):
        run(db_session, scope, deps, "payment.capture", {"payment": body["id"]})
    _run_attempt(capture_attempt["id"], deps, ScriptedGateway())
    payment = payment_row(db_session, body["id"])
    assert (payment.status, payment.amount_received, payment.amount_capturable) == ("succeeded", 100, 0)
    balances = ledger_balances(db_session, scope)
    # 100 over [100, 100, 100] is 34, 33, 33; fees 10 scaled: 3, 3, 3.
    assert [balances[f"seller_payable:{s.id}:USD"] for s in sellers] == [31, 30, 30]
    assert balances["merchant_revenue:USD"] == 9 and balances["psp_receivable:sandbox:USD"] == 100


def test_decline_then_retry_with_another_card(db_session, scope, deps):
    body = create(db_session, scope, deps, payment_method="tok_bad", confirm=True)
    gateway = ScriptedGateway(authorize_results=[result(Outcome.DECLINED, decline_code="insufficient_funds",
                                                        psp_reference="auth_d", status="declined")])
    _run_attempt(body["attempts"][0]["id"], deps, gateway)
    payment = payment_row(db_session, body["id"])
    assert payment.status == "requires_payment_method"
    assert payment.last_error["decline_code"] == "insufficient_funds"
    retried = run(db_session, scope, deps, "payment.confirm", {"payment": body["id"], "payment_method": "tok_good"})
    _run_attempt(retried.body["attempts"][-1]["id"], deps, gateway)
    payment = payment_row(db_session, body["id"])
    assert payment.status == "succeeded" and payment.last_error is None
    attempts = db_session.scalars(select(PaymentAttempt).where(PaymentAttempt.payment_id == payment.id)
                                  .order_by(PaymentAttempt.id)).all()
    assert [(a.operation, a.status, a.decline_code) for a in attempts] == [
        ("authorize", "declined", "insufficient_funds"), ("authorize", "succeeded", None),
        ("capture", "succeeded", None)]
    # Each attempt has its own PSP idempotency key derived from its id.
    assert len({a.idempotency_key for a in attempts}) == 3
    assert all(a.idempotency_key == f"kassa-{a.id}" for a in attempts)
    assert event_types(db_session, scope, payment.id) == [
        "payment.created", "payment.processing", "payment.failed", "payment.processing", "payment.succeeded"]


def test_three_d_secure_then_approved_by_callback(db_session, scope, deps):
    body = create(db_session, scope, deps, payment_method="tok_3ds", confirm=True)
    attempt_id = body["attempts"][0]["id"]
    gateway = ScriptedGateway(authorize_results=[result(Outcome.REQUIRES_ACTION, psp_reference="auth_3",
                                                        action_url="http://psp/challenge/auth_3",
                                                        status="requires_action")])
    _run_attempt(attempt_id, deps, gateway)
    payment = payment_row(db_session, body["id"])
    assert payment.status == "requires_action" and payment.next_action_url.endswith("auth_3")
    # The late outcome (a callback, or the janitor's status query) completes it.
    applied = processing.apply_attempt_result(db_session, attempt_id, authorized("auth_3"), deps)
    db_session.commit()
    assert len(applied.follow_ups) == 1
    _run_attempt(applied.follow_ups[0], deps, gateway)
    assert payment_row(db_session, body["id"]).status == "succeeded"
    assert event_types(db_session, scope, body["id"]) == [
        "payment.created", "payment.processing", "payment.requires_action", "payment.processing", "payment.succeeded"]


def test_cancel_voids_the_authorization(db_session, scope, deps, enqueued):
    body = create(db_session, scope, deps, capture_method="manual", payment_method="tok_1", confirm=True)
    # While the authorization is processing, cancel is refused.
    with pytest.raises(InvalidTransition):
        run(db_session, scope, deps, "payment.cancel", {"payment": body["id"]})
    _run_attempt(body["attempts"][0]["id"], deps, ScriptedGateway())
    canceled = run(db_session, scope, deps, "payment.cancel",
                   {"payment": body["id"], "cancellation_reason": "requested_by_customer"}).body
    assert canceled["status"] == "canceled"
    void = canceled["attempts"][-1]
    assert void["operation"] == "void" and ("app.jobs.payments.run_attempt", (void["id"],)) in enqueued
    gateway = ScriptedGateway()
    _run_attempt(void["id"], deps, gateway)
    payment = payment_row(db_session, body["id"])
    assert payment.amount_capturable == 0 and gateway.calls[0][0] == "void"
    assert ledger_balances(db_session, scope) == {}  # authorization alone moves no money


def test_unknown_is_resolved_by_lookup_not_by_charging_again(db_session, scope, deps):
    body = create(db_session, scope, deps, payment_method="tok_timeout", confirm=True)
    attempt_id = body["attempts"][0]["id"]
    gateway = ScriptedGateway(authorize_results=[result(Outcome.UNKNOWN, message="read timeout")])
    _run_attempt(attempt_id, deps, gateway)
    attempt = db_session.get(PaymentAttempt, attempt_id)
    assert attempt.status == "unknown" and payment_row(db_session, body["id"]).status == "processing"
    # Due again once its backoff ends (the dispatcher picks it: the janitor)...
    assert attempt_id not in due_ids(db_session, deps)
    attempt.next_attempt_at = deps.now() - timedelta(seconds=1)
    db_session.commit()
    assert attempt_id in due_ids(db_session, deps)
    db_session.commit()
    # ...and its run asks by idempotency key before sending anything.
    gateway.retrieve_results = [Lookup.of(PspResult(Outcome.SUCCEEDED, "sandbox", "auth_t", status="authorized"))]
    _run_attempt(attempt_id, deps, gateway)
    assert [c[0] for c in gateway.calls] == ["authorize", "retrieve", "capture"]
    assert gateway.calls[1][3] == f"kassa-{attempt_id}"
    assert payment_row(db_session, body["id"]).status == "succeeded"
    assert_ledger_balanced(db_session, scope)


def test_refunds_partial_and_multiple_per_seller(db_session, scope, deps):
    body, _ = split_payment(db_session, scope, deps)
    seller_a, seller_b = (part["seller"] for part in body["split"])
    gateway = ScriptedGateway()
    _run_attempt(body["attempts"][0]["id"], deps, gateway)
    # 30.00 of A's part: A's payable -29.10, revenue -0.90 (ARCHITECTURE.md's example).
    refund = run(db_session, scope, deps, "refund.create",
                 {"payment": body["id"], "sellers": [{"seller": seller_a, "amount": 3000}]}).body
    assert refund["status"] == "pending"
    _run_refund(refund["id"], deps, gateway)
    balances = ledger_balances(db_session, scope)
    assert balances[f"seller_payable:{seller_a}:USD"] == 5820 - 2910
    assert balances["merchant_revenue:USD"] == 300 - 90
    # A second partial refund without sellers goes pro rata over what is left (3000 A, 4000 B).
    second = run(db_session, scope, deps, "refund.create", {"payment": body["id"], "amount": 700}).body
    assert [s["amount"] for s in second["sellers"]] == [300, 400]
    _run_refund(second["id"], deps, gateway)
    # Beyond what is refundable: refused, nothing created.
    with pytest.raises(AmountTooLarge):
        run(db_session, scope, deps, "refund.create", {"payment": body["id"], "amount": 6301})
    last = run(db_session, scope, deps, "refund.create", {"payment": body["id"]}).body
    assert last["amount"] == 6300
    _run_refund(last["id"], deps, gateway)
    payment = payment_row(db_session, body["id"])
    assert payment.amount_refunded == 10000
    balances = ledger_balances(db_session, scope)
    assert balances == {"psp_receivable:sandbox:USD": 0, f"seller_payable:{seller_a}:USD": 0,
                        f"seller_payable:{seller_b}:USD": 0, "merchant_revenue:USD": 0}
    assert_ledger_balanced(db_session, scope)
    with pytest.raises(AmountTooLarge):
        run(db_session, scope, deps, "refund.create", {"payment": body["id"]})


def test_failed_refund_books_nothing_and_frees_the_amount(db_session, scope, deps):
    body = create(db_session, scope, deps, payment_method="tok_1", confirm=True)
    _run_attempt(body["attempts"][0]["id"], deps, ScriptedGateway())
    refund = run(db_session, scope, deps, "refund.create", {"payment": body["id"]}).body
    # While it is pending, the amount is reserved.
    with pytest.raises(AmountTooLarge):
        run(db_session, scope, deps, "refund.create", {"payment": body["id"], "amount": 1})
    gateway = ScriptedGateway(refund_results=[result(Outcome.DECLINED, decline_code="charge_disputed",
                                                     status="failed")])
    _run_refund(refund["id"], deps, gateway)
    row = db_session.get(Refund, refund["id"])
    assert row.status == "failed" and row.failure_code == "charge_disputed"
    assert ledger_balances(db_session, scope)["psp_receivable:sandbox:USD"] == 1000
    assert event_types(db_session, scope, refund["id"]) == ["refund.created", "refund.failed"]
    again = run(db_session, scope, deps, "refund.create", {"payment": body["id"]}).body
    assert again["amount"] == 1000


def test_split_must_add_up_and_name_known_sellers(db_session, scope, deps):
    seller = create_seller(db_session, scope, name="A")
    db_session.commit()
    with pytest.raises(InvalidRequest) as mismatch:
        create(db_session, scope, deps, split=[{"seller": seller.id, "amount": 999}])
    assert mismatch.value.code == "split_mismatch"
    with pytest.raises(InvalidRequest) as unknown:
        create(db_session, scope, deps, split=[{"seller": "sel_nope", "amount": 1000}])
    assert unknown.value.param == "split[0][seller]"
    with pytest.raises(InvalidRequest):
        create(db_session, scope, deps, split=[{"seller": seller.id, "amount": 1000, "fee": 1001}])
    with pytest.raises(InvalidRequest):
        create(db_session, scope, deps, currency="XXX")
    with pytest.raises(InvalidRequest):
        create(db_session, scope, deps, amount=0)
    assert db_session.scalars(scope.select(Payment)).all() == []


def test_default_seller_is_created_once(db_session, scope, deps):
    create(db_session, scope, deps)
    create(db_session, scope, deps)
    defaults = db_session.scalars(scope.select(Seller, Seller.is_default.is_(True))).all()
    assert len(defaults) == 1


def test_default_seller_id_is_remembered_only_once_committed(db_session, scope):
    from app.payments import service

    created = default_seller_id(db_session, scope)       # inserted by this transaction
    assert scope not in service._default_seller_ids
    db_session.rollback()                                   # ... and gone again
    assert db_session.get(Seller, created) is None
    committed = default_seller_id(db_session, scope)
    db_session.commit()
    assert committed != created and scope not in service._default_seller_ids
    assert default_seller_id(db_session, scope) == committed  # read as already there: remembered
    db_session.rollback()
    with statements_sent(db_session) as statements:
        assert default_seller_id(db_session, scope) == committed
    assert statements == []                                 # no query for it any more


@contextmanager
def statements_sent(db_session):
    """The SQL statements sent to the database inside the block."""
    statements = []

    def record(_conn, _cursor, statement, *_args):
        statements.append(statement)

    engine = db_session.get_bind()
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", record)


def test_create_and_confirm_write_each_row_once(db_session, scope, deps):
    """One flush inserts the payment as confirmed, then its attempt and orders (foreign keys first); the
    token's binding to the payment is one INSERT before them."""
    default_seller_id(db_session, scope)
    db_session.commit()
    with statements_sent(db_session) as statements:
        create(db_session, scope, deps, payment_method="tok_1", confirm=True)
    writes = [" ".join(statement.split()[:3]) for statement in statements]
    assert [w for w in writes if w.startswith(("INSERT", "UPDATE")) and "payment" in w] == [
        "INSERT INTO payment_token_bindings", "INSERT INTO payments", "INSERT INTO payment_attempts",
        "INSERT INTO payment_orders"]


def test_expiry_sweep_cancels_old_authorizations(db_session, scope, deps, enqueued):
    body = create(db_session, scope, deps, capture_method="manual", payment_method="tok_1", confirm=True)
    _run_attempt(body["attempts"][0]["id"], deps, ScriptedGateway())
    fresh = create(db_session, scope, deps, capture_method="manual", payment_method="tok_2", confirm=True)
    _run_attempt(fresh["attempts"][0]["id"], deps, ScriptedGateway())
    old = payment_row(db_session, body["id"])
    old.authorized_at = deps.now() - timedelta(days=8)
    db_session.commit()
    assert processing.expire_authorizations(db_session, deps) == [body["id"]]
    db_session.commit()
    old = payment_row(db_session, body["id"])
    assert (old.status, old.cancellation_reason) == ("canceled", "expired")
    assert payment_row(db_session, fresh["id"]).status == "requires_capture"
    void = db_session.scalars(select(PaymentAttempt).where(PaymentAttempt.payment_id == old.id,
                                                           PaymentAttempt.operation == "void")).one()
    assert ("app.jobs.payments.run_attempt", (void.id,)) in enqueued


def test_a_second_runner_does_not_get_the_lease(db_session, scope, deps):
    body = create(db_session, scope, deps, payment_method="tok_1", confirm=True)
    attempt_id = body["attempts"][0]["id"]
    assert processing.claim_attempt(db_session, attempt_id, deps) is not None
    db_session.commit()
    assert processing.claim_attempt(db_session, attempt_id, deps) is None
    db_session.commit()
    # Once the lease is over (a killed worker), a new runner may take it, as the next try.
    attempt = db_session.get(PaymentAttempt, attempt_id)
    attempt.lease_until = deps.now() - timedelta(seconds=1)
    db_session.commit()
    claim = processing.claim_attempt(db_session, attempt_id, deps)
    assert claim is not None and claim.tries == 2
    db_session.commit()


def test_unknown_refund_is_sent_again_with_the_same_key(db_session, scope, deps):
    body = create(db_session, scope, deps, payment_method="tok_1", confirm=True)
    _run_attempt(body["attempts"][0]["id"], deps, ScriptedGateway())
    refund = run(db_session, scope, deps, "refund.create", {"payment": body["id"], "amount": 400}).body
    gateway = ScriptedGateway(refund_results=[result(Outcome.UNKNOWN)])
    _run_refund(refund["id"], deps, gateway)
    row = db_session.get(Refund, refund["id"])
    assert row.status == "pending"
    assert refund["id"] not in due_ids(db_session, deps)
    row.next_attempt_at = deps.now() - timedelta(seconds=1)
    db_session.commit()
    assert refund["id"] in due_ids(db_session, deps)
    db_session.commit()
    _run_refund(refund["id"], deps, gateway)
    assert db_session.get(Refund, refund["id"]).status == "succeeded"
    keys = [c[1] for c in gateway.calls if c[0] == "refund"]
    assert keys == [f"kassa-{refund['id']}"] * 2


def test_other_merchants_payments_are_invisible(db_session, scope, deps):
    from app.payments.errors import NotFound
    from app.scoping import Scope
    from tests import factories

    body = create(db_session, scope, deps)
    other = Scope(factories.merchant(db_session, name="Other").id, False)
    db_session.commit()
    for operation, params in [("payment.confirm", {"payment": body["id"], "payment_method": "tok_1"}),
                              ("payment.capture", {"payment": body["id"]}),
                              ("payment.cancel", {"payment": body["id"]}),
                              ("refund.create", {"payment": body["id"]})]:
        with pytest.raises(NotFound):
            run(db_session, other, deps, operation, params, key=new_id("k"))
    # Test and live mode are separate books, too.
    with pytest.raises(NotFound):
        run(db_session, Scope(scope.merchant_id, True), deps, "payment.cancel", {"payment": body["id"]})
    assert payment_row(db_session, body["id"]).status == "requires_payment_method"


def test_cancel_during_three_d_secure_voids_and_a_late_approval_changes_nothing(db_session, scope, deps, enqueued):
    body = create(db_session, scope, deps, payment_method="tok_3ds", confirm=True)
    attempt_id = body["attempts"][0]["id"]
    gateway = ScriptedGateway(authorize_results=[result(Outcome.REQUIRES_ACTION, psp_reference="auth_c",
                                                        action_url="http://psp/challenge/auth_c",
                                                        status="requires_action")])
    _run_attempt(attempt_id, deps, gateway)
    canceled = run(db_session, scope, deps, "payment.cancel", {"payment": body["id"]}).body
    assert canceled["status"] == "canceled" and canceled["next_action"] is None
    voids = [a for a in canceled["attempts"] if a["operation"] == "void"]
    assert len(voids) == 1
    # The shopper approves the challenge anyway: the late outcome is recorded, no second void, no event.
    events_before = event_types(db_session, scope, body["id"])
    applied = processing.apply_attempt_result(db_session, attempt_id, authorized("auth_c"), deps)
    db_session.commit()
    assert applied.follow_ups == []
    assert event_types(db_session, scope, body["id"]) == events_before
    payment = payment_row(db_session, body["id"])
    assert payment.status == "canceled"
    assert payment.amount_capturable == 0 and payment.authorized_at is None


def test_automatic_capture_not_processed_is_sent_again_not_parked(db_session, scope, deps):
    body = create(db_session, scope, deps, payment_method="tok_1", confirm=True)
    gateway = ScriptedGateway(capture_results=[PspResult(Outcome.NOT_PROCESSED, "sandbox", error="circuit_open")])
    _run_attempt(body["attempts"][0]["id"], deps, gateway)
    payment = payment_row(db_session, body["id"])
    # The authorization is good and the PSP did nothing with the capture: the payment is not parked in
    # requires_capture (which expires into a void); the same capture is owed again.
    assert payment.status == "processing"
    capture = db_session.scalars(select(PaymentAttempt).where(
        PaymentAttempt.payment_id == payment.id, PaymentAttempt.operation == "capture")).one()
    assert capture.status == "unknown" and capture.next_attempt_at is not None
    first_key = capture.idempotency_key
    capture.next_attempt_at = capture.lease_until = None  # due now (drive time through the row)
    db_session.commit()
    retry = ScriptedGateway()
    _run_attempt(capture.id, deps, retry)
    payment = payment_row(db_session, body["id"])
    assert payment.status == "succeeded" and payment.amount_received == 1000
    assert retry.calls == [("capture", first_key, 1000)]
    assert_ledger_balanced(db_session, scope)


def test_canceling_a_canceled_payment_changes_nothing(db_session, scope, deps):
    body = create(db_session, scope, deps)
    run(db_session, scope, deps, "payment.cancel", {"payment": body["id"], "cancellation_reason": "duplicate"})
    again = run(db_session, scope, deps, "payment.cancel", {"payment": body["id"]}).body
    assert again["status"] == "canceled" and again["cancellation_reason"] == "duplicate"
    assert event_types(db_session, scope, body["id"]).count("payment.canceled") == 1


def _overdue(db_session, attempt_id, deps):
    """Let the attempt's lease run out (its runner stalled or died)."""
    db_session.execute(update(PaymentAttempt).where(PaymentAttempt.id == attempt_id)
                       .values(lease_until=deps.now() - timedelta(seconds=1),
                               next_attempt_at=deps.now() - timedelta(seconds=1)))
    db_session.commit()


def test_a_runner_that_loses_its_lease_while_asking_the_psp_sends_nothing(db_session, scope, deps):
    body = create(db_session, scope, deps, payment_method="tok_1", confirm=True)
    attempt_id = body["attempts"][0]["id"]
    _run_attempt(attempt_id, deps, ScriptedGateway(authorize_results=[result(Outcome.UNKNOWN, message="timeout")]))
    _overdue(db_session, attempt_id, deps)
    overtaken = []

    class StallingGateway(ScriptedGateway):
        def retrieve(self, connector, **lookup):
            answer = super().retrieve(connector, **lookup)
            if not overtaken:  # this runner stalls mid-lookup; a janitor-started runner takes the attempt
                _overdue(db_session, attempt_id, deps)
                overtaken.append(processing.claim_attempt(db_session, attempt_id, deps))
                db_session.commit()
            return answer

    gateway = StallingGateway()
    assert _run_attempt(attempt_id, deps, gateway) == "skipped"
    assert "authorize" not in [call[0] for call in gateway.calls]
    attempt = db_session.get(PaymentAttempt, attempt_id)
    db_session.refresh(attempt)
    # The newer runner's lease stands untouched, and it alone sends.
    assert overtaken[0].tries == 3 and attempt.tries == 3 and attempt.status == "unknown"
    assert attempt.lease_until > deps.now()


def test_a_lease_is_renewed_before_a_retry_is_sent(db_session, scope, deps):
    body = create(db_session, scope, deps, payment_method="tok_1", confirm=True)
    attempt_id = body["attempts"][0]["id"]
    _run_attempt(attempt_id, deps, ScriptedGateway(authorize_results=[result(Outcome.UNKNOWN, message="timeout")]))
    _overdue(db_session, attempt_id, deps)
    claim = processing.claim_attempt(db_session, attempt_id, deps)
    db_session.commit()
    assert processing.renew_lease(db_session, claim, deps)
    db_session.commit()
    _overdue(db_session, attempt_id, deps)
    newer = processing.claim_attempt(db_session, attempt_id, deps)
    db_session.commit()
    assert newer.tries == claim.tries + 1
    assert not processing.renew_lease(db_session, claim, deps)
    db_session.commit()


def test_an_overtaken_runner_reports_facts_but_not_doubts(db_session, scope, deps):
    body = create(db_session, scope, deps, capture_method="manual", payment_method="tok_1", confirm=True)
    attempt_id = body["attempts"][0]["id"]
    stale = processing.claim_attempt(db_session, attempt_id, deps)
    db_session.commit()
    _overdue(db_session, attempt_id, deps)
    current = processing.claim_attempt(db_session, attempt_id, deps)
    db_session.commit()
    lease = db_session.get(PaymentAttempt, attempt_id).lease_until
    # An ambiguous answer of the stale claim does not touch the current runner's attempt...
    applied = processing.apply_attempt_result(db_session, attempt_id, result(Outcome.UNKNOWN), deps,
                                              claim_tries=stale.tries)
    db_session.commit()
    attempt = db_session.get(PaymentAttempt, attempt_id)
    db_session.refresh(attempt)
    assert not applied.changed and attempt.status == "processing" and attempt.lease_until == lease
    # ...but an authorization it obtained is a fact, and is recorded.
    processing.apply_attempt_result(db_session, attempt_id, authorized("auth_s"), deps, claim_tries=stale.tries)
    db_session.commit()
    payment = payment_row(db_session, body["id"])
    assert payment.status == "requires_capture" and payment.psp_reference == "auth_s"
    assert current.tries == stale.tries + 1


def test_a_second_authorization_of_one_attempt_is_voided_once(db_session, scope, deps, enqueued):
    body = create(db_session, scope, deps, capture_method="manual", payment_method="tok_1", confirm=True)
    attempt_id = body["attempts"][0]["id"]
    _run_attempt(attempt_id, deps, ScriptedGateway(authorize_results=[authorized("auth_a")]))
    # Overlapping runners: the other one's request reached the second acquirer.
    applied = processing.apply_attempt_result(db_session, attempt_id, authorized("auth_b", connector="sandbox_b"),
                                              deps)
    db_session.commit()
    [void_id] = applied.follow_ups
    again = processing.apply_attempt_result(db_session, attempt_id, authorized("auth_b", connector="sandbox_b"), deps)
    db_session.commit()
    assert again.follow_ups == []
    void = db_session.get(PaymentAttempt, void_id)
    assert (void.operation, void.connector, void.psp_reference) == ("void", "sandbox_b", "auth_b")
    gateway = ScriptedGateway()
    _run_attempt(void_id, deps, gateway)
    assert gateway.calls == [("void", void.idempotency_key)]
    payment = payment_row(db_session, body["id"])
    # The payment keeps its own authorization, still capturable, and can still be canceled (voided).
    assert (payment.status, payment.psp_reference, payment.amount_capturable) == ("requires_capture", "auth_a", 1000)
    canceled = run(db_session, scope, deps, "payment.cancel", {"payment": body["id"]}).body
    voids = [a for a in canceled["attempts"] if a["operation"] == "void" and a["status"] == "processing"]
    assert len(voids) == 1
    assert db_session.get(PaymentAttempt, voids[0]["id"]).psp_reference == "auth_a"


def test_an_authorization_reported_after_its_attempt_was_recorded_failed_is_voided(db_session, scope, deps, enqueued):
    """The confirm of a two-step PSP times out; the janitor's status query reads the intent before the PSP
    finished confirming it (Stripe: ``requires_confirmation``, "nothing moved"), so the attempt is failed and
    the shopper may pay again. Then the confirmation completes and the PSP reports the intent authorized:
    that hold belongs to no payment any more and must be released, not left on the shopper's card."""
    body = create(db_session, scope, deps, capture_method="manual", payment_method="tok_1", confirm=True)
    attempt_id = body["attempts"][0]["id"]
    _run_attempt(attempt_id, deps, ScriptedGateway(authorize_results=[
        result(Outcome.UNKNOWN, psp_reference="pi_slow", error="read_timeout", message="read timeout")]))
    _overdue(db_session, attempt_id, deps)
    _run_attempt(attempt_id, deps, ScriptedGateway(retrieve_results=[Lookup.of(result(
        Outcome.NOT_PROCESSED, psp_reference="pi_slow", status="requires_confirmation"))]))
    payment = payment_row(db_session, body["id"])
    assert payment.status == "requires_payment_method" and payment.psp_reference is None
    # The late news (a callback, or a poll by anyone): the intent is authorized after all.
    applied = processing.apply_attempt_result(db_session, attempt_id, authorized("pi_slow"), deps)
    db_session.commit()
    [void_id] = applied.follow_ups
    void = db_session.get(PaymentAttempt, void_id)
    assert (void.operation, void.psp_reference) == ("void", "pi_slow")
    # Told again, nothing more is owed; the payment itself is untouched (it still asks for a payment method).
    assert processing.apply_attempt_result(db_session, attempt_id, authorized("pi_slow"), deps).follow_ups == []
    db_session.commit()
    assert payment_row(db_session, body["id"]).status == "requires_payment_method"


def test_a_repeated_answer_for_the_payments_own_authorization_voids_nothing(db_session, scope, deps, enqueued):
    body = create(db_session, scope, deps, capture_method="manual", payment_method="tok_1", confirm=True)
    attempt_id = body["attempts"][0]["id"]
    _run_attempt(attempt_id, deps, ScriptedGateway(authorize_results=[authorized("auth_own")]))
    applied = processing.apply_attempt_result(db_session, attempt_id, authorized("auth_own"), deps)
    db_session.commit()
    assert applied.follow_ups == [] and payment_row(db_session, body["id"]).status == "requires_capture"


# -- the credential a payment was made with (issue 14 review) ---------------------------------------------

class CredentialGateway(ScriptedGateway):
    """The scripted gateway, noting which credential each follow-up was sent with."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.credentials: list[tuple[str, str | None]] = []

    def capture(self, *args, **owner):
        self.credentials.append(("capture", owner.get("credential")))
        return super().capture(*args, **owner)

    def void(self, *args, **owner):
        self.credentials.append(("void", owner.get("credential")))
        return super().void(*args, **owner)

    def refund(self, *args, **owner):
        self.credentials.append(("refund", owner.get("credential")))
        return super().refund(*args, **owner)

    def retrieve_refund(self, *args, **owner):
        self.credentials.append(("retrieve_refund", owner.get("credential")))
        return super().retrieve_refund(*args, **owner)


def test_follow_ups_use_the_credential_the_authorization_was_made_with(db_session, scope, deps):
    body = create(db_session, scope, deps, capture_method="manual", payment_method="tok_cred", confirm=True)
    gateway = CredentialGateway(authorize_results=[authorized("auth_cred", credential="pcr_old_account")])
    _run_attempt(body["attempts"][0]["id"], deps, gateway)
    payment = payment_row(db_session, body["id"])
    assert (payment.status, payment.credential) == ("requires_capture", "pcr_old_account")
    assert db_session.get(PaymentAttempt, body["attempts"][0]["id"]).credential == "pcr_old_account"

    capture = run(db_session, scope, deps, "payment.capture", {"payment": body["id"]}).body["attempts"][-1]
    assert db_session.get(PaymentAttempt, capture["id"]).credential == "pcr_old_account"
    _run_attempt(capture["id"], deps, gateway)
    refund = run(db_session, scope, deps, "refund.create", {"payment": body["id"], "amount": 300}).body
    assert db_session.get(Refund, refund["id"]).credential == "pcr_old_account"
    _run_refund(refund["id"], deps, gateway)
    assert gateway.credentials == [("capture", "pcr_old_account"), ("refund", "pcr_old_account")]
    assert payment_row(db_session, body["id"]).amount_refunded == 300


def test_a_follow_up_whose_credential_is_gone_is_refused_and_needs_attention_at_once(db_session, scope, deps):
    body = create(db_session, scope, deps, capture_method="manual", payment_method="tok_gone", confirm=True)
    _run_attempt(body["attempts"][0]["id"], deps, ScriptedGateway(
        authorize_results=[authorized("auth_gone", credential="pcr_gone")]))
    capture = run(db_session, scope, deps, "payment.capture", {"payment": body["id"]}).body["attempts"][-1]
    missing = result(Outcome.NOT_PROCESSED, error=CREDENTIAL_MISSING, credential="pcr_gone",
                     message="the credential pcr_gone that made this payment at sandbox no longer exists")
    # However often it is tried, it is never failed, nor sent with another account: it waits for a person.
    for _ in range(processing.CAPTURE_MAX_TRIES + 1):
        db_session.execute(update(PaymentAttempt).where(PaymentAttempt.id == capture["id"])
                           .values(lease_until=None, next_attempt_at=deps.now()))
        db_session.commit()
        _run_attempt(capture["id"], deps, CredentialGateway(capture_results=[missing]))
    db_session.expire_all()
    attempt = db_session.get(PaymentAttempt, capture["id"])
    assert attempt.status in processing.OPEN_FOR_CLAIM and attempt.attention_since is not None
    assert "not sent" in attempt.attention_reason and "pcr_gone" in attempt.attention_reason
    assert attempt.next_attempt_at > deps.now()
    payment = payment_row(db_session, body["id"])
    assert (payment.status, payment.amount_received) == ("requires_capture", 0)
    from app.payments.attention import needing_attention

    assert [item.id for item in needing_attention(db_session, scope)] == [capture["id"]]
