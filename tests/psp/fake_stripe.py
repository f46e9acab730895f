"""A local HTTP server standing in for Stripe's API: it records exactly what the SDK sends (method, path,
headers, form fields) and answers with objects shaped like Stripe's, taken from Stripe's own example
file (/work/shared/fixtures/stripe/fixtures3.json, from the public stripe/openapi repository)."""
import copy
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

FIXTURES = Path("/work/shared/fixtures/stripe/fixtures3.json")


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

    @property
    def fields(self) -> dict[str, str]:
        return dict(self.form)


class FakeStripe:
    """Answers queued per (method, path): each answer is (status, body dict) or a callable."""

    def __init__(self):
        self.requests: list[Recorded] = []
        self.answers: dict[tuple[str, str], list] = {}
        self.hold = threading.Event()   # set by the test to release a held answer
        self.hold.set()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self):
                parts = urlsplit(self.path)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0) or 0)).decode()
                outer.requests.append(Recorded(self.command, parts.path, dict(self.headers),
                                               parse_qsl(body, keep_blank_values=True),
                                               parse_qsl(parts.query, keep_blank_values=True)))
                queue = outer.answers.get((self.command, parts.path)) or []
                if not queue:
                    status, payload = 404, {"error": {"type": "invalid_request_error", "code": "resource_missing",
                                                      "message": f"No such route {parts.path}"}}
                else:
                    answer = queue.pop(0) if len(queue) > 1 else queue[0]
                    if answer == "hold":
                        outer.hold.wait(30)
                        status, payload = 200, {}
                    else:
                        status, payload = answer
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Request-Id", f"req_fake_{len(outer.requests)}")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = _handle

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()

    def answer(self, method: str, path: str, *answers) -> None:
        """Queue answers for a route; the last one repeats."""
        self.answers[(method, path)] = list(answers)

    def close(self) -> None:
        self.hold.set()
        self.server.shutdown()
        self.server.server_close()


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
