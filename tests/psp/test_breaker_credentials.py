"""Breakers per connector and credential through the router (issue 14): one merchant's failing or
rate-limited account leaves every other credential alone, one logical call counts once however often it
was retried, and a 429 backs that credential off without opening anything.

The connector here is scripted per credential (the sandbox PSP has one account and no rate limits); the
breakers are the real ones on Redis, driven by the test's clock."""
import random
from collections import Counter
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import pytest

from app.psp.breaker import BreakerRegistry, BreakerSettings, BreakerState
from app.psp.interfaces import AuthorizeRequest, Outcome, PspResult, retry_after_seconds
from app.psp.registry import ConnectorSpec
from app.psp.router import ConnectorProvider, RetryPolicy, Router, RouteRule

MERCHANT_A, MERCHANT_B, MERCHANT_PLATFORM = "mer_01AAAA", "mer_01BBBB", "mer_01CCCC"
# Merchants A and B have their own accounts at the PSP; the third uses the platform's.
CREDENTIALS = {(MERCHANT_A, False): {"secret_key": "sk_test_a"}, (MERCHANT_B, False): {"secret_key": "sk_test_b"}}

ANSWERS = {
    "ok": PspResult(Outcome.SUCCEEDED, "", psp_reference="ref_1", status="authorized"),
    "declined": PspResult(Outcome.DECLINED, "", decline_code="insufficient_funds"),
    "requires_action": PspResult(Outcome.REQUIRES_ACTION, "", action_url="https://psp.example/3ds"),
    "card_error": PspResult(Outcome.DECLINED, "", error="client_error", decline_code="invalid_number"),
    "not_processed": PspResult(Outcome.NOT_PROCESSED, "", error="not_processed", retryable=True),
    "server_error": PspResult(Outcome.UNKNOWN, "", error="server_error"),
    "rate_limited": PspResult(Outcome.NOT_PROCESSED, "", error="rate_limited", retryable=True, retry_after=5),
}


class Script:
    """What each (connector, account) answers, in order (the last answer repeats), and what was sent."""

    def __init__(self):
        self.answers: dict[tuple[str, str], list[str]] = {}
        self.sent: Counter = Counter()

    def answer(self, connector: str, account: str) -> PspResult:
        self.sent[(connector, account)] += 1
        queue = self.answers.get((connector, account)) or ["ok"]
        return ANSWERS[queue.pop(0) if len(queue) > 1 else queue[0]]


class ScriptedConnector:
    """A connector with per-merchant credentials whose answers the test scripts per account."""

    vault = "scripted"
    needs_credentials = True

    def __init__(self, name: str, account: str, script: Script):
        self.name, self.account, self.script = name, account, script

    @classmethod
    def from_config(cls, name, config, options, credentials=None):
        return cls(name, (credentials or {}).get("secret_key") or "platform", options["script"])

    def authorize(self, request):
        return self.script.answer(self.name, self.account)

    def capture(self, psp_reference, amount, currency, idempotency_key):
        return self.script.answer(self.name, self.account)

    def retrieve(self, psp_reference=None, idempotency_key=None):
        return self.script.answer(self.name, self.account)


@pytest.fixture
def script():
    return Script()


@pytest.fixture
def breakers(redis_conn, clock, breaker_prefix):
    """The production defaults: 50 % of at least 20 calls within 60 s."""
    return BreakerRegistry(redis_conn, BreakerSettings(), clock=clock, prefix=breaker_prefix)


@pytest.fixture
def router(script, breakers, sleeps):
    factory = f"{__name__}:ScriptedConnector"
    specs = {name: ConnectorSpec(name=name, factory=factory, vault="scripted", test_only=False, needs_credentials=True,
                                 options={"script": script})
             for name in ("acq", "acq_b")}
    provider = ConnectorProvider(specs, {}, credentials=lambda vault, merchant_id, livemode:
                                 CREDENTIALS.get((merchant_id, livemode)))
    return Router(provider, rules=[RouteRule(("acq", "acq_b"))], breakers=breakers,
                  retry=RetryPolicy(max_tries=3), sleep=sleeps, rng=random.Random(3))


def authorize(router, merchant_id: str) -> PspResult:
    return router.authorize("scripted", AuthorizeRequest(amount=1000, currency="EUR", token="tok", idempotency_key="k",
                                                         reference="att_1", merchant_id=merchant_id))


def test_one_merchants_failing_account_opens_only_its_own_breaker(router, script):
    script.answers[("acq", "sk_test_a")] = ["server_error"]
    for _ in range(20):
        assert authorize(router, MERCHANT_A).error == "server_error"
    assert router.breaker("acq", f"{MERCHANT_A}:test").state() == BreakerState.OPEN
    sent = script.sent[("acq", "sk_test_a")]
    refused = authorize(router, MERCHANT_A)
    # Merchant A's own account is skipped (nothing sent) and its payment fails over.
    assert refused.outcome == Outcome.SUCCEEDED and refused.tried == ("acq", "acq_b")
    assert script.sent[("acq", "sk_test_a")] == sent

    # Merchant B's account and the platform's account at the same connector are untouched.
    for merchant_id, account in ((MERCHANT_B, "sk_test_b"), (MERCHANT_PLATFORM, "platform")):
        result = authorize(router, merchant_id)
        assert result.outcome == Outcome.SUCCEEDED and result.tried == ("acq",)
        assert script.sent[("acq", account)] == 1
    assert router.breaker("acq", f"{MERCHANT_B}:test").state() == BreakerState.CLOSED
    assert router.breaker("acq").state() == BreakerState.CLOSED
    # The admin page lists every breaker in use.
    assert {("acq", "platform"), ("acq", f"{MERCHANT_A}:test"), ("acq", f"{MERCHANT_B}:test"),
            ("acq_b", f"{MERCHANT_A}:test")} == set(router.breakers.known())


def test_a_merchant_with_its_own_account_is_never_served_by_the_platforms_after_it_was_used(router, script):
    """The platform's connector instance, once built for a merchant without credentials, must not answer for
    a merchant with its own account: that merchant's shoppers would be charged on the platform's account."""
    assert authorize(router, MERCHANT_PLATFORM).outcome == Outcome.SUCCEEDED
    assert authorize(router, MERCHANT_A).outcome == Outcome.SUCCEEDED
    assert authorize(router, MERCHANT_PLATFORM).outcome == Outcome.SUCCEEDED
    assert script.sent == Counter({("acq", "platform"): 2, ("acq", "sk_test_a"): 1})
    assert router.provider.resolve("acq", MERCHANT_A, False)[1] == f"{MERCHANT_A}:test"


def test_a_rate_limit_backs_off_that_account_alone_and_opens_nothing(router, script, clock, sleeps):
    script.answers[("acq", "sk_test_a")] = ["rate_limited"]
    script.answers[("acq_b", "sk_test_a")] = ["rate_limited"]
    limited = authorize(router, MERCHANT_A)
    assert limited.outcome == Outcome.NOT_PROCESSED and limited.error == "rate_limited"
    # Each account was asked once: no retry into a limit (the old router sent it three times each).
    assert limited.tried == ("acq", "acq_b") and sleeps.calls == []
    assert script.sent[("acq", "sk_test_a")] == 1 and script.sent[("acq_b", "sk_test_a")] == 1

    # While it lasts (Retry-After: 5), merchant A's calls are refused here without being sent.
    again = authorize(router, MERCHANT_A)
    assert again.outcome == Outcome.NOT_PROCESSED and again.error == "rate_limited_backoff"
    lookup = router.retrieve("acq", psp_reference="ref_1", merchant_id=MERCHANT_A)
    assert lookup.outcome == Outcome.UNKNOWN and lookup.error == "rate_limited_backoff"  # could not ask
    assert script.sent[("acq", "sk_test_a")] == 1
    breaker = router.breaker("acq", f"{MERCHANT_A}:test")
    snap = breaker.snapshot()
    assert snap.state == BreakerState.CLOSED and snap.failures == 0 and snap.backoff_until == clock.now + 5

    # Nobody else is backing off.
    assert authorize(router, MERCHANT_B).outcome == Outcome.SUCCEEDED
    assert authorize(router, MERCHANT_PLATFORM).outcome == Outcome.SUCCEEDED

    clock.advance(5)
    script.answers[("acq", "sk_test_a")] = ["ok"]
    assert authorize(router, MERCHANT_A).outcome == Outcome.SUCCEEDED
    assert breaker.state() == BreakerState.CLOSED


def test_retries_of_one_call_count_once(router, script, sleeps):
    script.answers[("acq", "sk_test_a")] = ["not_processed"]
    capture = router.capture("acq", "ref_1", 1000, "EUR", "cap_1", merchant_id=MERCHANT_A)
    assert capture.error == "not_processed" and capture.tried == ("acq",) * 3
    snap = router.breaker("acq", f"{MERCHANT_A}:test").snapshot()
    assert (snap.calls, snap.failures) == (1, 1)  # three tries, one call

    # An authorization's rounds over the route: each connector counts it once.
    script.answers[("acq_b", "sk_test_a")] = ["not_processed"]
    result = authorize(router, MERCHANT_A)
    assert result.tried == ("acq", "acq_b") * 3
    for name, expected in (("acq", (2, 2)), ("acq_b", (1, 1))):
        snap = router.breaker(name, f"{MERCHANT_A}:test").snapshot()
        assert (snap.calls, snap.failures) == expected

    # A call that succeeds on its retry is one call, and not a failure.
    script.answers[("acq", "sk_test_b")] = ["not_processed", "ok"]
    assert router.capture("acq", "ref_1", 1000, "EUR", "cap_2", merchant_id=MERCHANT_B).outcome == Outcome.SUCCEEDED
    snap = router.breaker("acq", f"{MERCHANT_B}:test").snapshot()
    assert (snap.calls, snap.failures) == (1, 0)


@pytest.mark.parametrize("answer", ["declined", "requires_action", "card_error"])
def test_declines_three_d_secure_and_card_errors_never_count_as_failures(router, script, answer):
    script.answers[("acq", "sk_test_a")] = [answer]
    for _ in range(25):
        assert authorize(router, MERCHANT_A).error in (None, "client_error")
    snap = router.breaker("acq", f"{MERCHANT_A}:test").snapshot()
    assert snap.state == BreakerState.CLOSED and (snap.calls, snap.failures) == (25, 0)


def test_retry_after_is_read_as_seconds_or_an_http_date():
    assert retry_after_seconds("7") == 7.0 and retry_after_seconds("0.5") == 0.5
    soon = datetime.now(timezone.utc) + timedelta(seconds=120)
    assert 100 < retry_after_seconds(format_datetime(soon, usegmt=True)) <= 120
    assert retry_after_seconds(None) is None and retry_after_seconds("soon") is None
    assert retry_after_seconds("-3") == 0.0
