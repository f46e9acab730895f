"""The connector contract every PSP integration implements, and the dataclasses it speaks.

A decline or an error is a result, never an exception that escapes: callers branch on ``outcome``.
"""
import re
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Callable, Protocol

if TYPE_CHECKING:
    from app.psp.wire import WireRules


class Outcome(StrEnum):
    SUCCEEDED = "succeeded"            # authorized / captured / voided / refunded as asked
    DECLINED = "declined"              # definite refusal; ``decline_code`` says why
    REQUIRES_ACTION = "requires_action"  # 3-D Secure: send the shopper to ``action_url``
    PENDING = "pending"                # accepted, result arrives later (callback or status query)
    UNKNOWN = "unknown"                # ambiguous (timeout, dropped connection, 5xx): ask, never guess
    NOT_PROCESSED = "not_processed"    # the PSP surely did nothing (connection refused, defined error): failover allowed


@dataclass(frozen=True)
class CardToken:
    """A token from one PSP vault plus the card facts Kassa may keep (never the number or CVC)."""

    token: str
    vault: str                 # which vault issued it; routing only picks connectors on this vault
    brand: str | None = None
    last4: str | None = None
    exp_month: int | None = None
    exp_year: int | None = None
    fingerprint: str | None = None


@dataclass(frozen=True)
class AuthorizeRequest:
    amount: int
    currency: str
    token: str
    idempotency_key: str       # derived from our attempt id: the same attempt never charges twice
    reference: str             # our attempt id
    return_url: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    # Automatic capture: ask the PSP to capture in full in the same call if it authorizes at once (a
    # sale). A connector may ignore it; the result's status says whether the money was captured.
    capture: bool = False
    # A risk rule asked for 3-D Secure (app/risk): the PSP challenges the shopper whatever the card.
    three_d_secure: bool = False
    # Whose payment, in which mode: routing picks per merchant and currency, live mode never reaches the
    # sandbox, and per-merchant credentials (Stripe) are looked up with these.
    merchant_id: str | None = None
    livemode: bool = False
    # Two-step PSPs (Stripe: create the PaymentIntent, then confirm it): an intent created earlier for
    # this attempt, to confirm instead of creating another.
    psp_reference: str | None = None
    # Called as on_prepared(connector, psp_reference) after a two-step PSP created its intent and before
    # it is confirmed, so the caller can store the id durably; if it raises, nothing is confirmed.
    on_prepared: Callable[[str, str], None] | None = field(default=None, compare=False, repr=False)


# PspResult.error of a call refused because the credential its payment was made with is gone: nothing was
# sent, and nothing will be sent with another account (app/psp/router.py CredentialMissing).
CREDENTIAL_MISSING = "credential_missing"


@dataclass(frozen=True)
class PspResult:
    """A normalized answer from a PSP operation."""

    outcome: Outcome
    connector: str
    psp_reference: str | None = None      # the PSP's id for the authorization or refund
    decline_code: str | None = None
    message: str | None = None
    action_url: str | None = None
    amount: int | None = None
    status: str | None = None             # the PSP's own status word, for the attempt log
    raw: dict[str, Any] = field(default_factory=dict)
    latency_ms: float | None = None
    retryable: bool = False
    # Why a call failed (None when the PSP answered normally): connect_refused, connect_timeout,
    # read_timeout, dropped, server_error, not_processed, rate_limited, auth, client_error, not_found,
    # idempotency_mismatch, circuit_open, rate_limited_backoff, no_route, not_configured, exception. The
    # circuit breaker counts the transport and server kinds (app/psp/breaker.py FAILURE_ERRORS); a
    # rate limit backs the credential off instead.
    error: str | None = None
    # Seconds a rate-limited PSP asked us to wait (its Retry-After), when it said.
    retry_after: float | None = None
    # Connectors the router tried for this result, in order (the last one answered).
    tried: tuple[str, ...] = ()
    # The credential the router called with (app/psp/breaker.py PLATFORM_CREDENTIAL, or a merchant's
    # psp_credentials id): what an attempt or refund records, so that its follow-ups use the same account.
    credential: str | None = None


def retry_after_seconds(value: str | None) -> float | None:
    """An HTTP Retry-After header (delta-seconds or an HTTP-date) in seconds from now, or None."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


class LookupOutcome(StrEnum):
    """What a status query learned: three answers, never two (ARCHITECTURE.md "PSPs")."""

    FOUND = "found"      # the PSP has the object: ``Lookup.found`` describes it
    ABSENT = "absent"    # the PSP itself answered that it has no such object (its explicit "no such thing")
    UNKNOWN = "unknown"  # we could not tell: rate limited, credentials refused, 5xx, timeout, no connection,
    #                      open breaker, not configured, a lookup the PSP does not offer...


@dataclass(frozen=True)
class Lookup:
    """The answer to a status query. Only ABSENT says "there is none"; could-not-ask is UNKNOWN, never absent.

    Only ABSENT from every connector that could hold the object allows sending a request again (or
    failing over) after an ambiguous one. It has the fields the router's breaker and retry loop read on a
    PspResult (connector, outcome, error, latency_ms, retryable, tried), so one loop serves both.
    """

    outcome: LookupOutcome
    connector: str
    found: PspResult | None = None    # FOUND only: the object, normalized as an operation's result
    error: str | None = None          # ABSENT: not_found; UNKNOWN: why (the PspResult.error kinds)
    message: str | None = None
    latency_ms: float | None = None
    retryable: bool = False           # asking again may tell (a 429, a 5xx, a timeout)
    tried: tuple[str, ...] = ()
    retry_after: float | None = None  # a rate limit's Retry-After, in seconds (the breaker backs off)
    credential: str | None = None     # the credential the router asked with (PspResult.credential)

    @classmethod
    def of(cls, found: PspResult) -> "Lookup":
        """FOUND: the PSP answered with the object."""
        return cls(LookupOutcome.FOUND, found.connector, found=found, latency_ms=found.latency_ms)

    @classmethod
    def absent(cls, connector: str, message: str, *, latency_ms: float | None = None) -> "Lookup":
        """ABSENT: the PSP answered that it has no such object (sandbox 404 / empty list, Stripe 404 resource_missing)."""
        return cls(LookupOutcome.ABSENT, connector, error="not_found", message=message, latency_ms=latency_ms)

    @classmethod
    def unknown(cls, connector: str, error: str, message: str, *, latency_ms: float | None = None,
                retryable: bool = False) -> "Lookup":
        """UNKNOWN: the PSP could not be asked, or its answer does not tell."""
        return cls(LookupOutcome.UNKNOWN, connector, error=error, message=message, latency_ms=latency_ms,
                   retryable=retryable)

    @classmethod
    def could_not_tell(cls, result: PspResult) -> "Lookup":
        """UNKNOWN from a call that did not answer the question (an error status, a transport error, an open
        breaker): whatever its outcome said about a write, about a lookup it says nothing."""
        return cls(LookupOutcome.UNKNOWN, result.connector, error=result.error or "exception",
                   message=result.message, latency_ms=result.latency_ms, retryable=result.retryable,
                   tried=result.tried, retry_after=result.retry_after, credential=result.credential)

    def as_result(self) -> PspResult:
        """What an attempt or refund applies: the object found, else UNKNOWN (ask again later, never guess).

        For callers to whom absence proves nothing (a lookup by a reference the PSP gave us).
        """
        if self.outcome == LookupOutcome.FOUND and self.found is not None:
            return replace(self.found, connector=self.connector, latency_ms=self.latency_ms, tried=self.tried,
                           credential=self.credential or self.found.credential)
        what = "has no such object" if self.outcome == LookupOutcome.ABSENT else "could not be asked"
        return PspResult(outcome=Outcome.UNKNOWN, connector=self.connector, error=self.error,
                         message=self.message or f"the PSP {what}", latency_ms=self.latency_ms,
                         tried=self.tried, credential=self.credential)


@dataclass(frozen=True)
class CallbackEvent:
    """A verified inbound PSP callback, normalized.

    For the ``dispute.*`` types (``created``, ``updated``, ``closed``, ``funds_withdrawn``,
    ``funds_reinstated``) ``data`` is the dispute as every connector normalizes it (``dispute_data`` in
    app/psp/sandbox.py and app/psp/stripe_connector.py), amounts in Kassa's minor units: ``id`` (the PSP's
    dispute id), ``amount``, ``currency``, ``reason`` and ``status`` (Stripe's words), ``created``, ``due_by``
    (unix), ``submission_count``, ``is_charge_refundable``, ``funds_withdrawn`` and ``funds_reinstated``
    (whether the PSP took the disputed amount and gave it back, as its balance movements say), ``fee`` and
    ``fee_returned`` (``{"amount", "currency"}`` or None), plus the PSP's own fields.
    """

    id: str                    # the PSP's callback id (deduplication key)
    type: str                  # e.g. authorization.updated, dispute.created
    psp_reference: str | None
    data: dict[str, Any]
    created: int | None = None           # the PSP's event time (unix), orders callbacks about one object
    connector: str | None = None         # the acquirer that sent it, when the PSP says (sandbox: data.acquirer)
    livemode: bool | None = None         # when the PSP says (Stripe events carry it)
    psp: str | None = None               # the hook it came through (sandbox | stripe), once stored


@dataclass(frozen=True)
class EvidenceFile:
    """A file of a dispute's evidence as a connector sends it: the evidence field it answers, Kassa's file id,
    its type (pdf, png, jpg), size, SHA-256 and content."""

    field: str
    file_id: str
    type: str
    size: int
    sha256: str
    content: bytes = field(repr=False)


class CallbackRejected(Exception):
    """An inbound callback whose signature is missing, wrong or stale."""


class CardFactsUnavailable(Exception):
    """The vault could not be asked for a token's card facts (unreachable, timed out, 5xx, rate limited): not
    knowing is not an answer, unlike a token the vault surely does not know (``card_facts`` returns None)."""


class Connector(Protocol):
    """What Kassa needs from a PSP. Every write carries an idempotency key derived from our attempt id.

    Amounts in and out are Kassa's ISO 4217 minor units; the connector converts them to and from its
    PSP's with ``wire`` (app/psp/wire.py), and answers an amount its PSP cannot take as DECLINED
    ``client_error`` without sending anything.

    ``idempotency_window``: how long the PSP keeps a key's answer (None: for ever). A write retried later
    than that may run as a new request, so captures and refunds retried past it look up first.
    """

    name: str
    vault: str
    wire: "WireRules"
    # The format of the vault's token ids (a class attribute, read without building the connector): a
    # payment_method that does not match is refused before anything is stored (app/payments/service.py).
    token_pattern: "re.Pattern[str]"
    idempotency_window: timedelta | None

    def authorize(self, request: AuthorizeRequest) -> PspResult: ...

    def capture(self, psp_reference: str, amount: int, currency: str, idempotency_key: str) -> PspResult: ...

    def void(self, psp_reference: str, idempotency_key: str) -> PspResult: ...

    def refund(self, psp_reference: str, amount: int, currency: str, idempotency_key: str) -> PspResult: ...

    def retrieve(self, psp_reference: str | None = None, idempotency_key: str | None = None) -> Lookup:
        """Status query of an authorization by the PSP's reference or by our idempotency key."""
        ...

    def retrieve_refund(self, psp_refund_reference: str) -> Lookup:
        """Status query of a refund by the PSP's reference."""
        ...

    def find_refund(self, psp_reference: str, idempotency_key: str) -> Lookup:
        """The refund of authorization ``psp_reference`` sent with ``idempotency_key``, if the PSP has one."""
        ...

    def parse_callback(self, headers: dict[str, str], body: bytes) -> CallbackEvent:
        """Verify the signature (raise CallbackRejected) and normalize the callback."""
        ...

    def submit_dispute_evidence(self, psp_dispute_reference: str, evidence: dict[str, str],
                                files: list[EvidenceFile], idempotency_key: str) -> PspResult:
        """Send a dispute's evidence and submit it (final). ``evidence``: text fields (file fields are in
        ``files``). SUCCEEDED with ``raw`` the dispute normalized (CallbackEvent's dispute shape)."""
        ...

    def close_dispute(self, psp_dispute_reference: str, idempotency_key: str) -> PspResult:
        """Accept a dispute (Stripe's "close"). SUCCEEDED with ``raw`` the dispute normalized."""
        ...

    def retrieve_dispute(self, psp_dispute_reference: str) -> Lookup:
        """Status query of a dispute; FOUND carries it normalized in ``found.raw``."""
        ...
