"""A status query has three answers: found, absent, could not tell. In-process, with a scripted PSP and a
driven clock: only "absent" from every connector of the vault leads to sending again; an answer that could
not tell never fails, declines or frees anything; a row without a definite answer for too long is marked
as needing attention and cleared by the answer; captures and refunds retried past the PSP's idempotency
window look up first. The same over HTTP against the sandbox PSP: test_lookups_e2e.py."""
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from app.jobs.payments import _run_attempt, _run_refund
from app.payments import attention, idempotency, processing
from app.payments.errors import AmountTooLarge
from app.payments.models import Payment, PaymentAttempt, Refund
from app.payments.serializers import payment_object, refund_object
from app.psp.interfaces import Lookup, Outcome, PspResult
from tests.payments.helpers import (
    ScriptedGateway,
    assert_ledger_balanced,
    event_types,
    ledger_balances,
    make_deps,
    result,
)

RATE_LIMITED = Lookup.unknown("sandbox", "rate_limited", "HTTP 429", retryable=True)


class Clock:
    """deps.now, moved by the test (leases, backoff and the attention threshold all read it)."""

    def __init__(self):
        self.now = datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def deps(clock):
    return make_deps(enqueued=[], now=clock, attention_after=timedelta(minutes=30))


def create(db_session, scope, deps, **params) -> dict:
    body = {"amount": 1000, "currency": "USD", "capture_method": "automatic", "payment_method": "tok_1",
            "confirm": True, **params}
    return idempotency.execute(db_session, scope, "payment.create", body, key=None, deps=deps, path="/test").body


def refund(db_session, scope, deps, **params) -> dict:
    return idempotency.execute(db_session, scope, "refund.create", params, key=None, deps=deps, path="/test").body


def row(db_session, model, row_id):
    db_session.expire_all()
    return db_session.get(model, row_id)


def ambiguous(db_session, scope, deps, clock, **params) -> tuple[dict, str, ScriptedGateway]:
    """A payment whose authorization timed out (the PSP may have it), its attempt due for the janitor."""
    body = create(db_session, scope, deps, **params)
    attempt_id = body["attempts"][0]["id"]
    gateway = ScriptedGateway(authorize_results=[result(Outcome.UNKNOWN, error="read_timeout", message="timeout")])
    _run_attempt(attempt_id, deps, gateway)
    assert row(db_session, PaymentAttempt, attempt_id).status == "unknown"
    clock.advance(timedelta(minutes=1))
    return body, attempt_id, gateway


def authorizations_sent(gateway: ScriptedGateway) -> int:
    return [call[0] for call in gateway.calls].count("authorize")


# -- authorizations ----------------------------------------------------------------------------------------

def test_a_lookup_that_could_not_tell_sends_nothing_and_the_attempt_stays_unknown(db_session, scope, deps, clock):
    body, attempt_id, gateway = ambiguous(db_session, scope, deps, clock)
    # The acquirer that holds it is rate limited; the other one has none. Before, "429" read as "absent"
    # and the authorization was sent again, failing over to the other acquirer: a second charge.
    gateway.retrieve_results = [RATE_LIMITED, Lookup.absent("sandbox_b", "no such authorization")]
    _run_attempt(attempt_id, deps, gateway)
    assert authorizations_sent(gateway) == 1
    assert [c[1] for c in gateway.calls if c[0] == "retrieve"] == ["sandbox", "sandbox_b"]  # every connector
    attempt = row(db_session, PaymentAttempt, attempt_id)
    assert attempt.status == "unknown" and attempt.next_attempt_at > clock.now and attempt.attention_since is None
    assert row(db_session, Payment, body["id"]).status == "processing"

    clock.advance(timedelta(minutes=1))
    gateway.retrieve_results = [Lookup.of(PspResult(Outcome.SUCCEEDED, "sandbox", "auth_1", status="authorized"))]
    _run_attempt(attempt_id, deps, gateway)
    assert authorizations_sent(gateway) == 1
    payment = row(db_session, Payment, body["id"])
    assert (payment.status, payment.psp_reference, payment.amount_received) == ("succeeded", "auth_1", 1000)
    assert_ledger_balanced(db_session, scope)


def test_sent_again_only_when_every_connector_says_it_has_none(db_session, scope, deps, clock):
    body, attempt_id, gateway = ambiguous(db_session, scope, deps, clock)
    _run_attempt(attempt_id, deps, gateway)  # unscripted lookups: absent at both acquirers
    assert [c[0] for c in gateway.calls] == ["authorize", "retrieve", "retrieve", "authorize", "capture"]
    # The same attempt, the same key: the PSP would replay rather than charge twice anyway.
    assert {request.idempotency_key for request in gateway.authorize_requests} == {f"kassa-{attempt_id}"}
    assert row(db_session, Payment, body["id"]).status == "succeeded"


def test_found_at_one_connector_decides_even_if_another_could_not_tell(db_session, scope, deps, clock):
    body, attempt_id, gateway = ambiguous(db_session, scope, deps, clock)
    gateway.retrieve_results = [RATE_LIMITED, Lookup.of(PspResult(Outcome.SUCCEEDED, "sandbox_b", "auth_b",
                                                                  status="authorized"))]
    _run_attempt(attempt_id, deps, gateway)
    assert authorizations_sent(gateway) == 1
    payment = row(db_session, Payment, body["id"])
    assert (payment.status, payment.connector) == ("succeeded", "sandbox_b")


@pytest.mark.parametrize("lookup", [RATE_LIMITED, Lookup.absent("sandbox", "no such authorization"),
                                    Lookup.unknown("sandbox", "auth", "HTTP 401"),
                                    Lookup.unknown("sandbox", "circuit_open", "breaker open")])
def test_a_known_authorization_is_never_failed_by_a_lookup_that_did_not_find_it(db_session, scope, deps, clock,
                                                                               lookup):
    # The PSP gave us its reference (Stripe stores the PaymentIntent id before confirming), then timed out.
    body = create(db_session, scope, deps)
    attempt_id = body["attempts"][0]["id"]
    gateway = ScriptedGateway(authorize_results=[result(Outcome.UNKNOWN, psp_reference="pi_1", error="read_timeout")])
    _run_attempt(attempt_id, deps, gateway)
    clock.advance(timedelta(minutes=1))
    gateway.retrieve_results = [lookup]
    _run_attempt(attempt_id, deps, gateway)
    assert gateway.calls[-1] == ("retrieve", "sandbox", "pi_1", None)
    assert authorizations_sent(gateway) == 1
    assert row(db_session, PaymentAttempt, attempt_id).status == "unknown"
    payment = row(db_session, Payment, body["id"])
    assert payment.status == "processing" and payment.last_error is None


def test_a_rate_limited_poll_of_a_3ds_authorization_does_not_fail_it(db_session, scope, deps, clock):
    body = create(db_session, scope, deps)
    attempt_id = body["attempts"][0]["id"]
    gateway = ScriptedGateway(authorize_results=[PspResult(Outcome.REQUIRES_ACTION, "sandbox", "auth_3ds",
                                                           status="requires_action", action_url="https://x")])
    _run_attempt(attempt_id, deps, gateway)
    clock.advance(timedelta(minutes=2))
    gateway.retrieve_results = [RATE_LIMITED]
    _run_attempt(attempt_id, deps, gateway)
    attempt = row(db_session, PaymentAttempt, attempt_id)
    assert attempt.status == "requires_action" and attempt.next_attempt_at > clock.now
    assert row(db_session, Payment, body["id"]).status == "requires_action"  # before: requires_payment_method
    clock.advance(timedelta(minutes=2))
    gateway.retrieve_results = [Lookup.of(PspResult(Outcome.SUCCEEDED, "sandbox", "auth_3ds", status="authorized"))]
    _run_attempt(attempt_id, deps, gateway)
    assert row(db_session, Payment, body["id"]).status == "succeeded"


# -- refunds -----------------------------------------------------------------------------------------------

def pending_refund(db_session, scope, deps, clock, amount=400) -> tuple[dict, dict, ScriptedGateway]:
    """A captured payment with a refund the PSP accepted as pending (it answers later)."""
    body = create(db_session, scope, deps)
    _run_attempt(body["attempts"][0]["id"], deps, ScriptedGateway())
    created = refund(db_session, scope, deps, payment=body["id"], amount=amount)
    gateway = ScriptedGateway(refund_results=[PspResult(Outcome.PENDING, "sandbox", "rf_1", status="pending")])
    _run_refund(created["id"], deps, gateway)
    assert row(db_session, Refund, created["id"]).psp_reference == "rf_1"
    return body, created, gateway


def test_a_rate_limited_refund_status_query_keeps_it_pending_and_the_amount_set_aside(db_session, scope, deps,
                                                                                    clock):
    body, created, gateway = pending_refund(db_session, scope, deps, clock, amount=1000)
    # Long pending: many status queries already. Before, the next one rate limited marked it failed.
    db_session.execute(Refund.__table__.update().where(Refund.id == created["id"])
                       .values(tries=processing.REFUND_MAX_TRIES))
    db_session.commit()
    clock.advance(timedelta(minutes=5))
    gateway.refund_lookups = [RATE_LIMITED]
    _run_refund(created["id"], deps, gateway)
    pending = row(db_session, Refund, created["id"])
    assert pending.status == "pending" and pending.failure_code is None and pending.next_attempt_at > clock.now
    with pytest.raises(AmountTooLarge):  # the amount stays set aside: it cannot be refunded twice
        refund(db_session, scope, deps, payment=body["id"])

    clock.advance(timedelta(minutes=5))
    _run_refund(created["id"], deps, gateway)  # the status query works again: succeeded
    assert row(db_session, Refund, created["id"]).status == "succeeded"
    assert [c[0] for c in gateway.calls].count("refund") == 1
    assert row(db_session, Payment, body["id"]).amount_refunded == 1000
    assert event_types(db_session, scope, created["id"]) == ["refund.created", "refund.succeeded"]
    assert ledger_balances(db_session, scope)["psp_receivable:sandbox:USD"] == 0
    assert_ledger_balanced(db_session, scope)


def test_a_refund_the_psp_no_longer_finds_stays_pending(db_session, scope, deps, clock):
    _, created, gateway = pending_refund(db_session, scope, deps, clock)
    clock.advance(timedelta(minutes=5))
    gateway.refund_lookups = [Lookup.absent("sandbox", "no such refund")]
    _run_refund(created["id"], deps, gateway)
    assert row(db_session, Refund, created["id"]).status == "pending"


# -- needs attention ---------------------------------------------------------------------------------------

def test_an_attempt_without_an_answer_for_too_long_needs_attention_until_the_answer(db_session, scope, deps, clock):
    body, attempt_id, gateway = ambiguous(db_session, scope, deps, clock)
    gateway.retrieve_results = [RATE_LIMITED, RATE_LIMITED]
    _run_attempt(attempt_id, deps, gateway)
    assert row(db_session, PaymentAttempt, attempt_id).attention_since is None  # a few minutes: not yet
    started = row(db_session, PaymentAttempt, attempt_id).started_at

    clock.now = started + timedelta(minutes=30)
    gateway.retrieve_results = [RATE_LIMITED, RATE_LIMITED]
    _run_attempt(attempt_id, deps, gateway)
    attempt = row(db_session, PaymentAttempt, attempt_id)
    assert attempt.status == "unknown" and attempt.attention_since == clock.now
    assert "authorize" in attempt.attention_reason and "rate_limited" in attempt.attention_reason
    assert attempt.next_attempt_at > clock.now  # still asked about
    listed = attention.needing_attention(db_session, scope)
    assert [(i.kind, i.id, i.payment_id, i.operation) for i in listed] == [
        ("attempt", attempt_id, body["id"], "authorize")]
    assert attempt_id in [i.id for i in attention.needing_attention(db_session)]  # the operators' view
    marked = db_session.scalars(attention.payment_ids_needing_attention(scope)).all()
    assert marked == [body["id"]]
    shown = payment_object(db_session, row(db_session, Payment, body["id"]))["attempts"][0]["attention"]
    assert shown["reason"] == attempt.attention_reason and shown["since"] == int(clock.now.timestamp())

    since = clock.now
    clock.advance(timedelta(minutes=10))
    gateway.retrieve_results = [RATE_LIMITED, RATE_LIMITED]
    _run_attempt(attempt_id, deps, gateway)
    assert row(db_session, PaymentAttempt, attempt_id).attention_since == since  # marked once, kept

    clock.advance(timedelta(minutes=10))
    gateway.retrieve_results = [Lookup.of(PspResult(Outcome.SUCCEEDED, "sandbox", "auth_1", status="authorized"))]
    _run_attempt(attempt_id, deps, gateway)
    attempt = row(db_session, PaymentAttempt, attempt_id)
    assert (attempt.status, attempt.attention_reason, attempt.attention_since) == ("succeeded", None, None)
    assert attention.needing_attention(db_session, scope) == []


def test_a_refund_without_an_answer_for_too_long_needs_attention_until_the_answer(db_session, scope, deps, clock):
    _, created, gateway = pending_refund(db_session, scope, deps, clock)
    clock.advance(timedelta(minutes=31))
    gateway.refund_lookups = [PspResult(Outcome.PENDING, "sandbox", "rf_1", status="pending")]
    _run_refund(created["id"], deps, gateway)
    marked = row(db_session, Refund, created["id"])
    assert marked.status == "pending" and marked.attention_since == clock.now
    assert "still reports it pending" in marked.attention_reason
    assert refund_object(marked)["attention"]["reason"] == marked.attention_reason
    assert [i.kind for i in attention.needing_attention(db_session, scope)] == ["refund"]

    clock.advance(timedelta(minutes=5))
    _run_refund(created["id"], deps, gateway)  # unscripted: found succeeded
    done = row(db_session, Refund, created["id"])
    assert (done.status, done.attention_since, refund_object(done)["attention"]) == ("succeeded", None, None)


# -- past the PSP's idempotency window ---------------------------------------------------------------------

def unknown_capture(db_session, scope, deps, clock) -> tuple[dict, str, ScriptedGateway]:
    """An authorized manual-capture payment whose capture timed out once."""
    body = create(db_session, scope, deps, capture_method="manual")
    _run_attempt(body["attempts"][0]["id"], deps, ScriptedGateway())
    captured = idempotency.execute(db_session, scope, "payment.capture", {"payment": body["id"]}, key=None,
                                   deps=deps, path="/test").body
    capture_id = next(a["id"] for a in captured["attempts"] if a["operation"] == "capture")
    gateway = ScriptedGateway(window=timedelta(hours=24),
                              capture_results=[result(Outcome.UNKNOWN, error="read_timeout")])
    _run_attempt(capture_id, deps, gateway)
    assert row(db_session, PaymentAttempt, capture_id).status == "unknown"
    return body, capture_id, gateway


def test_a_capture_retried_within_the_window_is_sent_again_with_its_key(db_session, scope, deps, clock):
    body, capture_id, gateway = unknown_capture(db_session, scope, deps, clock)
    clock.advance(timedelta(hours=23))
    _run_attempt(capture_id, deps, gateway)
    assert [c[0] for c in gateway.calls] == ["capture", "capture"]
    assert row(db_session, Payment, body["id"]).status == "succeeded"


@pytest.mark.parametrize(("status", "sent", "attempt_status", "payment_status"), [
    ("captured", False, "succeeded", "succeeded"),      # it did happen: booked, not sent again
    ("authorized", True, "succeeded", "succeeded"),     # it did not: sent now (the PSP forgot the key)
    ("voided", False, "declined", "requires_capture"),  # nothing to capture any more
])
def test_a_capture_retried_past_the_window_looks_up_first(db_session, scope, deps, clock, status, sent,
                                                          attempt_status, payment_status):
    body, capture_id, gateway = unknown_capture(db_session, scope, deps, clock)
    clock.advance(timedelta(hours=25))
    gateway.retrieve_results = [PspResult(Outcome.SUCCEEDED, "sandbox", "auth_x", status=status, amount=1000)]
    _run_attempt(capture_id, deps, gateway)
    assert gateway.calls[1][0] == "retrieve" and gateway.calls[1][2] is not None  # by the authorization's id
    assert [c[0] for c in gateway.calls].count("capture") == (2 if sent else 1)
    assert row(db_session, PaymentAttempt, capture_id).status == attempt_status
    payment = row(db_session, Payment, body["id"])
    assert payment.status == payment_status
    assert payment.amount_received == (1000 if payment_status == "succeeded" else 0)
    assert_ledger_balanced(db_session, scope)


def test_a_capture_past_the_window_whose_lookup_cannot_tell_stays_unknown(db_session, scope, deps, clock):
    _, capture_id, gateway = unknown_capture(db_session, scope, deps, clock)
    clock.advance(timedelta(hours=25))
    gateway.retrieve_results = [RATE_LIMITED]
    _run_attempt(capture_id, deps, gateway)
    assert [c[0] for c in gateway.calls] == ["capture", "retrieve"]
    attempt = row(db_session, PaymentAttempt, capture_id)
    assert attempt.status == "unknown" and attempt.attention_since == clock.now  # a day without an answer


def unknown_refund(db_session, scope, deps) -> tuple[dict, ScriptedGateway]:
    body = create(db_session, scope, deps)
    _run_attempt(body["attempts"][0]["id"], deps, ScriptedGateway())
    created = refund(db_session, scope, deps, payment=body["id"], amount=300)
    gateway = ScriptedGateway(window=timedelta(hours=24), refund_results=[result(Outcome.UNKNOWN, error="read_timeout")])
    _run_refund(created["id"], deps, gateway)
    return created, gateway


@pytest.mark.parametrize(("found", "refunds_sent", "status"), [
    (PspResult(Outcome.SUCCEEDED, "sandbox", "rf_found", status="succeeded", amount=300), 1, "succeeded"),
    (Lookup.absent("sandbox", "no such refund"), 2, "succeeded"),
    (RATE_LIMITED, 1, "pending"),
])
def test_a_refund_retried_past_the_window_looks_up_first(db_session, scope, deps, clock, found, refunds_sent, status):
    created, gateway = unknown_refund(db_session, scope, deps)
    clock.advance(timedelta(hours=25))
    gateway.find_refund_results = [found]
    _run_refund(created["id"], deps, gateway)
    assert [c[0] for c in gateway.calls][:2] == ["refund", "find_refund"]
    assert gateway.calls[1][2] == f"kassa-{created['id']}"  # found by the key it was sent with
    assert [c[0] for c in gateway.calls].count("refund") == refunds_sent
    assert row(db_session, Refund, created["id"]).status == status
    assert_ledger_balanced(db_session, scope)


def test_a_refund_retried_within_the_window_is_sent_again_without_a_lookup(db_session, scope, deps, clock):
    created, gateway = unknown_refund(db_session, scope, deps)
    clock.advance(timedelta(hours=1))
    _run_refund(created["id"], deps, gateway)
    assert [c[0] for c in gateway.calls] == ["refund", "refund"]
    assert db_session.scalar(select(Refund.status).where(Refund.id == created["id"])) == "succeeded"


def test_the_attention_threshold_comes_from_the_configuration(app):
    from app.payments.deps import DEFAULT_ATTENTION_AFTER, deps_from_app

    assert deps_from_app(app).attention_after == DEFAULT_ATTENTION_AFTER == timedelta(minutes=30)
    app.config["PSP_UNKNOWN_ATTENTION_AFTER"] = "600"
    try:
        assert deps_from_app(app).attention_after == timedelta(minutes=10)
    finally:
        del app.config["PSP_UNKNOWN_ATTENTION_AFTER"]
