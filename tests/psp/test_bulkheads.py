"""Bulkheads: PSP calls in flight per connector and credential are bounded; a full one refuses at once.

Over the real sandbox (tests/psp/conftest.py): a call whose bulkhead is full never reaches the PSP nor its
breaker, an authorization fails over to the next connector of its route, a status query "could not ask".
"""
import threading
import uuid

import pytest

from app.psp.breaker import PLATFORM_CREDENTIAL
from app.psp.bulkhead import Bulkheads, bulkhead_size_from_config, concurrency_from_config
from app.psp.interfaces import AuthorizeRequest, LookupOutcome, Outcome
from app.psp.router import RetryPolicy, Router

SANDBOX = ("sandbox", PLATFORM_CREDENTIAL)
SANDBOX_B = ("sandbox_b", PLATFORM_CREDENTIAL)


def authorize_request(token: str) -> AuthorizeRequest:
    return AuthorizeRequest(amount=2500, currency="EUR", token=token, idempotency_key=f"att_{uuid.uuid4().hex}",
                            reference="att_bulkhead")


@pytest.fixture
def bulkheads():
    return Bulkheads(size=1)


@pytest.fixture
def bounded_router(connectors, breakers, sleeps, bulkheads):
    return Router.from_connectors(connectors, breakers=breakers, retry=RetryPolicy(max_tries=3), sleep=sleeps,
                                  bulkheads=bulkheads)


def test_a_bulkhead_holds_at_most_its_size_per_connector_and_credential():
    bulkheads = Bulkheads(size=2)
    assert bulkheads.try_enter(SANDBOX) and bulkheads.try_enter(SANDBOX)
    assert not bulkheads.try_enter(SANDBOX)
    assert bulkheads.try_enter(SANDBOX_B)                       # another connector has its own slots
    assert bulkheads.try_enter(("sandbox", "mer_1:test"))      # and so has another credential
    bulkheads.leave(SANDBOX)
    assert bulkheads.in_flight(SANDBOX) == 1 and bulkheads.try_enter(SANDBOX)


def test_sizes_come_from_the_configuration():
    assert concurrency_from_config({"PSP_CONCURRENCY": "8"}) == 8
    assert bulkhead_size_from_config({"PSP_CONCURRENCY": "8"}) == 6  # three quarters by default
    assert bulkhead_size_from_config({"PSP_CONCURRENCY": "8", "PSP_BULKHEAD_SIZE": "2"}) == 2
    assert bulkhead_size_from_config({"PSP_CONCURRENCY": "8", "PSP_BULKHEAD_SIZE": "99"}) == 8


def test_a_full_bulkhead_fails_over_without_touching_the_psp_or_its_breaker(sbx, bounded_router, bulkheads,
                                                                            breakers, sleeps):
    assert bulkheads.try_enter(SANDBOX)  # another call holds sandbox's only slot
    result = bounded_router.authorize("sandbox", authorize_request(sbx.tokenize()["id"]))
    assert result.outcome == Outcome.SUCCEEDED and result.connector == "sandbox_b"
    assert result.tried == ("sandbox", "sandbox_b") and sleeps.calls == []
    assert sbx.stats()["sandbox"]["calls"] == 0
    assert breakers.get("sandbox", PLATFORM_CREDENTIAL).snapshot().calls == 0
    assert bulkheads.in_flight(SANDBOX_B) == 0  # the failover's slot was given back

    assert bulkheads.try_enter(SANDBOX_B)
    refused = bounded_router.authorize("sandbox", authorize_request(sbx.tokenize()["id"]))
    assert refused.outcome == Outcome.NOT_PROCESSED and refused.error == "bulkhead_full"
    assert sbx.stats()["sandbox_b"]["calls"] == 1  # only the first authorization
    lookup = bounded_router.retrieve("sandbox", idempotency_key="kassa-att_x")
    assert lookup.outcome == LookupOutcome.UNKNOWN  # could not ask is never "absent"


def test_the_slot_a_thread_holds_serves_its_calls(sbx, bounded_router, bulkheads):
    token = sbx.tokenize()["id"]
    seen = []
    assert bulkheads.try_enter(SANDBOX)  # as the dispatcher does before it claims an item
    with bulkheads.holding(SANDBOX):
        result = bounded_router.authorize("sandbox", authorize_request(token))
        seen.append(bulkheads.in_flight(SANDBOX))
        # Another thread does not hold it: its call to sandbox finds the bulkhead full and fails over.
        other = []
        thread = threading.Thread(target=lambda: other.append(
            bounded_router.authorize("sandbox", authorize_request(sbx.tokenize()["id"]))))
        thread.start()
        thread.join()
    assert result.outcome == Outcome.SUCCEEDED and result.connector == "sandbox"
    assert seen == [1] and bulkheads.in_flight(SANDBOX) == 0
    assert other[0].connector == "sandbox_b"
