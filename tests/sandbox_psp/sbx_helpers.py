"""Helpers of the sandbox PSP tests: starting the subprocess, HTTP clients, a hook receiver.

A module of its own (not conftest.py) so that test files can import it by a name that
no other test folder uses.
"""
import datetime
import hashlib
import hmac
import json
import os
import select
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests

from launcher.processes import free_port as launcher_free_port

REPO_ROOT = Path(__file__).resolve().parents[2]

SECRET = "test-acquirer-secret"
WEBHOOK_SECRET = "test-webhook-secret"
ALLOWED_ORIGIN = "http://127.0.0.1:5999"
# Short stall of the timeout card, still longer than the 1 s read timeout of the tests.
TIMEOUT_DELAY_SECONDS = 2
# Upper bound for waiting on the subprocess or a callback; a healthy run needs a
# fraction of it, so hitting it means something is broken, not slow.
WAIT_SECONDS = 15
FUTURE_YEAR = datetime.date.today().year + 10  # comfortably valid, well inside the 50-year limit


def free_port() -> int:
    """A TCP port that was free a moment ago (the launcher's choice, below the ephemeral range)."""
    return launcher_free_port()


def new_session(headers: dict | None = None) -> requests.Session:
    """A requests session that ignores proxy settings from the environment."""
    session = requests.Session()
    session.trust_env = False
    session.headers.update(headers or {})
    return session


def wait_until(predicate, timeout: float = WAIT_SECONDS, interval: float = 0.05):
    """Poll ``predicate`` until it returns something truthy; return that or fail."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(interval)


def verify_signature(header: str, body: bytes, secret: str = WEBHOOK_SECRET, tolerance: int = 300) -> bool:
    """Check a Sandbox-Signature header the way Kassa must (API.md)."""
    parts = dict(item.split("=", 1) for item in header.split(","))
    timestamp = int(parts["t"])
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts["v1"]) and abs(time.time() - timestamp) <= tolerance


class HookReceiver:
    """A local HTTP server standing in for Kassa's /hooks/sandbox."""

    def __init__(self):
        self.received = []  # (headers dict, raw body bytes)
        self.fail_next = 0  # answer 500 to this many next deliveries
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver._lock:
                    receiver.received.append((dict(self.headers), body))
                    failing = receiver.fail_next > 0
                    if failing:
                        receiver.fail_next -= 1
                self.send_response(500 if failing else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/sandbox"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self):
        """Serve in a background thread."""
        self._thread.start()

    def stop(self):
        """Stop serving and close the socket."""
        self.server.shutdown()
        self.server.server_close()

    def clear(self):
        """Forget received callbacks and stop failing."""
        with self._lock:
            self.received.clear()
            self.fail_next = 0

    def events(self, type_: str | None = None) -> list[tuple[dict, dict, bytes]]:
        """(headers, parsed body, raw body) of received callbacks, optionally of one type."""
        with self._lock:
            items = list(self.received)
        parsed = [(headers, json.loads(body), body) for headers, body in items]
        return [item for item in parsed if type_ is None or item[1]["type"] == type_]

    def wait_for(self, type_: str, count: int = 1) -> list:
        """Wait until ``count`` callbacks of a type arrived; return them."""
        def enough():
            found = self.events(type_)
            return found if len(found) >= count else None

        return wait_until(enough)


class Acquirer:
    """HTTP client of one acquirer listener."""

    def __init__(self, name: str, url: str, port: int):
        self.name = name
        self.url = url
        self.port = port
        self.http = new_session({"Authorization": f"Bearer {SECRET}"})

    def post(self, path: str, body: dict | None = None, key: str | None = None, **kwargs):
        """POST JSON, with an Idempotency-Key if given."""
        headers = {"Idempotency-Key": key} if key else {}
        return self.http.post(self.url + path, json=body or {}, headers=headers, **kwargs)

    def get(self, path: str, **kwargs):
        """GET a path of this acquirer."""
        return self.http.get(self.url + path, **kwargs)

    def authorize(self, token: str, amount: int = 1000, currency: str = "USD", key: str | None = None,
                  timeout=None, **extra):
        """POST /v1/authorizations (``extra`` goes into the body), with a fresh key unless given."""
        body = {"token": token, "amount": amount, "currency": currency, "reference": "pay_test", **extra}
        return self.post("/v1/authorizations", body, key=key or str(uuid.uuid4()), timeout=timeout)


class Sandbox:
    """Handles to a running sandbox: public session, acquirers, receiver, data dir."""

    def __init__(self, public_url: str, acquirers: dict, receiver: HookReceiver, data_dir: Path, log_path: Path):
        self.public_url = public_url
        self.public = new_session()
        self.acquirers = acquirers
        self.a = acquirers["sandbox"]
        self.b = acquirers["sandbox_b"]
        self.receiver = receiver
        self.data_dir = data_dir
        self.log_path = log_path

    def close(self):
        """Close the HTTP sessions."""
        self.public.close()
        for acquirer in self.acquirers.values():
            acquirer.http.close()

    def tokenize(self, number: str = "4242424242424242", cvc: str = "123") -> dict:
        """A token for a card number (must succeed)."""
        response = self.public.post(self.public_url + "/v1/tokens",
                                    json={"number": number, "exp_month": 12, "exp_year": FUTURE_YEAR, "cvc": cvc})
        assert response.status_code == 201, response.text
        return response.json()

    def admin(self, path: str, body: dict | None = None) -> dict:
        """POST to an admin endpoint (must succeed); return its JSON."""
        response = self.public.post(self.public_url + path, json=body or {})
        assert response.status_code == 200, response.text
        return response.json()

    def stats(self, **params) -> dict:
        """GET /_admin/stats."""
        return self.public.get(self.public_url + "/_admin/stats", params=params).json()

    def captured(self, number: str = "4242424242424242", amount: int = 1000, acquirer=None) -> dict:
        """A fully captured authorization."""
        acquirer = acquirer or self.a
        auth = acquirer.authorize(self.tokenize(number)["id"], amount).json()
        response = acquirer.post(f"/v1/authorizations/{auth['id']}/capture", {}, key=str(uuid.uuid4()))
        assert response.status_code == 200, response.text
        return response.json()


def start_sandbox(data_dir: Path, log_path: Path, hook_url: str | None):
    """Start ``python -m sandbox_psp`` on free ports; return (process, log file, ports)."""
    ports = {"public": free_port(), "sandbox": free_port(), "sandbox_b": free_port()}
    command = [
        sys.executable, "-m", "sandbox_psp",
        "--port", str(ports["public"]),
        "--acquirer", f"sandbox={ports['sandbox']}",
        "--acquirer", f"sandbox_b={ports['sandbox_b']}",
        "--data", str(data_dir),
        "--secret", SECRET,
        "--webhook-secret", WEBHOOK_SECRET,
        "--cors-origin", ALLOWED_ORIGIN,
        "--timeout-delay", str(TIMEOUT_DELAY_SECONDS),
    ]
    if hook_url:
        command += ["--hook-url", hook_url]
    log_file = open(log_path, "w")  # noqa: SIM115 - closed by the caller
    env = {key: value for key, value in os.environ.items() if not key.startswith("SANDBOX_")}
    process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=log_file, env=env,
                               text=True)
    return process, log_file, ports


def wait_ready(process: subprocess.Popen) -> None:
    """Wait for the "sandbox_psp ready" line on stdout."""
    ready, _, _ = select.select([process.stdout], [], [], WAIT_SECONDS)
    assert ready, "sandbox printed nothing in time"
    line = process.stdout.readline()  # the ready line, or "" if the process died
    assert line.strip() == "sandbox_psp ready", f"sandbox did not start: {line!r}"


# Free ports are picked before the sandbox binds them, so another process may take one in between;
# the sandbox then exits at once (code 1) and a new set of ports is tried.
START_ATTEMPTS = 5


def start_ready_sandbox(data_dir: Path, log_path: Path, hook_url: str | None):
    """start_sandbox + wait_ready, on fresh ports again when a port was taken meanwhile."""
    for attempt in range(1, START_ATTEMPTS + 1):
        process, log_file, ports = start_sandbox(data_dir, log_path, hook_url)
        try:
            wait_ready(process)
            return process, log_file, ports
        except AssertionError:
            exited = process.wait(timeout=WAIT_SECONDS) if process.poll() is None else process.returncode
            process.stdout.close()
            log_file.close()
            if exited != 1 or attempt == START_ATTEMPTS or "in use" not in log_path.read_text():
                raise
    raise AssertionError("unreachable")
