"""/hooks/sandbox and /hooks/stripe through the Flask test client: signatures checked first (wrong, stale,
missing are refused), every callback stored once (deduplicated by PSP callback id), mapped to its
merchant, disputes recorded, events written, failures retried by the sweep."""
import hashlib
import hmac
import json
import time
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from app.events import Event
from app.models_base import utcnow
from app.payments.deps import deps_for
from app.psp import callbacks as psp_callbacks
from app.psp.credentials import set_credentials
from app.psp.interfaces import CallbackEvent
from app.crypto import SecretBox
from app.disputes import service as disputes
from app.disputes.callbacks import known_dispute_owner
from app.disputes.models import Dispute
from app.jobs.psp import process_stored_callback
from app.psp.models import PspCallback
from app.scoping import Scope
from tests import factories
from tests.psp.conftest import STRIPE_WEBHOOK_SECRET, WEBHOOK_SECRET
from tests.psp.fake_stripe import payment_intent, stripe_fixture

DAY = 86400


def sandbox_signature(body: bytes, secret: str = WEBHOOK_SECRET, timestamp: int | None = None) -> str:
    timestamp = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def post_hook(client, body: bytes, signature: str | None, path: str = "/hooks/sandbox", header="Sandbox-Signature"):
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers[header] = signature
    return client.post(path, data=body, headers=headers)


def count(db_session, model, *criteria) -> int:
    db_session.rollback()  # read what the views committed
    return db_session.scalar(select(func.count()).select_from(model).where(*criteria))


@pytest.fixture
def owners(monkeypatch):
    """A reference -> merchant map, registered the way payments registers its resolver (after disputes')."""
    mapping: dict[str, psp_callbacks.CallbackOwner] = {}

    def resolve(session, scope, event):
        return mapping.get(event.psp_reference)

    monkeypatch.setattr(psp_callbacks, "REFERENCE_RESOLVERS", [known_dispute_owner, resolve])
    return mapping


@pytest.fixture
def handlers(monkeypatch):
    """CALLBACK_HANDLERS of this test only (and the disputes' own, which record disputes)."""
    registry: dict = {t: h for t, h in psp_callbacks.CALLBACK_HANDLERS.items() if t.startswith("dispute.")}
    monkeypatch.setattr(psp_callbacks, "CALLBACK_HANDLERS", registry)
    return registry


def approved_challenge(sbx) -> dict:
    """A 3-D Secure authorization approved by the shopper: the sandbox sends authorization.updated."""
    token = sbx.tokenize("4000000000003220")["id"]
    auth = sbx.a.authorize(token, reference="att_3ds").json()
    answer = sbx.public.post(auth["action_url"], data={"result": "approve"}, allow_redirects=False)
    assert answer.status_code == 200  # no return_url: the sandbox's own result page
    return auth


def test_real_sandbox_callback_is_accepted_once_and_deduplicated(sbx, client, db_session, merchant, owners,
                                                                  handlers):
    auth = approved_challenge(sbx)
    headers, payload, raw = sbx.receiver.wait_for("authorization.updated")[0]
    owners[auth["id"]] = psp_callbacks.CallbackOwner(merchant.id, False, "payment", "pay_test_1")
    seen = []
    handlers["authorization.updated"] = lambda session, event, owner: seen.append(event)

    first = post_hook(client, raw, headers["Sandbox-Signature"])
    assert first.status_code == 200 and first.json == {"received": True, "duplicate": False}
    again = post_hook(client, raw, headers["Sandbox-Signature"])  # the sandbox retrying
    assert again.status_code == 200 and again.json == {"received": True, "duplicate": True}

    assert len(seen) == 1
    event = seen[0]
    assert event.id == payload["id"] and event.type == "authorization.updated"
    assert event.psp_reference == auth["id"] and event.connector == "sandbox"
    assert event.data["status"] == "authorized"
    assert count(db_session, PspCallback, PspCallback.callback_id == payload["id"]) == 1
    row = db_session.scalars(select(PspCallback).where(PspCallback.callback_id == payload["id"])).one()
    assert row.result == "applied" and row.merchant_id == merchant.id and row.processed_at is not None
    events = db_session.scalars(Scope(merchant.id, False).select(Event, Event.object_id == row.id)).all()
    assert [e.type for e in events] == ["psp.authorization.updated"]
    assert events[0].data["related_object"] == {"type": "payment", "id": "pay_test_1"}
    assert row.event_id == events[0].id


@pytest.mark.parametrize("case", ["wrong_secret", "tampered", "stale", "future", "missing", "malformed"])
def test_wrong_stale_or_missing_signatures_are_rejected(client, db_session, case):
    body = json.dumps({"id": f"cb_{case}", "type": "authorization.updated", "created": int(time.time()),
                       "data": {"id": "auth_x", "status": "authorized"}}).encode()
    # A minute's margin either side of the 300 s tolerance: a loaded machine may take seconds to verify.
    now = int(time.time())
    signature = {
        "wrong_secret": sandbox_signature(body, "not-the-secret"),
        "tampered": sandbox_signature(body),
        "stale": sandbox_signature(body, timestamp=now - 360),
        "future": sandbox_signature(body, timestamp=now + 360),
        "missing": None,
        "malformed": "v1=abc",
    }[case]
    if case == "tampered":
        body = body.replace(b'"authorized"', b'"declined"')
    response = post_hook(client, body, signature)
    assert response.status_code == 400
    assert response.json["error"]["code"] == "signature_invalid"
    assert count(db_session, PspCallback, PspCallback.callback_id == f"cb_{case}") == 0


def test_a_right_signature_within_tolerance_is_accepted(client, db_session, owners, handlers):
    body = json.dumps({"id": "cb_ok_signed", "type": "authorization.updated", "created": int(time.time()),
                       "data": {"id": "auth_unknown", "status": "authorized", "acquirer": "sandbox_b"}}).encode()
    response = post_hook(client, body, sandbox_signature(body, timestamp=int(time.time()) - 240))
    assert response.status_code == 200
    row = db_session.scalars(select(PspCallback).where(PspCallback.callback_id == "cb_ok_signed")).one()
    # Nobody owns auth_unknown: stored and marked, no event.
    assert row.result == "unmatched" and row.merchant_id is None and row.connector == "sandbox_b"
    assert row.event_id is None


def test_disputes_are_recorded_with_their_merchant_and_become_events(app, sbx, client, db_session, merchant, owners,
                                                                     handlers):
    auth = sbx.captured("4000000000000259", amount=4200)
    # The sandbox's dispute object does not name the acquirer: the owner (the payment) does.
    owners[auth["id"]] = psp_callbacks.CallbackOwner(merchant.id, False, "payment", "pay_disputed", "sandbox")
    sbx.admin("/_admin/clock", {"advance_seconds": DAY})
    headers, created, raw = sbx.receiver.wait_for("dispute.created")[0]
    assert post_hook(client, raw, headers["Sandbox-Signature"]).status_code == 200

    scope = Scope(merchant.id, False)
    dispute = db_session.scalars(scope.select(Dispute)).one()
    assert dispute.psp == "sandbox" and dispute.connector == "sandbox"
    assert dispute.psp_reference == created["data"]["id"] and dispute.authorization_reference == auth["id"]
    assert (dispute.amount, dispute.currency, dispute.reason, dispute.status) == (4200, "USD", "fraudulent",
                                                                                  "needs_response")
    assert dispute.payment_id == "pay_disputed"

    sbx.admin(f"/_admin/disputes/{dispute.psp_reference}/close", {"status": "won"})
    headers, closed, raw = sbx.receiver.wait_for("dispute.closed")[0]
    assert post_hook(client, raw, headers["Sandbox-Signature"]).status_code == 200
    db_session.rollback()
    assert db_session.scalars(scope.select(Dispute)).one().status == "won"
    events = db_session.scalars(scope.select(Event, Event.object_type == "dispute").order_by(Event.id)).all()
    assert [e.type for e in events] == ["dispute.created", "dispute.closed"]
    assert events[1].data["status"] == "won" and events[1].object_id == dispute.id

    # A late copy of an older callback never reopens the dispute.
    stale = psp_callbacks.as_event(db_session.scalars(
        select(PspCallback).where(PspCallback.callback_id == created["id"])).one())
    disputes.apply_notice(db_session, "sandbox", stale, disputes.Owner(scope, None, None), deps_for(app))
    assert db_session.scalars(scope.select(Dispute)).one().status == "won"
    db_session.rollback()


def test_a_failing_handler_is_acknowledged_and_retried_by_the_sweep(client, db_session, merchant, owners, handlers):
    owners["auth_flaky"] = psp_callbacks.CallbackOwner(merchant.id, False)
    failures = ["boom"]

    def flaky(session, event, owner):
        if failures:
            raise RuntimeError(failures.pop())

    handlers["authorization.updated"] = flaky
    body = json.dumps({"id": "cb_flaky", "type": "authorization.updated", "created": int(time.time()),
                       "data": {"id": "auth_flaky", "status": "authorized"}}).encode()
    assert post_hook(client, body, sandbox_signature(body)).status_code == 200  # durable, so acknowledged

    db_session.rollback()
    row = db_session.scalars(select(PspCallback).where(PspCallback.callback_id == "cb_flaky")).one()
    assert row.processed_at is None and row.attempts == 1 and "boom" in row.last_error
    assert row.next_attempt_at > utcnow()
    assert count(db_session, Event, Event.merchant_id == merchant.id) == 0  # rolled back with the failure

    assert row.id not in psp_callbacks.due_callbacks(db_session)
    due = psp_callbacks.due_callbacks(db_session, now=utcnow() + timedelta(seconds=11))
    assert row.id in due
    db_session.rollback()
    assert process_stored_callback(db_session, row.id) == "applied"
    assert process_stored_callback(db_session, row.id) is None  # processed once only
    assert count(db_session, Event, Event.merchant_id == merchant.id) == 1


def stripe_event_body(event_id: str, livemode: bool = False) -> bytes:
    event = stripe_fixture("event")
    event.update({"id": event_id, "type": "payment_intent.amount_capturable_updated", "created": int(time.time()),
                  "livemode": livemode, "data": {"object": payment_intent(status="requires_capture")}})
    return json.dumps(event).encode()


def test_stripe_platform_hook(client, db_session, owners, handlers):
    body = stripe_event_body("evt_platform_1")
    assert post_hook(client, body, sandbox_signature(body, "whsec_wrong"), "/hooks/stripe",
                     "Stripe-Signature").status_code == 400
    ok = post_hook(client, body, sandbox_signature(body, STRIPE_WEBHOOK_SECRET), "/hooks/stripe", "Stripe-Signature")
    assert ok.status_code == 200 and ok.json["duplicate"] is False
    again = post_hook(client, body, sandbox_signature(body, STRIPE_WEBHOOK_SECRET), "/hooks/stripe",
                      "Stripe-Signature")
    assert again.json["duplicate"] is True
    row = db_session.scalars(select(PspCallback).where(PspCallback.callback_id == "evt_platform_1")).one()
    assert row.psp == "stripe" and row.type == "authorization.updated" and row.psp_reference == "pi_kassa_1"


def test_a_merchant_hook_url_with_a_nul_is_not_found(client):
    response = client.post("/hooks/stripe/mer_%00", data=b"{}", headers={"Stripe-Signature": "t=1,v1=x"})
    assert response.status_code == 404 and response.json["error"]["code"] == "resource_missing"


def test_stripe_merchant_hook_uses_the_merchants_own_secret(app, client, db_session, merchant, owners, handlers):
    box = SecretBox(app.config["KASSA_ENCRYPTION_KEYS"])
    set_credentials(db_session, Scope(merchant.id, False), box, "stripe", secret_key="sk_test_m",
                    webhook_secret="whsec_merchant_test")
    db_session.commit()
    path = f"/hooks/stripe/{merchant.id}"
    body = stripe_event_body("evt_merchant_1")
    assert post_hook(client, body, sandbox_signature(body, STRIPE_WEBHOOK_SECRET), path,
                     "Stripe-Signature").status_code == 400  # the platform's secret is not the merchant's
    assert post_hook(client, body, sandbox_signature(body, "whsec_merchant_test"), path,
                     "Stripe-Signature").status_code == 200
    # A test-mode secret never vouches for a live event.
    live = stripe_event_body("evt_merchant_live", livemode=True)
    assert post_hook(client, live, sandbox_signature(live, "whsec_merchant_test"), path,
                     "Stripe-Signature").status_code == 400
    assert post_hook(client, body, sandbox_signature(body, "whsec_merchant_test"), "/hooks/stripe/mer_nobody",
                     "Stripe-Signature").status_code == 400


def test_a_card_number_in_a_callback_is_never_kept(app, client, db_session, merchant, owners, handlers):
    """A merchant's own Stripe secret signs whatever that merchant writes: a callback is one more door a card
    number could come in by (issue 14: "whoever sends them"). Stored and passed on only redacted."""
    box = SecretBox(app.config["KASSA_ENCRYPTION_KEYS"])
    set_credentials(db_session, Scope(merchant.id, False), box, "stripe", secret_key="sk_test_m",
                    webhook_secret="whsec_merchant_pan")
    db_session.commit()
    owners["pi_kassa_1"] = psp_callbacks.CallbackOwner(merchant.id, False, "payment", "pay_x")
    event = stripe_fixture("event")
    event.update({"id": "evt_pan_1", "type": "payment_intent.amount_capturable_updated", "created": int(time.time()),
                  "livemode": False, "data": {"object": payment_intent(
                      status="requires_capture", description="card 4242 4242 4242 4242",
                      metadata={"kassa_reference": "att_1", "5555555555554444": "card"})}})
    body = json.dumps(event).encode()
    response = post_hook(client, body, sandbox_signature(body, "whsec_merchant_pan"), f"/hooks/stripe/{merchant.id}",
                         "Stripe-Signature")
    assert response.status_code == 200
    db_session.rollback()
    row = db_session.scalars(select(PspCallback).where(PspCallback.callback_id == "evt_pan_1")).one()
    assert row.result == "applied"
    stored = json.dumps(row.payload) + json.dumps(db_session.get(Event, row.event_id).data)
    assert "4242" not in stored and "5555555555554444" not in stored and "[card number redacted]" in stored


# -- the scope of a callback -----------------------------------------------------------------------------

def test_every_resolvers_answer_goes_through_the_callbacks_scope(client, db_session, merchant, owners, handlers):
    """A registered resolver naming an owner outside the scope (here: live mode, for the test-only sandbox)
    gets the callback rejected: no handler, no event."""
    owners["auth_live"] = psp_callbacks.CallbackOwner(merchant.id, True, "payment", "pay_live")
    seen = []
    handlers["authorization.updated"] = lambda session, event, owner: seen.append(event)
    body = json.dumps({"id": "cb_live", "type": "authorization.updated", "created": int(time.time()),
                       "data": {"id": "auth_live", "status": "authorized"}}).encode()
    assert post_hook(client, body, sandbox_signature(body)).status_code == 200
    row = db_session.scalars(select(PspCallback).where(PspCallback.callback_id == "cb_live")).one()
    assert (row.result, row.livemode, row.verified_with, row.scope_merchant_id) == ("rejected", False, "platform",
                                                                                     None)
    assert "live mode" in row.last_error and row.merchant_id is None and row.event_id is None
    assert seen == [] and count(db_session, Event, Event.merchant_id == merchant.id) == 0


def test_a_known_dispute_keeps_its_merchant_whatever_a_resolver_says(app, db_session, merchant, owners, handlers):
    """A dispute id names its merchant: a callback about it is refused for any other scope."""
    other = factories.merchant(db_session, name="Other")
    db_session.commit()
    event = CallbackEvent(id="cb_dsp", type="dispute.updated", psp_reference="auth_d",
                          data={"id": "dp_known", "amount": 100, "currency": "usd", "status": "needs_response"},
                          created=1)
    disputes.apply_notice(db_session, "sandbox", event, disputes.Owner(Scope(merchant.id, False), None, None),
                          deps_for(app))
    owners["auth_d"] = psp_callbacks.CallbackOwner(other.id, False)
    scope = psp_callbacks.CallbackScope("sandbox", False, "platform")
    assert psp_callbacks.resolve_owner(db_session, scope, event).merchant_id == merchant.id
    merchant_scope = psp_callbacks.CallbackScope("sandbox", False, "pcr_x", other.id)
    row_id, _ = psp_callbacks.store_callback(db_session, merchant_scope, event)
    assert psp_callbacks.process_callback(db_session, row_id) == "rejected"
    assert db_session.scalars(Scope(merchant.id, False).select(Dispute)).one().status == "needs_response"
    assert db_session.scalars(Scope(other.id, False).select(Dispute)).all() == []
    db_session.rollback()


def test_a_refund_the_sandbox_fails_after_it_succeeded_is_unbooked(app, sbx, router, client, db_session, merchant,
                                                                   monkeypatch):
    """End to end with the real sandbox: capture and refund at the acquirer, the acquirer fails the refund
    later and says so in a signed refund.updated; Kassa un-books it and the ledger still verifies."""
    from app.jobs.payments import _run_attempt, _run_refund
    from app.ledger.integration import ledger_hmac_key
    from app.payments import idempotency
    from app.payments.gateway import RouterGateway
    from app.payments.models import Payment, Refund
    from tests.payments.helpers import event_types, ledger_balances, make_deps

    deps = make_deps(ledger_hmac_key=ledger_hmac_key(app))
    monkeypatch.setitem(app.extensions, "payments_deps", deps)  # what the callback handler runs with
    gateway = RouterGateway(router)
    scope = Scope(merchant.id, False)

    def run(operation, params):
        return idempotency.execute(db_session, scope, operation, params, key=None, deps=deps, path="/test").body

    payment = run("payment.create", {"amount": 2500, "currency": "USD", "payment_method": sbx.tokenize()["id"],
                                     "confirm": True})
    _run_attempt(payment["attempts"][0]["id"], deps, gateway)
    captured = ledger_balances(db_session, scope)
    refund_id = run("refund.create", {"payment": payment["id"], "amount": 1000})["id"]
    _run_refund(refund_id, deps, gateway)
    db_session.rollback()
    refund = db_session.get(Refund, refund_id)
    assert refund.status == "succeeded" and db_session.get(Payment, payment["id"]).amount_refunded == 1000

    sbx.admin(f"/_admin/refunds/{refund.psp_reference}/fail", {"failure_code": "expired_or_canceled_card"})
    headers, callback, raw = sbx.receiver.wait_for("refund.updated")[0]
    assert callback["data"]["status"] == "failed" and callback["data"]["acquirer"] == refund.connector
    assert post_hook(client, raw, headers["Sandbox-Signature"]).json == {"received": True, "duplicate": False}

    db_session.rollback()
    refund = db_session.get(Refund, refund_id)
    assert (refund.status, refund.failure_code) == ("failed", "expired_or_canceled_card")
    assert db_session.get(Payment, payment["id"]).amount_refunded == 0
    assert ledger_balances(db_session, scope) == captured
    assert event_types(db_session, scope, refund_id) == ["refund.created", "refund.succeeded", "refund.failed"]
    verified = app.test_cli_runner().invoke(args=["ledger", "verify"])
    assert verified.exit_code == 0 and "ledger OK" in verified.output, verified.output
    assert post_hook(client, raw, headers["Sandbox-Signature"]).json["duplicate"] is True
    assert event_types(db_session, scope, refund_id)[-1] == "refund.failed"
    # The acquirer too lets the amount be refunded again.
    reference = db_session.get(Payment, payment["id"]).psp_reference
    assert sbx.acquirers[refund.connector].get(f"/v1/authorizations/{reference}").json()["refunded_amount"] == 0
