"""Signed callbacks to Kassa, delivered from an outbox table by a background thread.

A change that deserves a callback inserts a row with ``enqueue`` in its own write
transaction; the sender thread posts due rows to ``--hook-url`` and retries failures
with exponential backoff. Request handlers never wait for delivery.
"""
import hashlib
import hmac
import json
import logging
import secrets
import threading
import time
import urllib.error
import urllib.request

from . import store as store_mod

log = logging.getLogger(__name__)

# Six tries in all, 1 s, 2 s, 4 s, 8 s, 16 s apart (API.md): about half a minute of
# retries rides out a Kassa restart without piling up callbacks for a dead endpoint.
MAX_ATTEMPTS = 6
FIRST_BACKOFF_SECONDS = 1
# One slow receiver must not hold the sender for long; Kassa answers hooks in well under 5 s.
DELIVERY_TIMEOUT_SECONDS = 5
# How often the sender looks for due retries when nobody wakes it; it is woken at once
# after every enqueue, so this only bounds the lateness of retries.
POLL_SECONDS = 0.5
SIGNATURE_HEADER = "Sandbox-Signature"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect answer counts as a failed delivery; never re-send the body elsewhere."""

    def redirect_request(self, *args, **kwargs):
        return None


# Callbacks go straight to the hook URL: no proxies from the environment, no redirects.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The Sandbox-Signature header value: ``t=<unix>,v1=<hex HMAC-SHA256(secret, "t.body")>``."""
    message = str(timestamp).encode("ascii") + b"." + body
    digest = hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


_enqueued = 0
_enqueued_lock = threading.Lock()


def enqueued_count() -> int:
    """How many callbacks were enqueued so far (in any thread): a write that raised it wakes the sender."""
    return _enqueued


def enqueue(conn, type_: str, data: dict, created: int) -> str:
    """Add a callback to the outbox inside the caller's transaction; return its id."""
    global _enqueued
    with _enqueued_lock:
        _enqueued += 1
    callback_id = "cb_" + secrets.token_hex(12)
    body = json.dumps({"id": callback_id, "type": type_, "created": created, "data": data})
    conn.execute(
        "INSERT INTO callbacks (id, type, body, created, next_attempt_at) VALUES (?, ?, ?, ?, ?)",
        (callback_id, type_, body, created, time.time()),
    )
    return callback_id


def callback_object(row) -> dict:
    """Delivery state of a callback, for /_admin/callbacks."""
    return {
        "id": row["id"],
        "type": row["type"],
        "created": row["created"],
        "state": row["state"],
        "attempts": row["attempts"],
        "last_error": row["last_error"],
        "data": json.loads(row["body"])["data"],
    }


class CallbackSender:
    """Background thread that posts pending callbacks and retries failures."""

    def __init__(self, store: store_mod.Store, hook_url: str | None, secret: str, tick=None):
        self.store = store
        self.hook_url = hook_url
        self.secret = secret
        self._tick = tick  # called every loop, e.g. to open disputes that fell due
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the sender thread."""
        self._thread = threading.Thread(target=self._run, name="sandbox-callbacks", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the sender thread (pending callbacks stay in the outbox)."""
        self._stop.set()
        self._wake.set()
        if self._thread:
            self._thread.join(timeout=DELIVERY_TIMEOUT_SECONDS + 1)

    def wake(self) -> None:
        """Look for due callbacks now instead of at the next poll."""
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                if self._tick:
                    self._tick()
                self.run_once()
            except Exception:  # keep the thread alive; the next loop retries
                log.exception("callback sender loop failed")
            self._wake.wait(POLL_SECONDS)

    def run_once(self) -> int:
        """Try every due callback once; return how many were delivered."""
        if not self.hook_url:
            return 0  # nowhere to send: callbacks stay pending, visible in /_admin/callbacks
        with self.store.read() as conn:
            due = conn.execute(
                "SELECT id, body, attempts FROM callbacks "
                "WHERE state = 'pending' AND next_attempt_at <= ? ORDER BY next_attempt_at, id",
                (time.time(),),
            ).fetchall()
        delivered = 0
        for row in due:
            if self._stop.is_set():
                break
            error = self._post(row["body"].encode("utf-8"))
            delivered += self._record(row["id"], row["attempts"] + 1, error)
        return delivered

    def _post(self, body: bytes) -> str | None:
        """POST one callback; None on a 2xx answer, else a short error text."""
        # Signed with the real wall clock at send time: the receiver's staleness check
        # compares with its own clock, which the sandbox clock offset does not move.
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "sandbox-psp",
            SIGNATURE_HEADER: sign(self.secret, body, int(time.time())),
        }
        request = urllib.request.Request(self.hook_url, data=body, headers=headers, method="POST")
        try:
            with _OPENER.open(request, timeout=DELIVERY_TIMEOUT_SECONDS) as response:
                response.read()
                return None
        except urllib.error.HTTPError as exc:
            exc.close()
            return f"HTTP {exc.code}"
        except (OSError, urllib.error.URLError) as exc:
            return type(exc).__name__ + ": " + str(exc)[:200]

    def _record(self, callback_id: str, attempts: int, error: str | None) -> int:
        """Store the outcome of one attempt and schedule the next one if needed."""
        now = time.time()
        with self.store.write() as conn:
            if error is None:
                conn.execute(
                    "UPDATE callbacks SET state = 'delivered', attempts = ?, delivered_at = ?, "
                    "last_error = NULL WHERE id = ?",
                    (attempts, now, callback_id),
                )
                return 1
            state = "failed" if attempts >= MAX_ATTEMPTS else "pending"
            backoff = FIRST_BACKOFF_SECONDS * 2 ** (attempts - 1)
            conn.execute(
                "UPDATE callbacks SET state = ?, attempts = ?, next_attempt_at = ?, last_error = ? "
                "WHERE id = ?",
                (state, attempts, now + backoff, error, callback_id),
            )
        log.warning("callback %s attempt %d failed: %s", callback_id, attempts, error)
        return 0
