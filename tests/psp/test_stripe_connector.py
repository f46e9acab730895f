"""The Stripe connector against a local server standing in for Stripe's API (the SDK's api_base points at
it): the exact requests the official library sends (form fields, Idempotency-Key), no hidden retries,
our timeouts, outcome normalization, and webhook signature verification. Live Stripe was not reachable
from the test environment (docs/psp.md)."""
import hashlib
import hmac
import json
import socket
import time
from datetime import timedelta

import httpx
import pytest

from app.psp.interfaces import AuthorizeRequest, CallbackRejected, CardToken, LookupOutcome, Outcome
from app.psp.stripe_connector import StripeConnector
from tests.psp.fake_stripe import FakeStripe, card_declined, payment_intent, payment_method, refund, stripe_fixture

API_KEY = "sk_test_kassa_merchant"
WEBHOOK_SECRET = "whsec_kassa_test"
# Long enough for a loaded CI machine (2 CPUs, parallel workers) to answer a local request; the tests that hold
# an answer past it wait this long once each.
TIMEOUT = 1.5


@pytest.fixture
def fake():
    server = FakeStripe()
    yield server
    server.close()


@pytest.fixture
def stripe_connector(fake):
    connector = StripeConnector(api_key=API_KEY, webhook_secret=WEBHOOK_SECRET, connect_timeout=TIMEOUT,
                                read_timeout=TIMEOUT, api_base=fake.url)
    yield connector
    connector.close()


def authorize_request(**extra) -> AuthorizeRequest:
    values = {"amount": 2500, "currency": "EUR", "token": "pm_card_visa", "idempotency_key": "att_1",
              "reference": "att_1", "return_url": "https://shop.example/return"}
    values.update(extra)
    return AuthorizeRequest(**values)


CREATE = ("POST", "/v1/payment_intents")
CONFIRM = ("POST", "/v1/payment_intents/pi_kassa_1/confirm")
RETRIEVE = ("GET", "/v1/payment_intents/pi_kassa_1")
# How the SDK sends expand=["payment_method"] (a list, indexed like payment_method_types).
EXPAND = ("expand[0]", "payment_method")


def test_authorize_creates_the_intent_reports_its_id_then_confirms(fake, stripe_connector):
    fake.answer(*CREATE, (200, payment_intent()))
    fake.answer(*CONFIRM, (200, payment_intent(status="requires_capture", amount_capturable=2500)))
    prepared = []
    result = stripe_connector.authorize(authorize_request(
        on_prepared=lambda connector, ref: prepared.append((connector, ref, len(fake.requests)))))

    assert result.outcome == Outcome.SUCCEEDED and result.status == "requires_capture", result
    assert result.psp_reference == "pi_kassa_1" and result.amount == 2500 and result.connector == "stripe"
    # The id was handed over after the create and before the confirm was sent.
    assert prepared == [("stripe", "pi_kassa_1", 1)]

    create, confirm = fake.requests
    assert (create.method, create.path) == CREATE
    assert create.headers["Idempotency-Key"] == "att_1:create"
    assert create.headers["Authorization"] == f"Bearer {API_KEY}"
    assert create.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert create.fields == {
        "amount": "2500", "currency": "eur", "payment_method": "pm_card_visa",
        "payment_method_types[0]": "card", "capture_method": "manual",
        "metadata[kassa_reference]": "att_1",
    }
    assert (confirm.method, confirm.path) == CONFIRM
    assert confirm.headers["Idempotency-Key"] == "att_1:confirm"
    assert confirm.fields == {"return_url": "https://shop.example/return", "expand[0]": "payment_method"}
    # The expanded PaymentMethod names the card, in the shape of the sandbox's card object.
    assert result.raw["card"] == {"brand": "visa", "last4": "4242", "exp_month": 8, "exp_year": 2030,
                                  "fingerprint": "AOB934RVNwzk6xtn"}


def test_an_intent_created_earlier_is_only_confirmed(fake, stripe_connector):
    fake.answer(*CONFIRM, (200, payment_intent(status="requires_capture")))
    result = stripe_connector.authorize(authorize_request(psp_reference="pi_kassa_1", return_url=None))
    assert result.outcome == Outcome.SUCCEEDED
    assert [(r.method, r.path) for r in fake.requests] == [CONFIRM]
    assert fake.requests[0].form == [EXPAND]


def test_card_decline_is_a_result_with_the_decline_code_and_the_card(fake, stripe_connector):
    fake.answer(*CREATE, (200, payment_intent()))
    declined_card = payment_method(id="pm_card_visa", brand="mastercard", last4="4444", exp_month=3, exp_year=2031,
                                   fingerprint="Xt5EWLLDS7FJjR1c")
    fake.answer(*CONFIRM, (402, card_declined(method=declined_card)))
    result = stripe_connector.authorize(authorize_request())
    assert result.outcome == Outcome.DECLINED and result.decline_code == "insufficient_funds"
    assert result.psp_reference == "pi_kassa_1"
    # The error carries the declined PaymentMethod: its card is what the card-testing limits count.
    assert result.raw["card"] == {"brand": "mastercard", "last4": "4444", "exp_month": 3, "exp_year": 2031,
                                  "fingerprint": "Xt5EWLLDS7FJjR1c"}
    assert result.raw["error"]["decline_code"] == "insufficient_funds"


def test_a_declined_intent_read_later_names_the_declined_card(fake, stripe_connector):
    # After a failed attempt Stripe unsets payment_method; last_payment_error keeps the PaymentMethod.
    fake.answer(*RETRIEVE, (200, card_declined()["error"]["payment_intent"]))
    result = stripe_connector.retrieve(psp_reference="pi_kassa_1").found
    assert result.outcome == Outcome.DECLINED and result.decline_code == "insufficient_funds"
    assert result.raw["card"]["fingerprint"] == "AOB934RVNwzk6xtn" and result.raw["card"]["last4"] == "4242"


def test_an_answer_without_the_payment_method_object_has_no_card(fake, stripe_connector):
    # Capture does not expand (nothing reads its card); an id alone names no card.
    fake.answer("POST", "/v1/payment_intents/pi_kassa_1/capture", (200, payment_intent(status="succeeded")))
    captured = stripe_connector.capture("pi_kassa_1", 2500, "EUR", "cap_no_card")
    assert captured.outcome == Outcome.SUCCEEDED and captured.raw["payment_method"] == "pm_card_visa"
    assert "card" not in captured.raw
    # A PaymentMethod of another kind than a card has no card facts either.
    fake.answer(*RETRIEVE, (200, payment_intent(status="requires_capture")))
    fake.payment_methods["pm_card_visa"] = {**payment_method(), "type": "sepa_debit", "card": None}
    assert "card" not in stripe_connector.retrieve(psp_reference="pi_kassa_1").found.raw


def test_card_of_reads_the_payment_method_with_the_secret_key(fake, stripe_connector):
    fake.payment_methods["pm_1Shopper"] = payment_method(id="pm_1Shopper", brand="mastercard", last4="4444",
                                                         exp_month=3, exp_year=2031, fingerprint="Xt5EWLLDS7FJjR1c")
    card = stripe_connector.card_of("pm_1Shopper")
    assert card == CardToken(token="pm_1Shopper", vault="stripe", brand="mastercard", last4="4444", exp_month=3,
                             exp_year=2031, fingerprint="Xt5EWLLDS7FJjR1c")
    [lookup] = fake.requests
    assert (lookup.method, lookup.path) == ("GET", "/v1/payment_methods/pm_1Shopper")
    assert lookup.form == [] and lookup.query == []
    assert lookup.headers["Authorization"] == f"Bearer {API_KEY}" and "Idempotency-Key" not in lookup.headers
    # A PaymentMethod of another kind than a card names no card.
    fake.payment_methods["pm_1Sepa"] = {**payment_method(id="pm_1Sepa"), "type": "sepa_debit", "card": None}
    assert stripe_connector.card_of("pm_1Sepa") is None


@pytest.mark.parametrize("answer", [
    (404, {"error": {"type": "invalid_request_error", "code": "resource_missing",
                     "message": "No such PaymentMethod: 'pm_1Other'"}}),
    (500, {"error": {"type": "api_error", "message": "Something went wrong."}}),
    (401, {"error": {"type": "invalid_request_error", "message": "Invalid API Key provided."}}),
    "hold",
])
def test_card_of_is_none_when_stripe_cannot_tell_and_asks_once(fake, stripe_connector, answer):
    if answer == "hold":
        fake.hold.clear()  # answered after our read timeout
    fake.answer("GET", "/v1/payment_methods/pm_1Other", answer)
    started = time.monotonic()
    assert stripe_connector.card_of("pm_1Other") is None
    fake.hold.set()
    assert time.monotonic() - started < TIMEOUT + 1
    assert [(r.method, r.path) for r in fake.requests] == [("GET", "/v1/payment_methods/pm_1Other")]


@pytest.mark.parametrize(("answer", "unavailable"), [
    ((404, {"error": {"type": "invalid_request_error", "code": "resource_missing",
                      "message": "No such PaymentMethod: 'pm_1Other'"}}), False),
    ((500, {"error": {"type": "api_error", "message": "Something went wrong."}}), True),
    ((429, {"error": {"type": "invalid_request_error", "code": "rate_limit", "message": "Too many requests."}}),
     True),
    ("hold", True),
])
def test_card_facts_tell_an_unknown_payment_method_from_a_stripe_that_could_not_be_asked(
        fake, stripe_connector, answer, unavailable):
    """Risk screening: "no such payment method" is an answer (None); a 5xx, a rate limit or a timeout is not
    (CardFactsUnavailable: the screening holds the payment for review)."""
    from app.psp.interfaces import CardFactsUnavailable

    if answer == "hold":
        fake.hold.clear()  # answered after our read timeout
    fake.answer("GET", "/v1/payment_methods/pm_1Other", answer)
    try:
        if unavailable:
            with pytest.raises(CardFactsUnavailable):
                stripe_connector.card_facts("pm_1Other")
        else:
            assert stripe_connector.card_facts("pm_1Other") is None
    finally:
        fake.hold.set()


def test_card_of_without_credentials_sends_nothing(fake):
    assert StripeConnector(api_key=None, api_base=fake.url).card_of("pm_1Shopper") is None
    assert fake.requests == []


def test_three_d_secure_requires_action_with_the_redirect(fake, stripe_connector):
    fake.answer(*CREATE, (200, payment_intent()))
    fake.answer(*CONFIRM, (200, payment_intent(status="requires_action", next_action={
        "type": "redirect_to_url",
        "redirect_to_url": {"url": "https://hooks.stripe.com/3d_secure_2/x",
                            "return_url": "https://shop.example/return"}})))
    result = stripe_connector.authorize(authorize_request())
    assert result.outcome == Outcome.REQUIRES_ACTION
    assert result.action_url == "https://hooks.stripe.com/3d_secure_2/x"


@pytest.mark.parametrize("status", [500, 503, 409])
def test_no_hidden_retries_and_an_ambiguous_error_is_unknown(fake, stripe_connector, status):
    fake.answer(*CREATE, (200, payment_intent()))
    fake.answer(*CONFIRM, (status, {"error": {"type": "api_error", "message": "Something went wrong."}}))
    result = stripe_connector.authorize(authorize_request())
    assert result.outcome == Outcome.UNKNOWN and result.error == "server_error" and not result.retryable
    assert result.psp_reference == "pi_kassa_1"  # retrieve resolves it
    # The library's default would have sent the confirm three times; ours sends it once.
    assert [(r.method, r.path) for r in fake.requests] == [CREATE, CONFIRM]


def test_a_rate_limit_is_not_processed_and_carries_stripes_retry_after(fake, stripe_connector):
    fake.answer(*CREATE, (429, {"error": {"type": "invalid_request_error", "code": "rate_limit",
                                          "message": "Too many requests hit the API too quickly."}},
                          {"Retry-After": "3"}))
    result = stripe_connector.authorize(authorize_request())
    assert result.outcome == Outcome.NOT_PROCESSED and result.error == "rate_limited"
    assert result.retry_after == 3.0  # the router backs this credential off for that long (app/psp/breaker.py)
    assert [(r.method, r.path) for r in fake.requests] == [CREATE]


def test_client_is_built_without_retries_and_with_our_timeouts(stripe_connector):
    requestor = stripe_connector._client._requestor
    assert requestor._options.max_network_retries == 0
    timeout = requestor._client._timeout
    assert isinstance(timeout, httpx.Timeout) and timeout.connect == TIMEOUT and timeout.read == TIMEOUT


def test_read_timeout_is_unknown_then_retrieve_resolves_it(fake, stripe_connector):
    fake.answer(*CREATE, (200, payment_intent()))
    fake.hold.clear()
    fake.answer(*CONFIRM, "hold")
    result = stripe_connector.authorize(authorize_request())
    fake.hold.set()
    assert result.outcome == Outcome.UNKNOWN and result.error == "read_timeout"
    assert result.psp_reference == "pi_kassa_1"
    fake.answer(*RETRIEVE, (200, payment_intent(status="requires_capture")))
    fake.payment_methods["pm_card_visa"] = payment_method(brand="amex", last4="8431", exp_month=11, exp_year=2029,
                                                          fingerprint="fpAmexKassa0001")
    resolved = stripe_connector.retrieve(psp_reference=result.psp_reference).found
    assert resolved.outcome == Outcome.SUCCEEDED and resolved.status == "requires_capture"
    query = fake.requests[-1]
    assert (query.method, query.path) == RETRIEVE and query.form == [] and query.query == [EXPAND]
    assert resolved.raw["card"] == {"brand": "amex", "last4": "8431", "exp_month": 11, "exp_year": 2029,
                                    "fingerprint": "fpAmexKassa0001"}


def test_a_create_that_did_not_answer_confirmed_nothing(fake, stripe_connector):
    fake.hold.clear()
    fake.answer(*CREATE, "hold")
    result = stripe_connector.authorize(authorize_request())
    fake.hold.set()
    assert result.outcome == Outcome.NOT_PROCESSED and result.retryable
    assert [(r.method, r.path) for r in fake.requests] == [CREATE]


def test_connection_refused_is_not_processed():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    connector = StripeConnector(api_key=API_KEY, connect_timeout=TIMEOUT, read_timeout=TIMEOUT,
                                api_base=f"http://127.0.0.1:{port}")
    try:
        result = connector.authorize(authorize_request())
        assert result.outcome == Outcome.NOT_PROCESSED and result.error == "connect_refused" and result.retryable
        assert connector.retrieve(psp_reference="pi_x").outcome == LookupOutcome.UNKNOWN
    finally:
        connector.close()


def test_capture_void_refund_request_shapes(fake, stripe_connector):
    fake.answer("POST", "/v1/payment_intents/pi_kassa_1/capture",
                (200, payment_intent(status="succeeded", amount_received=1500)))
    fake.answer("POST", "/v1/payment_intents/pi_kassa_1/cancel", (200, payment_intent(status="canceled")))
    fake.answer("POST", "/v1/refunds", (200, refund()))
    fake.answer("GET", "/v1/refunds/re_kassa_1", (200, refund()))

    captured = stripe_connector.capture("pi_kassa_1", 1500, "EUR", "cap_1")
    assert captured.outcome == Outcome.SUCCEEDED and captured.amount == 1500
    voided = stripe_connector.void("pi_kassa_1", "void_1")
    assert voided.outcome == Outcome.SUCCEEDED and voided.status == "voided"
    refunded = stripe_connector.refund("pi_kassa_1", 700, "EUR", "rf_1")
    assert refunded.outcome == Outcome.SUCCEEDED and refunded.psp_reference == "re_kassa_1" and refunded.amount == 700
    assert stripe_connector.retrieve_refund("re_kassa_1").found.outcome == Outcome.SUCCEEDED

    capture, cancel, create_refund, get_refund = fake.requests
    assert capture.fields == {"amount_to_capture": "1500"} and capture.headers["Idempotency-Key"] == "cap_1"
    assert cancel.fields == {} and cancel.headers["Idempotency-Key"] == "void_1"
    # The refund names its key, so that a retry past Stripe's 24 hours can find it (find_refund).
    assert create_refund.fields == {"payment_intent": "pi_kassa_1", "amount": "700",
                                     "metadata[kassa_idempotency_key]": "rf_1"}
    assert create_refund.headers["Idempotency-Key"] == "rf_1"
    assert get_refund.method == "GET" and "Idempotency-Key" not in get_refund.headers


def test_failed_refund_is_declined_and_missing_objects_are_absent(fake, stripe_connector):
    fake.answer("POST", "/v1/refunds", (200, refund(status="failed", failure_reason="expired_or_canceled_card")))
    result = stripe_connector.refund("pi_kassa_1", 700, "EUR", "rf_2")
    assert result.outcome == Outcome.DECLINED and result.decline_code == "expired_or_canceled_card"
    missing = stripe_connector.retrieve(psp_reference="pi_missing")  # the fake answers 404 resource_missing
    assert missing.outcome == LookupOutcome.ABSENT and missing.error == "not_found" and missing.found is None
    # Stripe has no lookup by idempotency key: "cannot tell", said without a request, never "absent".
    count = len(fake.requests)
    by_key = stripe_connector.retrieve(idempotency_key="att_1")
    assert by_key.outcome == LookupOutcome.UNKNOWN and by_key.error == "lookup_unsupported"
    assert len(fake.requests) == count


def test_without_credentials_nothing_is_sent():
    connector = StripeConnector(api_key=None)
    assert connector.authorize(authorize_request()).error == "not_configured"
    lookup = connector.retrieve(psp_reference="pi_1")
    assert lookup.outcome == LookupOutcome.UNKNOWN and lookup.error == "not_configured"


def stripe_signature(payload: bytes, secret: str, timestamp: int) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def stripe_event(type_: str, obj: dict, event_id: str = "evt_kassa_1") -> bytes:
    event = stripe_fixture("event")
    event.update({"id": event_id, "type": type_, "created": int(time.time()), "livemode": False,
                  "data": {"object": obj}})
    return json.dumps(event).encode()


def test_webhook_verified_with_construct_event_and_normalized(stripe_connector):
    body = stripe_event("payment_intent.amount_capturable_updated", payment_intent(status="requires_capture"))
    signature = stripe_signature(body, WEBHOOK_SECRET, int(time.time()))
    event = stripe_connector.parse_callback({"Stripe-Signature": signature}, body)
    assert event.id == "evt_kassa_1" and event.type == "authorization.updated"
    assert event.psp_reference == "pi_kassa_1" and event.livemode is False

    dispute = stripe_fixture("dispute")
    dispute.update({"id": "dp_kassa_1", "payment_intent": "pi_kassa_1"})
    body = stripe_event("charge.dispute.created", dispute, "evt_kassa_2")
    signature = stripe_signature(body, WEBHOOK_SECRET, int(time.time()))
    event = stripe_connector.parse_callback({"stripe-signature": signature}, body)
    assert event.type == "dispute.created" and event.psp_reference == "pi_kassa_1" and event.data["id"] == "dp_kassa_1"


@pytest.mark.parametrize("stripe_type", ["charge.refund.updated", "refund.updated", "refund.failed"])
def test_refund_events_name_the_refunded_payment(stripe_connector, stripe_type):
    failed = refund(status="failed", failure_reason="expired_or_canceled_card")
    body = stripe_event(stripe_type, failed, f"evt_{stripe_type}")
    event = stripe_connector.parse_callback({"Stripe-Signature": stripe_signature(body, WEBHOOK_SECRET,
                                                                                 int(time.time()))}, body)
    assert (event.type, event.psp_reference) == ("refund.updated", "pi_kassa_1")
    assert (event.data["id"], event.data["status"], event.data["stripe_event_type"]) == ("re_kassa_1", "failed",
                                                                                         stripe_type)


@pytest.mark.parametrize("case", ["wrong_secret", "stale", "tampered", "missing", "garbage"])
def test_webhook_rejected_when_wrong_or_stale(stripe_connector, case):
    body = stripe_event("payment_intent.succeeded", payment_intent(status="succeeded"))
    now = int(time.time())
    headers = {
        "wrong_secret": {"Stripe-Signature": stripe_signature(body, "whsec_other", now)},
        "stale": {"Stripe-Signature": stripe_signature(body, WEBHOOK_SECRET, now - 360)},
        "tampered": {"Stripe-Signature": stripe_signature(body, WEBHOOK_SECRET, now)},
        "missing": {},
        "garbage": {"Stripe-Signature": "nonsense"},
    }[case]
    if case == "tampered":
        body = body.replace(b'"succeeded"', b'"canceled"')
    with pytest.raises(CallbackRejected):
        stripe_connector.parse_callback(headers, body)


# -- lookups: found, absent, or could not tell ----------------------------------------------------------

def stripe_error(type_: str, message: str = "Something went wrong.", code: str | None = None) -> dict:
    return {"error": {"type": type_, "message": message, **({"code": code} if code else {})}}


READ_ANSWERS = [
    # (HTTP status, body) -> what the lookup learned. Only Stripe's own "no such object" is absent.
    ((404, stripe_error("invalid_request_error", "No such payment_intent: 'pi_kassa_1'", "resource_missing")),
     LookupOutcome.ABSENT, "not_found"),
    ((404, {"error": {"type": "invalid_request_error", "message": "Unrecognized request URL"}}),
     LookupOutcome.UNKNOWN, "not_found"),  # a 404 that is not Stripe's "no such object" (a wrong api_base)
    ((429, stripe_error("rate_limit_error", "Too many requests", "rate_limit")), LookupOutcome.UNKNOWN, "rate_limited"),
    ((401, stripe_error("invalid_request_error", "Invalid API Key provided.")), LookupOutcome.UNKNOWN, "auth"),
    ((403, stripe_error("invalid_request_error", "The provided key does not have access.")),
     LookupOutcome.UNKNOWN, "auth"),
    ((400, stripe_error("invalid_request_error", "Invalid expand", "parameter_invalid_string")),
     LookupOutcome.UNKNOWN, "client_error"),
    ((409, stripe_error("api_error", "A concurrent request is running.")), LookupOutcome.UNKNOWN, "server_error"),
    ((500, stripe_error("api_error")), LookupOutcome.UNKNOWN, "server_error"),
    ((502, stripe_error("api_error")), LookupOutcome.UNKNOWN, "server_error"),
    ((503, stripe_error("api_error")), LookupOutcome.UNKNOWN, "server_error"),
    ("hold", LookupOutcome.UNKNOWN, "read_timeout"),
]


@pytest.mark.parametrize(("answer", "learned", "error"), READ_ANSWERS)
@pytest.mark.parametrize("lookup", ["payment_intent", "refund"])
def test_each_answer_to_a_status_query_maps_to_found_absent_or_unknown(fake, stripe_connector, answer, learned,
                                                                      error, lookup):
    path, ask = {"payment_intent": (RETRIEVE[1], lambda: stripe_connector.retrieve(psp_reference="pi_kassa_1")),
                 "refund": ("/v1/refunds/re_kassa_1", lambda: stripe_connector.retrieve_refund("re_kassa_1"))}[lookup]
    if answer == "hold":
        fake.hold.clear()  # answered after our read timeout
    fake.answer("GET", path, answer)
    result = ask()
    fake.hold.set()
    assert (result.outcome, result.error, result.found) == (learned, error, None)
    assert len(fake.requests) == 1  # no hidden retry: asking again is the router's decision
    # Whatever the error would mean for a write, an attempt or refund applying this lookup stays open.
    assert result.as_result().outcome == Outcome.UNKNOWN


def test_a_status_query_stripe_answers_is_found(fake, stripe_connector):
    fake.answer(*RETRIEVE, (200, payment_intent(status="requires_capture")))
    fake.answer("GET", "/v1/refunds/re_kassa_1", (200, refund(status="pending")))
    intent = stripe_connector.retrieve(psp_reference="pi_kassa_1")
    assert intent.outcome == LookupOutcome.FOUND and intent.found.outcome == Outcome.SUCCEEDED
    pending = stripe_connector.retrieve_refund("re_kassa_1")
    assert pending.outcome == LookupOutcome.FOUND and pending.found.outcome == Outcome.PENDING


def test_a_refund_is_found_by_the_key_it_was_created_with(fake, stripe_connector):
    listed = {"object": "list", "url": "/v1/refunds", "has_more": False, "data": [
        refund(id="re_other", metadata={"kassa_idempotency_key": "kassa-re_2"}),
        refund(id="re_ours", amount=300, metadata={"kassa_idempotency_key": "kassa-re_1"})]}
    fake.answer("GET", "/v1/refunds", (200, listed))
    found = stripe_connector.find_refund("pi_kassa_1", "kassa-re_1")
    assert found.outcome == LookupOutcome.FOUND and found.found.psp_reference == "re_ours"
    assert found.found.outcome == Outcome.SUCCEEDED and found.found.amount == 300
    assert fake.requests[-1].query == [("payment_intent", "pi_kassa_1"), ("limit", "100")]

    assert stripe_connector.find_refund("pi_kassa_1", "kassa-re_9").outcome == LookupOutcome.ABSENT
    # Not among the first 100 and there are more: it cannot tell.
    fake.answer("GET", "/v1/refunds", (200, {**listed, "has_more": True}))
    assert stripe_connector.find_refund("pi_kassa_1", "kassa-re_9").outcome == LookupOutcome.UNKNOWN
    fake.answer("GET", "/v1/refunds", (429, stripe_error("rate_limit_error", "Too many requests", "rate_limit")))
    limited = stripe_connector.find_refund("pi_kassa_1", "kassa-re_1")
    assert limited.outcome == LookupOutcome.UNKNOWN and limited.error == "rate_limited"


def test_stripe_forgets_idempotency_keys_after_24_hours(stripe_connector):
    assert StripeConnector.idempotency_window == stripe_connector.idempotency_window == timedelta(hours=24)


def test_retrieve_payout_answers_stripe_s_payout_in_kassa_units_absent_or_unknown(fake, stripe_connector):
    """What a payout event's handler believes instead of the event (app/reconciliation/payout_events.py): the payout
    as Stripe has it, its amount in Kassa's minor units (ISK: Stripe's two extra decimals dropped); ABSENT only on
    Stripe's 404 resource_missing; a 5xx is UNKNOWN."""
    body = stripe_fixture("payout")
    body.update({"id": "po_kassa_1", "amount": 485000, "currency": "isk", "status": "paid"})
    fake.answer("GET", "/v1/payouts/po_kassa_1", (200, body))
    found = stripe_connector.retrieve_payout("po_kassa_1")
    assert found.outcome == LookupOutcome.FOUND
    assert (found.found.psp_reference, found.found.status, found.found.amount) == ("po_kassa_1", "paid", 4850)
    assert found.found.raw["amount"] == 4850 and found.found.raw["currency"] == "isk"
    assert fake.requests[-1].headers.get("Authorization") == f"Bearer {API_KEY}"

    assert stripe_connector.retrieve_payout("po_kassa_none").outcome == LookupOutcome.ABSENT  # the stand-in's 404
    fake.answer("GET", "/v1/payouts/po_kassa_down", (500, {"error": {"type": "api_error", "message": "down"}}))
    assert stripe_connector.retrieve_payout("po_kassa_down").outcome == LookupOutcome.UNKNOWN
