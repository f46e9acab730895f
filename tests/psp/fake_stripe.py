"""A local HTTP server standing in for Stripe's API: it records exactly what the SDK sends (method, path,
headers, form fields) and answers with objects shaped like Stripe's, taken from Stripe's own example
file (/work/shared/fixtures/stripe/fixtures3.json, from the public stripe/openapi repository).

As Stripe does, it expands an answer's ``payment_method`` id into the PaymentMethod object only when the
request asks for it (``expand[0]=payment_method``, in the form or the query); the object is the one
registered for that id in ``FakeStripe.payment_methods``, else Stripe's example card with that id.
``GET /v1/payment_methods/<id>`` answers with the same object, unless answers are queued for that path."""
import copy
import email
import email.policy
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

FIXTURES = Path("/work/shared/fixtures/stripe/fixtures3.json")
PAYMENT_METHODS = "/v1/payment_methods/"


def stripe_fixture(resource: str) -> dict:
    """One example object of Stripe's API (e.g. "payment_intent", "refund")."""
    return copy.deepcopy(json.loads(FIXTURES.read_text())["resources"][resource])


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict
    form: list[tuple[str, str]]
    query: list[tuple[str, str]] = field(default_factory=list)
    files: dict[str, tuple[str, bytes]] = field(default_factory=dict)  # multipart: name -> (filename, content)

    @property
    def fields(self) -> dict[str, str]:
        return dict(self.form)


class FakeStripe:
    """Answers queued per (method, path): each answer is (status, body dict), (status, body dict, headers)
    or "hold"."""

    def __init__(self):
        self.requests: list[Recorded] = []
        self.answers: dict[tuple[str, str], list] = {}
        self.payment_methods: dict[str, dict] = {}  # id -> PaymentMethod object, for expansion
        self.hold = threading.Event()   # set by the test to release a held answer
        self.hold.set()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self):
                parts = urlsplit(self.path)
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))
                headers: dict[str, str] = {}
                content_type = self.headers.get("Content-Type", "")
                if content_type.startswith("multipart/form-data"):
                    form, files = _multipart(content_type, raw)
                else:
                    form, files = parse_qsl(raw.decode(), keep_blank_values=True), {}
                recorded = Recorded(self.command, parts.path, dict(self.headers), form,
                                    parse_qsl(parts.query, keep_blank_values=True), files)
                outer.requests.append(recorded)
                queue = outer.answers.get((self.command, parts.path)) or []
                if not queue and self.command == "GET" and parts.path.startswith(PAYMENT_METHODS):
                    status, payload = 200, outer.payment_method_object(parts.path.removeprefix(PAYMENT_METHODS))
                elif not queue:
                    status, payload = 404, {"error": {"type": "invalid_request_error", "code": "resource_missing",
                                                      "message": f"No such route {parts.path}"}}
                else:
                    answer = queue.pop(0) if len(queue) > 1 else queue[0]
                    if answer == "hold":
                        outer.hold.wait(30)
                        status, payload = 200, {}
                    else:
                        status, payload, *extra = answer
                        headers = extra[0] if extra else {}
                payload = outer._expanded(payload, recorded)
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Request-Id", f"req_fake_{len(outer.requests)}")
                    self.send_header("Content-Length", str(len(data)))
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up first (a read-timeout test): nobody to answer

            do_GET = do_POST = do_DELETE = _handle

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()

    def _expanded(self, payload: dict, request: Recorded) -> dict:
        """The answer with its payment_method id replaced by the object, when the request expands it."""
        expand = {value for name, value in request.form + request.query
                  if name == "expand" or name.startswith("expand[")}
        method = payload.get("payment_method")
        if "payment_method" not in expand or not isinstance(method, str):
            return payload
        return {**payload, "payment_method": self.payment_method_object(method)}

    def payment_method_object(self, method_id: str) -> dict:
        """The PaymentMethod registered for ``method_id``, else Stripe's example card with that id."""
        return copy.deepcopy(self.payment_methods.get(method_id)) or payment_method(id=method_id)

    def answer(self, method: str, path: str, *answers) -> None:
        """Queue answers for a route; the last one repeats."""
        self.answers[(method, path)] = list(answers)

    def close(self) -> None:
        self.hold.set()
        self.server.shutdown()
        self.server.server_close()


def _multipart(content_type: str, raw: bytes) -> tuple[list[tuple[str, str]], dict[str, tuple[str, bytes]]]:
    """The fields and files of a multipart/form-data body (Stripe's file uploads)."""
    message = email.message_from_bytes(f"Content-Type: {content_type}\r\n\r\n".encode() + raw,
                                       policy=email.policy.HTTP)
    form, files = [], {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        filename = part.get_filename()
        content = part.get_payload(decode=True) or b""
        if filename is not None:
            files[name] = (filename, content)
        else:
            form.append((name, content.decode()))
    return form, files


def payment_intent(**overrides) -> dict:
    """Stripe's example PaymentIntent with our values."""
    intent = stripe_fixture("payment_intent")
    intent.update({"id": "pi_kassa_1", "amount": 2500, "currency": "eur", "capture_method": "manual",
                   "status": "requires_confirmation", "last_payment_error": None, "next_action": None,
                   "automatic_payment_methods": None, "payment_method": "pm_card_visa",
                   "metadata": {"kassa_reference": "att_1"}})
    intent.update(overrides)
    return intent


def refund(**overrides) -> dict:
    """Stripe's example Refund with our values."""
    body = stripe_fixture("refund")
    body.update({"id": "re_kassa_1", "amount": 700, "currency": "eur", "payment_intent": "pi_kassa_1",
                 "status": "succeeded"})
    body.update(overrides)
    return body


def payment_method(**card) -> dict:
    """Stripe's example card PaymentMethod with our values: ``id`` and the card's fields (brand, last4,
    exp_month, exp_year, fingerprint, ...)."""
    method = stripe_fixture("payment_method")
    method.update({"id": card.pop("id", "pm_card_visa"), "metadata": {}})
    method["card"].update({"wallet": None, **card})
    return method


def card_declined(intent_id: str = "pi_kassa_1", decline_code: str = "insufficient_funds",
                  message: str = "Your card has insufficient funds.", method: dict | None = None) -> dict:
    """Stripe's 402 body for a declined confirmation: the error names the PaymentIntent (back in
    requires_payment_method, its payment_method unset and its last_payment_error the same error) and
    carries the PaymentMethod that was declined."""
    method = method or payment_method()
    error = {"type": "card_error", "code": "card_declined", "decline_code": decline_code, "message": message,
             "charge": "ch_kassa_declined", "doc_url": "https://stripe.com/docs/error-codes/card-declined",
             "payment_method": method}
    intent = payment_intent(id=intent_id, status="requires_payment_method", payment_method=None,
                            last_payment_error=copy.deepcopy(error))
    return {"error": {**error, "payment_intent": intent}}
