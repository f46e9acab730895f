"""Flask apps of the sandbox PSP: the public app and one acquirer app per acquirer.

Views are thin: parse, check, call ``operations`` inside a transaction, answer JSON.
Card numbers only pass through ``create_token`` and are never logged or stored.
"""
import datetime as dt
import hmac
import json
import logging
import re
import time

from flask import Flask, Response, redirect, render_template, request
from werkzeug.exceptions import HTTPException

from . import disputes, fraud_warnings, transfers
from . import operations as ops
from . import store as store_mod
from .callbacks import callback_object
from .cards import CardError, validate_card
from .clock import utc_date
from .core import Sandbox
from .operations import SandboxError
from .settlement import FAULT_ACTIONS, bank_statement_xml, settlement_csv, settlement_days

log = logging.getLogger(__name__)

DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# Browsers may cache a CORS preflight answer this long (seconds); the allowed origins
# only change on a restart.
CORS_MAX_AGE = "600"
# Most callbacks /_admin/callbacks lists, newest first: enough to debug a test run.
ADMIN_CALLBACK_LIMIT = 200
# Largest request body accepted: every request of API.md fits in well under 1 KB.
MAX_BODY_BYTES = 64 * 1024


# What an injected failure answers, per HTTP status: (code, message). 503 is the acquirer's "not
# processed" error (API.md); to a status query it means the question was not answered.
INJECTABLE_ERRORS = {
    401: ("unauthorized", "Injected fault: credentials refused."),
    403: ("forbidden", "Injected fault: not allowed."),
    429: ("rate_limited", "Injected fault: too many requests."),
    500: ("internal_error", "Injected fault: internal error."),
    502: ("bad_gateway", "Injected fault: bad gateway."),
    503: ("processing_error", "Injected fault: not processed."),
    504: ("gateway_timeout", "Injected fault: gateway timeout."),
}


def injected_error(status: int) -> SandboxError:
    """The error an injected fault answers with."""
    code, message = INJECTABLE_ERRORS[status]
    extra = {"processed": False} if status == 503 else {}
    return SandboxError(status, code, message, **extra)


def json_response(body, status: int = 200, headers: dict | None = None) -> Response:
    """A JSON response (serialised here so stored idempotent replies are byte-identical)."""
    text = body if isinstance(body, str) else json.dumps(body)
    return Response(text, status=status, headers=headers, mimetype="application/json")


def _new_app() -> Flask:
    """A Flask app with the sandbox's body limit and JSON error handlers."""
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    _install_error_handlers(app)
    return app


def _install_error_handlers(app: Flask) -> None:
    @app.errorhandler(SandboxError)
    def sandbox_error(exc: SandboxError):
        return json_response(exc.body(), exc.status)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.code, "invalid_request")
        return json_response({"error": {"code": code, "message": exc.description, "param": None}}, exc.code)

    @app.errorhandler(Exception)
    def unexpected_error(exc: Exception):
        # A plain 500 is ambiguous by contract (API.md): the caller must query the status.
        log.exception("unhandled error on %s %s", request.method, request.path)
        return json_response({"error": {"code": "internal_error", "message": "Internal error.", "param": None}}, 500)


def _json_body() -> dict:
    """The request's JSON object (an empty body counts as ``{}``)."""
    if not request.get_data():
        return {}
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise SandboxError(400, "invalid_request", "The body must be a JSON object.")
    return body


# ====================================================================== public app


def create_public_app(sandbox: Sandbox) -> Flask:
    """The public listener: token vault (CORS), 3-D Secure pages, admin, health."""
    app = _new_app()
    allowed_origins = set(sandbox.config.cors_origins)

    @app.after_request
    def add_cors_headers(response: Response) -> Response:
        """Grant CORS on the vault (every answer, errors too) to configured origins only."""
        if request.path == "/v1/tokens":
            response.vary.add("Origin")
            origin = request.headers.get("Origin")
            if origin and origin in allowed_origins:
                response.headers["Access-Control-Allow-Origin"] = origin
                if request.method == "OPTIONS":
                    response.headers["Access-Control-Allow-Methods"] = "POST, OPTIONS"
                    response.headers["Access-Control-Allow-Headers"] = "Content-Type"
                    response.headers["Access-Control-Max-Age"] = CORS_MAX_AGE
        return response

    @app.get("/healthz")
    def healthz():
        return json_response({"status": "ok"})

    # ------------------------------------------------------------------ vault

    @app.route("/v1/tokens", methods=["OPTIONS"])
    def tokens_preflight():
        """CORS preflight; add_cors_headers grants it to allowed origins only."""
        return Response(status=204)

    @app.post("/v1/tokens")
    def create_token():
        """Tokenize a card (JSON or form). Browsers from other origins are refused."""
        origin = request.headers.get("Origin")
        if origin is not None and origin not in allowed_origins:
            raise SandboxError(403, "origin_not_allowed", "This origin may not tokenize cards.")
        data = request.form.to_dict() if request.form else _json_body()
        today = sandbox.clock.today()
        try:
            card = validate_card(data, sandbox.vault_key, today.year, today.month)
        except CardError as exc:
            raise SandboxError(400, exc.code, exc.message, exc.param) from None
        with sandbox.write() as conn:
            token = ops.create_token(conn, card, sandbox.clock.now())
        return json_response(token, 201)

    # ------------------------------------------------------------------ 3-D Secure

    @app.get("/challenge/<auth_id>")
    def challenge(auth_id):
        """The challenge page: Approve / Fail buttons in a plain form (no JS needed)."""
        with sandbox.store.read() as conn:
            auth, _ = ops.challenge_details(conn, auth_id)
        return render_template("challenge.html", auth=auth, pending=auth["status"] == "requires_action")

    @app.post("/challenge/<auth_id>")
    def challenge_answer(auth_id):
        """Approve or fail the challenge, then go back to the merchant's return_url."""
        result = request.form.get("result")
        if result not in ("approve", "fail"):
            raise SandboxError(400, "invalid_request", "result must be approve or fail", "result")
        with sandbox.write() as conn:
            auth = ops.complete_challenge(conn, auth_id, result == "approve", sandbox.clock.now())
            _, return_url = ops.challenge_details(conn, auth_id)
        if return_url:
            return redirect(return_url, code=303)
        return render_template("challenge.html", auth=auth, pending=False)

    # ------------------------------------------------------------------ admin

    @app.get("/_admin/faults")
    def get_faults():
        return json_response(sandbox.get_faults())

    @app.post("/_admin/faults")
    def set_faults():
        """Set some of latency_ms, error_rate, refuse_connections for one acquirer."""
        body = _json_body()
        acquirer = body.get("acquirer")
        if acquirer not in sandbox.config.acquirers:
            raise SandboxError(400, "invalid_request", "Unknown acquirer.", "acquirer")
        latency_ms = body.get("latency_ms")
        if latency_ms is not None and (isinstance(latency_ms, bool) or not isinstance(latency_ms, int)
                                       or latency_ms < 0):
            raise SandboxError(400, "invalid_request", "latency_ms must be an integer >= 0", "latency_ms")
        error_rate = body.get("error_rate")
        if error_rate is not None and (isinstance(error_rate, bool) or not isinstance(error_rate, (int, float))
                                       or not 0 <= error_rate <= 1):
            raise SandboxError(400, "invalid_request", "error_rate must be between 0 and 1", "error_rate")
        refuse = body.get("refuse_connections")
        if refuse is not None and not isinstance(refuse, bool):
            raise SandboxError(400, "invalid_request", "refuse_connections must be a boolean",
                               "refuse_connections")
        read_error_status = None
        if "read_error_status" in body:  # null clears it (as does 0)
            read_error_status = body["read_error_status"] or 0
            if read_error_status not in (0, *INJECTABLE_ERRORS):
                raise SandboxError(400, "invalid_request", "read_error_status must be null or one of "
                                   + ", ".join(map(str, INJECTABLE_ERRORS)), "read_error_status")
        faults = sandbox.set_faults(acquirer, latency_ms, error_rate, refuse, read_error_status)
        return json_response({"acquirer": acquirer, **faults})

    def clock_body(now: int) -> dict:
        return {"now": now, "offset": sandbox.clock.offset, "date": utc_date(now).isoformat()}

    @app.get("/_admin/clock")
    def get_clock():
        return json_response(clock_body(sandbox.clock.now()))

    @app.post("/_admin/clock")
    def set_clock():
        """Advance (``advance_seconds``), set (``now``) or ``reset`` the sandbox clock."""
        body = _json_body()
        for name in ("advance_seconds", "now"):
            value = body.get(name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise SandboxError(400, "invalid_request", f"{name} must be an integer", name)
        if body.get("reset") is True:
            now = sandbox.move_clock(reset=True)
        elif body.get("now") is not None:
            now = sandbox.move_clock(now=body["now"])
        elif body.get("advance_seconds") is not None:
            now = sandbox.move_clock(advance_seconds=body["advance_seconds"])
        else:
            raise SandboxError(400, "invalid_request", "Give advance_seconds, now or reset.")
        return json_response(clock_body(now))

    @app.get("/_admin/stats")
    def stats():
        """Counts per acquirer; ``?idempotency_key=K`` narrows ``authorizations`` to one key."""
        return json_response(sandbox.stats(request.args.get("idempotency_key")))

    @app.post("/_admin/reset")
    def reset():
        sandbox.reset()
        return json_response({"status": "ok"})

    @app.get("/_admin/callbacks")
    def list_callbacks():
        """Recent callbacks and their delivery state, newest first (debugging, tests)."""
        with sandbox.store.read() as conn:
            rows = conn.execute(
                "SELECT * FROM callbacks ORDER BY rowid DESC LIMIT ?", (ADMIN_CALLBACK_LIMIT,)
            ).fetchall()
        return json_response({"data": [callback_object(row) for row in rows]})

    @app.post("/_admin/disputes")
    def open_dispute():
        """Open a dispute now: ``{"authorization", "reason"?, "inquiry"?, "amount"?}``; sends ``dispute.created``."""
        body = _json_body()
        with sandbox.write() as conn:
            dispute = disputes.open_on_request(conn, body, sandbox.clock.now())
        return json_response(dispute)

    @app.post("/_admin/disputes/<dispute_id>/close")
    def close_dispute(dispute_id):
        """Decide a dispute: ``{"status": "won"|"lost"|"warning_closed"}``; sends ``dispute.closed``."""
        status = _json_body().get("status")
        with sandbox.write() as conn:
            dispute = disputes.close_on_request(conn, dispute_id, status, sandbox.clock.now())
        return json_response(dispute)

    @app.post("/_admin/disputes/<dispute_id>/escalate")
    def escalate_dispute(dispute_id):
        """An inquiry becomes a chargeback; sends ``dispute.updated``."""
        with sandbox.write() as conn:
            dispute = disputes.escalate(conn, dispute_id, sandbox.clock.now())
        return json_response(dispute)

    @app.post("/_admin/disputes/<dispute_id>/withdraw")
    def withdraw_dispute(dispute_id):
        """The issuer withdraws the dispute (a chargeback is won, an inquiry closes); sends ``dispute.closed``."""
        with sandbox.write() as conn:
            dispute = disputes.withdraw(conn, dispute_id, sandbox.clock.now())
        return json_response(dispute)

    @app.post("/_admin/early_fraud_warnings")
    def raise_early_fraud_warning():
        """Raise an issuer's early fraud warning: ``{"authorization", "fraud_type"?, "actionable"?}``; sends
        ``early_fraud_warning.created``."""
        body = _json_body()
        with sandbox.write() as conn:
            warning = fraud_warnings.raise_on_request(conn, body, sandbox.clock.now())
        return json_response(warning)

    @app.post("/_admin/early_fraud_warnings/<warning_id>")
    def update_early_fraud_warning(warning_id):
        """Change a warning: ``{"actionable"?, "fraud_type"?}``; sends ``early_fraud_warning.updated``."""
        body = _json_body()
        with sandbox.write() as conn:
            warning = fraud_warnings.update_on_request(conn, warning_id, body, sandbox.clock.now())
        return json_response(warning)

    @app.get("/_admin/settlement_faults")
    def get_settlement_faults():
        return json_response(sandbox.get_settlement_faults())

    @app.post("/_admin/settlement_faults")
    def add_settlement_fault():
        """Misstate a report or statement on purpose: ``{"acquirer", "action", ...}`` (sandbox_psp/settlement.py)."""
        body = _json_body()
        acquirer = body.get("acquirer")
        if acquirer not in sandbox.config.acquirers:
            raise SandboxError(400, "invalid_request", "Unknown acquirer.", "acquirer")
        action = body.get("action")
        if action not in FAULT_ACTIONS:
            raise SandboxError(400, "invalid_request", "action must be one of " + ", ".join(FAULT_ACTIONS), "action")
        for name in ("reference", "type", "currency", "batch_id", "date"):
            if body.get(name) is not None and not isinstance(body[name], str):
                raise SandboxError(400, "invalid_request", f"{name} must be a string", name)
        for name in ("amount", "fee"):
            if body.get(name) is not None and (isinstance(body[name], bool) or not isinstance(body[name], int)):
                raise SandboxError(400, "invalid_request", f"{name} must be an integer", name)
        if body.get("date") is not None and not DATE_RE.match(body["date"]):
            raise SandboxError(400, "invalid_request", "date looks like YYYY-MM-DD", "date")
        needs = {"drop": "reference", "duplicate": "reference", "alter": "reference", "delay": "reference",
                 "unknown": "date", "short": "batch_id", "no_batch": "date", "missed_dispute": "reference"}[action]
        if not body.get(needs):
            raise SandboxError(400, "invalid_request", f"{action} needs {needs}", needs)
        if action == "missed_dispute":
            # A chargeback whose notice never leaves: the report of its day is the only one to tell.
            with sandbox.write() as conn:
                disputes.open_unannounced(conn, body["reference"], sandbox.clock.now())
        fault = {k: v for k, v in body.items() if k in ("action", "reference", "type", "amount", "fee", "currency",
                                                        "batch_id", "date")}
        return json_response({"acquirer": acquirer, "faults": sandbox.add_settlement_fault(acquirer, fault)})

    @app.get("/v1/bank_statements/<day>.xml")
    def bank_statement(day):
        """The platform's bank account statement of one UTC day (camt.053): the acquirers' deposits."""
        if not hmac.compare_digest(request.headers.get("Authorization", "").encode(),
                                   f"Bearer {sandbox.config.secret}".encode()):
            raise SandboxError(401, "unauthorized", "Missing or wrong secret.")
        try:
            date = dt.date.fromisoformat(day) if DATE_RE.match(day) else None
        except ValueError:
            date = None
        if date is None:
            raise SandboxError(404, "not_found", "Statement dates look like YYYY-MM-DD.", "date")
        sandbox.advance_due_work()
        with sandbox.store.read() as conn:
            text = bank_statement_xml(conn, sandbox.config.acquirers, date, sandbox.get_settlement_faults())
        return Response(text, mimetype="application/xml")

    def _bank_auth():
        if not hmac.compare_digest(request.headers.get("Authorization", "").encode(),
                                   f"Bearer {sandbox.config.secret}".encode()):
            raise SandboxError(401, "unauthorized", "Missing or wrong secret.")

    @app.post("/v1/bank_transfers")
    def create_bank_transfer():
        """A transfer out of the platform's bank account, idempotent by ``id`` (Kassa's payout id)."""
        _bank_auth()
        body = _json_body()
        for name in ("id", "currency", "account"):
            if not isinstance(body.get(name), str) or not body[name]:
                raise SandboxError(400, "invalid_request", f"{name} is required", name)
        if isinstance(body.get("amount"), bool) or not isinstance(body.get("amount"), int) or body["amount"] <= 0:
            raise SandboxError(400, "invalid_request", "amount must be a positive integer", "amount")
        try:
            with sandbox.write() as conn:
                return json_response(transfers.create(conn, body, sandbox.clock.now()))
        except transfers.TransferConflict as exc:
            raise SandboxError(409, "idempotency_mismatch", str(exc), "id") from None

    @app.get("/v1/bank_transfers/<transfer_id>")
    def get_bank_transfer(transfer_id):
        _bank_auth()
        with sandbox.store.read() as conn:
            row = conn.execute("SELECT * FROM bank_transfers WHERE id = ?", (transfer_id,)).fetchone()
        if row is None:
            raise SandboxError(404, "not_found", "No such transfer.", "id")
        return json_response(transfers.view(row, sandbox.clock.now()))

    @app.post("/_admin/bank_transfers/<transfer_id>/return")
    def return_bank_transfer(transfer_id):
        """A paid transfer comes back from the receiving bank (failed after paid)."""
        code = _json_body().get("failure_code") or "account_closed"
        sandbox.advance_due_work()  # its paid callback goes out first if it was still due
        with sandbox.write() as conn:
            conn.execute("UPDATE bank_transfers SET returned_at = ?, return_code = ? WHERE id = ?",
                         (sandbox.clock.now(), code, transfer_id))
            row = conn.execute("SELECT * FROM bank_transfers WHERE id = ?", (transfer_id,)).fetchone()
            transfers.announce_due(conn, sandbox.clock.now())  # bank_transfer.failed
        if row is None:
            raise SandboxError(404, "not_found", "No such transfer.", "id")
        return json_response(transfers.view(row, sandbox.clock.now()))

    @app.post("/_admin/refunds/<refund_id>/fail")
    def fail_refund(refund_id):
        """Fail a succeeded refund after the fact: ``{"failure_code"?}``; sends ``refund.updated``."""
        failure_code = _json_body().get("failure_code")
        with sandbox.write() as conn:
            refund = ops.fail_refund(conn, refund_id, failure_code, sandbox.clock.now())
        return json_response(refund)

    return app


# ====================================================================== acquirer app


def create_acquirer_app(sandbox: Sandbox, acquirer: str) -> Flask:
    """The API of one acquirer (Bearer secret, JSON, idempotent POSTs)."""
    app = _new_app()
    expected_auth = f"Bearer {sandbox.config.secret}".encode()

    @app.before_request
    def guard():
        """Health is open; everything else needs the secret, then faults apply."""
        if request.path == "/healthz":
            return
        given = request.headers.get("Authorization", "").encode("utf-8")
        if not hmac.compare_digest(given, expected_auth):
            raise SandboxError(401, "unauthorized", "Missing or wrong Bearer secret.")
        method = request.method
        if method == "GET" and request.path.startswith("/v1/tokens/"):
            method = "VAULT_READ"  # a card lookup, not a status query: read faults do not apply
        failure = sandbox.before_acquirer_call(acquirer, method)
        if failure:
            raise injected_error(failure)

    @app.get("/healthz")
    def healthz():
        return json_response({"status": "ok", "acquirer": acquirer})

    def run_post(operation) -> tuple[Response, bool]:
        """Run a POST once per Idempotency-Key; replay the stored answer to repeats.

        Only successful answers are stored: a 4xx or 503 means nothing happened, so a
        retry with the same key runs again. Returns (response, replayed).
        """
        body = _json_body()
        key = request.headers.get("Idempotency-Key") or None
        req_hash = store_mod.request_hash(request.method, request.path, body)
        with sandbox.write() as conn:
            if key is not None:
                stored = store_mod.find_idempotent(conn, acquirer, key)
                if stored is not None:
                    if stored["request_hash"] != req_hash:
                        raise SandboxError(409, "idempotency_mismatch",
                                           "This Idempotency-Key was used with a different request.")
                    return json_response(stored["body"], stored["status"], {"Idempotent-Replayed": "true"}), True
            result = json.dumps(operation(conn, body, key))
            if key is not None:
                store_mod.save_idempotent(conn, acquirer, key, req_hash, 200, result, sandbox.clock.now())
        return json_response(result), False

    @app.post("/v1/authorizations")
    def create_authorization():
        outcome = {}

        def operation(conn, body, key):
            auth, outcome["card"] = ops.authorize(conn, acquirer, body, key, sandbox.clock.now(),
                                                  sandbox.config.public_url)
            return auth

        response, _ = run_post(operation)
        if outcome.get("card") == "timeout":
            # Authorized and committed; now stall the answer so that a client with a
            # shorter read timeout cannot tell what happened (the ambiguous case).
            time.sleep(sandbox.config.timeout_delay)
        return response

    @app.post("/v1/authorizations/<auth_id>/capture")
    def capture(auth_id):
        return run_post(lambda conn, body, key: ops.capture(conn, acquirer, auth_id, body, sandbox.clock.now()))[0]

    @app.post("/v1/authorizations/<auth_id>/void")
    def void(auth_id):
        return run_post(lambda conn, body, key: ops.void(conn, acquirer, auth_id, sandbox.clock.now()))[0]

    @app.post("/v1/refunds")
    def create_refund():
        return run_post(lambda conn, body, key: ops.refund(conn, acquirer, body, sandbox.clock.now()))[0]

    @app.get("/v1/authorizations/<auth_id>")
    def get_authorization(auth_id):
        with sandbox.store.read() as conn:
            return json_response(ops.get_authorization(conn, acquirer, auth_id))

    @app.get("/v1/authorizations")
    def find_authorizations():
        key = request.args.get("idempotency_key")
        if not key:
            raise SandboxError(400, "invalid_request", "idempotency_key is required", "idempotency_key")
        with sandbox.store.read() as conn:
            return json_response({"data": ops.find_authorizations(conn, acquirer, key)})

    @app.get("/v1/refunds/<refund_id>")
    def get_refund(refund_id):
        sandbox.advance_due_work()  # settles pending refunds that fell due
        with sandbox.store.read() as conn:
            return json_response(ops.get_refund(conn, acquirer, refund_id))

    @app.get("/v1/tokens/<token_id>")
    def get_token(token_id):
        """Card details behind a token (shared vault), for risk checks before authorizing."""
        with sandbox.store.read() as conn:
            return json_response(ops.get_token(conn, token_id))

    @app.get("/v1/disputes")
    def list_disputes():
        sandbox.advance_due_work()
        with sandbox.store.read() as conn:
            return json_response({"data": disputes.list_disputes(conn, acquirer, request.args.get("authorization"))})

    @app.get("/v1/disputes/<dispute_id>")
    def get_dispute(dispute_id):
        sandbox.advance_due_work()
        with sandbox.store.read() as conn:
            return json_response(disputes.get_dispute(conn, acquirer, dispute_id))

    @app.post("/v1/disputes/<dispute_id>/evidence")
    def submit_evidence(dispute_id):
        """Submit the evidence (once; refused after due_by); the dispute goes under review."""
        sandbox.advance_due_work()
        return run_post(lambda conn, body, key: disputes.submit_evidence(
            conn, acquirer, dispute_id, body, sandbox.clock.now(), sandbox.config.dispute_decision_days))[0]

    @app.post("/v1/disputes/<dispute_id>/close")
    def accept_dispute(dispute_id):
        """The merchant accepts the dispute: a chargeback is lost, an inquiry closes."""
        sandbox.advance_due_work()
        return run_post(lambda conn, body, key: disputes.accept(conn, acquirer, dispute_id, sandbox.clock.now()))[0]

    @app.get("/v1/settlements")
    def list_settlements():
        """Days that have settlement lines for this acquirer."""
        sandbox.advance_due_work()
        with sandbox.store.read() as conn:
            days = settlement_days(conn, acquirer)
        return json_response({"data": [{"date": day, "url": f"/v1/settlements/{day}.csv"} for day in days]})

    @app.get("/v1/settlements/<day>.csv")
    def get_settlement(day):
        """One UTC day's settlement report as CSV (what is known so far for today)."""
        try:
            date = dt.date.fromisoformat(day) if DATE_RE.match(day) else None
        except ValueError:
            date = None
        if date is None:
            raise SandboxError(404, "not_found", "Settlement dates look like YYYY-MM-DD.", "date")
        sandbox.advance_due_work()
        with sandbox.store.read() as conn:
            text = settlement_csv(conn, acquirer, date, sandbox.get_settlement_faults(acquirer)[acquirer])
        return Response(text, mimetype="text/csv")

    return app
