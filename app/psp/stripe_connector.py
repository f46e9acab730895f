"""The Stripe connector: PaymentIntents with manual capture, refunds, status queries and webhook verification,
through the official ``stripe`` library (a ``StripeClient`` per set of credentials).

Two things differ from the library's defaults, on purpose:

* **No hidden retries.** The library retries network errors and 409/5xx twice by default. Retrying is
  the router's decision (app/psp/router.py: only what surely did nothing, with backoff, under the
  circuit breaker), so the client is built with ``max_network_retries=0``.
* **Our timeouts.** Its default HTTP timeout is 80 s; ours are connect 1 s / read 5 s (config
  ``PSP_CONNECT_TIMEOUT`` / ``PSP_READ_TIMEOUT``, see app/psp/sandbox.py for why), given to the
  library's httpx-based HTTP client.

``AuthorizeRequest.capture`` (a sale) is not used: with ``capture_method=automatic`` Stripe also captures
on its own once a 3-D Secure challenge is passed, and a cancellation racing that challenge could then
leave money captured on a canceled payment. Kassa captures with a second call after the authorization.

Stripe cannot look a request up by idempotency key, so an authorization is two calls: create the
PaymentIntent (``capture_method=manual``), hand its id to ``AuthorizeRequest.on_prepared`` so the caller
stores it, then confirm it. Each call carries its own key derived from the attempt's key
(``<key>:create``, ``<key>:confirm``); an UNKNOWN confirm carries the PaymentIntent id, and ``retrieve``
by that id resolves it.

The confirm and the status query ask Stripe to expand the PaymentIntent's ``payment_method``, so that
the answer names the card: its brand, last 4, expiry and fingerprint go to ``PspResult.raw["card"]``,
the shape the sandbox connector's answers have (what the payments service stores on the payment).
``card_of`` reads a PaymentMethod before anything is confirmed: Stripe.js gives the browser no
fingerprint, so the hosted checkout asks for it with the secret key to apply its per-card limits.

Amounts are converted at every boundary with Stripe's currency rules (``wire``, app/psp/wire.py: ISK as a
two-decimal amount ending in 00, three-decimal currencies ending in 0, ...): what is sent, what the answers
and status queries say (``PspResult.amount``), and the amounts of a callback's object (``CallbackEvent.data``),
which are Kassa's minor units once parsed. An amount Stripe cannot take is answered DECLINED
``client_error`` before anything is sent.
"""
from __future__ import annotations

import io
import json
import logging
import re
import time
from dataclasses import replace
from datetime import timedelta
from typing import Any, Callable, Mapping

import httpx
import stripe

from app.psp.interfaces import (
    AuthorizeRequest,
    CallbackEvent,
    CallbackRejected,
    CardFactsUnavailable,
    CardToken,
    EvidenceFile,
    Lookup,
    Outcome,
    PspResult,
    retry_after_seconds,
)
from app.psp.sandbox import DEFAULT_CONNECT_TIMEOUT, DEFAULT_READ_TIMEOUT, SIGNATURE_TOLERANCE_SECONDS
from app.psp.wire import STRIPE, WireError, read_amount, refused

log = logging.getLogger(__name__)

VAULT = "stripe"
# What Stripe.js's createPaymentMethod answers with: a PaymentMethod id. PaymentIntents take nothing else
# from us (a legacy tok_ token would need payment_method_data, which this connector does not send).
TOKEN_PATTERN = re.compile(r"^pm_[A-Za-z0-9_]{1,250}$")
# Stripe keeps an idempotency key's answer for 24 hours ("Idempotent requests" in its API reference); a
# retry after that runs as a new request, so captures and refunds retried later look up first.
IDEMPOTENCY_WINDOW = timedelta(hours=24)
# Each refund names the idempotency key it was created with, so that a refund retried past that window
# can be found among the PaymentIntent's refunds (find_refund); 100 is the most one list call returns.
REFUND_KEY_METADATA = "kassa_idempotency_key"
REFUND_LIST_LIMIT = 100

# PaymentIntent statuses read as the outcome of an authorization (or of a status query about one).
INTENT_OUTCOMES = {
    "requires_capture": Outcome.SUCCEEDED,       # authorized, waiting for our capture
    "succeeded": Outcome.SUCCEEDED,              # captured
    "requires_action": Outcome.REQUIRES_ACTION,  # 3-D Secure
    "processing": Outcome.PENDING,               # Stripe answers later (webhook or status query)
    "requires_payment_method": Outcome.DECLINED,  # the confirmation failed; last_payment_error says why
    "requires_confirmation": Outcome.NOT_PROCESSED,  # created, never confirmed: no money moved
    "canceled": Outcome.DECLINED,
}

# Stripe event types and the normalized callback types Kassa handles.
EVENT_TYPES = {
    "payment_intent.amount_capturable_updated": "authorization.updated",
    "payment_intent.succeeded": "authorization.updated",
    "payment_intent.payment_failed": "authorization.updated",
    "payment_intent.canceled": "authorization.updated",
    "payment_intent.requires_action": "authorization.updated",
    "payment_intent.processing": "authorization.updated",
    "charge.dispute.created": "dispute.created",
    "charge.dispute.updated": "dispute.updated",
    "charge.dispute.closed": "dispute.closed",
    "charge.dispute.funds_withdrawn": "dispute.funds_withdrawn",
    "charge.dispute.funds_reinstated": "dispute.funds_reinstated",
    # A refund's later news (a refund that succeeded may still fail, or be canceled, days later); the
    # object is the Refund in all three.
    "charge.refund.updated": "refund.updated",
    "refund.updated": "refund.updated",
    "refund.failed": "refund.updated",
    # An automatic payout reached the account's bank, or did not (app/reconciliation/payout_events.py: for an
    # account whose deposits are confirmed by payout events, these stand in for the bank statement).
    "payout.paid": "payout.paid",
    "payout.failed": "payout.failed",
    # An issuer's early fraud warning on a charge (app/risk/fraud_warnings.py); the object is the warning.
    "radar.early_fraud_warning.created": "early_fraud_warning.created",
    "radar.early_fraud_warning.updated": "early_fraud_warning.updated",
}

# Expanded in the confirm's and the status query's answer: the PaymentMethod object instead of its id,
# the only place a PaymentIntent names the card.
EXPAND = ["payment_method"]
# What Kassa keeps of a card (the sandbox's card object, app/psp/sandbox.py); Stripe never sends the number.
CARD_FIELDS = ("brand", "last4", "exp_month", "exp_year", "fingerprint")
# The amount fields of the objects a callback carries (PaymentIntent, Charge, Dispute, Refund), all in the
# minor units of the object's ``currency`` as Stripe writes them.
AMOUNT_FIELDS = ("amount", "amount_capturable", "amount_received", "amount_captured", "amount_refunded")


class _HTTPXClient(stripe.HTTPXClient):
    """The library's httpx-based client, sending the encoded form as ``content=``.

    stripe 16 hands its already-encoded body to httpx as ``data=``, which httpx deprecates for raw
    bytes/text (a DeprecationWarning on every call, an error under ``-W error``). Same bytes on the wire.
    """

    def _get_request_args_kwargs(self, method, url, headers, post_data):
        args, kwargs = super()._get_request_args_kwargs(method, url, headers, post_data)
        data = kwargs.pop("data", None)
        if data:
            kwargs["content"] = data
        return args, kwargs


def _stripe_http_client(connect_timeout: float, read_timeout: float) -> stripe.HTTPClient:
    """The library's httpx client with our timeouts (sync calls enabled; proxies from the environment are
    honoured, since reaching api.stripe.com may legitimately need one)."""
    timeout = httpx.Timeout(connect=connect_timeout, read=read_timeout, write=read_timeout, pool=connect_timeout)
    return _HTTPXClient(timeout=timeout, allow_sync_methods=True)


def _as_dict(obj: Any) -> dict:
    if obj is None:
        return {}
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    return dict(obj)


def _object_id(value: Any) -> str | None:
    """An id field of a Stripe object, whether it came as the id or expanded."""
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, str) and value else None


def warning_data(obj: Any) -> dict:
    """A Stripe ``radar.early_fraud_warning`` as every connector normalizes a warning (app/risk/fraud_warnings.py):
    ``id`` (the PSP's), ``charge`` (the PSP's charge), ``payment_intent``, ``fraud_type``, ``actionable``, ``created``.

    The callback's PSP reference is its ``payment_intent`` (what Kassa's Stripe payments are known by); a warning
    that names only its charge (API versions before the field, or a charge made without a PaymentIntent) matches
    no payment and is stored ``unmatched`` for an operator: Kassa does not keep Stripe's charge ids, and asking
    Stripe for the charge while processing the callback would hold the callback's row across a network call.
    """
    warning = _as_dict(obj)
    return {"id": warning.get("id"), "charge": _object_id(warning.get("charge")),
            "payment_intent": _object_id(warning.get("payment_intent")), "fraud_type": warning.get("fraud_type"),
            "actionable": bool(warning.get("actionable")), "created": warning.get("created")}


class StripeConnector:
    """Stripe for one set of credentials (a merchant's own, or the platform's)."""

    vault = VAULT
    token_pattern = TOKEN_PATTERN
    idempotency_window = IDEMPOTENCY_WINDOW
    test_only = False
    wire = STRIPE
    needs_credentials = True  # built per merchant and mode from psp_credentials (else the platform's keys)

    def __init__(self, name: str = "stripe", *, api_key: str | None, webhook_secret: str | None = None,
                 connect_timeout: float = DEFAULT_CONNECT_TIMEOUT, read_timeout: float = DEFAULT_READ_TIMEOUT,
                 api_base: str | None = None, http_client: stripe.HTTPClient | None = None,
                 clock: Callable[[], float] = time.time):
        self.name = name
        self.api_key = api_key
        self.webhook_secret = webhook_secret
        self.clock = clock
        self._client: stripe.StripeClient | None = None
        if api_key:
            self._client = stripe.StripeClient(
                api_key,
                # Zero: retries are the router's (module docstring). The library's own default is 2.
                max_network_retries=0,
                http_client=http_client or _stripe_http_client(connect_timeout, read_timeout),
                # Files are uploaded to Stripe's files host; a test server stands in for both.
                base_addresses={"api": api_base, "files": api_base} if api_base else None,
            )

    @classmethod
    def from_config(cls, name: str, config: Mapping[str, Any], options: Mapping[str, Any],
                    credentials: Mapping[str, Any] | None = None) -> "StripeConnector":
        """Build with a merchant's credentials, else the platform's account in the mode the provider names
        (``options["livemode"]``; STRIPE_API_KEY_TEST/_LIVE, STRIPE_WEBHOOK_SECRET_TEST/_LIVE:
        app/psp/stripe_keys.py)."""
        from app.psp.stripe_keys import check_secret_key, platform_stripe

        credentials = credentials or {}
        platform = platform_stripe(config, bool(options.get("livemode")))
        api_key = credentials.get("secret_key") or options.get("api_key") or platform.api_key
        if options.get("livemode") is not None:
            # Never a test-mode payment on a live key, nor the other way round (KeyModeError: the router
            # reports the connector not configured, and nothing is sent).
            check_secret_key(api_key, bool(options["livemode"]))
        return cls(
            name,
            api_key=api_key,
            webhook_secret=(credentials.get("webhook_secret") or options.get("webhook_secret")
                            or platform.webhook_secret),
            connect_timeout=float(config.get("PSP_CONNECT_TIMEOUT") or DEFAULT_CONNECT_TIMEOUT),
            read_timeout=float(config.get("PSP_READ_TIMEOUT") or DEFAULT_READ_TIMEOUT),
            api_base=options.get("api_base") or config.get("STRIPE_API_BASE") or None,
        )

    def close(self) -> None:
        """Close the HTTP connections of the client."""
        if self._client is not None:
            self._client._requestor._client.close()

    # -- operations ------------------------------------------------------------------------------------

    def authorize(self, request: AuthorizeRequest) -> PspResult:
        """Create the PaymentIntent (manual capture), report its id, then confirm it."""
        _require_key(request.idempotency_key)
        if self._client is None:
            return self._not_configured()
        intent_id = request.psp_reference
        if not intent_id:
            try:
                amount = self.wire.to_wire(request.amount, request.currency)
            except WireError as error:
                return refused(self.name, error)
            params: dict[str, Any] = {
                "amount": amount,
                "currency": request.currency.lower(),
                "payment_method": request.token,
                # Only cards: no redirect-based methods that would need a return URL we may not have.
                "payment_method_types": ["card"],
                "capture_method": "manual",
                "metadata": {"kassa_reference": request.reference,
                             **{str(k): str(v) for k, v in request.metadata.items()}},
            }
            if request.three_d_secure:
                # A risk rule asked for 3-D Secure (app/risk): Stripe then authenticates whatever the card.
                params["payment_method_options"] = {"card": {"request_three_d_secure": "any"}}
            created = self._call(lambda: self._client.v1.payment_intents.create(
                params=params, options={"idempotency_key": f"{request.idempotency_key}:create"}))
            if isinstance(created, PspResult):
                if created.outcome == Outcome.UNKNOWN:
                    # Whatever the create did, nothing was confirmed, and an unconfirmed PaymentIntent
                    # authorizes no money: for the authorization this is "surely not processed". Sending
                    # the same create again (same key) returns the same PaymentIntent, so it is retryable.
                    return PspResult(outcome=Outcome.NOT_PROCESSED, connector=self.name,
                                     message=f"create did not answer ({created.error}); nothing was confirmed",
                                     latency_ms=created.latency_ms, error=created.error, retryable=True)
                return created
            intent_id = created.id
            if request.on_prepared is not None:
                try:
                    request.on_prepared(self.name, intent_id)
                except Exception as exc:  # noqa: BLE001 - if the id cannot be stored, do not confirm
                    log.exception("storing PaymentIntent %s failed; not confirming it", intent_id)
                    return PspResult(outcome=Outcome.NOT_PROCESSED, connector=self.name, psp_reference=intent_id,
                                     status="requires_confirmation", error="exception",
                                     message=f"could not store the PaymentIntent id: {type(exc).__name__}")
        confirm_params: dict[str, Any] = {"expand": EXPAND}
        if request.return_url:
            confirm_params["return_url"] = request.return_url
        confirmed = self._call(lambda: self._client.v1.payment_intents.confirm(
            intent_id, params=confirm_params, options={"idempotency_key": f"{request.idempotency_key}:confirm"}))
        if isinstance(confirmed, PspResult):
            # Keep the intent id on every answer (declines and UNKNOWN alike): retrieve resolves it.
            return _with_reference(confirmed, intent_id)
        return self._intent_result(confirmed)

    def capture(self, psp_reference: str, amount: int, currency: str, idempotency_key: str) -> PspResult:
        """Capture ``amount`` of an authorized PaymentIntent."""
        _require_key(idempotency_key)
        if self._client is None:
            return self._not_configured()
        try:
            wire_amount = self.wire.to_wire(amount, currency)
        except WireError as error:
            return refused(self.name, error)
        answer = self._call(lambda: self._client.v1.payment_intents.capture(
            psp_reference, params={"amount_to_capture": wire_amount}, options={"idempotency_key": idempotency_key}))
        if isinstance(answer, PspResult):
            return _with_reference(answer, psp_reference)
        intent = _as_dict(answer)
        succeeded = intent.get("status") == "succeeded"
        return PspResult(outcome=Outcome.SUCCEEDED if succeeded else Outcome.UNKNOWN, connector=self.name,
                         psp_reference=intent.get("id"), amount=self._amount(intent, "amount_received"),
                         status=intent.get("status"), raw=intent)

    def void(self, psp_reference: str, idempotency_key: str) -> PspResult:
        """Cancel the PaymentIntent (releases the authorization)."""
        _require_key(idempotency_key)
        if self._client is None:
            return self._not_configured()
        answer = self._call(lambda: self._client.v1.payment_intents.cancel(
            psp_reference, options={"idempotency_key": idempotency_key}))
        if isinstance(answer, PspResult):
            return _with_reference(answer, psp_reference)
        intent = _as_dict(answer)
        canceled = intent.get("status") == "canceled"
        return PspResult(outcome=Outcome.SUCCEEDED if canceled else Outcome.UNKNOWN, connector=self.name,
                         psp_reference=intent.get("id"), amount=self._amount(intent, "amount"),
                         status="voided" if canceled else intent.get("status"), raw=intent)

    def refund(self, psp_reference: str, amount: int, currency: str, idempotency_key: str) -> PspResult:
        """Refund ``amount`` of a captured PaymentIntent; the result's psp_reference is the refund id."""
        _require_key(idempotency_key)
        if self._client is None:
            return self._not_configured()
        try:
            wire_amount = self.wire.to_wire(amount, currency)
        except WireError as error:
            return refused(self.name, error)
        answer = self._call(lambda: self._client.v1.refunds.create(
            params={"payment_intent": psp_reference, "amount": wire_amount,
                    "metadata": {REFUND_KEY_METADATA: idempotency_key}},
            options={"idempotency_key": idempotency_key}))
        if isinstance(answer, PspResult):
            return answer
        return self._refund_result(answer)

    def retrieve(self, psp_reference: str | None = None, idempotency_key: str | None = None) -> Lookup:
        """Status of a PaymentIntent by its id.

        Stripe has no lookup by idempotency key: without an id the answer is UNKNOWN (``lookup_unsupported``),
        never "absent", so nothing is sent again on its strength. An authorization always stores its
        PaymentIntent id before confirming it (``AuthorizeRequest.on_prepared``), so an attempt without
        one confirmed nothing; it stays unknown until someone looks (needs attention).
        """
        if not psp_reference:
            if not idempotency_key:
                raise ValueError("retrieve needs a psp_reference or an idempotency_key")
            return Lookup.unknown(self.name, "lookup_unsupported",
                                  "Stripe cannot look up by idempotency key; store the PaymentIntent id")
        return self._lookup(lambda: self._client.v1.payment_intents.retrieve(
            psp_reference, params={"expand": EXPAND}), lambda intent: Lookup.of(self._intent_result(intent)))

    def retrieve_refund(self, psp_refund_reference: str) -> Lookup:
        """Status of a refund by its id."""
        return self._lookup(lambda: self._client.v1.refunds.retrieve(psp_refund_reference),
                            lambda refund: Lookup.of(self._refund_result(refund)))

    def find_refund(self, psp_reference: str, idempotency_key: str) -> Lookup:
        """The refund of PaymentIntent ``psp_reference`` that ``refund`` created with ``idempotency_key``
        (it names the key in the refund's metadata): how a refund retried past Stripe's 24 hours is found."""

        def pick(listed: Any) -> Lookup:
            page = _as_dict(listed)
            for refund in page.get("data") or []:
                if (refund.get("metadata") or {}).get(REFUND_KEY_METADATA) == idempotency_key:
                    return Lookup.of(self._refund_result(refund))
            if page.get("has_more"):
                return Lookup.unknown(self.name, "too_many", f"more than {REFUND_LIST_LIMIT} refunds to search")
            return Lookup.absent(self.name, "no refund of this PaymentIntent carries the idempotency key")

        return self._lookup(lambda: self._client.v1.refunds.list(
            params={"payment_intent": psp_reference, "limit": REFUND_LIST_LIMIT}), pick)

    def card_of(self, token: str) -> CardToken | None:
        """The card of PaymentMethod ``token`` as Stripe knows it (brand, last 4, expiry, fingerprint), read
        with this connector's secret key; None when it is not a card or Stripe could not be asked.

        A read (``GET /v1/payment_methods/<id>``) under the connector's timeouts and without retries, like
        every call here; it confirms nothing, so its failures are the caller's to weigh (the hosted
        checkout goes on without the fingerprint, app/checkout/flow.py).
        """
        if self._client is None:
            return None
        answer = self._call(lambda: self._client.v1.payment_methods.retrieve(token), read=True)
        if isinstance(answer, PspResult):
            log.warning("Stripe connector %s could not read a PaymentMethod: %s", self.name, answer.error)
            return None
        card = _card(_as_dict(answer))
        return CardToken(token=token, vault=self.vault, **card) if card else None

    def card_facts(self, token: str) -> dict | None:
        """The card facts risk rules read (app/risk): ``card_of``'s plus funding, issuing country and the IIN when
        Stripe shares it; None when it is not a card (or Stripe refused the request: no such payment method);
        CardFactsUnavailable when Stripe could not be asked (connection, timeout, 5xx, rate limit)."""
        if self._client is None:
            return None
        answer = self._call(lambda: self._client.v1.payment_methods.retrieve(token), read=True)
        if isinstance(answer, PspResult):
            if answer.error in ("not_found", "client_error"):
                return None  # Stripe answered: no such payment method (an answer, unlike what follows)
            raise CardFactsUnavailable(f"stripe: {answer.error or answer.outcome.value}")
        card = _as_dict(answer).get("card")
        if not isinstance(card, dict):
            return None
        return {**{name: card.get(name) for name in CARD_FIELDS}, "funding": card.get("funding"),
                "country": card.get("country"), "bin": card.get("iin"), "risk_hint": None}

    def settlement_payouts(self, created_from: int, created_to: int) -> tuple[list[dict], dict[str, list[dict]]]:
        """The account's automatic payouts created in [created_from, created_to) (unix seconds) and each one's
        balance transactions (``source`` expanded: a charge names its PaymentIntent), every page of each list.

        What reconciliation imports as the account's settlement report of a day (app/reconciliation/fetch.py).
        Reads only, under the connector's timeouts and without the library's retries, like every call here: a
        failure raises the library's StripeError (never an empty answer), and the scheduled fetch asks again.
        Manual payouts carry no balance transactions of their own (Stripe lists them only for automatic ones).
        """
        if self._client is None:
            raise stripe.AuthenticationError("no Stripe secret key for this account")
        listed = self._client.v1.payouts.list(params={"created": {"gte": created_from, "lt": created_to},
                                                      "limit": 100})
        payouts = [payout for payout in map(_plain, listed.auto_paging_iter()) if payout.get("automatic")]
        payouts.sort(key=lambda payout: (payout.get("created") or 0, payout["id"]))
        transactions = {}
        for payout in payouts:
            page = self._client.v1.balance_transactions.list(
                params={"payout": payout["id"], "expand": ["data.source"], "limit": 100})
            transactions[payout["id"]] = [_plain(bt) for bt in page.auto_paging_iter()]
        return payouts, transactions

    def parse_callback(self, headers: dict[str, str], body: bytes) -> CallbackEvent:
        """Verify ``Stripe-Signature`` with ``stripe.Webhook.construct_event`` and normalize the event."""
        if not self.webhook_secret:
            raise CallbackRejected("no Stripe webhook secret is configured")
        header = next((value for key, value in headers.items() if key.lower() == "stripe-signature"), None)
        if not header:
            raise CallbackRejected("missing Stripe-Signature header")
        try:
            payload = body.decode("utf-8")
            stripe.Webhook.construct_event(payload, header, self.webhook_secret,
                                           tolerance=SIGNATURE_TOLERANCE_SECONDS, api_key=self.api_key or "")
            event = json.loads(payload)
        except (stripe.SignatureVerificationError, ValueError, IndexError) as exc:
            # IndexError: the library's header parser on a header without "t=".
            raise CallbackRejected(f"Stripe signature rejected: {type(exc).__name__}") from None
        obj = ((event.get("data") or {}).get("object")) or {}
        stripe_type = event.get("type") or ""
        type_ = EVENT_TYPES.get(stripe_type, stripe_type)
        if type_.startswith(("dispute.", "refund.")):
            reference = obj.get("payment_intent")  # the disputed or refunded payment: what maps to a merchant
        elif type_.startswith("early_fraud_warning."):
            reference = _object_id(obj.get("payment_intent")) or _object_id(obj.get("charge"))
        else:
            reference = obj.get("id")
        if type_.startswith("dispute."):
            data = self.dispute_data(obj)
        elif type_.startswith("early_fraud_warning."):
            data = warning_data(obj)
        else:
            data = self._kassa_amounts(obj)
        return CallbackEvent(id=event.get("id") or "", type=type_, psp_reference=reference,
                             data={**data, "stripe_event_type": stripe_type},
                             created=event.get("created"),
                             connector=self.name, livemode=bool(event.get("livemode")))

    def dispute_data(self, obj: Any) -> dict:
        """A Stripe Dispute as every connector normalizes a dispute (app/psp/interfaces.py CallbackEvent).

        What money moved is read from its balance transactions, as Stripe reports them: the ``dispute``
        one took the amount and charged the dispute fee (its ``fee``, in the balance's currency), a
        ``dispute_reversal`` gave the amount back, and a negative ``fee`` on it gave the fee back.
        """
        dispute = _as_dict(obj)
        movements = [bt for bt in dispute.get("balance_transactions") or [] if isinstance(bt, dict)]
        withdrawn = [bt for bt in movements if bt.get("reporting_category") == "dispute"
                     or (bt.get("reporting_category") is None and (bt.get("amount") or 0) < 0)]
        reversed_ = [bt for bt in movements if bt.get("reporting_category") == "dispute_reversal"
                     or (bt.get("reporting_category") is None and (bt.get("amount") or 0) > 0)]
        details = dispute.get("evidence_details") or {}
        return {
            **dispute,
            "amount": self._amount(dispute, "amount"),
            "currency": (dispute.get("currency") or "").upper(),
            "due_by": details.get("due_by"),
            "submission_count": details.get("submission_count") or 0,
            "funds_withdrawn": bool(withdrawn),
            "funds_reinstated": bool(reversed_),
            "fee": self._fees(withdrawn, charged=True),
            "fee_returned": self._fees(reversed_, charged=False),
        }

    def _fees(self, movements: list[dict], *, charged: bool) -> dict | None:
        """The fees charged (positive) or given back (negative) by balance transactions, in Kassa's units."""
        total, currency = 0, None
        for bt in movements:
            fee = bt.get("fee") or 0
            if (fee > 0) == charged and fee:
                currency = (bt.get("currency") or "").upper()
                total += abs(read_amount(self.wire, self.name, fee, currency) or 0)
        return {"amount": total, "currency": currency} if total else None

    def submit_dispute_evidence(self, psp_dispute_reference: str, evidence: dict[str, str],
                                files: list[EvidenceFile], idempotency_key: str) -> PspResult:
        """Upload each file to Stripe (``POST /v1/files``, purpose ``dispute_evidence``), then update the dispute
        with the evidence naming them and ``submit=true``. Each call has its own key derived from ours; an
        upload that did not answer submitted nothing, so it is NOT_PROCESSED and may be sent again."""
        _require_key(idempotency_key)
        if self._client is None:
            return self._not_configured()
        params: dict[str, Any] = dict(evidence)
        for evidence_file in files:
            uploaded = self._call(lambda f=evidence_file: self._client.v1.files.create(
                params={"purpose": "dispute_evidence", "file": _named(f)},
                options={"idempotency_key": f"{idempotency_key}:file:{f.file_id}"}))
            if isinstance(uploaded, PspResult):
                if uploaded.outcome == Outcome.UNKNOWN:
                    return replace(uploaded, outcome=Outcome.NOT_PROCESSED, retryable=True,
                                   message=f"uploading {evidence_file.file_id} did not answer; nothing was submitted")
                return uploaded
            params[evidence_file.field] = uploaded.id
        answer = self._call(lambda: self._client.v1.disputes.update(
            psp_dispute_reference, params={"evidence": params, "submit": True},
            options={"idempotency_key": f"{idempotency_key}:submit"}))
        if isinstance(answer, PspResult):
            return _with_reference(answer, psp_dispute_reference)
        return self._dispute_result(answer)

    def close_dispute(self, psp_dispute_reference: str, idempotency_key: str) -> PspResult:
        """``POST /v1/disputes/<id>/close``: the merchant accepts the dispute."""
        _require_key(idempotency_key)
        if self._client is None:
            return self._not_configured()
        answer = self._call(lambda: self._client.v1.disputes.close(
            psp_dispute_reference, options={"idempotency_key": idempotency_key}))
        if isinstance(answer, PspResult):
            return _with_reference(answer, psp_dispute_reference)
        return self._dispute_result(answer)

    def retrieve_dispute(self, psp_dispute_reference: str) -> Lookup:
        """Status of a dispute by its id."""
        return self._lookup(lambda: self._client.v1.disputes.retrieve(psp_dispute_reference),
                            lambda dispute: Lookup.of(self._dispute_result(dispute)))

    def retrieve_payout(self, psp_payout_reference: str) -> Lookup:
        """A payout as Stripe has it (``GET /v1/payouts/<id>``): FOUND with ``found.raw`` the payout, its amounts in
        Kassa's minor units (the shape of a payout event's ``CallbackEvent.data``), ``found.status`` Stripe's status.
        What a payout event's handler believes instead of the event's body (app/reconciliation/payout_events.py)."""

        def found(answer: Any) -> Lookup:
            payout = self._kassa_amounts(_plain(answer))
            return Lookup.of(PspResult(outcome=Outcome.SUCCEEDED, connector=self.name, psp_reference=payout.get("id"),
                                       amount=payout.get("amount"), status=payout.get("status"), raw=payout))

        return self._lookup(lambda: self._client.v1.payouts.retrieve(psp_payout_reference), found)

    def _dispute_result(self, obj: Any) -> PspResult:
        data = self.dispute_data(obj)
        return PspResult(outcome=Outcome.SUCCEEDED, connector=self.name, psp_reference=data.get("id"),
                         status=data.get("status"), raw=data)

    # -- helpers ---------------------------------------------------------------------------------------

    def _not_configured(self, read: bool = False) -> PspResult:
        return PspResult(outcome=Outcome.UNKNOWN if read else Outcome.NOT_PROCESSED, connector=self.name,
                         error="not_configured", message="no Stripe credentials for this merchant and mode")

    def _lookup(self, fn: Callable[[], Any], found: Callable[[Any], Lookup]) -> Lookup:
        """Run one read. ABSENT only on Stripe's 404 ``resource_missing``; every other error is UNKNOWN
        (a 429, refused credentials, a 400, a 5xx, a timeout), whatever it would mean for a write."""
        if self._client is None:
            return Lookup.could_not_tell(self._not_configured(read=True))
        started = time.perf_counter()
        try:
            answer = fn()
        except stripe.StripeError as exc:
            failed = self._error_result(exc, round((time.perf_counter() - started) * 1000, 2), read=True)
            if exc.http_status == 404 and exc.code == "resource_missing":
                return Lookup.absent(self.name, failed.message or "resource_missing", latency_ms=failed.latency_ms)
            return Lookup.could_not_tell(failed)
        return found(answer)

    def _call(self, fn: Callable[[], Any], *, read: bool = False) -> Any:
        """Run one library call; a StripeError becomes a PspResult (declines included)."""
        started = time.perf_counter()
        try:
            return fn()
        except stripe.StripeError as exc:
            return self._error_result(exc, round((time.perf_counter() - started) * 1000, 2), read=read)

    def _error_result(self, exc: stripe.StripeError, latency: float, *, read: bool) -> PspResult:
        body = exc.json_body if isinstance(exc.json_body, dict) else {}
        error = body.get("error") if isinstance(body.get("error"), dict) else {}
        message = error.get("message") or str(exc)

        def result(outcome: Outcome, kind: str | None, *, retryable: bool = False, decline_code: str | None = None,
                   reference: str | None = None, status: str | None = None,
                   retry_after: float | None = None) -> PspResult:
            return PspResult(outcome=outcome, connector=self.name, psp_reference=reference,
                             decline_code=decline_code, message=message, latency_ms=latency, raw=body,
                             error=kind, retryable=retryable, status=status, retry_after=retry_after)

        if isinstance(exc, stripe.APIConnectionError):
            cause = exc.__cause__
            if isinstance(cause, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)) and not read:
                # The connection was never made: Stripe surely did nothing.
                kind = "connect_refused" if isinstance(cause, httpx.ConnectError) else "connect_timeout"
                return result(Outcome.NOT_PROCESSED, kind, retryable=True)
            kind = "read_timeout" if isinstance(cause, httpx.TimeoutException) else "dropped"
            if isinstance(cause, (httpx.ConnectError, httpx.ConnectTimeout)):
                kind = "connect_refused"
            return result(Outcome.UNKNOWN, kind, retryable=read)
        if isinstance(exc, stripe.CardError):
            # A decline (402): the PaymentIntent stays, back in requires_payment_method. The error carries
            # the declined PaymentMethod: its card is what the card-testing limits count the decline against.
            intent = error.get("payment_intent") or {}
            card = _card(error.get("payment_method"))
            if card:
                body = {**body, "card": card}
            return result(Outcome.DECLINED, None, decline_code=error.get("decline_code") or exc.code or "card_declined",
                          reference=intent.get("id") if isinstance(intent, dict) else None,
                          status="requires_payment_method")
        if isinstance(exc, stripe.RateLimitError):
            headers = {name.lower(): value for name, value in (exc.headers or {}).items()}
            return result(Outcome.NOT_PROCESSED, "rate_limited", retryable=True,
                          retry_after=retry_after_seconds(headers.get("retry-after")))
        if isinstance(exc, stripe.IdempotencyError):
            # The key was used for another request: what it did stands. Ask by the PaymentIntent id.
            return result(Outcome.UNKNOWN, "idempotency_mismatch")
        if isinstance(exc, (stripe.AuthenticationError, stripe.PermissionError)):
            log.error("Stripe refused the credentials of connector %s (HTTP %s)", self.name, exc.http_status)
            return result(Outcome.NOT_PROCESSED, "auth")
        if isinstance(exc, stripe.InvalidRequestError):
            if exc.http_status == 404:
                return result(Outcome.NOT_PROCESSED, "not_found", status="not_found")
            return result(Outcome.DECLINED, "client_error", decline_code=exc.code or "invalid_request",
                          status=exc.code)
        if exc.http_status == 409:
            # A concurrent request with the same idempotency key is still running at Stripe.
            return result(Outcome.UNKNOWN, "server_error", retryable=read)
        # 5xx: Stripe may or may not have done it.
        return result(Outcome.UNKNOWN, "server_error", retryable=read)

    def _intent_result(self, obj: Any) -> PspResult:
        intent = _as_dict(obj)
        status = intent.get("status")
        outcome = INTENT_OUTCOMES.get(status, Outcome.UNKNOWN)
        decline_code = None
        if outcome == Outcome.DECLINED:
            last_error = intent.get("last_payment_error") or {}
            decline_code = (last_error.get("decline_code") or last_error.get("code")
                            or intent.get("cancellation_reason") or status)
        action_url = None
        if outcome == Outcome.REQUIRES_ACTION:
            redirect = (intent.get("next_action") or {}).get("redirect_to_url") or {}
            action_url = redirect.get("url")
        amount = self._amount(intent, "amount_received" if status == "succeeded" else "amount")
        method = intent.get("payment_method")
        if not isinstance(method, dict):
            # A failed attempt may unset payment_method; its error keeps the PaymentMethod that was declined.
            method = (intent.get("last_payment_error") or {}).get("payment_method")
        card = _card(method)
        return PspResult(outcome=outcome, connector=self.name, psp_reference=intent.get("id"),
                         decline_code=decline_code, action_url=action_url, amount=amount, status=status,
                         raw={**intent, "card": card} if card else intent,
                         error=None if outcome != Outcome.UNKNOWN else "server_error")

    def _refund_result(self, obj: Any) -> PspResult:
        refund = _as_dict(obj)
        status = refund.get("status")
        outcome = {"succeeded": Outcome.SUCCEEDED, "pending": Outcome.PENDING, "requires_action": Outcome.PENDING,
                   "failed": Outcome.DECLINED, "canceled": Outcome.DECLINED}.get(status, Outcome.UNKNOWN)
        return PspResult(outcome=outcome, connector=self.name, psp_reference=refund.get("id"),
                         decline_code=(refund.get("failure_reason") or status) if outcome == Outcome.DECLINED else None,
                         amount=self._amount(refund, "amount"), status=status, raw=refund)

    def _amount(self, obj: dict, field: str) -> int | None:
        """One amount of a Stripe object, in Kassa's minor units of the object's currency."""
        return read_amount(self.wire, self.name, obj.get(field), obj.get("currency"))

    def _kassa_amounts(self, obj: dict) -> dict:
        """A callback's object with its amounts in Kassa's minor units (what callback handlers read)."""
        return {**obj, **{field: self._amount(obj, field) for field in AMOUNT_FIELDS if obj.get(field) is not None}}


def _plain(value: Any) -> Any:
    """A library object as plain JSON values, nested objects included (what Stripe's answer said)."""
    if hasattr(value, "to_dict"):
        try:
            value = value.to_dict(for_json=True)  # decimals (an exchange rate) as strings: JSON can hold them
        except TypeError:  # a library before for_json: no decimals either
            value = value.to_dict()
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def _named(evidence_file: EvidenceFile) -> io.BytesIO:
    """The file as the library uploads it: a readable object whose name (``<id>.<type>``) Stripe shows."""
    upload = io.BytesIO(evidence_file.content)
    upload.name = f"{evidence_file.file_id}.{evidence_file.type}"
    return upload


def _card(method: Any) -> dict | None:
    """The card facts of an expanded card PaymentMethod (None for an id or another kind of method)."""
    card = method.get("card") if isinstance(method, dict) else None
    if not isinstance(card, dict):
        return None
    return {name: card.get(name) for name in CARD_FIELDS}


def _require_key(idempotency_key: str) -> None:
    if not idempotency_key:
        raise ValueError("every PSP write needs an idempotency key")


def _with_reference(result: PspResult, reference: str) -> PspResult:
    """The same result, naming the object it is about when the error did not.

    Never for ``not_found``: an answer about a missing object must not look as if it named one.
    """
    if result.psp_reference or result.error == "not_found":
        return result
    return replace(result, psp_reference=reference)
