"""The API request log behind Developers › Logs: redaction, writing, the 30-day sweep (no Flask).

Rows are handed by app/api/request_log.py, once the response has been sent, to a ``BatchWriter`` that
inserts them in batches on a connection and in transactions of their own: a failed or slow log write
never touches the API request's transaction or its latency, and a rolled-back request is still logged
(that is when a developer needs the log most).

Bodies are stored redacted: values under secret-looking keys (secrets, passwords, tokens, card data)
and anything shaped like an API key or webhook secret are replaced before the row is built, and card
numbers wherever they are (keys, values, numbers, the path, a body that did not parse: app/pan.py), so
the database never holds them, not even for a request the API refused because of one. Bodies are capped
at ``MAX_BODY_CHARS``.
"""
import atexit
import json
import logging
import os
import re
import threading
import time
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import unquote_plus

from sqlalchemy import delete, insert, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from app import json_input, pan
from app.ids import new_id
from app.reporting.models import ApiRequestLog

log = logging.getLogger(__name__)

# The issue: "kept 30 days".
RETENTION = timedelta(days=30)
# A request or response body beyond this is cut (the dashboard shows it; 16 KB is pages of JSON).
MAX_BODY_CHARS = 16_000
# Rows per DELETE of the sweep: each statement and its WAL stay small, so the sweep never holds up writers.
SWEEP_BATCH = 5000
REDACTED = "[redacted]"

# Keys whose values are never stored, whatever they look like (case-insensitive; parts of a key, or whole keys).
_SECRET_KEY_PARTS = ("secret", "password", "passwd", "token", "authorization", "api_key", "apikey", "cvc",
                     "cvv", "card_number", "private", "credential", "signature")
_SECRET_KEY_EXACT = {"number", "key", "plaintext", "pan"}
# Values that are secrets whatever key they sit under: API keys (sk_/rk_, test or live), webhook secrets.
# (Card numbers: app/pan.py, applied to everything.)
_SECRET_VALUE = re.compile(r"\b(?:sk|rk)_(?:test|live)_[A-Za-z0-9]{6,}\b|\bwhsec_[A-Za-z0-9+/=_\-]{6,}")


def _secret_key(name: str) -> bool:
    lowered = name.lower()
    return lowered in _SECRET_KEY_EXACT or any(part in lowered for part in _SECRET_KEY_PARTS)


def _mask_match(match: re.Match) -> str:
    text = match.group(0)
    if text.startswith(("sk_", "rk_")):
        prefix = text[: text.index("_", 3) + 1]
        return f"{prefix}…{text[-4:]}"
    return "whsec_…"


def _redact_text(text: str) -> str:
    return pan.redact(_SECRET_VALUE.sub(_mask_match, text))


def redact(value: Any, key: str | None = None) -> Any:
    """A copy of a JSON-like value with secrets replaced (see the module docstring)."""
    if key is not None and value not in (None, "", [], {}):
        if key.lower() == "payment_method" and isinstance(value, str) and pan.find_card_number(value) is None:
            return value[:8] + "…"   # a vault token: enough to tell two test cards apart, never usable
        if _secret_key(key) and not isinstance(value, (dict, list)):
            return REDACTED
    if isinstance(value, dict):
        return {_redact_text(str(k)): redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    if isinstance(value, str):
        return _redact_text(value)
    return value


def body_text(value: Any) -> str | None:
    """Redacted JSON text of a body (None for no body), cut at MAX_BODY_CHARS."""
    if value is None or value == {} or value == "":
        return None
    if isinstance(value, (bytes, bytearray)):
        try:
            value = json_input.loads(value)
        except (ValueError, UnicodeDecodeError):
            text = bytes(value[: MAX_BODY_CHARS * 2]).decode("utf-8", "backslashreplace")
            decoded = unquote_plus(text)
            if decoded != text and pan.find_card_number(decoded) is not None:
                text = decoded   # a form body whose card number is URL-encoded ("4242+4242+...")
            return _cut(_redact_text(text))
    # The text once more: a card number sent as a JSON number is no string for redact().
    text = json.dumps(redact(value), ensure_ascii=False, indent=2, sort_keys=False, default=str)
    return _cut(pan.redact(text))


def _cut(text: str) -> str:
    if len(text) <= MAX_BODY_CHARS:
        return text
    return text[:MAX_BODY_CHARS] + f"\n… ({len(text) - MAX_BODY_CHARS} more characters not kept)"


def log_row(*, merchant_id: str, livemode: bool, api_key_id: str | None, method: str, path: str, status: int,
            request_id: str | None, idempotency_key: str | None, latency_ms: int, ip: str | None,
            request_body: Any, response_body: Any, created_at: datetime) -> dict[str, Any]:
    """One log row's column values, redacted and capped, ready to insert."""
    return dict(
        id=new_id("log"), merchant_id=merchant_id, livemode=livemode, api_key_id=api_key_id, method=method[:10],
        path=_redact_text(path)[:2000], status=status, request_id=request_id,
        idempotency_key=(idempotency_key or None) and _redact_text(idempotency_key)[:255], latency_ms=max(int(latency_ms), 0),
        ip=(ip or None) and ip[:64], request_body=body_text(request_body), response_body=body_text(response_body),
        created_at=created_at)


def storable(row: dict[str, Any]) -> dict[str, Any]:
    r"""The row with what PostgreSQL text cannot hold written as escapes, each text still within its column.

    A request may carry a NUL (``%00`` in its path, ``\u0000`` in its JSON) or text that is not UTF-8
    (unpaired surrogates from JSON escapes, raw bytes); stored as ``\u0000`` / ``\udc80`` they stay
    readable in Developers › Logs instead of failing the insert.
    """
    columns = ApiRequestLog.__table__.c
    result = {}
    for name, value in row.items():
        if isinstance(value, str):
            value = value.replace("\x00", "\\u0000").encode("utf-8", "backslashreplace").decode("utf-8")
            value = value[:columns[name].type.length] if columns[name].type.length else value
        result[name] = value
    return result


def write(connection: Connection, rows: list[dict[str, Any]]) -> None:
    """Insert log rows (from ``log_row``) on ``connection``, in the caller's own short transaction."""
    if rows:
        connection.execute(insert(ApiRequestLog), [storable(row) for row in rows])


def write_each(connection: Connection, rows: list[dict[str, Any]]) -> int:
    """Insert rows one by one, each in a savepoint, skipping (and logging) any the database refuses: a
    batch that failed as a whole loses only its bad rows, not every other merchant's. Returns how many."""
    written = 0
    for row in rows:
        try:
            with connection.begin_nested():
                write(connection, [row])
            written += 1
        except Exception:  # noqa: BLE001 - whatever was wrong with this row, the next may be fine
            log.warning("API request log row refused (merchant %s, %s %s)", row.get("merchant_id"),
                        row.get("method"), row.get("path"), exc_info=True)
    return written


class BatchWriter:
    """Writes log rows from a background thread, many per transaction, at most ``interval`` seconds late.

    A row per request in a transaction of its own cost the API four round trips per request; batched,
    the rows of a busy second share one multi-row INSERT. Rows still waiting when a process is killed
    are lost, which a debugging aid can afford; ``max_pending`` bounds memory if the database stalls
    (rows beyond it are dropped and counted). ``interval=0`` writes each row at once, on the caller's
    thread (tests, and anyone who wants no delay). A batch the database refuses is written again row by row
    (``write_each``): one bad row costs only itself.
    """

    def __init__(self, engine, *, interval: float = 0.2, max_pending: int = 10_000):
        self._engine = engine
        self.interval = interval
        self.max_pending = max_pending
        self.dropped = 0
        self._rows: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._pid: int | None = None   # the thread does not survive a fork (gunicorn's workers)

    def add(self, row: dict[str, Any]) -> None:
        if self.interval <= 0:
            self._write([row])
            return
        with self._lock:
            if len(self._rows) >= self.max_pending:
                self.dropped += 1
                return
            self._rows.append(row)
            if self._pid != os.getpid():
                self._pid = os.getpid()
                threading.Thread(target=self._run, name="request-log-writer", daemon=True).start()
                atexit.register(self.flush)

    def flush(self) -> int:
        """Write every waiting row now; returns how many were written."""
        with self._lock:
            rows, self._rows = self._rows, []
        return self._write(rows)

    def _run(self) -> None:
        while True:
            time.sleep(self.interval)
            self.flush()

    def _write(self, rows: list[dict[str, Any]]) -> int:
        if not rows:
            return 0
        try:
            return self._insert(rows, one_by_one=False)
        except OperationalError:  # a stall or a lost connection: row by row would fare no better
            log.warning("could not write %d API request log rows", len(rows), exc_info=True)
            return 0
        except Exception:  # noqa: BLE001 - a row the database refused: keep the others
            log.warning("a batch of %d API request log rows failed; writing them one by one", len(rows),
                        exc_info=True)
        try:
            return self._insert(rows, one_by_one=True)
        except Exception:  # noqa: BLE001 - best effort: the log is a debugging aid
            log.warning("could not write %d API request log rows", len(rows), exc_info=True)
            return 0

    def _insert(self, rows: list[dict[str, Any]], *, one_by_one: bool) -> int:
        with self._engine.begin() as connection:
            # Log rows are not worth waiting for: give up rather than pile up behind a stall.
            connection.execute(text("SET LOCAL statement_timeout = '2s'"))
            if one_by_one:
                return write_each(connection, rows)
            write(connection, rows)
        return len(rows)


def sweep(session: Session, now: datetime, *, batch: int = SWEEP_BATCH) -> int:
    """Delete log rows older than RETENTION in batches (each its own statement); returns how many."""
    cutoff = now - RETENTION
    total = 0
    while True:
        ids = select(ApiRequestLog.id).where(ApiRequestLog.created_at < cutoff).limit(batch).scalar_subquery()
        count = session.execute(delete(ApiRequestLog).where(ApiRequestLog.id.in_(ids))).rowcount or 0
        session.commit()
        total += count
        if count < batch:
            return total
