"""The Stripe connector's disputes against Stripe's own example objects (/work/shared/fixtures/stripe/): the
charge.dispute.* events mapped (statuses, reasons, deadline, the money its balance transactions report, amounts
converted with Stripe's currency rules), evidence submitted with its files uploaded to Stripe, acceptance, lookups;
and a Stripe dispute notice booked end to end through /hooks/stripe."""
import hashlib
import hmac
import json
import time

import pytest

from app.disputes.models import Dispute
from app.jobs.disputes import run_action
from app.payments.models import Payment
from app.psp.interfaces import EvidenceFile, LookupOutcome, Outcome
from app.psp.stripe_connector import StripeConnector
from tests.disputes.helpers import books, captured, deps, verify_ledger
from tests.psp.fake_stripe import FakeStripe, stripe_fixture

WEBHOOK_SECRET = "whsec_disputes_test"


@pytest.fixture
def fake():
    server = FakeStripe()
    yield server
    server.close()


@pytest.fixture
def stripe(fake):
    # 1 s timeouts: the fake answers at once; anything slower is a hang.
    connector = StripeConnector(api_key="sk_test_disputes", webhook_secret=WEBHOOK_SECRET, connect_timeout=1,
                                read_timeout=1, api_base=fake.url)
    yield connector
    connector.close()


def dispute(**overrides) -> dict:
    """Stripe's example Dispute, with our ids."""
    body = stripe_fixture("dispute")
    body.update({"id": "dp_stripe_1", "payment_intent": "pi_disputed", "status": "needs_response",
                 "reason": "fraudulent", "amount": 5000, "currency": "usd"})
    body.update(overrides)
    return body


def movement(amount: int, fee: int, category: str, currency: str = "usd") -> dict:
    """Stripe's example BalanceTransaction as a dispute's movement."""
    bt = stripe_fixture("balance_transaction")
    bt.update({"amount": amount, "fee": fee, "net": amount - fee, "currency": currency, "type": "adjustment",
               "reporting_category": category, "source": "dp_stripe_1"})
    return bt


def signed(event_type: str, obj: dict, event_id: str) -> tuple[dict, bytes]:
    event = stripe_fixture("event")
    event.update({"id": event_id, "type": event_type, "created": int(time.time()), "livemode": False,
                  "data": {"object": obj}})
    body = json.dumps(event).encode()
    timestamp = int(time.time())
    digest = hmac.new(WEBHOOK_SECRET.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return {"Stripe-Signature": f"t={timestamp},v1={digest}"}, body


def test_dispute_events_are_mapped(stripe):
    opened = dispute(balance_transactions=[movement(-5000, 1500, "dispute")])
    event = stripe.parse_callback(*signed("charge.dispute.created", opened, "evt_d1"))
    assert (event.type, event.psp_reference) == ("dispute.created", "pi_disputed")
    data = event.data
    assert (data["id"], data["amount"], data["currency"], data["status"], data["reason"]) == (
        "dp_stripe_1", 5000, "USD", "needs_response", "fraudulent")
    assert (data["due_by"], data["submission_count"]) == (1723679999, 0)  # the fixture's evidence_details
    assert (data["funds_withdrawn"], data["funds_reinstated"], data["fee"], data["fee_returned"]) == (
        True, False, {"amount": 1500, "currency": "USD"}, None)

    # Stripe's example as it is: an inquiry, nothing withdrawn.
    inquiry = stripe.parse_callback(*signed("charge.dispute.created", stripe_fixture("dispute"), "evt_d2")).data
    assert (inquiry["status"], inquiry["funds_withdrawn"], inquiry["fee"], inquiry["is_charge_refundable"]) == (
        "warning_needs_response", False, None, True)

    reinstated = dispute(status="won", balance_transactions=[movement(-5000, 1500, "dispute"),
                                                             movement(5000, -1500, "dispute_reversal")])
    event = stripe.parse_callback(*signed("charge.dispute.funds_reinstated", reinstated, "evt_d3"))
    assert event.type == "dispute.funds_reinstated"
    assert (event.data["funds_reinstated"], event.data["fee_returned"]) == (True, {"amount": 1500, "currency": "USD"})
    for stripe_type, kassa_type in (("charge.dispute.updated", "dispute.updated"),
                                    ("charge.dispute.closed", "dispute.closed"),
                                    ("charge.dispute.funds_withdrawn", "dispute.funds_withdrawn")):
        assert stripe.parse_callback(*signed(stripe_type, opened, f"evt_{kassa_type}")).type == kassa_type


def test_amounts_follow_stripes_currency_rules(stripe):
    # Stripe writes ISK with two decimals (150000 is 1,500 ISK), Kassa in ISO minor units (ISK has none).
    isk = dispute(amount=150000, currency="isk", balance_transactions=[movement(-150000, 150000, "dispute", "isk")])
    data = stripe.parse_callback(*signed("charge.dispute.created", isk, "evt_isk")).data
    assert (data["amount"], data["currency"], data["fee"]) == (1500, "ISK", {"amount": 1500, "currency": "ISK"})


def test_evidence_is_submitted_with_its_files_uploaded_to_stripe(fake, stripe):
    uploaded = stripe_fixture("file")
    uploaded.update({"id": "file_stripe_receipt", "purpose": "dispute_evidence", "type": "pdf"})
    fake.answer("POST", "/v1/files", (200, uploaded))
    answered = dispute(status="under_review", evidence_details={"due_by": 1723679999, "has_evidence": True,
                                                                "past_due": False, "submission_count": 1})
    fake.answer("POST", "/v1/disputes/dp_stripe_1", (200, answered))
    result = stripe.submit_dispute_evidence(
        "dp_stripe_1", {"uncategorized_text": "Signed for on delivery", "customer_name": "Ann"},
        [EvidenceFile("receipt", "file_kassa_1", "pdf", 9, "ab", b"%PDF-1.7 receipt")], "kassa-dsp_1-submit-1")
    assert result.outcome == Outcome.SUCCEEDED and result.raw["status"] == "under_review"
    assert result.raw["submission_count"] == 1
    upload, update = fake.requests
    assert (upload.method, upload.path, upload.fields["purpose"]) == ("POST", "/v1/files", "dispute_evidence")
    assert upload.files["file"] == ("file_kassa_1.pdf", b"%PDF-1.7 receipt")
    assert upload.headers["Idempotency-Key"] == "kassa-dsp_1-submit-1:file:file_kassa_1"
    assert update.fields == {"evidence[uncategorized_text]": "Signed for on delivery", "evidence[customer_name]": "Ann",
                             "evidence[receipt]": "file_stripe_receipt", "submit": "true"}
    assert update.headers["Idempotency-Key"] == "kassa-dsp_1-submit-1:submit"


def test_a_refused_submission_and_acceptance_and_lookups(fake, stripe):
    fake.answer("POST", "/v1/disputes/dp_stripe_1", (400, {"error": {
        "type": "invalid_request_error", "code": "dispute_evidence_page_limit_exceeded",
        "message": "The evidence is too long."}}))
    refused = stripe.submit_dispute_evidence("dp_stripe_1", {"uncategorized_text": "x"}, [], "kassa-k")
    assert (refused.outcome, refused.decline_code) == (Outcome.DECLINED, "dispute_evidence_page_limit_exceeded")

    fake.answer("POST", "/v1/disputes/dp_stripe_1/close", (200, dispute(status="lost")))
    closed = stripe.close_dispute("dp_stripe_1", "kassa-close")
    assert closed.outcome == Outcome.SUCCEEDED and closed.raw["status"] == "lost"
    assert fake.requests[-1].headers["Idempotency-Key"] == "kassa-close"

    fake.answer("GET", "/v1/disputes/dp_stripe_1", (200, dispute(status="under_review")))
    found = stripe.retrieve_dispute("dp_stripe_1")
    assert found.outcome == LookupOutcome.FOUND and found.found.raw["status"] == "under_review"
    fake.answer("GET", "/v1/disputes/dp_stripe_1", (500, {"error": {"type": "api_error", "message": "down"}}))
    assert stripe.retrieve_dispute("dp_stripe_1").outcome == LookupOutcome.UNKNOWN  # could not ask: never "absent"


@pytest.fixture(scope="module")
def app(database):
    """The disputes tests' app, with the platform's Stripe webhook secret."""
    from app import create_app
    from app.extensions import db
    from tests.conftest import app_config

    application = create_app(app_config(database, CONFIRM_WAIT_SECONDS=0, STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET))
    with application.app_context():
        application.extensions["redis"].flushdb()
    yield application
    with application.app_context():
        db.session.remove()
        db.engine.dispose()


def test_a_stripe_dispute_is_booked_and_answered_through_stripe(app, client, db_session, shop, fake, stripe):
    scope = shop["scope"]
    payment = captured(db_session, scope, amount=5000)
    row = scope.get(db_session, Payment, payment["id"])
    row.connector, row.psp_reference = "stripe", "pi_disputed"  # as if Stripe had captured it
    db_session.commit()
    # Kassa books what Stripe's balance transactions say, whatever the capture's connector was called here.
    due_by = int(time.time()) + 7 * 86400
    headers, body = signed("charge.dispute.created", dispute(
        balance_transactions=[movement(-5000, 1500, "dispute")],
        evidence_details={"due_by": due_by, "has_evidence": False, "past_due": False, "submission_count": 0}),
        "evt_booked")
    assert client.post("/hooks/stripe", data=body, headers={**headers, "Content-Type": "application/json"}
                       ).status_code == 200
    assert client.post("/hooks/stripe", data=body, headers={**headers, "Content-Type": "application/json"}
                       ).json["duplicate"] is True
    recorded = db_session.scalars(scope.select(Dispute)).one()
    assert (recorded.psp, recorded.connector, recorded.status, recorded.amount) == ("stripe", "stripe",
                                                                                   "needs_response", 5000)
    db_session.commit()
    held = books(db_session, scope)
    # The merchant has no sellers of its own: its default seller bears the fee (app/payouts/fees.py).
    from app.payments.service import default_seller_id
    assert held.get(f"seller_payable:{default_seller_id(db_session, scope)}:USD") == -1500
    assert held.get("dispute_fees:USD") == 0 and held.get("psp_receivable:stripe:USD") == -6500
    verify_ledger(app)

    # The merchant submits; the worker sends it through Stripe.
    auth = {"Authorization": f"Bearer {shop['key']}"}
    submitted = client.post(f"/v1/disputes/{recorded.id}", headers=auth,
                            json={"evidence": {"uncategorized_text": "Delivered"}, "submit": True})
    assert submitted.status_code == 200, submitted.json
    fake.answer("POST", "/v1/disputes/dp_stripe_1", (200, dispute(
        status="under_review", evidence_details={"due_by": due_by, "has_evidence": True, "past_due": False,
                                                 "submission_count": 1},
        balance_transactions=[movement(-5000, 1500, "dispute")])))
    assert run_action(scope, recorded.id, deps(), _Router(stripe)) == "succeeded"
    assert client.get(f"/v1/disputes/{recorded.id}", headers=auth).json["status"] == "under_review"
    assert fake.requests[-1].fields["evidence[uncategorized_text]"] == "Delivered"


class _Router:
    """The router's dispute calls straight to one connector (the real router adds retries and breakers)."""

    def __init__(self, connector):
        self.connector = connector

    def submit_dispute_evidence(self, name, reference, evidence, files, key, **owner):
        return self.connector.submit_dispute_evidence(reference, evidence, files, key)

    def close_dispute(self, name, reference, key, **owner):
        return self.connector.close_dispute(reference, key)

    def retrieve_dispute(self, name, reference, **owner):
        return self.connector.retrieve_dispute(reference)
