"""The API request log behind Developers › Logs: redaction, writing, the 30-day sweep (no Flask).

Rows are written by app/api/request_log.py after the response has been sent, on a connection and a
transaction of their own: a failed or slow log write never touches the API request's transaction or
its latency, and a rolled-back request is still logged (that is when a developer needs the log most).

Bodies are stored redacted: values under secret-looking keys (secrets, passwords, tokens, card data)
and anything shaped like an API key, webhook secret or card number are replaced before the row is
built, so the database never holds them. Bodies are capped at ``MAX_BODY_CHARS``.
"""
import json
import re
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from app.ids import new_id
from app.reporting.models import ApiRequestLog

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
# Values that are secrets whatever key they sit under: API keys (sk_/rk_, test or live), webhook secrets,
# card-number-like digit runs (13-19 digits, optionally grouped by spaces or dashes).
_SECRET_VALUE = re.compile(
    r"\b(?:sk|rk)_(?:test|live)_[A-Za-z0-9]{6,}\b|\bwhsec_[A-Za-z0-9+/=_\-]{6,}|\b(?:\d[ -]?){12,18}\d\b")


def _secret_key(name: str) -> bool:
    lowered = name.lower()
    return lowered in _SECRET_KEY_EXACT or any(part in lowered for part in _SECRET_KEY_PARTS)


def _mask_match(match: re.Match) -> str:
    text = match.group(0)
    if text.startswith(("sk_", "rk_")):
        prefix = text[: text.index("_", 3) + 1]
        return f"{prefix}…{text[-4:]}"
    if text.startswith("whsec_"):
        return "whsec_…"
    return "[card number redacted]"


def redact(value: Any, key: str | None = None) -> Any:
    """A copy of a JSON-like value with secrets replaced (see the module docstring)."""
    if key is not None and value not in (None, "", [], {}):
        if key.lower() == "payment_method" and isinstance(value, str):
            return value[:8] + "…"   # a vault token: enough to tell two test cards apart, never usable
        if _secret_key(key) and not isinstance(value, (dict, list)):
            return REDACTED
    if isinstance(value, dict):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    if isinstance(value, str):
        return _SECRET_VALUE.sub(_mask_match, value)
    return value


def body_text(value: Any) -> str | None:
    """Redacted JSON text of a body (None for no body), cut at MAX_BODY_CHARS."""
    if value is None or value == {} or value == "":
        return None
    if isinstance(value, (bytes, bytearray)):
        try:
            value = json.loads(value)
        except (ValueError, UnicodeDecodeError):
            text = bytes(value[: MAX_BODY_CHARS * 2]).decode("utf-8", "replace")
            return _cut(_SECRET_VALUE.sub(_mask_match, text))
    return _cut(json.dumps(redact(value), ensure_ascii=False, indent=2, sort_keys=False, default=str))


def _cut(text: str) -> str:
    if len(text) <= MAX_BODY_CHARS:
        return text
    return text[:MAX_BODY_CHARS] + f"\n… ({len(text) - MAX_BODY_CHARS} more characters not kept)"


def write(connection: Connection, *, merchant_id: str, livemode: bool, api_key_id: str | None, method: str,
          path: str, status: int, request_id: str | None, idempotency_key: str | None, latency_ms: int,
          ip: str | None, request_body: Any, response_body: Any, created_at: datetime) -> str:
    """Insert one log row on ``connection`` (the caller's own short transaction); returns its id."""
    row_id = new_id("log")
    connection.execute(insert(ApiRequestLog).values(
        id=row_id, merchant_id=merchant_id, livemode=livemode, api_key_id=api_key_id, method=method[:10],
        path=_SECRET_VALUE.sub(_mask_match, path)[:2000], status=status, request_id=request_id,
        idempotency_key=(idempotency_key or None) and idempotency_key[:255], latency_ms=max(int(latency_ms), 0),
        ip=(ip or None) and ip[:64], request_body=body_text(request_body), response_body=body_text(response_body),
        created_at=created_at))
    return row_id


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
