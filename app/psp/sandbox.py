"""The sandbox connector: Kassa's client of the sandbox PSP's acquirer API over HTTP (sandbox_psp/API.md).

The sandbox runs two acquirers (``sandbox``, ``sandbox_b``) over one card vault ("sandbox"); each is
a connector instance with its own base URL, so the router can fail over between them.

Outcome rules (ARCHITECTURE.md "PSPs"): a decline is a result, never an exception; NOT_PROCESSED only
when the request surely did nothing (the connection was never made, or the acquirer's 503
``processing_error`` with ``processed: false``); everything ambiguous (a read timeout, a dropped
connection, any other 5xx) is UNKNOWN and is resolved with ``retrieve``, never by sending elsewhere.

Amounts: the sandbox takes and sends ISO 4217 minor units, Kassa's own (API.md), so its wire rules are the
identity (``ISO_MINOR_UNITS``, app/psp/wire.py); they are still applied at every boundary, like any
connector's, and callbacks' amounts are Kassa's as they arrive.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import time
from typing import Any, Callable, Mapping

import httpx

from app.psp.interfaces import (
    AuthorizeRequest,
    CallbackEvent,
    CallbackRejected,
    CardFactsUnavailable,
    EvidenceFile,
    Lookup,
    Outcome,
    PspResult,
    retry_after_seconds,
)
from app.psp.wire import ISO_MINOR_UNITS, WireError, read_amount, refused

log = logging.getLogger(__name__)

VAULT = "sandbox"
# The sandbox vault's token ids are "tok_" and 24 hex digits; the in-process connectors of the tests stand
# in for it with readable ids (tok_declined). A card number is never one of them (app/pan.py refuses it
# before this format is looked at).
TOKEN_PATTERN = re.compile(r"^tok_[A-Za-z0-9_]{1,64}$")
SIGNATURE_HEADER = "Sandbox-Signature"
# A signature whose timestamp is further than this from our clock is refused (API.md): long enough for
# clock skew and a slow delivery, short enough that a captured callback cannot be replayed later.
SIGNATURE_TOLERANCE_SECONDS = 300
# Connect 1 s: the acquirer is on the same network; a TCP handshake that takes longer means it is down,
# and giving up quickly lets the router fail over while the shopper still waits.
# Read 5 s: acquirer authorizations take up to a few seconds at p99; beyond that we stop waiting and
# treat the answer as unknown (resolved by a status query), so one slow PSP cannot pin a worker.
# Both come from the config (PSP_CONNECT_TIMEOUT / PSP_READ_TIMEOUT); these are only the defaults.
DEFAULT_CONNECT_TIMEOUT = 1.0
DEFAULT_READ_TIMEOUT = 5.0

# Authorization statuses and what they mean as the outcome of an authorization (or a status query).
AUTHORIZATION_OUTCOMES = {
    "authorized": Outcome.SUCCEEDED,
    "captured": Outcome.SUCCEEDED,
    "partially_captured": Outcome.SUCCEEDED,
    "voided": Outcome.SUCCEEDED,
    "declined": Outcome.DECLINED,
    "requires_action": Outcome.REQUIRES_ACTION,
}


def _json_object(response: httpx.Response) -> dict:
    """The answer's JSON object, or {} when it is not one."""
    try:
        payload = response.json()
    except ValueError:
        return {}
    return payload if isinstance(payload, dict) else {}


def parse_acquirer_urls(spec: str) -> dict[str, str]:
    """``sandbox=http://...,sandbox_b=http://...`` -> {"sandbox": "http://...", ...} (order kept)."""
    urls: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in (spec or "").split(","))):
        name, sep, url = item.partition("=")
        if not sep or not name.strip() or not url.strip():
            raise ValueError(f"SANDBOX_ACQUIRER_URLS item {item!r} must be name=url")
        urls[name.strip()] = url.strip().rstrip("/")
    return urls


def verify_signature(header: str | None, body: bytes, secret: str, *, now: float,
                     tolerance: int = SIGNATURE_TOLERANCE_SECONDS) -> int:
    """Check a ``Sandbox-Signature: t=<unix>,v1=<hex>`` header; returns t or raises CallbackRejected."""
    if not secret:
        raise CallbackRejected("no webhook secret is configured")  # never accept unsigned callbacks
    if not header:
        raise CallbackRejected(f"missing {SIGNATURE_HEADER} header")
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError:
                raise CallbackRejected("malformed signature timestamp") from None
        elif key == "v1":
            signatures.append(value)
    if timestamp is None or not signatures:
        raise CallbackRejected("malformed signature header")
    expected = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    if not any(hmac.compare_digest(expected, candidate) for candidate in signatures):
        raise CallbackRejected("signature does not match")
    if abs(now - timestamp) > tolerance:
        raise CallbackRejected("signature timestamp is stale")
    return timestamp


def parse_sandbox_callback(headers: Mapping[str, str], body: bytes, secret: str, *,
                           now: float | None = None) -> CallbackEvent:
    """Verify and normalize a sandbox callback (API.md "Callbacks to Kassa")."""
    header = next((value for key, value in headers.items() if key.lower() == SIGNATURE_HEADER.lower()), None)
    verify_signature(header, body, secret, now=time.time() if now is None else now)
    try:
        payload = json.loads(body)
        callback_id, type_, data = payload["id"], payload["type"], payload.get("data") or {}
    except (ValueError, KeyError, TypeError) as exc:
        raise CallbackRejected(f"malformed callback body: {exc}") from None
    if not isinstance(callback_id, str) or not isinstance(type_, str) or not isinstance(data, dict):
        raise CallbackRejected("malformed callback body")
    if type_.startswith(("dispute.", "refund.", "early_fraud_warning.")):
        # the disputed, refunded or warned-about authorization: what maps to a payment
        reference = data.get("authorization")
    else:
        reference = data.get("id")
    if type_.startswith("dispute."):
        data = dispute_data(data)
    created = payload.get("created")
    return CallbackEvent(id=callback_id, type=type_, psp_reference=reference, data=data,
                         created=created if isinstance(created, int) else None,
                         connector=data.get("acquirer"), livemode=False)


def dispute_data(dispute: dict) -> dict:
    """A sandbox dispute object as every connector normalizes a dispute (app/psp/interfaces.py CallbackEvent).

    Its ``balance_transactions`` say what money moved: a ``dispute`` movement (the amount withdrawn, with the
    dispute fee) and a ``dispute_reversal`` (the amount given back; the sandbox keeps its fee).
    """
    currency = (dispute.get("currency") or "").upper()
    movements = [m for m in dispute.get("balance_transactions") or [] if isinstance(m, dict)]
    withdrawn = [m for m in movements if m.get("type") == "dispute"]
    reversed_ = [m for m in movements if m.get("type") == "dispute_reversal"]
    fee = sum(int(m.get("fee") or 0) for m in withdrawn)
    returned = -sum(int(m.get("fee") or 0) for m in reversed_ if (m.get("fee") or 0) < 0)
    details = dispute.get("evidence_details") or {}
    return {
        **dispute,
        "amount": read_amount(ISO_MINOR_UNITS, "sandbox", dispute.get("amount"), currency),
        "currency": currency,
        "due_by": details.get("due_by"),
        "submission_count": details.get("submission_count") or 0,
        "funds_withdrawn": bool(withdrawn),
        "funds_reinstated": bool(reversed_),
        "fee": {"amount": fee, "currency": currency} if fee else None,
        "fee_returned": {"amount": returned, "currency": currency} if returned else None,
    }


class SandboxConnector:
    """One sandbox acquirer. Thread-safe (an httpx.Client is); create once per process and reuse."""

    vault = VAULT
    token_pattern = TOKEN_PATTERN
    test_only = True  # the router never uses it for live-mode payments
    wire = ISO_MINOR_UNITS
    # The sandbox keeps every Idempotency-Key's answer until /_admin/reset (sandbox_psp/store.py): a
    # retry with the same key is replayed however late it comes.
    idempotency_window = None

    def __init__(self, name: str, base_url: str, secret: str, *, webhook_secret: str = "",
                 connect_timeout: float = DEFAULT_CONNECT_TIMEOUT, read_timeout: float = DEFAULT_READ_TIMEOUT,
                 transport: httpx.BaseTransport | None = None, clock: Callable[[], float] = time.time):
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.webhook_secret = webhook_secret
        self.clock = clock
        self._http = httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {secret}", "Accept": "application/json"},
            # The write timeout bounds sending the (small) body; the pool timeout waiting for a free
            # connection of our own pool: neither should ever come near the connect timeout.
            timeout=httpx.Timeout(connect=connect_timeout, read=read_timeout, write=read_timeout,
                                  pool=connect_timeout),
            transport=transport,
            # The acquirer is configured by URL; proxies from the environment must not reroute it.
            trust_env=False,
            follow_redirects=False,
        )

    @classmethod
    def from_config(cls, name: str, config: Mapping[str, Any], options: Mapping[str, Any],
                    credentials: Mapping[str, Any] | None = None) -> "SandboxConnector":
        """Build from the app config: base URL from SANDBOX_ACQUIRER_URLS (or options["base_url"])."""
        base_url = options.get("base_url") or parse_acquirer_urls(config.get("SANDBOX_ACQUIRER_URLS", "")).get(name)
        if not base_url:
            raise ValueError(f"no URL for sandbox acquirer {name!r} in SANDBOX_ACQUIRER_URLS")
        return cls(
            name, base_url, options.get("secret") or config.get("SANDBOX_PSP_SECRET", ""),
            webhook_secret=config.get("SANDBOX_WEBHOOK_SECRET", ""),
            connect_timeout=float(config.get("PSP_CONNECT_TIMEOUT") or DEFAULT_CONNECT_TIMEOUT),
            read_timeout=float(config.get("PSP_READ_TIMEOUT") or DEFAULT_READ_TIMEOUT),
        )

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._http.close()

    # -- operations ------------------------------------------------------------------------------------

    def authorize(self, request: AuthorizeRequest) -> PspResult:
        """POST /v1/authorizations with the attempt's idempotency key (a sale with ``request.capture``)."""
        try:
            amount = self.wire.to_wire(request.amount, request.currency)
        except WireError as error:
            return refused(self.name, error)
        body: dict[str, Any] = {"token": request.token, "amount": amount,
                                "currency": request.currency, "reference": request.reference}
        if request.return_url:
            body["return_url"] = request.return_url
        if request.capture:
            body["capture"] = True
        if request.three_d_secure:
            body["three_d_secure"] = "challenge"
        return self._write("/v1/authorizations", body, request.idempotency_key, self._authorization_result)

    def card_facts(self, token: str) -> dict | None:
        """The card behind a vault token (GET /v1/tokens/<id>): brand, BIN, funding, country, fingerprint and
        the vault's risk hint, for the risk checks before authorizing. None when the vault answered that it
        does not know the token; CardFactsUnavailable when it could not be asked (no connection, a timeout, a
        5xx or 429 answer): the screening then holds the payment for review (app/payments/risk.py)."""
        try:
            response = self._http.get(f"/v1/tokens/{token}")
        except httpx.HTTPError as error:
            raise CardFactsUnavailable(f"sandbox vault: {type(error).__name__}") from error
        if response.status_code >= 500 or response.status_code == 429:
            raise CardFactsUnavailable(f"sandbox vault answered {response.status_code}")
        if response.status_code != 200:
            return None
        card = _json_object(response).get("card")
        return card if isinstance(card, dict) else None

    def capture(self, psp_reference: str, amount: int, currency: str, idempotency_key: str) -> PspResult:
        """Capture ``amount`` (partial allowed once) of an authorization."""
        try:
            wire_amount = self.wire.to_wire(amount, currency)
        except WireError as error:
            return refused(self.name, error)
        return self._write(f"/v1/authorizations/{psp_reference}/capture", {"amount": wire_amount}, idempotency_key,
                           self._authorization_result)

    def void(self, psp_reference: str, idempotency_key: str) -> PspResult:
        """Void an authorization (releases the shopper's funds)."""
        return self._write(f"/v1/authorizations/{psp_reference}/void", {}, idempotency_key,
                           self._authorization_result)

    def refund(self, psp_reference: str, amount: int, currency: str, idempotency_key: str) -> PspResult:
        """Refund ``amount`` of a captured authorization; the result's psp_reference is the refund id."""
        try:
            wire_amount = self.wire.to_wire(amount, currency)
        except WireError as error:
            return refused(self.name, error)
        return self._write("/v1/refunds", {"authorization": psp_reference, "amount": wire_amount}, idempotency_key,
                           self._refund_result)

    def retrieve(self, psp_reference: str | None = None, idempotency_key: str | None = None) -> Lookup:
        """Status query by authorization id or by our idempotency key.

        ABSENT only when the acquirer answers that it has no such authorization (404, or an empty list
        for the key); a query it did not answer (429, 401/403, 5xx, a timeout, no connection) is UNKNOWN.
        """
        if psp_reference:
            return self._lookup(f"/v1/authorizations/{psp_reference}", None,
                                lambda auth, latency: Lookup.of(self._authorization_result(auth, 200, latency)))
        if not idempotency_key:
            raise ValueError("retrieve needs a psp_reference or an idempotency_key")

        def first(payload: dict, latency: float) -> Lookup:
            found = payload.get("data")
            if not isinstance(found, list):
                return Lookup.unknown(self.name, "server_error", "malformed answer to a lookup by key",
                                      latency_ms=latency)
            if not found:
                return Lookup.absent(self.name, "no authorization with this idempotency key", latency_ms=latency)
            return Lookup.of(self._authorization_result(found[0], 200, latency))

        return self._lookup("/v1/authorizations", {"idempotency_key": idempotency_key}, first)

    def retrieve_refund(self, psp_refund_reference: str) -> Lookup:
        """Status of a refund by its id."""
        return self._lookup(f"/v1/refunds/{psp_refund_reference}", None,
                            lambda refund, latency: Lookup.of(self._refund_result(refund, 200, latency)))

    def find_refund(self, psp_reference: str, idempotency_key: str) -> Lookup:
        """UNKNOWN: the acquirer API has no refund lookup by key, and needs none (``idempotency_window``)."""
        return Lookup.unknown(self.name, "lookup_unsupported", "the sandbox cannot look a refund up by key")

    def parse_callback(self, headers: dict[str, str], body: bytes) -> CallbackEvent:
        """Verify the Sandbox-Signature (raise CallbackRejected) and normalize the callback."""
        return parse_sandbox_callback(headers, body, self.webhook_secret, now=self.clock())

    def submit_dispute_evidence(self, psp_dispute_reference: str, evidence: dict[str, str],
                                files: list[EvidenceFile], idempotency_key: str) -> PspResult:
        """POST /v1/disputes/<id>/evidence: the text fields, and each file described by id, type, size and
        SHA-256 (the sandbox judges evidence without reading files). A refusal (past due, already answered)
        is DECLINED."""
        body: dict[str, Any] = {name: value for name, value in evidence.items()
                                if name not in {f.field for f in files}}
        for f in files:
            body[f.field] = {"file": f.file_id, "type": f.type, "size": f.size, "sha256": f.sha256}
        return self._write(f"/v1/disputes/{psp_dispute_reference}/evidence", {"evidence": body}, idempotency_key,
                           self._dispute_result)

    def close_dispute(self, psp_dispute_reference: str, idempotency_key: str) -> PspResult:
        """POST /v1/disputes/<id>/close: the merchant accepts the dispute."""
        return self._write(f"/v1/disputes/{psp_dispute_reference}/close", {}, idempotency_key, self._dispute_result)

    def retrieve_dispute(self, psp_dispute_reference: str) -> Lookup:
        """GET /v1/disputes/<id>."""
        return self._lookup(f"/v1/disputes/{psp_dispute_reference}", None,
                            lambda dispute, latency: Lookup.of(self._dispute_result(dispute, 200, latency)))

    # -- HTTP ------------------------------------------------------------------------------------------

    def _write(self, path: str, body: dict, idempotency_key: str, on_ok) -> PspResult:
        if not idempotency_key:
            # A write without a key could charge twice on a retry: a programming error, not a PSP result.
            raise ValueError("every PSP write needs an idempotency key")
        started = time.perf_counter()
        try:
            response = self._http.post(path, json=body, headers={"Idempotency-Key": idempotency_key})
        except httpx.HTTPError as exc:
            return self._transport_error(exc, started, write=True)
        return self._answer(response, started, on_ok)

    def _lookup(self, path: str, params: dict | None, found: Callable[[dict, float], Lookup]) -> Lookup:
        """GET a status. FOUND or ABSENT only from the acquirer's own answer (200, 404 ``not_found``); any
        other answer or failure is UNKNOWN, whatever it would mean for a write."""
        started = time.perf_counter()
        try:
            response = self._http.get(path, params=params)
        except httpx.HTTPError as exc:
            return Lookup.could_not_tell(self._transport_error(exc, started, write=False))
        if response.status_code == 200:
            payload = _json_object(response)
            return found(payload, self._latency(started))
        answer = self._answer(response, started, None, read=True)  # the error's kind, message, retryable
        if response.status_code == 404 and answer.status == "not_found":
            return Lookup.absent(self.name, answer.message or "not found", latency_ms=answer.latency_ms)
        return Lookup.could_not_tell(answer)

    def _latency(self, started: float) -> float:
        return round((time.perf_counter() - started) * 1000, 2)

    def _transport_error(self, exc: httpx.HTTPError, started: float, *, write: bool) -> PspResult:
        latency = self._latency(started)
        if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)):
            # No connection was ever made, so no byte of the request reached the acquirer: surely not
            # processed (connection refused is the textbook case; a connect timeout is the same fact).
            timed_out = isinstance(exc, (httpx.ConnectTimeout, httpx.PoolTimeout))
            error = "connect_timeout" if timed_out else "connect_refused"
            outcome = Outcome.NOT_PROCESSED if write else Outcome.UNKNOWN
        elif isinstance(exc, httpx.TimeoutException):
            # Read or write timeout: the acquirer may have acted on it. Ambiguous.
            error, outcome = "read_timeout", Outcome.UNKNOWN
        else:
            # Dropped connection, reset, protocol error: the request may have been processed.
            error, outcome = "dropped", Outcome.UNKNOWN
        log.warning("sandbox %s: %s (%s)", self.name, error, type(exc).__name__)
        return PspResult(outcome=outcome, connector=self.name, message=f"{error}: {type(exc).__name__}",
                         latency_ms=latency, error=error,
                         # Writes retry only what surely did nothing; reads are always safe to repeat.
                         retryable=(outcome == Outcome.NOT_PROCESSED) or not write)

    def _answer(self, response: httpx.Response, started: float, on_ok, *, read: bool = False) -> PspResult:
        latency = self._latency(started)
        payload = _json_object(response)
        status_code = response.status_code
        if status_code == 200:
            return on_ok(payload, status_code, latency)
        error = payload.get("error") if isinstance(payload.get("error"), dict) else {}
        code = error.get("code")
        message = error.get("message") or f"HTTP {status_code}"

        def result(outcome: Outcome, kind: str, *, retryable: bool = False, decline_code: str | None = None,
                   retry_after: float | None = None):
            return PspResult(outcome=outcome, connector=self.name, decline_code=decline_code, message=message,
                             raw=payload, latency_ms=latency, error=kind, retryable=retryable,
                             status=code, retry_after=retry_after)

        if status_code == 503 and code == "processing_error" and error.get("processed") is False:
            # The acquirer guarantees nothing happened (API.md): safe to retry and to fail over.
            return result(Outcome.NOT_PROCESSED, "not_processed", retryable=True)
        if status_code >= 500:
            # Any other 5xx may or may not have been processed. Reads may simply be asked again.
            return result(Outcome.UNKNOWN, "server_error", retryable=read)
        if status_code == 404:
            return result(Outcome.NOT_PROCESSED, "not_found")
        if status_code == 409:
            # Same key, different request: the key was used before. Whatever it did stands; ask by key.
            return result(Outcome.UNKNOWN, "idempotency_mismatch")
        if status_code == 429:
            return result(Outcome.NOT_PROCESSED, "rate_limited", retryable=True,
                          retry_after=retry_after_seconds(response.headers.get("Retry-After")))
        if status_code in (401, 403):
            log.error("sandbox %s refused our credentials (HTTP %s)", self.name, status_code)
            return result(Outcome.NOT_PROCESSED, "auth")
        if status_code in (400, 422) and not read:
            # A definite refusal of this request (bad token, wrong state, amount too large): nothing
            # happened, and sending it anywhere else would be refused the same way.
            return result(Outcome.DECLINED, "client_error", decline_code=code or "invalid_request")
        return result(Outcome.NOT_PROCESSED, "client_error")

    # -- objects ---------------------------------------------------------------------------------------

    def _authorization_result(self, auth: dict, status_code: int, latency: float) -> PspResult:
        status = auth.get("status")
        outcome = AUTHORIZATION_OUTCOMES.get(status)
        if outcome is None:
            # A status this connector does not know: do not guess what happened.
            return PspResult(outcome=Outcome.UNKNOWN, connector=self.name, psp_reference=auth.get("id"),
                             status=status, raw=auth, latency_ms=latency, error="server_error",
                             message=f"unexpected authorization status {status!r}")
        amount = auth.get("amount")
        if status in ("captured", "partially_captured"):
            amount = auth.get("captured_amount", amount)
        amount = read_amount(self.wire, self.name, amount, auth.get("currency"))
        return PspResult(
            outcome=outcome, connector=self.name, psp_reference=auth.get("id"),
            decline_code=auth.get("decline_code") if outcome == Outcome.DECLINED else None,
            action_url=auth.get("action_url") if outcome == Outcome.REQUIRES_ACTION else None,
            amount=amount, status=status, raw=auth, latency_ms=latency,
        )

    def _dispute_result(self, dispute: dict, status_code: int, latency: float) -> PspResult:
        return PspResult(outcome=Outcome.SUCCEEDED, connector=self.name, psp_reference=dispute.get("id"),
                         status=dispute.get("status"), raw=dispute_data(dispute), latency_ms=latency)

    def _refund_result(self, refund: dict, status_code: int, latency: float) -> PspResult:
        status = refund.get("status")
        if status == "succeeded":
            outcome, decline_code = Outcome.SUCCEEDED, None
        elif status == "failed":
            outcome, decline_code = Outcome.DECLINED, refund.get("failure_code") or "refund_failed"
        elif status == "pending":
            outcome, decline_code = Outcome.PENDING, None  # the acquirer answers later (a status query)
        else:
            outcome, decline_code = Outcome.UNKNOWN, None
        return PspResult(outcome=outcome, connector=self.name, psp_reference=refund.get("id"),
                         decline_code=decline_code,
                         amount=read_amount(self.wire, self.name, refund.get("amount"), refund.get("currency")),
                         status=status, raw=refund,
                         latency_ms=latency)
