"""Amounts on the wire (app/psp/wire.py): for every currency Kassa accepts and each connector, what the PSP is
sent for a representative amount, what Kassa reads back, and which amounts are refused before anything is
sent. Stripe's rules: https://docs.stripe.com/currencies (the sandbox speaks ISO 4217 minor units)."""
import time
import uuid

import pytest

from app.money import CURRENCY_EXPONENTS
from app.psp.interfaces import AuthorizeRequest, Outcome
from app.psp.sandbox import SandboxConnector
from app.psp.stripe_connector import StripeConnector
from app.psp.wire import STRIPE, AmountNotRepresentable, CurrencyNotSupported, WireError
from tests.psp.fake_stripe import FakeStripe, payment_intent, refund, stripe_fixture
from tests.psp.test_stripe_connector import API_KEY, TIMEOUT, WEBHOOK_SECRET, stripe_event, stripe_signature

TWO_DECIMAL = ("USD", "EUR", "GBP", "CHF", "CAD", "AUD", "NZD", "SEK", "NOK", "DKK", "PLN", "CZK", "HUF", "SGD",
               "HKD", "MXN", "BRL", "INR", "ZAR", "AED", "ILS", "THB", "TRY", "CNY")
ZERO_DECIMAL = ("JPY", "KRW", "VND", "CLP")
THREE_DECIMAL = ("KWD", "BHD", "OMR", "JOD", "TND")
# currency -> (an amount in Kassa's minor units, what Stripe is sent for it, an amount Stripe cannot take).
# The sandbox is sent Kassa's amount as it is, and takes every amount.
CASES = {
    **{code: (1999, 1999, None) for code in TWO_DECIMAL},     # 19.99, as ISO 4217 writes it
    **{code: (500, 500, None) for code in ZERO_DECIMAL},      # 500 yen: zero-decimal at Stripe too
    "ISK": (15000, 1500000, None),                            # 15,000 kr: two decimals at Stripe, always 00
    **{code: (1230, 1230, 1235) for code in THREE_DECIMAL},   # 1.230 dinars; the last digit must be 0
}
CURRENCIES = sorted(CURRENCY_EXPONENTS)


def test_the_table_names_every_currency_kassa_accepts():
    assert set(CASES) == set(CURRENCY_EXPONENTS)


@pytest.mark.parametrize("currency", CURRENCIES)
@pytest.mark.parametrize("connector", [SandboxConnector, StripeConnector], ids=["sandbox", "stripe"])
def test_wire_amount_and_back(connector, currency):
    amount, stripe_amount, unrepresentable = CASES[currency]
    wire = stripe_amount if connector is StripeConnector else amount
    assert connector.wire.to_wire(amount, currency) == wire
    assert connector.wire.from_wire(wire, currency) == amount
    assert connector.wire.to_wire(amount, currency.lower()) == wire
    if connector is StripeConnector and unrepresentable is not None:
        with pytest.raises(AmountNotRepresentable) as refused:
            connector.wire.to_wire(unrepresentable, currency)
        assert (refused.value.code, refused.value.param, refused.value.multiple) == \
            ("amount_not_representable", "amount", 10)
        assert str(refused.value).startswith(f"Stripe cannot take an amount of {unrepresentable} in {currency}")
        assert "multiples of 10 minor units" in str(refused.value) and "such as 1230 or 1240" in str(refused.value)
    else:
        # Every whole number of minor units can be sent: 1 is the smallest step.
        assert connector.wire.multiple(currency) == 1
        assert connector.wire.from_wire(connector.wire.to_wire(1, currency), currency) == 1


def test_an_amount_read_back_is_never_rounded():
    with pytest.raises(WireError):
        STRIPE.from_wire(150050, "ISK")  # 1,500.50 kr: Kassa holds whole krónur
    assert STRIPE.from_wire(150000, "isk") == 1500


def test_a_currency_without_a_row_is_not_taken():
    with pytest.raises(CurrencyNotSupported) as refused:
        StripeConnector.wire.check(100, "XYZ")
    assert (refused.value.code, refused.value.param) == ("currency_not_supported", "currency")
    with pytest.raises(CurrencyNotSupported):
        SandboxConnector.wire.to_wire(100, "XYZ")


# -- the Stripe connector against the stand-in of Stripe's API ----------------------------------------------

@pytest.fixture(scope="module")
def fake():
    server = FakeStripe()
    yield server
    server.close()


@pytest.fixture
def stripe_connector(fake):
    fake.requests.clear()
    fake.answers.clear()
    connector = StripeConnector(api_key=API_KEY, webhook_secret=WEBHOOK_SECRET, connect_timeout=TIMEOUT,
                                read_timeout=TIMEOUT, api_base=fake.url)
    yield connector
    connector.close()


def authorize_request(amount: int, currency: str) -> AuthorizeRequest:
    return AuthorizeRequest(amount=amount, currency=currency, token="pm_card_visa", idempotency_key="att_1",
                            reference="att_1")


@pytest.mark.parametrize("currency", CURRENCIES)
def test_stripe_is_sent_and_read_back_in_its_own_units(fake, stripe_connector, currency):
    amount, wire, _ = CASES[currency]
    intent = {"amount": wire, "currency": currency.lower()}
    fake.answer("POST", "/v1/payment_intents", (200, payment_intent(**intent)))
    fake.answer("POST", "/v1/payment_intents/pi_kassa_1/confirm",
                (200, payment_intent(status="requires_capture", amount_capturable=wire, **intent)))
    fake.answer("POST", "/v1/payment_intents/pi_kassa_1/capture",
                (200, payment_intent(status="succeeded", amount_received=wire, **intent)))
    fake.answer("POST", "/v1/refunds", (200, refund(**intent)))
    fake.answer("GET", "/v1/payment_intents/pi_kassa_1",
                (200, payment_intent(status="succeeded", amount_received=wire, **intent)))

    assert stripe_connector.authorize(authorize_request(amount, currency)).amount == amount
    assert stripe_connector.capture("pi_kassa_1", amount, currency, "cap_1").amount == amount
    assert stripe_connector.refund("pi_kassa_1", amount, currency, "rf_1").amount == amount
    assert stripe_connector.retrieve(psp_reference="pi_kassa_1").found.amount == amount

    create, _confirm, capture, create_refund, _retrieve = fake.requests
    assert (create.fields["amount"], create.fields["currency"]) == (str(wire), currency.lower())
    assert capture.fields["amount_to_capture"] == str(wire)
    assert create_refund.fields["amount"] == str(wire)


def test_stripe_is_never_sent_an_amount_it_cannot_take(fake, stripe_connector):
    for result in (stripe_connector.authorize(authorize_request(1235, "BHD")),
                   stripe_connector.capture("pi_kassa_1", 1235, "BHD", "cap_1"),
                   stripe_connector.refund("pi_kassa_1", 5, "KWD", "rf_1")):
        assert result.outcome == Outcome.DECLINED and result.error == "client_error", result
        assert result.decline_code == "amount_not_representable" and "multiples of 10" in result.message
        assert not result.retryable
    assert fake.requests == []


def test_a_callbacks_amounts_are_kassas(stripe_connector):
    dispute = stripe_fixture("dispute")
    dispute.update({"id": "dp_kassa_isk", "payment_intent": "pi_kassa_1", "amount": 1500000, "currency": "isk"})
    body = stripe_event("charge.dispute.created", dispute)
    event = stripe_connector.parse_callback({"Stripe-Signature": stripe_signature(body, WEBHOOK_SECRET,
                                                                                 int(time.time()))}, body)
    # A dispute arrives normalized (app/psp/interfaces.py CallbackEvent): Kassa's minor units, upper-case currency.
    assert (event.data["amount"], event.data["currency"]) == (15000, "ISK")

    intent = payment_intent(status="succeeded", amount=1230, amount_received=1230, amount_capturable=0,
                            currency="bhd")
    body = stripe_event("payment_intent.succeeded", intent, "evt_kassa_bhd")
    event = stripe_connector.parse_callback({"Stripe-Signature": stripe_signature(body, WEBHOOK_SECRET,
                                                                                 int(time.time()))}, body)
    assert (event.data["amount"], event.data["amount_received"], event.data["amount_capturable"]) == (1230, 1230, 0)


# -- the sandbox connector against the sandbox PSP ----------------------------------------------------------

@pytest.mark.parametrize("currency", CURRENCIES)
def test_the_sandbox_is_sent_and_read_back_iso_minor_units(sbx, connectors, currency):
    amount = CASES[currency][0] + 5  # not a multiple of anything: the sandbox takes every amount
    connector = connectors["sandbox"]
    token = sbx.tokenize()["id"]
    authorized = connector.authorize(AuthorizeRequest(amount=amount, currency=currency, token=token,
                                                      idempotency_key=f"att_{uuid.uuid4().hex}", reference="att_1"))
    assert authorized.outcome == Outcome.SUCCEEDED, authorized
    assert (authorized.amount, authorized.raw["amount"], authorized.raw["currency"]) == (amount, amount, currency)
    captured = connector.capture(authorized.psp_reference, amount, currency, f"cap_{uuid.uuid4().hex}")
    assert (captured.amount, captured.raw["captured_amount"]) == (amount, amount)
    refunded = connector.refund(authorized.psp_reference, amount - 1, currency, f"rf_{uuid.uuid4().hex}")
    assert (refunded.amount, refunded.raw["amount"]) == (amount - 1, amount - 1)


def test_the_sandbox_is_never_sent_a_currency_kassa_does_not_know(sbx, connectors):
    result = connectors["sandbox"].authorize(AuthorizeRequest(amount=100, currency="XYZ", token="tok_x",
                                                              idempotency_key="att_xyz", reference="att_1"))
    assert result.outcome == Outcome.DECLINED and result.decline_code == "currency_not_supported"
    assert sbx.stats()["sandbox"]["authorizations"] == 0
