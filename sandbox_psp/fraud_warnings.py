"""Early fraud warnings at the sandbox acquirer: an issuer's notice that a captured authorization was fraudulent
(Stripe's ``radar.early_fraud_warning``, fraud types and all).

Raised on request only (``POST /_admin/early_fraud_warnings``), and changed by ``POST
/_admin/early_fraud_warnings/<id>`` (``actionable``, ``fraud_type``); each sends a callback,
``early_fraud_warning.created`` or ``early_fraud_warning.updated``, with the warning object, the way disputes are
announced. Plain functions over a SQLite connection inside the caller's transaction, like ``disputes``.
"""
from . import callbacks
from .operations import SandboxError, _load_authorization, new_id

FRAUD_TYPES = ("card_never_received", "fraudulent_card_application", "made_with_counterfeit_card",
               "made_with_lost_card", "made_with_stolen_card", "misc", "unauthorized_use_of_card")


def warning_object(row) -> dict:
    """The warning as callbacks carry it: Stripe's fields, ``authorization`` for its charge."""
    return {"id": row["id"], "object": "early_fraud_warning", "acquirer": row["acquirer"],
            "authorization": row["authorization_id"], "fraud_type": row["fraud_type"],
            "actionable": bool(row["actionable"]), "created": row["created"], "livemode": False}


def _row(conn, warning_id: str):
    row = conn.execute("SELECT * FROM early_fraud_warnings WHERE id = ?", (warning_id,)).fetchone()
    if row is None:
        raise SandboxError(404, "not_found", "No such early fraud warning.", "id")
    return row


def _check(params: dict) -> None:
    fraud_type = params.get("fraud_type")
    if fraud_type is not None and fraud_type not in FRAUD_TYPES:
        raise SandboxError(400, "invalid_request", f"fraud_type must be one of {', '.join(FRAUD_TYPES)}", "fraud_type")
    if params.get("actionable") is not None and not isinstance(params["actionable"], bool):
        raise SandboxError(400, "invalid_request", "actionable must be a boolean", "actionable")


def raise_on_request(conn, params: dict, now: int) -> dict:
    """Raise a warning on an authorization (admin): ``{"authorization", "fraud_type"?, "actionable"?}``
    (``made_with_stolen_card`` and actionable by default); sends ``early_fraud_warning.created``."""
    _check(params)
    auth = _load_authorization(conn, None, params.get("authorization") or "")
    if auth["status"] not in ("authorized", "captured", "partially_captured") and auth["captured_at"] is None:
        raise SandboxError(400, "invalid_state", "Only an authorization the issuer approved gets a warning.")
    warning_id = new_id("efw")
    conn.execute("INSERT INTO early_fraud_warnings (id, acquirer, authorization_id, fraud_type, actionable, created) "
                 "VALUES (?, ?, ?, ?, ?, ?)",
                 (warning_id, auth["acquirer"], auth["id"], params.get("fraud_type") or "made_with_stolen_card",
                  1 if params.get("actionable", True) else 0, now))
    warning = warning_object(_row(conn, warning_id))
    callbacks.enqueue(conn, "early_fraud_warning.created", warning, now)
    return warning


def update_on_request(conn, warning_id: str, params: dict, now: int) -> dict:
    """Change a warning's ``actionable`` or ``fraud_type`` (admin); sends ``early_fraud_warning.updated``."""
    _check(params)
    row = _row(conn, warning_id)
    conn.execute("UPDATE early_fraud_warnings SET fraud_type = ?, actionable = ? WHERE id = ?",
                 (params.get("fraud_type") or row["fraud_type"],
                  row["actionable"] if params.get("actionable") is None else int(params["actionable"]), warning_id))
    warning = warning_object(_row(conn, warning_id))
    callbacks.enqueue(conn, "early_fraud_warning.updated", warning, now)
    return warning
