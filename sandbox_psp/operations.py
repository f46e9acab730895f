"""What the acquirer does: tokens, authorizations, captures, voids, refunds (disputes: ``disputes``).

Plain functions over a SQLite connection (inside the caller's transaction) and a
sandbox time ``now``; no Flask. Business failures raise ``SandboxError``, which the
web layer turns into the JSON error of API.md.
"""
import json
import re
import secrets

from . import callbacks
from .cards import CardDetails

# Refunds of the pending-refund card stay pending this long (sandbox clock) before they succeed, as
# Stripe's test card of the same number does "some time later"; tests move the clock past it.
REFUND_PENDING_SECONDS = 3600
CURRENCY_RE = re.compile(r"^[A-Z]{3}$")
# Merchant references and URLs are echoed back; cap them so a bad client cannot bloat storage.
MAX_TEXT_LENGTH = 500


class SandboxError(Exception):
    """An API error: HTTP status, error code, message, optional param and extra fields."""

    def __init__(self, status: int, code: str, message: str, param: str | None = None, **extra):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.param = param
        self.extra = extra

    def body(self) -> dict:
        """The JSON error body."""
        error = {"code": self.code, "message": self.message, "param": self.param}
        error.update(self.extra)
        return {"error": error}


def new_id(prefix: str) -> str:
    """A random object id such as ``auth_3f...``."""
    return f"{prefix}_{secrets.token_hex(12)}"


# ---------------------------------------------------------------- input checks


def _amount(params: dict, name: str = "amount", required: bool = True) -> int | None:
    value = params.get(name)
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise SandboxError(400, "invalid_request", f"{name} must be a positive integer (minor units)", name)
    return value


def _text(params: dict, name: str, required: bool = True) -> str | None:
    value = params.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value or len(value) > MAX_TEXT_LENGTH:
        raise SandboxError(400, "invalid_request", f"{name} must be a non-empty string", name)
    return value


def _currency(params: dict) -> str:
    value = params.get("currency")
    if not isinstance(value, str) or not CURRENCY_RE.match(value.upper()):
        raise SandboxError(400, "invalid_request", "currency must be an ISO 4217 code", "currency")
    return value.upper()


def _return_url(params: dict) -> str | None:
    value = _text(params, "return_url", required=False)
    if value is not None and not value.startswith(("http://", "https://")):
        raise SandboxError(400, "invalid_request", "return_url must be an http(s) URL", "return_url")
    return value


# ---------------------------------------------------------------- serialisation


def card_object(card: CardDetails | dict) -> dict:
    """The public card object (no number, no CVC)."""
    if isinstance(card, CardDetails):
        card = card.__dict__
    return {
        "brand": card["brand"],
        "last4": card["last4"],
        "exp_month": card["exp_month"],
        "exp_year": card["exp_year"],
        "fingerprint": card["fingerprint"],
        "risk_hint": card["risk_hint"],
        "bin": card.get("bin"),
        "funding": card.get("funding"),
        "country": card.get("country"),
    }


def token_object(row) -> dict:
    """The token object of API.md."""
    return {"id": row["id"], "card": card_object(dict(row)), "created": row["created"]}


def authorization_object(row) -> dict:
    """The authorization object of API.md."""
    return {
        "id": row["id"],
        "acquirer": row["acquirer"],
        "status": row["status"],
        "amount": row["amount"],
        "currency": row["currency"],
        "captured_amount": row["captured_amount"],
        "refunded_amount": row["refunded_amount"],
        "decline_code": row["decline_code"],
        "action_url": row["action_url"],
        "reference": row["reference"],
        "idempotency_key": row["idempotency_key"],
        "card": json.loads(row["card"]),
        "three_d_secure": row["three_d_secure"] if "three_d_secure" in row.keys() else None,
        "created": row["created"],
    }


def refund_object(row) -> dict:
    """The refund object of API.md."""
    return {
        "id": row["id"],
        "acquirer": row["acquirer"],
        "authorization": row["authorization_id"],
        "amount": row["amount"],
        "currency": row["currency"],
        "status": row["status"],
        "failure_code": row["failure_code"],
        "created": row["created"],
    }


# ---------------------------------------------------------------- vault


def create_token(conn, card: CardDetails, now: int) -> dict:
    """Store a tokenized card; return the token object."""
    token_id = new_id("tok")
    conn.execute(
        "INSERT INTO tokens (id, brand, last4, exp_month, exp_year, fingerprint, outcome, risk_hint, bin, funding, "
        "country, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (token_id, card.brand, card.last4, card.exp_month, card.exp_year, card.fingerprint,
         card.outcome, card.risk_hint, card.bin, card.funding, card.country, now),
    )
    return token_object(conn.execute("SELECT * FROM tokens WHERE id = ?", (token_id,)).fetchone())


def get_token(conn, token_id: str) -> dict:
    """A token object; 404 if unknown."""
    row = conn.execute("SELECT * FROM tokens WHERE id = ?", (token_id,)).fetchone()
    if row is None:
        raise SandboxError(404, "not_found", "No such token.", "id")
    return token_object(row)


# ---------------------------------------------------------------- authorizations


def _load_authorization(conn, acquirer: str | None, auth_id: str):
    """The authorization row (of this acquirer, if given); 404 if unknown."""
    row = conn.execute("SELECT * FROM authorizations WHERE id = ?", (auth_id,)).fetchone()
    if row is None or (acquirer is not None and row["acquirer"] != acquirer):
        raise SandboxError(404, "not_found", "No such authorization.", "id")
    return row


def get_authorization(conn, acquirer: str, auth_id: str) -> dict:
    """An authorization object of this acquirer; 404 if unknown."""
    return authorization_object(_load_authorization(conn, acquirer, auth_id))


def find_authorizations(conn, acquirer: str, idempotency_key: str) -> list[dict]:
    """Authorizations made with an idempotency key (0 or 1)."""
    rows = conn.execute(
        "SELECT * FROM authorizations WHERE acquirer = ? AND idempotency_key = ? ORDER BY created, id",
        (acquirer, idempotency_key),
    ).fetchall()
    return [authorization_object(row) for row in rows]


def authorize(conn, acquirer: str, params: dict, idempotency_key: str | None, now: int,
              public_url: str) -> tuple[dict, str]:
    """Authorize a tokenized card; return (authorization object, the card's outcome).

    The outcome comes from the test card behind the token. ``processing_error`` raises a
    503 that is guaranteed not processed, so nothing is written. With ``capture: true`` an
    authorization granted at once is also captured in full (a sale); one that needs 3-D Secure
    or is declined is not, and says so by its status.
    """
    token_id = _text(params, "token")
    amount = _amount(params)
    currency = _currency(params)
    reference = _text(params, "reference")
    return_url = _return_url(params)
    capture_now = params.get("capture", False)
    if not isinstance(capture_now, bool):
        raise SandboxError(400, "invalid_request", "capture must be true or false", "capture")
    # "challenge": the merchant (a risk rule) asks for 3-D Secure whatever the card; "automatic" (default):
    # only cards that require it are challenged.
    three_d_secure = params.get("three_d_secure", "automatic")
    if three_d_secure not in ("automatic", "challenge"):
        raise SandboxError(400, "invalid_request", "three_d_secure must be automatic or challenge", "three_d_secure")
    token = conn.execute("SELECT * FROM tokens WHERE id = ?", (token_id,)).fetchone()
    if token is None:
        raise SandboxError(400, "invalid_token", "No such token.", "token")

    outcome = token["outcome"]
    if outcome == "processing_error":
        raise SandboxError(503, "processing_error", "The acquirer could not process the request.",
                           processed=False)
    auth_id = new_id("auth")
    status, decline_code, action_url = "authorized", None, None
    if outcome.startswith("decline_"):
        status, decline_code = "declined", outcome.removeprefix("decline_")
    elif outcome == "three_d_secure" or three_d_secure == "challenge":
        status, action_url = "requires_action", f"{public_url}/challenge/{auth_id}"
    captured_amount, captured_at = 0, None
    if capture_now and status == "authorized":
        status, captured_amount, captured_at = "captured", amount, now
    conn.execute(
        "INSERT INTO authorizations (id, acquirer, token, outcome, status, amount, currency, decline_code, "
        "action_url, return_url, reference, idempotency_key, card, created, captured_amount, captured_at, "
        "three_d_secure) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (auth_id, acquirer, token_id, outcome, status, amount, currency, decline_code, action_url,
         return_url, reference, idempotency_key, json.dumps(card_object(dict(token))), now,
         captured_amount, captured_at, "challenged" if status == "requires_action" else None),
    )
    return get_authorization(conn, acquirer, auth_id), outcome


def _invalid_state(row, action: str) -> SandboxError:
    return SandboxError(400, "invalid_state", f"Cannot {action} an authorization that is {row['status']}.",
                        current_status=row["status"])


def capture(conn, acquirer: str, auth_id: str, params: dict, now: int) -> dict:
    """Capture an authorization once, fully or partially (``amount`` optional)."""
    row = _load_authorization(conn, acquirer, auth_id)
    amount = _amount(params, required=False)
    if row["status"] != "authorized":
        raise _invalid_state(row, "capture")
    if amount is None:
        amount = row["amount"]
    if amount > row["amount"]:
        raise SandboxError(400, "amount_too_large", "Cannot capture more than was authorized.", "amount")
    status = "captured" if amount == row["amount"] else "partially_captured"
    conn.execute(
        "UPDATE authorizations SET status = ?, captured_amount = ?, captured_at = ? WHERE id = ?",
        (status, amount, now, auth_id),
    )
    return get_authorization(conn, acquirer, auth_id)


def void(conn, acquirer: str, auth_id: str, now: int) -> dict:
    """Release an authorization that has not been captured."""
    row = _load_authorization(conn, acquirer, auth_id)
    if row["status"] not in ("authorized", "requires_action"):
        raise _invalid_state(row, "void")
    conn.execute("UPDATE authorizations SET status = 'voided' WHERE id = ?", (auth_id,))
    return get_authorization(conn, acquirer, auth_id)


def complete_challenge(conn, auth_id: str, approve: bool, now: int) -> dict:
    """Finish a 3-D Secure challenge; announce the result with ``authorization.updated``.

    A challenge that is no longer pending is left as it is (a double click, a back
    button): the current authorization is returned and no callback is sent.
    """
    row = _load_authorization(conn, None, auth_id)
    if row["status"] != "requires_action":
        return authorization_object(row)
    if approve:
        conn.execute("UPDATE authorizations SET status = 'authorized', three_d_secure = 'authenticated' "
                     "WHERE id = ?", (auth_id,))
    else:
        conn.execute(
            "UPDATE authorizations SET status = 'declined', decline_code = 'authentication_failed', "
            "three_d_secure = 'failed' WHERE id = ?",
            (auth_id,),
        )
    auth = authorization_object(_load_authorization(conn, None, auth_id))
    callbacks.enqueue(conn, "authorization.updated", auth, now)
    return auth


def challenge_details(conn, auth_id: str) -> tuple[dict, str | None]:
    """An authorization (any acquirer) and its return URL, for the challenge page."""
    row = _load_authorization(conn, None, auth_id)
    return authorization_object(row), row["return_url"]


# ---------------------------------------------------------------- refunds


def refund(conn, acquirer: str, params: dict, now: int) -> dict:
    """Refund (part of) a captured authorization; ``amount`` defaults to what is left.

    Several partial refunds may add up to the captured amount. While a chargeback holds the
    authorization's funds (withdrawn, not given back), the refund is recorded as failed
    (``charge_disputed``); an inquiry does not stop it, and a refund of everything closes it.
    Refunds of the pending-refund card are ``pending`` until ``settle_pending_refunds``; their
    amount is set aside at once, so it cannot be refunded twice meanwhile.
    """
    from . import disputes  # here: disputes builds on this module
    row = _load_authorization(conn, acquirer, _text(params, "authorization"))
    amount = _amount(params, required=False)
    if row["status"] not in ("captured", "partially_captured"):
        raise _invalid_state(row, "refund")
    refundable = row["captured_amount"] - row["refunded_amount"]
    if amount is None:
        amount = refundable
    if amount > refundable or amount <= 0:
        raise SandboxError(400, "amount_too_large",
                           f"Only {refundable} minor units are left to refund.", "amount")
    refund_id = new_id("rf")
    if disputes.blocks_refunds(conn, row["id"]):
        status, failure_code = "failed", "charge_disputed"
    else:
        status, failure_code = ("pending" if row["outcome"] == "refund_pending" else "succeeded"), None
    conn.execute(
        "INSERT INTO refunds (id, acquirer, authorization_id, amount, currency, status, failure_code, created) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (refund_id, acquirer, row["id"], amount, row["currency"], status, failure_code, now),
    )
    if status != "failed":
        conn.execute(
            "UPDATE authorizations SET refunded_amount = refunded_amount + ? WHERE id = ?",
            (amount, row["id"]),
        )
        disputes.close_inquiries_refunded(conn, row["id"], now)
    return get_refund(conn, acquirer, refund_id)


def settle_pending_refunds(conn, now: int) -> int:
    """Pending refunds older than REFUND_PENDING_SECONDS succeed; returns how many."""
    return conn.execute("UPDATE refunds SET status = 'succeeded' WHERE status = 'pending' AND created + ? <= ?",
                        (REFUND_PENDING_SECONDS, now)).rowcount


def get_refund(conn, acquirer: str, refund_id: str) -> dict:
    """A refund object of this acquirer; 404 if unknown."""
    row = conn.execute(
        "SELECT * FROM refunds WHERE id = ? AND acquirer = ?", (refund_id, acquirer)
    ).fetchone()
    if row is None:
        raise SandboxError(404, "not_found", "No such refund.", "id")
    return refund_object(row)


# Why a refund fails after it succeeded when the admin call names no reason: the card account was closed
# (Stripe's failure_reason of the same name).
REFUND_FAILURE_CODE = "expired_or_canceled_card"


def fail_refund(conn, refund_id: str, failure_code: str | None, now: int) -> dict:
    """A succeeded refund fails after all (the card's issuer sent it back): nothing was refunded.

    The authorization's refunded amount drops back (it can be refunded again) and ``refund.updated``
    is sent with the failed refund.
    """
    row = conn.execute("SELECT * FROM refunds WHERE id = ?", (refund_id,)).fetchone()
    if row is None:
        raise SandboxError(404, "not_found", "No such refund.", "id")
    if row["status"] != "succeeded":
        raise SandboxError(400, "invalid_state", f"The refund is {row['status']}.", current_status=row["status"])
    if failure_code is not None and (not isinstance(failure_code, str) or not failure_code):
        raise SandboxError(400, "invalid_request", "failure_code must be a non-empty string", "failure_code")
    conn.execute("UPDATE refunds SET status = 'failed', failure_code = ?, failed_at = ? WHERE id = ?",
                 (failure_code or REFUND_FAILURE_CODE, now, refund_id))
    conn.execute("UPDATE authorizations SET refunded_amount = refunded_amount - ? WHERE id = ?",
                 (row["amount"], row["authorization_id"]))
    refund = get_refund(conn, row["acquirer"], refund_id)
    callbacks.enqueue(conn, "refund.updated", refund, now)
    return refund


# ---------------------------------------------------------------- stats


def stats(conn, acquirer: str, idempotency_key: str | None = None) -> dict:
    """Counts of what an acquirer did (tests prove "exactly one authorization" with it)."""
    auth_sql = "SELECT COUNT(*) FROM authorizations WHERE acquirer = ?"
    auth_args: list = [acquirer]
    if idempotency_key is not None:
        auth_sql += " AND idempotency_key = ?"
        auth_args.append(idempotency_key)

    def count(sql: str, args) -> int:
        return conn.execute(sql, args).fetchone()[0]

    return {
        "authorizations": count(auth_sql, auth_args),
        "captures": count("SELECT COUNT(*) FROM authorizations WHERE acquirer = ? AND captured_at IS NOT NULL",
                          (acquirer,)),
        "voids": count("SELECT COUNT(*) FROM authorizations WHERE acquirer = ? AND status = 'voided'",
                       (acquirer,)),
        "refunds": count("SELECT COUNT(*) FROM refunds WHERE acquirer = ? AND status = 'succeeded'",
                         (acquirer,)),
        "disputes": count("SELECT COUNT(*) FROM disputes WHERE acquirer = ?", (acquirer,)),
    }
