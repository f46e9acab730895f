"""Routing with failover, bounded retries with backoff, and a circuit breaker around every PSP call.

**Routes.** A card token belongs to one vault, so an authorization may only go to connectors on that
vault. ``PSP_ROUTES`` (a list, or its JSON) orders them per merchant, currency and mode::

    [{"merchant": "mer_01...", "currency": "EUR", "mode": "test", "connectors": ["sandbox_b", "sandbox"]},
     {"mode": "test", "connectors": ["sandbox", "sandbox_b"]},
     {"mode": "live", "connectors": ["stripe"]}]

``*`` (or a missing key) matches anything; the most specific matching rule that names a connector of
the token's vault wins; with none, every connector of the vault in configuration order. Live mode never
routes to a test-only connector (the sandbox): a live rule naming one is refused at start-up, and such
connectors are filtered out of every live route anyway.

**Failover** happens only on NOT_PROCESSED (the PSP surely did nothing: connection refused, the
sandbox's 503 ``processed: false``, an open breaker). UNKNOWN (a timeout, a dropped connection, another
5xx) stops at once: it is resolved later by a status query (``retrieve``), never by charging elsewhere.

**Retries.** A retryable NOT_PROCESSED is tried again after the whole route was tried, up to
``PSP_MAX_TRIES`` rounds, sleeping with exponential backoff and full jitter between rounds (the sleep
and the random source are injectable). Capture, void and refund go to the connector that holds the
authorization, with the same bounded retries and no failover. Status queries may also retry an
ambiguous answer: reading twice is harmless.

**Credentials.** An authorization goes through the merchant's current credential at the PSP in its mode
(else the platform's account for that mode), and its result names it (``PspResult.credential``: ``platform``
or the psp_credentials id). Payments record it, and every follow-up (capture, void, refund, status
queries, dispute actions) passes it back as ``credential=``: it is called with exactly that credential, a
retired one included, never the merchant's current one. A recorded credential that no longer exists is
refused (``credential_missing``: NOT_PROCESSED for a write, UNKNOWN for a lookup; nothing is sent).

**Breakers.** Every call goes through the circuit breaker of its connector *and credential* (the
platform's account, or the merchant's own: ConnectorProvider.resolve), so one merchant's failing or
throttled account never stops another's payments (app/psp/breaker.py). One logical call (an
authorization with its rounds, a capture with its tries) takes one permit per connector and reports one
outcome per connector when it ends: retries never count twice. A rate limit (429) is not retried: it
backs that credential off (Retry-After, bounded), and its calls are refused locally with
``rate_limited_backoff`` meanwhile (NOT_PROCESSED, so an authorization fails over; a status query says
UNKNOWN).

**Bulkheads.** With bulkheads (every app's router: app/psp/bulkhead.py), each leg takes a slot of its
connector and credential for the whole logical call, or reuses the one its thread holds (the dispatcher's);
a full bulkhead answers ``bulkhead_full`` at once, without touching the PSP or its breaker (NOT_PROCESSED,
so an authorization fails over; a status query says UNKNOWN).

**Lookups** (``retrieve``, ``retrieve_refund``, ``find_refund``) answer a ``Lookup``: FOUND, ABSENT (the
PSP said it has no such object) or UNKNOWN (it could not be asked or did not tell: a 429, refused
credentials, a 5xx, a timeout, an open breaker). Only ABSENT may lead to sending a request again.
"""
from __future__ import annotations

import hashlib
import json
import logging
import random
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any, Callable, Mapping, Sequence

from prometheus_client import Histogram

from app.psp.breaker import (
    FAILURE_ERRORS,
    PLATFORM_CREDENTIAL,
    RATE_LIMITED_ERROR,
    BreakerRegistry,
    BreakerSettings,
    CircuitBreaker,
    Permit,
    credential_id,
)
from app.psp.bulkhead import Bulkheads, Slot, bulkhead_size_from_config
from app.psp.interfaces import CREDENTIAL_MISSING, AuthorizeRequest, Connector, Lookup, Outcome, PspResult
from app.psp.registry import ConnectorSpec, config_value, connector_for, connector_specs, import_string

log = logging.getLogger(__name__)

PSP_CALL_DURATION = Histogram(
    "kassa_psp_call_duration_seconds", "PSP calls by connector, operation and normalized outcome.",
    ["connector", "operation", "outcome"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10),
)

# (psp/vault, merchant_id, livemode) -> the merchant's decrypted credentials, or None.
CredentialsLoader = Callable[[str, str, bool], Mapping[str, Any] | None]
# (psp/vault, merchant_id, livemode, credential id) -> that credential's decrypted secrets (a retired one
# included), or None when there is no such credential of this merchant in this mode.
CredentialByIdLoader = Callable[[str, str, bool, str], Mapping[str, Any] | None]

# Credentialed connectors built per merchant and mode are kept this many at a time (least recently used
# dropped): building a Stripe client loads TLS roots, which is worth skipping on every call.
CONNECTOR_CACHE_SIZE = 256
# A connector that does not declare how long its PSP keeps idempotency keys is taken to keep them a day,
# the shortest among the PSPs Kassa knows (Stripe's 24 hours): a late retry then looks up first.
DEFAULT_IDEMPOTENCY_WINDOW = timedelta(hours=24)


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries with exponential backoff and full jitter (config PSP_MAX_TRIES, PSP_RETRY_*)."""

    # Three tries of the route: a refused connection or a 503 is often a restart or a blip that
    # clears in a fraction of a second; more tries would only stretch a job's worst case
    # (app/payments/deps.py worst_case_call_seconds counts on this bound).
    max_tries: int = 3
    # 0.2 s, then 0.4 s, capped at 1 s, each drawn uniformly from [0, cap] ("full jitter") so that
    # many workers failing together do not retry in lockstep. Worst case of all sleeps: 0.6 s.
    base_delay: float = 0.2
    max_delay: float = 1.0

    def backoff(self, retry_number: int, rng: random.Random) -> float:
        """Seconds to sleep before retry ``retry_number`` (0 for the first retry)."""
        return rng.uniform(0, min(self.max_delay, self.base_delay * (2 ** retry_number)))

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "RetryPolicy":
        defaults = cls()
        return cls(
            max_tries=max(1, int(config_value(config, "PSP_MAX_TRIES", defaults.max_tries))),
            base_delay=float(config_value(config, "PSP_RETRY_BASE_DELAY", defaults.base_delay)),
            max_delay=float(config_value(config, "PSP_RETRY_MAX_DELAY", defaults.max_delay)),
        )


@dataclass(frozen=True)
class RouteRule:
    """An ordered list of connectors for the payments it matches (``*`` matches anything)."""

    connectors: tuple[str, ...]
    merchant: str = "*"
    currency: str = "*"
    mode: str = "*"          # test | live | *

    def matches(self, merchant_id: str | None, currency: str | None, mode: str) -> bool:
        return ((self.merchant == "*" or self.merchant == merchant_id)
                and (self.currency == "*" or (currency or "").upper() == self.currency.upper())
                and (self.mode == "*" or self.mode == mode))

    @property
    def specificity(self) -> int:
        return (4 if self.merchant != "*" else 0) + (2 if self.currency != "*" else 0) + (self.mode != "*")

    @classmethod
    def parse(cls, item: Mapping[str, Any]) -> "RouteRule":
        connectors = item.get("connectors")
        if not connectors or isinstance(connectors, str):
            raise ValueError(f"route {item!r} needs a list of connectors")
        mode = item.get("mode") or "*"
        if mode not in ("test", "live", "*"):
            raise ValueError(f"route mode must be test, live or *: {item!r}")
        return cls(tuple(connectors), merchant=item.get("merchant") or "*", currency=item.get("currency") or "*",
                   mode=mode)


DEFAULT_ROUTES = (
    RouteRule(("sandbox", "sandbox_b"), mode="test"),
    RouteRule(("stripe",), mode="live"),
)


def routes_from_config(config: Mapping[str, Any]) -> tuple[RouteRule, ...]:
    """PSP_ROUTES from the app config or environment (a list or its JSON), else the defaults."""
    value = config_value(config, "PSP_ROUTES")
    if value is None:
        return DEFAULT_ROUTES
    if isinstance(value, str):
        value = json.loads(value)
    return tuple(item if isinstance(item, RouteRule) else RouteRule.parse(item) for item in value)


class CredentialMissing(LookupError):
    """The credential an attempt or refund was made with is gone (or not this merchant's in this mode):
    its follow-ups are refused, never sent with another account."""

    def __init__(self, name: str, credential: str):
        super().__init__(f"the credential {credential} that made this payment at {name} no longer exists; "
                         "nothing was sent (Kassa never switches a payment to another account)")
        self.credential = credential


# The error of a call refused because its recorded credential is gone (CredentialMissing).
CREDENTIAL_MISSING_ERROR = CREDENTIAL_MISSING


class ConnectorProvider:
    """Connector instances: one per name and mode, or per merchant credential for connectors with credentials."""

    def __init__(self, specs: Mapping[str, ConnectorSpec], config: Mapping[str, Any], *,
                 credentials: CredentialsLoader | None = None, instances: Mapping[str, Connector] | None = None,
                 credential_by_id: CredentialByIdLoader | None = None):
        self.specs = dict(specs)
        self.config = config
        self.credentials = credentials
        self.credential_by_id = credential_by_id
        # Ready-made instances (tests, scripts) answer for every merchant. The ones built here from the
        # config are the platform's account: only for merchants without credentials of their own.
        self._given: dict[str, Connector] = dict(instances or {})
        self._instances: dict[tuple[str, bool], Connector] = {}
        self._per_merchant: OrderedDict[tuple, Connector] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, name: str, merchant_id: str | None = None, livemode: bool | None = None, *,
            credential: str | None = None) -> Connector:
        """The connector ``name`` (with the merchant's credentials where it takes them)."""
        return self.resolve(name, merchant_id, livemode, credential=credential)[0]

    def resolve(self, name: str, merchant_id: str | None = None, livemode: bool | None = None, *,
                credential: str | None = None) -> tuple[Connector, str]:
        """The connector ``name`` and the credential it calls with: ``platform``, or the merchant's own in
        this mode (its psp_credentials id), which names its circuit breaker and bulkhead.

        ``credential``: the one a payment was made with (recorded on its attempts and refunds); its
        follow-ups use exactly that one, a retired credential included, never the merchant's current one.
        A credential that no longer exists raises CredentialMissing. None: the merchant's current one in
        this mode, else the platform's (a new authorization).
        """
        spec = self.specs.get(name)
        if spec is None:
            raise KeyError(f"no PSP connector named {name!r} is configured")
        if name in self._given:
            return self._given[name], PLATFORM_CREDENTIAL
        creds = None
        if credential is None:
            if spec.needs_credentials and merchant_id and self.credentials is not None:
                creds = self.credentials(spec.vault, merchant_id, bool(livemode))
        elif credential != PLATFORM_CREDENTIAL:
            creds = self._recorded(spec, name, merchant_id, bool(livemode), credential)
        with self._lock:
            if not creds:
                key = (name, bool(livemode))
                instance = self._instances.get(key)
                if instance is None:
                    instance = self._instances[key] = connector_for(name, self.config, specs=self.specs,
                                                                    livemode=bool(livemode))
                return instance, PLATFORM_CREDENTIAL
            fingerprint = hashlib.sha256(json.dumps(dict(creds), sort_keys=True, default=str).encode()).hexdigest()
            key = (name, merchant_id, bool(livemode), fingerprint)
            instance = self._per_merchant.get(key)
            if instance is None:
                instance = connector_for(name, self.config, credentials=creds, specs=self.specs,
                                         livemode=bool(livemode))
                self._per_merchant[key] = instance
                while len(self._per_merchant) > CONNECTOR_CACHE_SIZE:
                    self._per_merchant.popitem(last=False)
            else:
                self._per_merchant.move_to_end(key)
            return instance, str(creds.get("id") or credential_id(merchant_id, bool(livemode)))

    def _recorded(self, spec: ConnectorSpec, name: str, merchant_id: str | None, livemode: bool,
                  credential: str) -> Mapping[str, Any]:
        """The merchant's credentials with this id (retired or not), in this mode; else CredentialMissing."""
        if not spec.needs_credentials or not merchant_id:
            raise CredentialMissing(name, credential)
        creds = None
        if self.credential_by_id is not None:
            creds = self.credential_by_id(spec.vault, merchant_id, livemode, credential)
        elif self.credentials is not None:
            # Only a loader of the current credentials (tests, scripts): it must still be the same one.
            current = self.credentials(spec.vault, merchant_id, livemode)
            if current and str(current.get("id") or credential_id(merchant_id, livemode)) == credential:
                creds = current
        if not creds:
            raise CredentialMissing(name, credential)
        return creds

    def close(self) -> None:
        """Close every connector built so far (their HTTP connection pools)."""
        with self._lock:
            instances = [*self._given.values(), *self._instances.values(), *self._per_merchant.values()]
            self._per_merchant.clear()
        for instance in instances:
            close = getattr(instance, "close", None)
            if close is not None:
                close()


class Router:
    """Sends PSP calls to the right connector, through its breaker, with failover and retries."""

    def __init__(self, provider: ConnectorProvider, *, rules: Sequence[RouteRule] = DEFAULT_ROUTES,
                 breakers: BreakerRegistry | None = None, retry: RetryPolicy | None = None,
                 sleep: Callable[[float], None] = time.sleep, rng: random.Random | None = None,
                 bulkheads: Bulkheads | None = None):
        self.provider = provider
        self.specs = provider.specs
        self.rules = tuple(rules)
        self.breakers = breakers
        self.bulkheads = bulkheads
        self.retry = retry or RetryPolicy()
        self.sleep = sleep
        self.rng = rng or random.Random()
        self._validate_rules()

    @classmethod
    def from_connectors(cls, connectors: Mapping[str, Connector], **kwargs) -> "Router":
        """A router over ready-made connector instances (tests, scripts)."""
        specs = {name: ConnectorSpec(name=name, factory=f"{type(c).__module__}:{type(c).__qualname__}",
                                     vault=c.vault, test_only=bool(getattr(c, "test_only", False)))
                 for name, c in connectors.items()}
        return cls(ConnectorProvider(specs, {}, instances=connectors), **kwargs)

    def _validate_rules(self) -> None:
        for rule in self.rules:
            for name in rule.connectors:
                spec = self.specs.get(name)
                if spec is None:
                    log.warning("PSP route %s names connector %r, which is not configured", rule, name)
                elif rule.mode == "live" and spec.test_only:
                    raise ValueError(f"live mode never routes to the sandbox: route {rule} names {name!r}")

    # -- routes ----------------------------------------------------------------------------------------

    def connector_names(self, vault: str | None = None) -> list[str]:
        """Every configured connector (of one vault), in configuration order."""
        return [name for name, spec in self.specs.items() if vault is None or spec.vault == vault]

    def route(self, vault: str, *, merchant_id: str | None = None, currency: str | None = None,
              livemode: bool = False) -> list[str]:
        """The ordered connectors an authorization with a token of ``vault`` may try."""
        mode = "live" if livemode else "test"
        candidates = [name for name, spec in self.specs.items()
                      if spec.vault == vault and not (livemode and spec.test_only)]
        best: RouteRule | None = None
        for rule in self.rules:
            if not rule.matches(merchant_id, currency, mode):
                continue
            if not any(name in candidates for name in rule.connectors):
                continue
            if best is None or rule.specificity > best.specificity:
                best = rule
        if best is None:
            return candidates
        return [name for name in best.connectors if name in candidates]

    def close(self) -> None:
        """Close the connectors' HTTP connections (tests, scripts; the app's router lives as long as the app)."""
        self.provider.close()

    def credential(self, name: str, merchant_id: str | None, livemode: bool | None, *,
                   recorded: str | None = None) -> str:
        """The credential connector ``name`` calls with for this merchant and mode: ``recorded`` when the
        payment has one (its calls use exactly that one), else the merchant's current one or ``platform``
        (``platform`` too when it cannot be built: its calls then fail without a slot)."""
        if recorded is not None:
            return recorded
        try:
            return self.provider.resolve(name, merchant_id, livemode)[1]
        except Exception:  # noqa: BLE001 - misconfigured: the call itself reports it
            return PLATFORM_CREDENTIAL

    def breaker(self, name: str, credential: str = PLATFORM_CREDENTIAL) -> CircuitBreaker | None:
        """The circuit breaker of a connector with one credential, the platform's unless told (None when the
        router runs without breakers)."""
        return self.breakers.get(name, credential) if self.breakers else None

    def connector(self, name: str, *, merchant_id: str | None = None, livemode: bool | None = None,
                  credential: str | None = None) -> Connector:
        """The connector instance (e.g. to parse a callback)."""
        return self.provider.get(name, merchant_id, livemode, credential=credential)

    # -- operations ------------------------------------------------------------------------------------

    def authorize(self, vault: str, request: AuthorizeRequest) -> PspResult:
        """Authorize along the route, failing over only on NOT_PROCESSED; UNKNOWN stops at once."""
        names = self.route(vault, merchant_id=request.merchant_id, currency=request.currency,
                           livemode=request.livemode)
        if not names:
            mode = "live" if request.livemode else "test"
            return PspResult(outcome=Outcome.NOT_PROCESSED, connector="", error="no_route",
                             message=f"no connector for vault {vault!r} in {mode} mode")
        tried: list[str] = []
        last: PspResult | None = None
        given_up: set[str] = set()
        legs = {name: _Leg(name) for name in names}
        try:
            for round_number in range(self.retry.max_tries):
                if round_number:
                    self.sleep(self.retry.backoff(round_number - 1, self.rng))
                for name in names:
                    if name in given_up:
                        continue
                    leg = legs[name]
                    result = self._call(leg, "authorize",
                                        lambda c, leg=leg: c.authorize(_prepared_with_credential(request, leg)),
                                        merchant_id=request.merchant_id, livemode=request.livemode)
                    tried.append(name)
                    if result.outcome != Outcome.NOT_PROCESSED:
                        return replace(result, tried=tuple(tried))
                    last = result
                    if not result.retryable:
                        given_up.add(name)
                    log.info("authorize %s: %s not processed (%s), trying the next connector",
                             request.reference, name, result.error)
                if all(name in given_up for name in names):
                    break
        finally:
            for leg in legs.values():
                leg.finish()
        assert last is not None
        return replace(last, tried=tuple(tried))

    def capture(self, connector: str, psp_reference: str, amount: int, currency: str, idempotency_key: str,
                *, merchant_id: str | None = None, livemode: bool | None = None,
                credential: str | None = None) -> PspResult:
        """Capture at the connector holding the authorization (retries, no failover)."""
        return self._single(connector, "capture",
                            lambda c: c.capture(psp_reference, amount, currency, idempotency_key),
                            merchant_id=merchant_id, livemode=livemode, credential=credential)

    def void(self, connector: str, psp_reference: str, idempotency_key: str, *, merchant_id: str | None = None,
             livemode: bool | None = None, credential: str | None = None) -> PspResult:
        """Void at the connector holding the authorization."""
        return self._single(connector, "void", lambda c: c.void(psp_reference, idempotency_key),
                            merchant_id=merchant_id, livemode=livemode, credential=credential)

    def refund(self, connector: str, psp_reference: str, amount: int, currency: str, idempotency_key: str,
               *, merchant_id: str | None = None, livemode: bool | None = None,
               credential: str | None = None) -> PspResult:
        """Refund at the connector holding the (captured) authorization."""
        return self._single(connector, "refund",
                            lambda c: c.refund(psp_reference, amount, currency, idempotency_key),
                            merchant_id=merchant_id, livemode=livemode, credential=credential)

    def retrieve(self, connector: str, *, psp_reference: str | None = None, idempotency_key: str | None = None,
                 merchant_id: str | None = None, livemode: bool | None = None, credential: str | None = None) -> Lookup:
        """Status query of an authorization: FOUND, ABSENT or UNKNOWN (could not ask is never "absent")."""
        return self._lookup(connector, "retrieve",
                            lambda c: c.retrieve(psp_reference=psp_reference, idempotency_key=idempotency_key),
                            merchant_id=merchant_id, livemode=livemode, credential=credential)

    def retrieve_refund(self, connector: str, psp_refund_reference: str, *, merchant_id: str | None = None,
                        livemode: bool | None = None, credential: str | None = None) -> Lookup:
        """Status query of a refund."""
        return self._lookup(connector, "retrieve_refund", lambda c: c.retrieve_refund(psp_refund_reference),
                            merchant_id=merchant_id, livemode=livemode, credential=credential)

    def find_refund(self, connector: str, psp_reference: str, idempotency_key: str, *,
                    merchant_id: str | None = None, livemode: bool | None = None,
                    credential: str | None = None) -> Lookup:
        """The refund of an authorization sent with ``idempotency_key``, looked up at its connector."""
        return self._lookup(connector, "find_refund", lambda c: c.find_refund(psp_reference, idempotency_key),
                            merchant_id=merchant_id, livemode=livemode, credential=credential)

    def submit_dispute_evidence(self, connector: str, psp_dispute_reference: str, evidence: dict[str, str],
                                files: list, idempotency_key: str, *, merchant_id: str | None = None,
                                livemode: bool | None = None, credential: str | None = None) -> PspResult:
        """Submit a dispute's evidence at the connector holding the disputed payment (retries, no failover)."""
        return self._single(connector, "submit_dispute_evidence",
                            lambda c: c.submit_dispute_evidence(psp_dispute_reference, evidence, files, idempotency_key),
                            merchant_id=merchant_id, livemode=livemode, credential=credential)

    def close_dispute(self, connector: str, psp_dispute_reference: str, idempotency_key: str, *,
                      merchant_id: str | None = None, livemode: bool | None = None,
                      credential: str | None = None) -> PspResult:
        """Accept a dispute at its connector."""
        return self._single(connector, "close_dispute", lambda c: c.close_dispute(psp_dispute_reference, idempotency_key),
                            merchant_id=merchant_id, livemode=livemode, credential=credential)

    def retrieve_dispute(self, connector: str, psp_dispute_reference: str, *, merchant_id: str | None = None,
                         livemode: bool | None = None, credential: str | None = None) -> Lookup:
        """Status query of a dispute: FOUND, ABSENT or UNKNOWN."""
        return self._lookup(connector, "retrieve_dispute", lambda c: c.retrieve_dispute(psp_dispute_reference),
                            merchant_id=merchant_id, livemode=livemode, credential=credential)

    def retrieve_payout(self, connector: str, psp_payout_reference: str, *, merchant_id: str | None = None,
                        livemode: bool | None = None, credential: str | None = None) -> Lookup:
        """A payout as its account's PSP has it (Stripe: app/reconciliation/payout_events.py): FOUND, ABSENT or
        UNKNOWN (a connector without payouts answers UNKNOWN)."""
        return self._lookup(connector, "retrieve_payout", lambda c: c.retrieve_payout(psp_payout_reference),
                            merchant_id=merchant_id, livemode=livemode, credential=credential)

    def idempotency_window(self, name: str) -> timedelta | None:
        """How long connector ``name``'s PSP keeps an idempotency key (None: for ever); a connector that
        does not say is taken to keep it DEFAULT_IDEMPOTENCY_WINDOW."""
        spec = self.specs.get(name)
        if spec is None:
            return DEFAULT_IDEMPOTENCY_WINDOW
        return getattr(import_string(spec.factory), "idempotency_window", DEFAULT_IDEMPOTENCY_WINDOW)

    # -- plumbing --------------------------------------------------------------------------------------

    def _lookup(self, name: str, operation: str, ask: Callable[[Connector], Lookup], *,
                merchant_id: str | None, livemode: bool | None, credential: str | None = None) -> Lookup:
        """A status query through the same breaker and bounded retries as every call (a Lookup has the
        fields _call and _single read); what never reached a connector (no route, open breaker, not
        configured, a connector bug) comes back as a PspResult and is UNKNOWN."""
        answer = self._single(name, operation, ask, merchant_id=merchant_id, livemode=livemode, read_only=True,
                              credential=credential)
        return answer if isinstance(answer, Lookup) else Lookup.could_not_tell(answer)

    def _single(self, name: str, operation: str, fn: Callable[[Connector], PspResult], *,
                merchant_id: str | None, livemode: bool | None, read_only: bool = False,
                credential: str | None = None) -> PspResult:
        spec = self.specs.get(name)
        if spec is None or (livemode and spec.test_only):
            return PspResult(outcome=Outcome.UNKNOWN if read_only else Outcome.NOT_PROCESSED, connector=name,
                             error="no_route", message=f"connector {name!r} is not available in this mode",
                             tried=(name,))
        tried: list[str] = []
        result: PspResult | None = None
        leg = _Leg(name, credential)
        try:
            for try_number in range(self.retry.max_tries):
                if try_number:
                    self.sleep(self.retry.backoff(try_number - 1, self.rng))
                result = self._call(leg, operation, fn, merchant_id=merchant_id, livemode=livemode,
                                    read_only=read_only)
                tried.append(name)
                if not result.retryable or result.error == CREDENTIAL_MISSING_ERROR:
                    break
        finally:
            leg.finish()
        assert result is not None
        return replace(result, tried=tuple(tried))

    def _call(self, leg: "_Leg", operation: str, fn: Callable[[Connector], PspResult], *,
              merchant_id: str | None, livemode: bool | None, read_only: bool = False) -> PspResult:
        """One try at the leg's connector through its credential's breaker; the result always names the
        connector and the credential. A rate limit puts the credential into backoff and ends the leg's tries."""
        result = self._try(leg, operation, fn, merchant_id=merchant_id, livemode=livemode, read_only=read_only)
        return replace(result, credential=leg.credential) if leg.credential is not None else result

    def _try(self, leg: "_Leg", operation: str, fn: Callable[[Connector], PspResult], *,
             merchant_id: str | None, livemode: bool | None, read_only: bool = False) -> PspResult:
        name = leg.name
        unavailable = Outcome.UNKNOWN if read_only else Outcome.NOT_PROCESSED
        if leg.connector is None:
            try:
                connector, credential = self.provider.resolve(name, merchant_id, livemode, credential=leg.recorded)
            except CredentialMissing as exc:  # never another account instead: refused, nothing sent
                log.warning("%s %s: %s", operation, name, exc)
                PSP_CALL_DURATION.labels(name, operation, CREDENTIAL_MISSING_ERROR).observe(0)
                return PspResult(outcome=unavailable, connector=name, error=CREDENTIAL_MISSING_ERROR,
                                 message=str(exc))
            except Exception as exc:  # noqa: BLE001 - misconfiguration: nothing was sent
                log.exception("cannot build connector %s", name)
                return PspResult(outcome=unavailable, connector=name, error="not_configured",
                                 message=f"{type(exc).__name__}: {exc}")
            leg.credential = credential
            if self.bulkheads is not None:
                leg.slot = self.bulkheads.enter_for_call((name, credential))
                if leg.slot is None:  # never wait for a slot on a pool thread (app/psp/bulkhead.py)
                    PSP_CALL_DURATION.labels(name, operation, "bulkhead_full").observe(0)
                    return PspResult(outcome=unavailable, connector=name, error="bulkhead_full",
                                     message=f"{name}: all {self.bulkheads.size} slots of its bulkhead are in use")
            leg.connector = connector
            leg.breaker = self.breaker(name, credential)
            leg.permit = leg.breaker.allow() if leg.breaker else None
        permit = leg.permit
        if permit is not None and not permit.allowed:
            if permit.backoff_until is not None:
                error, why = "rate_limited_backoff", f"backing off from a rate limit until {permit.backoff_until:.0f}"
            else:
                error, why = "circuit_open", f"its circuit breaker is {permit.state}"
            PSP_CALL_DURATION.labels(name, operation, error).observe(0)
            return PspResult(outcome=unavailable, connector=name, error=error,
                             message=f"{leg.breaker.name}: {why}")
        started = time.perf_counter()
        try:
            result = fn(leg.connector)
        except ValueError:
            raise  # a programming error (e.g. a write without an idempotency key), not a PSP answer
        except Exception as exc:  # noqa: BLE001 - a connector bug must not escape as an exception
            log.exception("connector %s raised during %s", name, operation)
            result = PspResult(outcome=Outcome.UNKNOWN, connector=name, error="exception",
                               message=f"{type(exc).__name__}: {exc}")
        elapsed = time.perf_counter() - started
        if result.connector != name:
            result = replace(result, connector=name)
        if result.latency_ms is None:
            result = replace(result, latency_ms=round(elapsed * 1000, 2))
        PSP_CALL_DURATION.labels(name, operation, result.outcome.value).observe(elapsed)
        if result.error == RATE_LIMITED_ERROR and leg.breaker is not None:
            # Trying again within this call would only meet the backoff (or hit the limit harder).
            leg.breaker.back_off(result.retry_after)
            result = replace(result, retryable=False)
        leg.result = result
        return result


class _Leg:
    """One logical call's use of one connector (and the credential it calls with).

    The breaker's permit is taken at the first try and kept for the retries, and the outcome is recorded
    once, when the logical call ends: however often a call is retried, it counts once in the breaker's
    window. (Counting each try let a handful of slow cards open a breaker for everyone, issue 14.)
    """

    def __init__(self, name: str, recorded: str | None = None):
        self.name = name
        self.recorded = recorded                # the credential the payment was made with, if any
        self.credential: str | None = None      # the credential this leg calls with, once resolved
        self.connector: Connector | None = None
        self.breaker: CircuitBreaker | None = None
        self.permit: Permit | None = None
        self.slot: Slot | None = None           # its bulkhead slot, when the router has bulkheads
        self.result: PspResult | None = None    # the last answer at this connector

    def finish(self) -> None:
        """Give the bulkhead slot back, and record the leg's outcome with its breaker: a failure if its last
        answer was one; anything else, a decline or a rate limit included, shows the PSP answering."""
        if self.slot is not None:
            self.slot.release()
        if self.breaker is None or self.permit is None or not self.permit.allowed or self.result is None:
            return
        if self.result.error in FAILURE_ERRORS:
            self.breaker.record_failure(self.permit)
        else:
            self.breaker.record_success(self.permit)


def _prepared_with_credential(request: AuthorizeRequest, leg: "_Leg") -> AuthorizeRequest:
    """The request as one leg sends it: an ``on_prepared`` that declares ``takes_credential`` (the jobs'
    record_prepared) is also told the credential, so that an intent stored before its confirmation is
    looked up later with the account that created it."""
    prepared = request.on_prepared
    if prepared is None or not getattr(prepared, "takes_credential", False):
        return request
    return replace(request, on_prepared=lambda connector, reference: prepared(connector, reference, leg.credential))


def build_router(config: Mapping[str, Any], *, redis=None, credentials: CredentialsLoader | None = None,
                 credential_by_id: CredentialByIdLoader | None = None,
                 clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep,
                 rng: random.Random | None = None) -> Router:
    """A router from configuration (PSP_CONNECTORS, PSP_ROUTES, PSP_MAX_TRIES, PSP_RETRY_*, PSP_BREAKER_*,
    PSP_CONCURRENCY / PSP_BULKHEAD_SIZE for its bulkheads)."""
    specs = connector_specs(config)
    breakers = BreakerRegistry(redis, BreakerSettings.from_config(config), clock=clock) if redis is not None else None
    return Router(ConnectorProvider(specs, config, credentials=credentials, credential_by_id=credential_by_id),
                  rules=routes_from_config(config),
                  breakers=breakers, retry=RetryPolicy.from_config(config), sleep=sleep, rng=rng,
                  bulkheads=Bulkheads(bulkhead_size_from_config(config)))


def router_for_app(app) -> Router:
    """The app's router (its config, its Redis, merchants' credentials from the database), built once."""
    router = app.extensions.get("psp_router")
    if router is None:
        router = app.extensions["psp_router"] = build_router(
            app.config, redis=app.extensions.get("redis"), credentials=app_credentials_loader(app),
            credential_by_id=app_credential_by_id_loader(app))
    return router


def app_credentials_loader(app) -> CredentialsLoader:
    """Load a merchant's PSP credentials in a short session of its own (never the caller's transaction)."""
    engine_holder: list = []

    def load(psp: str, merchant_id: str, livemode: bool) -> Mapping[str, Any] | None:
        from sqlalchemy.orm import Session

        from app.crypto import SecretBox
        from app.extensions import db
        from app.psp.credentials import load_credentials
        from app.scoping import Scope

        if not engine_holder:
            with app.app_context():
                engine_holder.append(db.engine)
        with Session(engine_holder[0]) as session:
            return load_credentials(session, Scope(merchant_id, livemode),
                                    SecretBox(app.config.get("KASSA_ENCRYPTION_KEYS", "")), psp)

    return load


def app_credential_by_id_loader(app) -> CredentialByIdLoader:
    """Load one PSP credential of a merchant by id (retired ones too), in a short session of its own."""
    engine_holder: list = []

    def load(psp: str, merchant_id: str, livemode: bool, credential: str) -> Mapping[str, Any] | None:
        from sqlalchemy.orm import Session

        from app.crypto import SecretBox
        from app.extensions import db
        from app.psp.credentials import load_credential
        from app.scoping import Scope

        if not engine_holder:
            with app.app_context():
                engine_holder.append(db.engine)
        with Session(engine_holder[0]) as session:
            return load_credential(session, Scope(merchant_id, livemode),
                                   SecretBox(app.config.get("KASSA_ENCRYPTION_KEYS", "")), psp, credential)

    return load
