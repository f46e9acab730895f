"""No card number (PAN) ever enters Kassa, whoever sends it and in whatever field (issue 14, point 5).

A merchant that uses hosted fields stays in PCI DSS's small SAQ A scope only if no PAN ever reaches its
servers. These tests send card numbers through every door (the API's fields, headers and path, the
checkout's confirmation, dashboard forms) and then sweep every table, the request log, the log output
and every Redis key for them; and pin the token binding (a token pays for one payment only).
"""
import io
import json
import logging
import re
import threading
import zlib

import pytest
from sqlalchemy import func, select

from app import pan
from app.api.params import Params
from app.api.errors import ApiError
from app.checkout.models import CheckoutSession
from app.events import Event
from app.jobs.payments import _run_attempt, payments_deps
from app.observability import CardNumberFilter
from app.payments.models import IdempotencyKey, Payment, PaymentAttempt
from app.psp.interfaces import Outcome
from app.reporting.models import ApiRequestLog
from app.webhooks.models import WebhookEndpoint
from tests import factories
from tests.conftest import admin_connect
from tests.payments.helpers import ScriptedGateway, result

VISA = "4242424242424242"
MASTERCARD = "5555555555554444"
AMEX = "378282246310005"
DISCOVER = "6011000990139424"
JCB = "3566002020360505"
VISA_DEBIT = "4000056655665556"
SENT = (VISA, MASTERCARD, AMEX, DISCOVER, JCB, VISA_DEBIT)


def grouped(number: str, separator: str = " ") -> str:
    return separator.join(number[i:i + 4] for i in range(0, len(number), 4))


def post(client, path, auth, key=None, headers=None, **body):
    extra = {**auth, **(headers or {})}
    if key:
        extra["Idempotency-Key"] = key
    # buffered: the response is closed at once, which writes its request log row (app/api/request_log.py).
    return client.post(path, json=body, headers=extra, buffered=True)


def error(response) -> dict:
    assert response.status_code == 400, response.get_data(as_text=True)
    return response.json["error"]


# -- what counts as a card number ------------------------------------------------------------------------

@pytest.mark.parametrize("text,brand", [
    (VISA, "Visa"), (grouped(VISA), "Visa"), (grouped(MASTERCARD, "-"), "Mastercard"),
    (AMEX, "American Express"), (DISCOVER, "Discover"), (JCB, "JCB"), ("30569309025904", "Diners Club"),
    ("6200000000000005", "UnionPay"), ("2223003122003222", "Mastercard"), ("4222222222222", "Visa"),
    (f"order 12, card {grouped(VISA)} exp 12/30", "Visa"), (f"tok_{VISA}", "Visa"), (f"({VISA})", "Visa"),
    (f"{MASTERCARD} 1", "Mastercard"),  # more digits after a space: the card number is still there
])
def test_card_numbers_are_found_by_range_length_and_luhn(text, brand):
    match = pan.find_card_number(text)
    assert match is not None and match.brand == brand
    redacted = pan.redact(text)
    assert pan.REDACTED in redacted and pan.find_card_number(redacted) is None


FULL_WIDTH = str.maketrans("0123456789", "０１２３４５６７８９")
ARABIC_INDIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")


@pytest.mark.parametrize("text,brand", [
    (VISA.translate(FULL_WIDTH), "Visa"),                      # typed on a Japanese keyboard
    (grouped(MASTERCARD).translate(ARABIC_INDIC), "Mastercard"),
    (grouped(VISA, "\u00a0"), "Visa"),                          # no-break spaces: copied from a web page
    (grouped(VISA, "\u202f"), "Visa"),                          # narrow no-break spaces (a PDF, a French locale)
    (grouped(JCB, "\u2013"), "JCB"),                            # en dashes
    (grouped(DISCOVER, "\t"), "Discover"),
    (f"https://shop.example/back?card={grouped(VISA, '%20')}", "Visa"),   # percent-encoded in a URL
    (f"https://shop.example/back?card={grouped(VISA, '+')}", "Visa"),     # a form-encoded space
    ("".join(f"%{ord(d):02X}" for d in AMEX), "American Express"),        # every digit encoded
])
def test_a_card_number_is_found_however_its_digits_and_separators_are_written(text, brand):
    match = pan.find_card_number(text)
    assert match is not None and match.brand == brand
    redacted = pan.redact(text)
    assert pan.REDACTED in redacted and pan.find_card_number(redacted) is None


def test_numbers_split_over_lines_or_in_plain_urls_are_not_card_numbers():
    assert pan.find_card_number("order 4242 4242\n4242 4242") is None   # a line break ends a number
    assert pan.find_card_number("https://shop.example/?q=a%20b&n=1234+5678") is None
    assert pan.redact("50%25 off, +49 151 2345 6789") == "50%25 off, +49 151 2345 6789"


def test_a_card_number_written_otherwise_is_refused_by_the_api(client, auth, db_session, scope):
    for key, body, param in [
        ("variant-1", {"description": f"card {VISA.translate(FULL_WIDTH)}"}, "description"),
        ("variant-2", {"metadata": {"note": grouped(MASTERCARD, "\u00a0")}}, "metadata[note]"),
        ("variant-3", {"return_url": f"https://shop.example/r?c={grouped(VISA, '%20')}"}, "return_url"),
    ]:
        refused = error(post(client, "/v1/payments", auth, key=key, amount=100, currency="usd", **body))
        assert (refused["code"], refused["param"]) == ("card_number_in_field", param)
    db_session.expire_all()
    assert db_session.scalar(select(func.count()).select_from(Payment).where(
        Payment.merchant_id == scope.merchant_id)) == 0


def test_a_log_line_with_a_percent_encoded_card_number_is_redacted():
    """gunicorn's access log writes the request line as sent: "GET /v1/payments/%34%32... HTTP/1.1"."""
    encoded = "".join(f"%{ord(d):02X}" for d in VISA)
    record = logging.LogRecord("gunicorn.access", logging.INFO, __file__, 1, '"GET /v1/payments/%s HTTP/1.1" 404',
                               (encoded,), None)
    CardNumberFilter().filter(record)
    line = record.getMessage()
    assert encoded not in line and VISA not in line and pan.REDACTED in line
    # The rest of the line is kept as it was: a "+" (the access log's "+0000") is no encoded space here.
    assert pan.redact(f"[07/Dec/2026:20:08:04 +0000] GET /v1/payments/{encoded}") == \
        f"[07/Dec/2026:20:08:04 +0000] GET /v1/payments/{pan.REDACTED}"


@pytest.mark.parametrize("text", [
    "4242424242424241",          # fails Luhn
    "1234567812345670",          # passes Luhn, in no brand's range
    "3411111111111110",          # American Express's range, but 16 digits (Amex has 15)
    "1Z999AA10123456784",        # a UPS tracking number
    "+49 151 2345 6789",         # a phone number
    "DE89 3704 0044 0532 0130 00",  # an IBAN
    f"pay_01J{VISA}XYZ",         # digits inside an id are part of the id
    "tok_" + "1" * 24,           # a sandbox-shaped token of digits only: 24 digits are no card number
    # A UUID (Stripe's advice for idempotency keys) whose first three groups happen to be digits that form a
    # card number: part of the identifier.
    "42424242-4242-4242-a242-424242424242",
])
def test_other_numbers_are_not_card_numbers(text):
    assert pan.find_card_number(text) is None
    assert pan.redact(text) == text


def test_a_long_run_of_digits_costs_bounded_work():
    text = "1 " * 2500  # 2,500 one-digit groups: spans are tried up to 19 digits from each group only
    assert pan.find_card_number(text) is None


# -- the API refuses them before anything is stored or logged -------------------------------------------

def test_the_attack_a_card_number_as_payment_method_is_refused_and_nothing_is_kept(client, auth, db_session, scope):
    """curl /v1/payments -d payment_method=4242424242424242 -d confirm=true (form-encoded, as in the issue)."""
    response = client.post("/v1/payments", headers={**auth, "Idempotency-Key": "attack-1"}, buffered=True,
                           data={"amount": "2000", "currency": "usd", "payment_method": VISA, "confirm": "true"})
    refused = error(response)
    assert (refused["type"], refused["code"], refused["param"]) == (
        "invalid_request_error", "invalid_payment_method", "payment_method")
    assert "card number" in refused["message"] and "4242" not in refused["message"]
    db_session.expire_all()
    for model in (Payment, PaymentAttempt, IdempotencyKey, Event):
        assert db_session.scalar(select(func.count()).select_from(model).where(
            model.merchant_id == scope.merchant_id)) == 0, model.__name__
    logged = db_session.scalars(select(ApiRequestLog).where(ApiRequestLog.merchant_id == scope.merchant_id)).one()
    assert logged.status == 400 and VISA not in logged.request_body and pan.REDACTED in logged.request_body


def test_a_confirmation_with_a_card_number_is_refused(client, auth, db_session):
    created = post(client, "/v1/payments", auth, amount=500, currency="eur").json
    refused = error(post(client, f"/v1/payments/{created['id']}/confirm", auth, key="confirm-pan",
                         payment_method=grouped(MASTERCARD)))
    assert (refused["code"], refused["param"]) == ("invalid_payment_method", "payment_method")
    db_session.expire_all()
    assert db_session.get(Payment, created["id"]).payment_method_token is None


@pytest.mark.parametrize("value", ["card_123", "tok", "pm_1Abc", "tok_with space", "x" * 40])
def test_a_payment_method_must_be_a_token_of_the_modes_vault(client, auth, value):
    refused = error(post(client, "/v1/payments", auth, amount=500, currency="eur", payment_method=value,
                         confirm=True))
    assert (refused["code"], refused["param"]) == ("invalid_payment_method", "payment_method")
    assert "sandbox vault" in refused["message"] and "card number" not in refused["message"]


CHECKOUT = {"currency": "eur", "success_url": "https://shop.example/thanks",
            "line_items": [{"name": "Shoes", "unit_amount": 5000}]}


@pytest.mark.parametrize("path,body,param", [
    ("/v1/payments", {"amount": 100, "currency": "usd", "description": f"card {grouped(VISA)}"}, "description"),
    ("/v1/payments", {"amount": 100, "currency": "usd", "metadata": {"note": grouped(MASTERCARD, "-")}},
     "metadata[note]"),
    ("/v1/payments", {"amount": 100, "currency": "usd", "metadata": {AMEX: "x"}}, "metadata"),
    ("/v1/payments", {"amount": 100, "currency": "usd", "customer_email": f"{VISA}@example.com"}, "customer_email"),
    ("/v1/payments", {"amount": 100, "currency": "usd", "return_url": f"https://shop.example/?c={VISA}"},
     "return_url"),
    ("/v1/sellers", {"name": f"Shop {DISCOVER}"}, "name"),
    ("/v1/sellers", {"name": "Shop", "metadata": {"iban": JCB}}, "metadata[iban]"),
    ("/v1/refunds", {"payment": "pay_x", "metadata": {"why": VISA}}, "metadata[why]"),
    ("/v1/checkout/sessions", {**CHECKOUT, "line_items": [{"name": f"Gift {JCB}", "unit_amount": 100}]},
     "line_items[0][name]"),
    ("/v1/checkout/sessions", {**CHECKOUT, "client_reference_id": VISA_DEBIT}, "client_reference_id"),
    ("/v1/checkout/sessions", {**CHECKOUT, "customer_email": f"{AMEX}@example.com"}, "customer_email"),
    ("/v1/webhook_endpoints", {"url": "https://shop.example/hooks", "enabled_events": ["*"],
                               "description": f"for {VISA}"}, "description"),
    ("/v1/webhook_endpoints", {"url": "https://shop.example/hooks", "enabled_events": [f"x.{VISA}"]},
     "enabled_events[0]"),
])
def test_a_card_number_in_free_text_is_refused_naming_the_field(client, auth, db_session, scope, path, body, param):
    refused = error(post(client, path, auth, key=f"free-text-{param}", **body))
    assert (refused["type"], refused["code"], refused["param"]) == (
        "invalid_request_error", "card_number_in_field", param)
    assert "card number" in refused["message"] and param in refused["message"]
    assert not re.search(r"\d{6}", refused["message"])  # the number itself is never echoed
    db_session.expire_all()
    assert db_session.scalar(select(func.count()).select_from(IdempotencyKey).where(
        IdempotencyKey.merchant_id == scope.merchant_id)) == 0


def test_a_card_number_as_idempotency_key_is_refused(client, auth):
    refused = error(post(client, "/v1/payments", auth, key=grouped(VISA), amount=100, currency="usd"))
    assert (refused["code"], refused["param"]) == ("card_number_in_field", "Idempotency-Key")


def test_numbers_that_are_no_card_numbers_are_accepted(client, auth):
    created = post(client, "/v1/payments", auth, amount=100, currency="usd",
                   description="Parcel 1Z999AA10123456784, call +49 151 2345 6789",
                   metadata={"order": "4242424242424241", "reference": "1234567812345670",
                             "amex_shaped": "3411111111111110", "iban": "DE89 3704 0044 0532 0130 00"})
    assert created.status_code == 200, created.json
    assert created.json["metadata"]["order"] == "4242424242424241"


def test_a_field_that_is_a_number_of_another_kind_is_not_scanned():
    params = Params({"tracking_number": VISA, "note": VISA})
    assert params.string("tracking_number", card_number_check=False) == VISA
    with pytest.raises(ApiError) as refused:
        params.string("note")
    assert (refused.value.code, refused.value.param) == ("card_number_in_field", "note")


# -- a token pays for one payment only -------------------------------------------------------------------

def _run_attempts(db_session, payment_id: str, gateway: ScriptedGateway) -> None:
    """What the worker would do for the payment's open attempts."""
    db_session.expire_all()
    for attempt_id in db_session.scalars(select(PaymentAttempt.id).where(
            PaymentAttempt.payment_id == payment_id, PaymentAttempt.status == "processing")).all():
        _run_attempt(attempt_id, payments_deps(), gateway)
    db_session.commit()


def test_a_token_is_bound_to_the_payment_that_used_it_first(client, auth, other_auth, db_session):
    first = post(client, "/v1/payments", auth, key="bound-1", amount=1000, currency="usd",
                 payment_method="tok_shared", confirm=True, capture_method="manual")
    assert first.status_code == 200
    # Retrying the same request replays its answer: the same payment, not a second one.
    replay = post(client, "/v1/payments", auth, key="bound-1", amount=1000, currency="usd",
                  payment_method="tok_shared", confirm=True, capture_method="manual")
    assert replay.headers["Idempotent-Replayed"] == "true" and replay.json["id"] == first.json["id"]

    refused = error(post(client, "/v1/payments", auth, amount=2000, currency="usd", payment_method="tok_shared",
                         confirm=True))
    assert (refused["code"], refused["param"]) == ("payment_method_token_used", "payment_method")
    other = post(client, "/v1/payments", auth, amount=700, currency="usd").json
    refused = error(post(client, f"/v1/payments/{other['id']}/confirm", auth, payment_method="tok_shared"))
    assert refused["code"] == "payment_method_token_used"
    db_session.expire_all()
    assert db_session.scalar(select(func.count()).select_from(Payment).where(
        Payment.payment_method_token == "tok_shared")) == 1
    # Another merchant's book is another key space: its own token of that name is its own.
    assert post(client, "/v1/payments", other_auth, amount=100, currency="usd", payment_method="tok_shared",
                confirm=True).status_code == 200


def test_the_same_payment_may_use_its_token_again_after_a_decline(client, auth, db_session):
    created = post(client, "/v1/payments", auth, amount=1000, currency="usd", payment_method="tok_again",
                   confirm=True, capture_method="manual").json
    _run_attempts(db_session, created["id"], ScriptedGateway(authorize_results=[
        result(Outcome.DECLINED, decline_code="insufficient_funds", status="declined")]))
    assert client.get(f"/v1/payments/{created['id']}", headers=auth).json["status"] == "requires_payment_method"
    again = post(client, f"/v1/payments/{created['id']}/confirm", auth, payment_method="tok_again")
    assert again.status_code == 200 and again.json["status"] == "processing"
    _run_attempts(db_session, created["id"], ScriptedGateway())
    assert client.get(f"/v1/payments/{created['id']}", headers=auth).json["status"] == "requires_capture"


def test_two_payments_racing_for_one_token_bind_it_once(app, scope):
    """Concurrent first uses: the binding's INSERT ... ON CONFLICT lets one payment have the token."""
    from sqlalchemy.orm import Session

    from app.extensions import db
    from app.payments import idempotency
    from app.payments.errors import InvalidRequest
    from tests.payments.helpers import make_deps

    deps = make_deps()
    with Session(db.engine) as session:
        ids = [idempotency.execute(session, scope, "payment.create", {"amount": 100, "currency": "USD"}, key=None,
                                   deps=deps).body["id"] for _ in range(2)]
    barrier, outcomes = threading.Barrier(2), []

    def confirm(payment_id: str) -> None:
        with app.app_context(), Session(db.engine) as session:
            barrier.wait()
            try:
                idempotency.execute(session, scope, "payment.confirm",
                                    {"payment": payment_id, "payment_method": "tok_race"}, key=None, deps=deps)
                outcomes.append("confirmed")
            except InvalidRequest as refused:
                outcomes.append(refused.code)

    threads = [threading.Thread(target=confirm, args=(payment_id,)) for payment_id in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["confirmed", "payment_method_token_used"]


# -- the logs' last line of defence ----------------------------------------------------------------------

def test_log_records_keep_only_the_redacted_form():
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(self.format(record))

    handler = Keep()
    handler.addFilter(CardNumberFilter())
    handler.setFormatter(logging.Formatter("%(message)s %(path)s"))
    logger = logging.getLogger("tests.card_numbers")
    logger.addHandler(handler)
    try:
        try:
            raise ValueError(f"psycopg said: value {grouped(VISA)} too long")
        except ValueError:
            logger.exception("could not store %s", MASTERCARD, extra={"path": f"/v1/payments/{AMEX}"})
    finally:
        logger.removeHandler(handler)
    assert len(records) == 1 and "ValueError" in records[0]
    for number in (VISA, MASTERCARD, AMEX):
        assert number not in records[0].replace(" ", "")


# -- the sweep -------------------------------------------------------------------------------------------

@pytest.fixture
def log_output(app):
    """What Kassa's own log handler (configure_logging's, with its filters) writes, for this test."""
    handler = next(h for h in logging.getLogger().handlers
                   if any(isinstance(f, CardNumberFilter) for f in h.filters))
    buffer = io.StringIO()
    previous = handler.setStream(buffer)
    yield buffer
    handler.setStream(previous)


def _csrf(html: str) -> str:
    return re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html).group(1)


def _send_card_numbers_everywhere(client, auth, db_session, merchant):
    """Every door a card number could come in by; each request is refused or keeps no card number."""
    # The API: fields of every resource, a JSON number, the path, the query, headers.
    post(client, "/v1/payments", auth, key="sweep-1", amount=2000, currency="usd", payment_method=VISA, confirm=True)
    client.post("/v1/payments", headers=auth, data={"amount": "1", "currency": "usd", "payment_method": grouped(VISA),
                                                    "confirm": "true"}, buffered=True)
    post(client, "/v1/payments", auth, amount=int(MASTERCARD), currency="usd")
    post(client, "/v1/payments", auth, amount=100, currency="usd", description=f"card {grouped(AMEX)}",
         metadata={"n": DISCOVER})
    post(client, "/v1/payments", auth, key=grouped(JCB, "-"), amount=100, currency="usd")
    post(client, "/v1/sellers", auth, name=f"Shop {VISA_DEBIT}")
    post(client, "/v1/checkout/sessions", auth, **{**CHECKOUT, "description": f"pay with {VISA}"})
    post(client, "/v1/webhook_endpoints", auth, url="https://shop.example/hooks", enabled_events=["*"],
         description=f"card {MASTERCARD}")
    post(client, "/v1/refunds", auth, payment="pay_x", metadata={"c": AMEX})
    client.get(f"/v1/payments/{DISCOVER}", headers=auth, buffered=True)
    client.get(f"/v1/payments?customer_email={JCB}@example.com", headers=auth, buffered=True)
    # Accepted requests whose headers carry one: the request id and the user agent are kept.
    ok = post(client, "/v1/webhook_endpoints", auth, headers={"X-Request-ID": VISA_DEBIT, "User-Agent": f"bot {VISA}"},
              url="https://shop.example/ok", enabled_events=["*"], description="Legit endpoint")
    assert ok.status_code == 200 and ok.headers["X-Request-ID"] != VISA_DEBIT
    payment = post(client, "/v1/payments", auth, key="sweep-ok", amount=100, currency="usd", payment_method="tok_sweep",
                   confirm=True, description="Legit payment", headers={"X-Request-ID": grouped(AMEX, "-")})
    assert payment.status_code == 200

    # The checkout: a card number instead of the vault's token, or in the fingerprint the browser relays.
    session_id = post(client, "/v1/checkout/sessions", auth, **CHECKOUT).json["id"]
    for token, fingerprint in ((VISA, "fp_1"), (grouped(MASTERCARD), "fp_1"), ("tok_checkout", AMEX)):
        refused = client.post(f"/c/{session_id}/confirm", json={"token": token, "card": {"fingerprint": fingerprint}})
        assert refused.status_code == 400 and refused.json["error"]["code"] == "token_invalid"

    # The dashboard: forms and the list's search (whose filters an export keeps).
    from app.accounts.sessions import start_session

    owner = factories.member(db_session, merchant, role="owner")
    _row, sid = start_session(db_session, owner, user_agent=f"Mozilla {DISCOVER}")
    db_session.commit()
    with client.session_transaction() as cookie:
        cookie["sid"] = sid
    base = f"/dashboard/{merchant.id}/test"
    form = client.get(f"{base}/developers/webhooks/new").get_data(as_text=True)
    refused = client.post(f"{base}/developers/webhooks/new", data={
        "csrf_token": _csrf(form), "url": "https://shop.example/dash", "description": f"card {VISA}",
        "events_mode": "all"})
    assert refused.status_code == 422 and "looks like a card number" in refused.get_data(as_text=True)
    form = client.get(f"{base}/settings/branding").get_data(as_text=True)
    refused = client.post(f"{base}/settings/branding", data={
        "csrf_token": _csrf(form), "display_name": f"Shop {grouped(JCB)}", "accent_color": "#4f46e5"})
    assert refused.status_code == 422 and "looks like a card number" in refused.get_data(as_text=True)
    listing = client.get(f"{base}/payments?q={VISA}")
    assert listing.status_code == 200 and "Kassa keeps no card numbers" in listing.get_data(as_text=True)
    exported = client.post(f"{base}/exports", data={"csrf_token": _csrf(listing.get_data(as_text=True)),
                                                    "kind": "payments", "q": VISA, "email": f"{AMEX}@x.example"})
    assert exported.status_code == 303


def _digits(text: str) -> str:
    return re.sub(r"[ -]", "", text)


def _tables_holding(database, needle: str) -> list[str]:
    with admin_connect(database) as connection:
        tables = [row[0] for row in connection.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename")]
        return [table for table in tables if connection.execute(
            f"SELECT EXISTS (SELECT 1 FROM \"{table}\" AS t "
            "WHERE regexp_replace(t::text, '[ -]', '', 'g') LIKE %s)", (f"%{needle}%",)).fetchone()[0]]


def _redis_texts(redis):
    """Every key and value in Redis, as bytes (RQ's compressed job data decompressed)."""
    for key in redis.scan_iter(count=1000):
        yield key
        kind = redis.type(key)
        if kind == b"string":
            values = [redis.get(key)]
        elif kind == b"hash":
            values = [part for pair in redis.hgetall(key).items() for part in pair]
        elif kind == b"list":
            values = redis.lrange(key, 0, -1)
        elif kind == b"set":
            values = list(redis.smembers(key))
        elif kind == b"zset":
            values = redis.zrange(key, 0, -1)
        elif kind == b"stream":
            values = [json.dumps({k.decode(): v.decode() for k, v in fields.items()}).encode()
                      for _id, fields in redis.xrange(key)]
        else:
            values = []
        for value in values:
            if value is None:
                continue
            yield value
            try:
                yield zlib.decompress(value)
            except zlib.error:
                pass


def test_after_card_numbers_came_in_by_every_door_none_is_anywhere(
        client, auth, db_session, merchant, database, redis, log_output):
    _send_card_numbers_everywhere(client, auth, db_session, merchant)
    db_session.expire_all()
    # The sweep does see what was kept: the legitimate requests' rows.
    assert {"payments", "api_request_logs", "idempotency_keys", "events"} <= set(_tables_holding(database,
                                                                                                  "Legitpayment"))
    assert {"payments", "payment_attempts", "payment_token_bindings"} <= set(_tables_holding(database, "tok_sweep"))
    assert "webhook_endpoints" in _tables_holding(database, "Legitendpoint")
    assert "audit_log" in _tables_holding(database, f"bot{pan.REDACTED.replace(' ', '')}")  # its user agent
    assert db_session.scalar(select(func.count()).select_from(CheckoutSession).where(
        CheckoutSession.merchant_id == merchant.id)) == 1
    assert db_session.scalar(select(func.count()).select_from(WebhookEndpoint).where(
        WebhookEndpoint.merchant_id == merchant.id)) == 1
    redis_data = [_digits(value.decode("utf-8", "replace")) for value in _redis_texts(redis)]
    logs = _digits(log_output.getvalue())
    assert "/v1/payments" in logs and redis_data
    for number in SENT:
        assert _tables_holding(database, number) == [], number
        assert number not in logs, number
        assert not [value for value in redis_data if number in value], number
