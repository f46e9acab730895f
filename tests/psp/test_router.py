"""The router over the real sandbox: failover only when nothing was processed, no failover on a timeout,
bounded retries with backoff, the breaker around every call, routes per merchant/currency/mode, and the
connector registry chosen by configuration."""
import random
import uuid

import pytest

from app.psp.breaker import BreakerRegistry, BreakerSettings, BreakerState
from app.psp.interfaces import AuthorizeRequest, LookupOutcome, Outcome
from app.psp.registry import connector_for, connector_specs
from app.psp.router import DEFAULT_ROUTES, RetryPolicy, Router, RouteRule, build_router, routes_from_config
from app.psp.sandbox import SandboxConnector
from app.psp.stripe_connector import StripeConnector
from tests.psp.conftest import SECRET


def authorize_request(token: str, key: str | None = None, **extra) -> AuthorizeRequest:
    return AuthorizeRequest(amount=2500, currency="EUR", token=token, idempotency_key=key or f"att_{uuid.uuid4().hex}",
                            reference="att_router", **extra)


def test_connection_refused_at_sandbox_fails_over_to_sandbox_b_with_the_same_token(sbx, router, sleeps):
    token = sbx.tokenize()["id"]
    sbx.admin("/_admin/faults", {"acquirer": "sandbox", "refuse_connections": True})
    key = f"att_{uuid.uuid4().hex}"
    result = router.authorize("sandbox", authorize_request(token, key))
    assert result.outcome == Outcome.SUCCEEDED
    assert result.connector == "sandbox_b" and result.tried == ("sandbox", "sandbox_b")
    assert sleeps.calls == []  # failover is immediate; backoff is only between rounds
    stats = sbx.stats(idempotency_key=key)
    assert stats["sandbox_b"]["authorizations"] == 1 and stats["sandbox"]["authorizations"] == 0
    # The result names the connector that holds the authorization: follow-ups go there.
    captured = router.capture(result.connector, result.psp_reference, 2500, "EUR", f"cap_{key}")
    assert captured.outcome == Outcome.SUCCEEDED and captured.connector == "sandbox_b"


def test_503_not_processed_fails_over(sbx, router):
    sbx.admin("/_admin/faults", {"acquirer": "sandbox", "error_rate": 1.0})
    result = router.authorize("sandbox", authorize_request(sbx.tokenize()["id"]))
    assert result.outcome == Outcome.SUCCEEDED and result.connector == "sandbox_b"
    assert result.tried == ("sandbox", "sandbox_b")
    assert sbx.stats()["sandbox"]["injected_errors"] == 1


def test_timeout_does_not_fail_over_and_is_resolved_by_a_status_query(sbx, router):
    key = f"att_{uuid.uuid4().hex}"
    result = router.authorize("sandbox", authorize_request(sbx.tokenize("4000000000000341")["id"], key))
    assert result.outcome == Outcome.UNKNOWN and result.error == "read_timeout"
    assert result.connector == "sandbox" and result.tried == ("sandbox",)
    stats = sbx.stats()
    assert stats["sandbox_b"]["calls"] == 0 and stats["sandbox_b"]["authorizations"] == 0
    resolved = router.retrieve("sandbox", idempotency_key=key)
    assert resolved.outcome == LookupOutcome.FOUND and resolved.tried == ("sandbox",)
    assert resolved.found.outcome == Outcome.SUCCEEDED and resolved.found.status == "authorized"
    assert sbx.stats(idempotency_key=key)["sandbox"]["authorizations"] == 1


def test_not_processed_everywhere_is_retried_with_bounded_backoff(sbx, router, sleeps):
    # The processing-error card is refused (503, not processed) by both acquirers, every time.
    result = router.authorize("sandbox", authorize_request(sbx.tokenize("4000000000000119")["id"]))
    assert result.outcome == Outcome.NOT_PROCESSED and result.error == "not_processed"
    assert result.tried == ("sandbox", "sandbox_b") * 3
    # Two sleeps between three rounds, each drawn from [0, min(1.0, 0.2 * 2**n)] (full jitter).
    assert len(sleeps.calls) == 2
    assert 0 <= sleeps.calls[0] <= 0.2 and 0 <= sleeps.calls[1] <= 0.4


def test_backoff_is_exponential_full_jitter_and_capped():
    policy = RetryPolicy(max_tries=10, base_delay=0.2, max_delay=1.0)
    rng = random.Random(1)
    draws = [[policy.backoff(n, rng) for _ in range(200)] for n in range(6)]
    for n, values in enumerate(draws):
        cap = min(1.0, 0.2 * 2 ** n)
        assert all(0 <= v <= cap for v in values)
        assert max(values) > cap * 0.9  # jitter spans the whole range
    assert RetryPolicy.from_config({"PSP_MAX_TRIES": "2", "PSP_RETRY_BASE_DELAY": "0.05"}).max_tries == 2


def test_decline_neither_retries_nor_fails_over(sbx, router, sleeps):
    result = router.authorize("sandbox", authorize_request(sbx.tokenize("4000000000009995")["id"]))
    assert result.outcome == Outcome.DECLINED and result.decline_code == "insufficient_funds"
    assert result.tried == ("sandbox",) and sleeps.calls == []


def test_repeated_failures_open_the_breaker_calls_short_circuit_and_a_probe_closes_it(sbx, connectors, breakers,
                                                                                       clock, sleeps):
    router = Router.from_connectors({"sandbox": connectors["sandbox"]}, breakers=breakers,
                                    retry=RetryPolicy(max_tries=1), sleep=sleeps)
    sbx.admin("/_admin/faults", {"acquirer": "sandbox", "error_rate": 1.0})
    token = sbx.tokenize()["id"]
    for _ in range(3):  # threshold 3
        assert router.authorize("sandbox", authorize_request(token)).error == "not_processed"
    assert router.breaker("sandbox").state() == BreakerState.OPEN
    calls = sbx.stats()["sandbox"]["calls"]

    short = router.authorize("sandbox", authorize_request(token))
    assert short.outcome == Outcome.NOT_PROCESSED and short.error == "circuit_open"
    # Status queries short-circuit too, and say "unknown", never "not there".
    lookup = router.retrieve("sandbox", idempotency_key="x")
    assert lookup.outcome == LookupOutcome.UNKNOWN and lookup.error == "circuit_open"
    assert sbx.stats()["sandbox"]["calls"] == calls  # nothing reached the acquirer

    sbx.admin("/_admin/faults", {"acquirer": "sandbox", "error_rate": 0.0})
    clock.advance(30)  # open period over: the next call is the half-open probe
    probe = router.authorize("sandbox", authorize_request(token))
    assert probe.outcome == Outcome.SUCCEEDED
    assert router.breaker("sandbox").state() == BreakerState.CLOSED
    assert sbx.stats()["sandbox"]["calls"] == calls + 1


def test_an_open_breaker_fails_over_at_once(sbx, router):
    router.breaker("sandbox").force_open()
    result = router.authorize("sandbox", authorize_request(sbx.tokenize()["id"]))
    assert result.outcome == Outcome.SUCCEEDED and result.connector == "sandbox_b"
    assert sbx.stats()["sandbox"]["calls"] == 0


def test_declines_three_d_secure_and_card_errors_are_calls_never_failures(sbx, router):
    for number in ("4000000000009995", "4000000000009979", "4000000000000069", "4000000000003220"):
        assert router.authorize("sandbox", authorize_request(sbx.tokenize(number)["id"])).error is None
    assert router.authorize("sandbox", authorize_request("tok_unknown")).outcome == Outcome.DECLINED
    snap = router.breaker("sandbox").snapshot()
    assert (snap.calls, snap.failures) == (5, 0)  # answers, not outages
    router.authorize("sandbox", authorize_request(sbx.tokenize("4000000000000341")["id"]))
    snap = router.breaker("sandbox").snapshot()
    assert (snap.calls, snap.failures) == (6, 1)


def test_six_timeout_card_payments_among_normal_traffic_open_no_breaker(sbx, redis_conn, clock, breaker_prefix,
                                                                        sleeps):
    # Issue 14: six payments with the timeout card opened both sandbox acquirers' breakers (a flat five
    # failures in 30 s, each retry counted) and failed healthy payments. The default failure-rate rule (half
    # of at least 20 calls in 60 s) sees 6 timeouts among 20 calls and opens nothing.
    made = {name: SandboxConnector(name, sbx.acquirers[name].url, SECRET, connect_timeout=0.5,
                                   read_timeout=0.5)  # the sandbox stalls the timeout card for 2 s
            for name in ("sandbox", "sandbox_b")}
    breakers = BreakerRegistry(redis_conn, BreakerSettings(), clock=clock, prefix=breaker_prefix)
    router = Router.from_connectors(made, breakers=breakers, retry=RetryPolicy(max_tries=3), sleep=sleeps)
    good, slow = sbx.tokenize()["id"], sbx.tokenize("4000000000000341")["id"]
    timeout_turns = {1, 4, 7, 10, 13, 16}  # six of the twenty payments, spread out
    try:
        outcomes = []
        for n in range(20):
            result = router.authorize("sandbox", authorize_request(slow if n in timeout_turns else good))
            outcomes.append((result.outcome, result.connector))
            clock.advance(1)
    finally:
        router.close()
    assert outcomes.count((Outcome.UNKNOWN, "sandbox")) == 6
    assert outcomes.count((Outcome.SUCCEEDED, "sandbox")) == 14  # no healthy payment failed over or failed
    snap = router.breaker("sandbox").snapshot()
    assert snap.state == BreakerState.CLOSED and (snap.calls, snap.failures) == (20, 6)
    assert router.breaker("sandbox_b").state() == BreakerState.CLOSED


def test_live_mode_never_routes_to_the_sandbox(sbx, connectors, router):
    token = sbx.tokenize()["id"]
    assert router.route("sandbox", livemode=True) == []
    result = router.authorize("sandbox", authorize_request(token, livemode=True, merchant_id="mer_live"))
    assert result.outcome == Outcome.NOT_PROCESSED and result.error == "no_route"
    auth = router.authorize("sandbox", authorize_request(token))
    for outcome in (router.capture("sandbox", auth.psp_reference, 100, "EUR", "cap_live", livemode=True),
                    router.refund("sandbox", auth.psp_reference, 100, "EUR", "rf_live", livemode=True)):
        assert outcome.error == "no_route"
    lookup = router.retrieve("sandbox", psp_reference=auth.psp_reference, livemode=True)
    assert lookup.outcome == LookupOutcome.UNKNOWN and lookup.error == "no_route"
    assert sbx.stats()["sandbox"]["captures"] == 0
    # A configuration that would send live payments to the sandbox is refused outright.
    with pytest.raises(ValueError, match="live mode never routes to the sandbox"):
        Router.from_connectors(connectors, rules=[RouteRule(("sandbox",), mode="live")])


def test_routes_per_merchant_and_currency(connectors):
    rules = routes_from_config({"PSP_ROUTES": '''[
        {"merchant": "mer_a", "currency": "EUR", "mode": "test", "connectors": ["sandbox_b", "sandbox"]},
        {"merchant": "mer_a", "connectors": ["sandbox"]},
        {"mode": "test", "connectors": ["sandbox", "sandbox_b"]}]'''})
    router = Router.from_connectors(connectors, rules=rules)
    assert router.route("sandbox", merchant_id="mer_a", currency="eur") == ["sandbox_b", "sandbox"]
    assert router.route("sandbox", merchant_id="mer_a", currency="USD") == ["sandbox"]
    assert router.route("sandbox", merchant_id="mer_b", currency="EUR") == ["sandbox", "sandbox_b"]
    assert router.route("stripe", merchant_id="mer_b") == []  # no connector of that vault here
    assert Router.from_connectors(connectors).rules == DEFAULT_ROUTES
    assert Router.from_connectors(connectors).route("sandbox") == ["sandbox", "sandbox_b"]


def test_the_result_always_names_the_connector_even_when_it_raised(connectors):
    class Broken:
        name, vault = "broken", "sandbox"

        def authorize(self, request):
            raise RuntimeError("bug")

    router = Router.from_connectors({"broken": Broken()})
    result = router.authorize("sandbox", authorize_request("tok"))
    # We cannot know whether it sent anything: unknown, and no failover.
    assert result.outcome == Outcome.UNKNOWN and result.connector == "broken" and result.error == "exception"


def test_registry_builds_connectors_from_configuration(sbx):
    config = {
        "SANDBOX_ACQUIRER_URLS": f"sandbox={sbx.a.url},sandbox_b={sbx.b.url}",
        "SANDBOX_PSP_SECRET": SECRET, "PSP_READ_TIMEOUT": 1, "PSP_CONNECT_TIMEOUT": 0.5,
        "PSP_CONNECTORS": {
            "sandbox_c": {"factory": "app.psp.sandbox:SandboxConnector", "base_url": sbx.a.url},
            "stripe_alt": "app.psp.stripe_connector.StripeConnector",
        },
    }
    specs = connector_specs(config)
    assert list(specs) == ["sandbox", "sandbox_b", "stripe", "sandbox_c", "stripe_alt"]
    assert specs["sandbox_b"].vault == "sandbox" and specs["sandbox_b"].test_only
    assert specs["stripe"].vault == "stripe" and specs["stripe"].needs_credentials
    sandbox_b = connector_for("sandbox_b", config)
    assert isinstance(sandbox_b, SandboxConnector) and sandbox_b.base_url == sbx.b.url
    assert isinstance(connector_for("stripe_alt", config), StripeConnector)
    with pytest.raises(KeyError):
        connector_for("nope", config)
    sandbox_c = connector_for("sandbox_c", config)
    assert sandbox_c.authorize(authorize_request(sbx.tokenize()["id"])).outcome == Outcome.SUCCEEDED
    for connector in (sandbox_b, sandbox_c):
        connector.close()
    # JSON works as well as a dict, and null removes a default connector.
    assert "stripe" not in connector_specs({**config, "PSP_CONNECTORS": '{"stripe": null}'})


def test_build_router_from_configuration(sbx, redis_conn, clock, sleeps):
    config = {"SANDBOX_ACQUIRER_URLS": f"sandbox={sbx.a.url},sandbox_b={sbx.b.url}", "SANDBOX_PSP_SECRET": SECRET,
              "PSP_READ_TIMEOUT": 1, "PSP_BREAKER_MINIMUM_CALLS": 2, "PSP_MAX_TRIES": 2}
    router = build_router(config, redis=redis_conn, clock=clock, sleep=sleeps)
    assert router.connector_names("sandbox") == ["sandbox", "sandbox_b"]
    assert router.breakers.settings.minimum_calls == 2 and router.retry.max_tries == 2
    result = router.authorize("sandbox", authorize_request(sbx.tokenize()["id"]))
    assert result.outcome == Outcome.SUCCEEDED and result.connector == "sandbox"
    router.breaker("sandbox").reset()
    router.breaker("sandbox_b").reset()
    router.close()


def test_a_lookup_that_could_not_tell_is_retried_then_unknown_never_absent(sbx, router, sleeps, clock):
    key = f"att_{uuid.uuid4().hex}"
    router.authorize("sandbox", authorize_request(sbx.tokenize()["id"], key))
    sbx.admin("/_admin/faults", {"acquirer": "sandbox", "read_error_status": 500})
    lookup = router.retrieve("sandbox", idempotency_key=key)
    # Asked three times with backoff (reading again is harmless), then "could not tell".
    assert lookup.outcome == LookupOutcome.UNKNOWN and lookup.error == "server_error"
    assert lookup.tried == ("sandbox",) * 3 and len(sleeps.calls) == 2
    # A rate limit is not asked again at once: the credential backs off, and a lookup it holds back is
    # unknown as well, never absent.
    sbx.admin("/_admin/faults", {"acquirer": "sandbox", "read_error_status": 429})
    limited = router.retrieve("sandbox", idempotency_key=key)
    assert (limited.outcome, limited.error, limited.tried) == (LookupOutcome.UNKNOWN, "rate_limited", ("sandbox",))
    sbx.admin("/_admin/faults", {"acquirer": "sandbox", "read_error_status": None})
    held = router.retrieve("sandbox", idempotency_key=key)
    assert held.outcome == LookupOutcome.UNKNOWN and held.error == "rate_limited_backoff"
    clock.advance(30)  # the backoff is over: asked again, and found
    assert router.retrieve("sandbox", idempotency_key=key).outcome == LookupOutcome.FOUND


def test_each_connector_says_how_long_its_psp_keeps_idempotency_keys(connectors):
    from datetime import timedelta

    router = Router.from_connectors({**connectors, "stripe": StripeConnector(api_key=None)})
    assert router.idempotency_window("sandbox") is None  # kept until reset
    assert router.idempotency_window("stripe") == timedelta(hours=24)
    assert router.idempotency_window("unknown") == timedelta(hours=24)  # not said: assume the shortest
