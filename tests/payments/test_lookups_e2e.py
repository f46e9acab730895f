"""A status query that could not ask is "unknown", never "not found": over HTTP, with the real worker, its
janitor and the sandbox PSP answering status queries with 429 or 503 on purpose (``read_error_status``).

(a) An authorization whose answer was lost, then lookups that cannot be answered: nothing is sent again
    (before, the resend failed over to the second acquirer and charged the shopper twice), the attempt
    stays unknown, and it resolves once the lookup works.
(b) A pending refund whose status query is rate limited stays pending with its amount set aside (before,
    it was marked failed and the amount could be refunded again), and is booked once when it succeeds.
(c) A 3-D Secure authorization whose status poll is rate limited is not failed.

Time moves through the rows (an attempt or refund made due at once), never by sleeping out a backoff.
"""
import time
import uuid

import pytest
from sqlalchemy import func, select, update

from app.extensions import db
from app.payments.models import PaymentAttempt, Refund
from app.payments.processing import REFUND_MAX_TRIES
from app.scoping import Scope
from tests.payments.helpers import assert_ledger_balanced, event_types
from tests.payments.live_helpers import WAIT_SECONDS, Api, Sandbox, new_merchant_key

# A 1 s read timeout makes the timeout card (answered after 8 s) ambiguous at once. The breaker is kept
# out of the way: rate-limited lookups would open it, and these tests are about what a lookup decides.
LIVE_ENV = {"PSP_READ_TIMEOUT": "1", "PSP_BREAKER_FAILURES": "1000"}
ACQUIRERS = ("sandbox", "sandbox_b")


@pytest.fixture(scope="module")
def world(app, live):
    merchant_id, key = new_merchant_key(app, "Lookup shop")
    return {"api": Api(live.url, key), "sandbox": Sandbox(live.sandbox_url), "scope": Scope(merchant_id, False),
            "app": app}


@pytest.fixture
def sandbox(world):
    sandbox = world["sandbox"]
    yield sandbox
    for acquirer in ACQUIRERS:
        sandbox.faults(acquirer, read_error_status=None, error_rate=0)


def wait_until(predicate, what: str):
    deadline = time.monotonic() + WAIT_SECONDS
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return value


def read(app, statement):
    with app.app_context():
        row = db.session.execute(statement).one()
        db.session.remove()
    return row


def make_due(app, model, row_id: str, **values) -> None:
    """Move the row's next look to now (and set ``values``) once no runner holds it: the janitor takes it."""

    def moved() -> bool:
        with app.app_context():
            changed = db.session.execute(
                update(model).where(model.id == row_id,
                                    (model.lease_until.is_(None)) | (model.lease_until < func.now()))
                .values(next_attempt_at=func.now(), **values)).rowcount
            db.session.commit()
            db.session.remove()
        return changed == 1

    wait_until(moved, f"{row_id} to be free")


def asked_again(app, model, row_id: str, tries: int):
    """The row once a run with at least ``tries`` tries has applied its answer (and released the lease)."""

    def applied():
        row = read(app, select(model.tries, model.lease_until, model.status).where(model.id == row_id))
        return row if row.tries >= tries and row.lease_until is None else None

    return wait_until(applied, f"{row_id} to be asked again")


def books(world) -> None:
    with world["app"].app_context():
        assert_ledger_balanced(db.session, world["scope"])
        db.session.remove()


def events(world, object_id: str) -> list[str]:
    with world["app"].app_context():
        types = event_types(db.session, world["scope"], object_id)
        db.session.remove()
    return types


@pytest.mark.parametrize("status", [429, 503])
def test_an_ambiguous_authorization_is_never_sent_again_on_a_lookup_that_could_not_ask(world, sandbox, status):
    api, app = world["api"], world["app"]
    # Acquirer A answers no status query; and it refuses every second POST as "not processed", so that a
    # resend would fail over to B. The first POST (the authorization) goes through, then times out.
    sandbox.faults("sandbox", read_error_status=status, error_rate=0.5)
    created = api.post("/v1/payments", key=str(uuid.uuid4()), amount=3100, currency="usd",
                       payment_method=sandbox.token("timeout"), confirm=True).json()
    assert created["status"] == "processing", created
    attempt_id = created["attempts"][0]["id"]
    make_due(app, PaymentAttempt, attempt_id)
    attempt = asked_again(app, PaymentAttempt, attempt_id, tries=2)

    assert sandbox.authorizations(f"kassa-{attempt_id}") == 1  # before: a second one at sandbox_b
    assert attempt.status == "unknown"
    assert api.payment(created["id"])["status"] == "processing"

    sandbox.faults("sandbox", read_error_status=None, error_rate=0)
    make_due(app, PaymentAttempt, attempt_id)
    payment = api.wait_for(created["id"], "succeeded")
    assert payment["connector"] == "sandbox" and payment["amount_received"] == 3100
    assert sandbox.authorizations(f"kassa-{attempt_id}") == 1
    assert events(world, created["id"]).count("payment.succeeded") == 1
    books(world)


def test_a_rate_limited_refund_status_query_keeps_it_pending_and_it_is_booked_once(world, sandbox):
    api, app = world["api"], world["app"]
    paid = api.post("/v1/payments", key=str(uuid.uuid4()), amount=2000, currency="usd",
                    payment_method=sandbox.token("4000000000007726"), confirm=True).json()
    payment = api.wait_for(paid["id"], "succeeded")
    acquirer = payment["connector"]
    refunds_before = sandbox.total("refunds")
    sandbox.faults(acquirer, read_error_status=429)
    created = api.post("/v1/refunds", key=str(uuid.uuid4()), payment=paid["id"], amount=1200).json()
    assert created["status"] == "pending", created
    # The acquirer took it (pending) and named it: from now on only status queries are sent.
    wait_until(lambda: read(app, select(Refund.psp_reference).where(Refund.id == created["id"])).psp_reference,
               "the refund's reference")
    # A refund pending for a while has been asked about many times; the next query is rate limited.
    make_due(app, Refund, created["id"], tries=REFUND_MAX_TRIES - 1)
    refund = asked_again(app, Refund, created["id"], tries=REFUND_MAX_TRIES)

    assert refund.status == "pending"  # before: failed, and its amount free again
    assert api.get(f"/v1/refunds/{created['id']}").json()["status"] == "pending"
    twice = api.post("/v1/refunds", key=str(uuid.uuid4()), payment=paid["id"], amount=2000)
    assert twice.status_code == 400 and twice.json()["error"]["code"] == "amount_too_large"

    sandbox.faults(acquirer, read_error_status=None)
    sandbox.http.post(f"{sandbox.url}/_admin/clock", json={"advance_seconds": 3600}, timeout=10)  # it succeeds
    try:
        make_due(app, Refund, created["id"])
        assert api.wait_for_refund(created["id"])["status"] == "succeeded"
    finally:
        sandbox.http.post(f"{sandbox.url}/_admin/clock", json={"reset": True}, timeout=10)
    assert api.payment(paid["id"])["amount_refunded"] == 1200
    assert sandbox.total("refunds") == refunds_before + 1
    assert events(world, created["id"]) == ["refund.created", "refund.succeeded"]
    books(world)


def test_a_rate_limited_status_poll_does_not_fail_a_3ds_authorization(world, sandbox):
    api, app = world["api"], world["app"]
    created = api.post("/v1/payments", key=str(uuid.uuid4()), amount=1500, currency="usd",
                       payment_method=sandbox.token("three_d_secure"), confirm=True).json()
    assert created["status"] == "requires_action", created
    attempt_id = created["attempts"][0]["id"]
    sandbox.faults(created["attempts"][0]["connector"], read_error_status=429)
    make_due(app, PaymentAttempt, attempt_id)  # the poll of a pending challenge, due now
    attempt = asked_again(app, PaymentAttempt, attempt_id, tries=2)

    assert attempt.status == "requires_action"
    assert api.payment(created["id"])["status"] == "requires_action"  # before: requires_payment_method

    sandbox.faults(created["attempts"][0]["connector"], read_error_status=None)
    sandbox.answer_challenge(created["next_action"]["redirect_to_url"]["url"])
    assert api.wait_for(created["id"], "succeeded")["amount_received"] == 1500
    assert sandbox.authorizations(f"kassa-{attempt_id}") == 1
    books(world)
