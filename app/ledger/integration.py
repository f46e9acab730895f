"""Flask-side glue for the ledger (views, CLI, jobs): the HMAC key from config, verify runs and their last result.

The service modules never import this; it is what hands them their collaborators.
"""
import json
import logging

from flask import current_app
from sqlalchemy.orm import Session

from app.ledger.errors import LedgerConfigurationError
from app.ledger.verify import VerifyReport, verify
from app.scoping import Scope

log = logging.getLogger(__name__)

# The last verify result lives in Redis: it is a report about the ledger, not money, and the next verify
# rebuilds it. Kept 30 days so that the admin page can say "never run" when verify has stopped running.
LAST_VERIFY_KEY = "kassa:ledger:last_verify"
LAST_VERIFY_TTL_SECONDS = 30 * 24 * 3600


def ledger_hmac_key(app=None) -> bytes:
    """LEDGER_HMAC_KEY of the app (the current one by default) as bytes (UTF-8 of the configured string)."""
    value = (app or current_app).config.get("LEDGER_HMAC_KEY") or ""
    key = value.encode() if isinstance(value, str) else bytes(value)
    if not key:
        raise LedgerConfigurationError("LEDGER_HMAC_KEY is not set")
    return key


def run_verify(session: Session, hmac_key: bytes, scope: Scope | None = None) -> VerifyReport:
    """Verify in a fresh REPEATABLE READ, read-only transaction, so that the whole report sees one snapshot.

    Postings go on meanwhile and are simply not in the snapshot; under READ COMMITTED an account row and
    the entries read a moment later could disagree and raise a false alarm.
    """
    session.rollback()
    session.connection(execution_options={"isolation_level": "REPEATABLE READ", "postgresql_readonly": True})
    try:
        return verify(session, hmac_key, scope)
    finally:
        session.rollback()


def save_last_verify(report: VerifyReport, redis=None) -> bool:
    """Remember a platform-wide verify result for the admin page; False (logged) when Redis is unavailable."""
    from app.extensions import redis_client

    try:
        (redis or redis_client()).set(LAST_VERIFY_KEY, json.dumps(report.to_dict()), ex=LAST_VERIFY_TTL_SECONDS)
        return True
    except Exception:  # noqa: BLE001 - Redis down: the report was printed/logged; the next run stores it
        log.exception("could not store the ledger verify result in Redis")
        return False


def last_verify(redis=None) -> dict | None:
    """The last stored verify result (VerifyReport.to_dict()), or None."""
    from app.extensions import redis_client

    try:
        raw = (redis or redis_client()).get(LAST_VERIFY_KEY)
    except Exception:  # noqa: BLE001 - the admin page says "unknown" rather than failing
        log.exception("could not read the ledger verify result from Redis")
        return None
    return json.loads(raw) if raw else None
