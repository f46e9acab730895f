"""The sandbox connector against the real sandbox PSP subprocess: every test card's normalized outcome,
idempotency, the ambiguous timeout resolved by a status query, and how failures are classified."""
import json
import socket
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from app.psp.interfaces import AuthorizeRequest, CardFactsUnavailable, LookupOutcome, Outcome
from app.psp.sandbox import SandboxConnector
from tests.psp.conftest import CONNECT_TIMEOUT, READ_TIMEOUT, SECRET, make_connector


def request_for(token: str, key: str | None = None, amount: int = 1000, **extra) -> AuthorizeRequest:
    key = f"att_{uuid.uuid4().hex}" if key is None else key
    return AuthorizeRequest(amount=amount, currency="USD", token=token, idempotency_key=key,
                            reference="att_test", **extra)


CARDS = [
    ("4242424242424242", Outcome.SUCCEEDED, None),
    ("5555555555554444", Outcome.SUCCEEDED, None),
    ("4000000000009995", Outcome.DECLINED, "insufficient_funds"),
    ("4000000000009979", Outcome.DECLINED, "stolen_card"),
    ("4000000000000069", Outcome.DECLINED, "expired_card"),
    ("4000000000000127", Outcome.DECLINED, "incorrect_cvc"),
    ("4000000000003220", Outcome.REQUIRES_ACTION, None),
    ("4000000000000119", Outcome.NOT_PROCESSED, None),
    ("4000000000000259", Outcome.SUCCEEDED, None),
    ("4100000000000019", Outcome.SUCCEEDED, None),
]


@pytest.mark.parametrize(("number", "outcome", "decline_code"), CARDS)
def test_each_test_card_outcome(sbx, connectors, number, outcome, decline_code):
    token = sbx.tokenize(number)["id"]
    result = connectors["sandbox"].authorize(request_for(token))
    assert result.outcome == outcome, result
    assert result.connector == "sandbox"
    assert result.decline_code == decline_code
    if outcome == Outcome.SUCCEEDED:
        assert result.status == "authorized" and result.psp_reference.startswith("auth_")
        assert result.amount == 1000 and result.error is None
    if outcome == Outcome.REQUIRES_ACTION:
        assert result.action_url.startswith(sbx.public_url + "/challenge/")
        assert result.psp_reference.startswith("auth_")
    if outcome == Outcome.NOT_PROCESSED:
        # The acquirer's 503 processing_error, processed: false: safe to retry and to fail over.
        assert result.error == "not_processed" and result.retryable and result.psp_reference is None
        assert sbx.stats()["sandbox"]["authorizations"] == 0


def test_timeout_card_is_unknown_then_resolved_by_status_query(sbx, connectors):
    token = sbx.tokenize("4000000000000341")["id"]
    key = f"att_{uuid.uuid4().hex}"
    result = connectors["sandbox"].authorize(request_for(token, key))
    # The sandbox answers after 2 s; we stop reading after 1 s: it did authorize, but we cannot know.
    assert result.outcome == Outcome.UNKNOWN
    assert result.error == "read_timeout" and not result.retryable and result.psp_reference is None

    by_key = connectors["sandbox"].retrieve(idempotency_key=key)
    assert by_key.outcome == LookupOutcome.FOUND
    assert by_key.found.outcome == Outcome.SUCCEEDED and by_key.found.status == "authorized"
    by_reference = connectors["sandbox"].retrieve(psp_reference=by_key.found.psp_reference).found
    assert by_reference.outcome == Outcome.SUCCEEDED and by_reference.psp_reference == by_key.found.psp_reference
    assert sbx.stats(idempotency_key=key)["sandbox"]["authorizations"] == 1


def test_same_idempotency_key_twice_authorizes_once(sbx, connectors):
    token = sbx.tokenize()["id"]
    key = f"att_{uuid.uuid4().hex}"
    first = connectors["sandbox"].authorize(request_for(token, key))
    second = connectors["sandbox"].authorize(request_for(token, key))
    assert first.outcome == second.outcome == Outcome.SUCCEEDED
    assert first.psp_reference == second.psp_reference
    assert sbx.stats(idempotency_key=key)["sandbox"]["authorizations"] == 1
    assert sbx.stats()["sandbox"]["authorizations"] == 1


def test_every_write_carries_the_idempotency_key(sbx, connectors):
    token = sbx.tokenize()["id"]
    connector = connectors["sandbox"]
    with pytest.raises(ValueError):
        connector.authorize(request_for(token, key=""))
    auth = connector.authorize(request_for(token))
    with pytest.raises(ValueError):
        connector.capture(auth.psp_reference, 1000, "USD", "")
    with pytest.raises(ValueError):
        connector.void(auth.psp_reference, "")
    with pytest.raises(ValueError):
        connector.refund(auth.psp_reference, 100, "USD", "")


def test_capture_refund_void_and_their_refusals(sbx, connectors):
    connector = connectors["sandbox"]
    auth = connector.authorize(request_for(sbx.tokenize()["id"], amount=5000))
    captured = connector.capture(auth.psp_reference, 4000, "USD", "cap_1")
    assert captured.outcome == Outcome.SUCCEEDED and captured.status == "partially_captured"
    assert captured.amount == 4000
    # The same key again: the stored answer, nothing captured twice.
    assert connector.capture(auth.psp_reference, 4000, "USD", "cap_1").status == "partially_captured"
    assert sbx.stats()["sandbox"]["captures"] == 1

    refund = connector.refund(auth.psp_reference, 1500, "USD", "rf_1")
    assert refund.outcome == Outcome.SUCCEEDED and refund.psp_reference.startswith("rf_")
    assert refund.amount == 1500 and refund.status == "succeeded"
    assert connector.retrieve_refund(refund.psp_reference).found.outcome == Outcome.SUCCEEDED
    too_much = connector.refund(auth.psp_reference, 5000, "USD", "rf_2")
    assert too_much.outcome == Outcome.DECLINED and too_much.decline_code == "amount_too_large"

    # A captured authorization cannot be voided: a definite refusal, not an error that escapes.
    void = connector.void(auth.psp_reference, "void_1")
    assert void.outcome == Outcome.DECLINED and void.decline_code == "invalid_state"

    other = connector.authorize(request_for(sbx.tokenize()["id"]))
    voided = connector.void(other.psp_reference, "void_2")
    assert voided.outcome == Outcome.SUCCEEDED and voided.status == "voided"


def test_unknown_token_is_a_decline_not_an_exception(sbx, connectors):
    result = connectors["sandbox"].authorize(request_for("tok_does_not_exist"))
    assert result.outcome == Outcome.DECLINED and result.decline_code == "invalid_token"


def test_status_query_that_finds_nothing_says_so(sbx, connectors):
    missing = connectors["sandbox"].retrieve(idempotency_key="never-used")
    assert missing.outcome == LookupOutcome.ABSENT and missing.error == "not_found" and missing.found is None
    assert connectors["sandbox"].retrieve(psp_reference="auth_missing").outcome == LookupOutcome.ABSENT
    assert connectors["sandbox"].retrieve_refund("rf_missing").outcome == LookupOutcome.ABSENT
    # Authorizations are per acquirer: sandbox_b does not know sandbox's.
    auth = connectors["sandbox"].authorize(request_for(sbx.tokenize()["id"]))
    assert connectors["sandbox_b"].retrieve(psp_reference=auth.psp_reference).outcome == LookupOutcome.ABSENT


def test_connection_refused_is_not_processed_for_writes_but_unknown_for_queries(sbx, connectors):
    sbx.admin("/_admin/faults", {"acquirer": "sandbox", "refuse_connections": True})
    token = sbx.tokenize()["id"]
    result = connectors["sandbox"].authorize(request_for(token))
    assert result.outcome == Outcome.NOT_PROCESSED
    assert result.error == "connect_refused" and result.retryable
    # A status query that could not be asked must never read as "nothing there".
    query = connectors["sandbox"].retrieve(idempotency_key="whatever")
    assert query.outcome == LookupOutcome.UNKNOWN and query.error == "connect_refused"
    sbx.admin("/_admin/faults", {"acquirer": "sandbox", "refuse_connections": False})
    assert connectors["sandbox"].authorize(request_for(token)).outcome == Outcome.SUCCEEDED


def test_card_facts_known_absent_or_could_not_ask(sbx, connectors):
    """Risk reads the card from the vault: a token it does not know is None (an answer), a vault that could not
    be asked raises CardFactsUnavailable (not an answer: the screening holds the payment)."""
    token = sbx.tokenize()["id"]
    assert connectors["sandbox"].card_facts(token)["fingerprint"]
    assert connectors["sandbox"].card_facts("tok_missing") is None
    sbx.admin("/_admin/faults", {"acquirer": "sandbox", "refuse_connections": True})
    try:
        with pytest.raises(CardFactsUnavailable):
            connectors["sandbox"].card_facts(token)
    finally:
        sbx.admin("/_admin/faults", {"acquirer": "sandbox", "refuse_connections": False})


def test_wrong_secret_is_not_processed_and_not_retryable(sbx):
    connector = make_connector(sbx, "sandbox", secret="wrong")
    try:
        result = connector.authorize(request_for(sbx.tokenize()["id"]))
    finally:
        connector.close()
    assert result.outcome == Outcome.NOT_PROCESSED and result.error == "auth" and not result.retryable


class _Misbehaving:
    """A local server that answers a 500, or drops the connection without answering."""

    def __init__(self, mode: str):
        self.mode = mode
        self.requests = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                outer.requests += 1
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if outer.mode == "drop":
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                if outer.mode == "429":
                    body = b'{"error": {"code": "rate_limited", "message": "slow down"}}'
                    self.send_response(429)
                    self.send_header("Retry-After", "7")
                else:
                    body = b'{"error": {"code": "internal_error", "message": "boom"}}'
                    self.send_response(500)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize(("mode", "error"), [("500", "server_error"), ("drop", "dropped")])
def test_other_5xx_and_dropped_connections_are_unknown(mode, error):
    server = _Misbehaving(mode)
    connector = SandboxConnector("sandbox", server.url, SECRET, connect_timeout=CONNECT_TIMEOUT,
                                 read_timeout=READ_TIMEOUT)
    try:
        result = connector.authorize(request_for("tok_x"))
    finally:
        connector.close()
        server.close()
    assert result.outcome == Outcome.UNKNOWN and result.error == error
    assert not result.retryable  # an ambiguous write is never simply sent again
    assert server.requests == 1


def test_a_rate_limit_is_not_processed_and_carries_the_retry_after():
    server = _Misbehaving("429")
    connector = SandboxConnector("sandbox", server.url, SECRET, connect_timeout=CONNECT_TIMEOUT,
                                 read_timeout=READ_TIMEOUT)
    try:
        result = connector.authorize(request_for("tok_x"))
    finally:
        connector.close()
        server.close()
    assert result.outcome == Outcome.NOT_PROCESSED and result.error == "rate_limited"
    assert result.retry_after == 7.0 and server.requests == 1


# -- lookups: found, absent, or could not tell ----------------------------------------------------------

class _Answering:
    """A local acquirer stand-in whose every GET answers one status and JSON body."""

    def __init__(self, status: int, body: dict):
        self.requests = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                outer.requests += 1
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def _error(code: str, **extra) -> dict:
    return {"error": {"code": code, "message": f"{code} from the acquirer", "param": None, **extra}}


AUTHORIZATION = {"id": "auth_1", "acquirer": "sandbox", "status": "authorized", "amount": 1000, "currency": "USD"}
READ_ANSWERS = [
    # (status, body) -> what the lookup learned. Only the acquirer's own "no such thing" is absent.
    (200, AUTHORIZATION, LookupOutcome.FOUND, None),
    (404, _error("not_found"), LookupOutcome.ABSENT, "not_found"),
    (429, _error("rate_limited"), LookupOutcome.UNKNOWN, "rate_limited"),
    (401, _error("unauthorized"), LookupOutcome.UNKNOWN, "auth"),
    (403, _error("forbidden"), LookupOutcome.UNKNOWN, "auth"),
    (400, _error("invalid_request"), LookupOutcome.UNKNOWN, "client_error"),
    (409, _error("idempotency_mismatch"), LookupOutcome.UNKNOWN, "idempotency_mismatch"),
    (500, _error("internal_error"), LookupOutcome.UNKNOWN, "server_error"),
    (502, _error("bad_gateway"), LookupOutcome.UNKNOWN, "server_error"),
    # "Not processed" says nothing was done with the query, not that nothing exists.
    (503, _error("processing_error", processed=False), LookupOutcome.UNKNOWN, "not_processed"),
    (504, _error("gateway_timeout"), LookupOutcome.UNKNOWN, "server_error"),
]


@pytest.mark.parametrize(("status", "body", "learned", "error"), READ_ANSWERS)
@pytest.mark.parametrize("lookup", ["by_reference", "by_key", "refund"])
def test_each_answer_to_a_status_query_maps_to_found_absent_or_unknown(status, body, learned, error, lookup):
    if lookup == "by_key" and status == 200:
        body = {"data": [body]}
    server = _Answering(status, body)
    connector = SandboxConnector("sandbox", server.url, SECRET, connect_timeout=CONNECT_TIMEOUT,
                                 read_timeout=READ_TIMEOUT)
    try:
        result = {"by_reference": lambda: connector.retrieve(psp_reference="auth_1"),
                  "by_key": lambda: connector.retrieve(idempotency_key="att_1"),
                  "refund": lambda: connector.retrieve_refund("rf_1")}[lookup]()
    finally:
        connector.close()
        server.close()
    assert (result.outcome, result.error) == (learned, error) and server.requests == 1
    assert (result.found is not None) == (learned == LookupOutcome.FOUND)
    if learned != LookupOutcome.FOUND:
        # Whatever the status would mean for a write, an attempt or refund applying it stays open.
        assert result.as_result().outcome == Outcome.UNKNOWN


def test_an_empty_list_by_key_is_absent(sbx, connectors):
    assert connectors["sandbox"].retrieve(idempotency_key="never-sent").outcome == LookupOutcome.ABSENT


@pytest.mark.parametrize("status", [429, 503, 401])
def test_a_status_query_the_acquirer_refuses_is_unknown(sbx, connectors, status):
    key = f"att_{uuid.uuid4().hex}"
    auth = connectors["sandbox"].authorize(request_for(sbx.tokenize()["id"], key))
    sbx.admin("/_admin/faults", {"acquirer": "sandbox", "read_error_status": status})
    for lookup in (connectors["sandbox"].retrieve(idempotency_key=key),
                   connectors["sandbox"].retrieve(psp_reference=auth.psp_reference)):
        assert lookup.outcome == LookupOutcome.UNKNOWN and lookup.found is None
    sbx.admin("/_admin/faults", {"acquirer": "sandbox", "read_error_status": None})
    assert connectors["sandbox"].retrieve(idempotency_key=key).outcome == LookupOutcome.FOUND


def test_a_dropped_or_timed_out_status_query_is_unknown(sbx, connectors):
    sbx.admin("/_admin/faults", {"acquirer": "sandbox", "latency_ms": int(READ_TIMEOUT * 1000) + 500})
    timed_out = connectors["sandbox"].retrieve(idempotency_key="att_slow")
    sbx.admin("/_admin/faults", {"acquirer": "sandbox", "latency_ms": 0})
    assert timed_out.outcome == LookupOutcome.UNKNOWN and timed_out.error == "read_timeout" and timed_out.retryable


def test_the_sandbox_keeps_idempotency_keys_for_ever():
    assert SandboxConnector.idempotency_window is None
