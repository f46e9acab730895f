"""The timeout card: authorized for real, answered too late for a short read timeout."""
import pytest
import requests
from sbx_helpers import TIMEOUT_DELAY_SECONDS

# The client gives up after 1 s; the sandbox (started with --timeout-delay 2) answers later.
CLIENT_READ_TIMEOUT = 1
assert CLIENT_READ_TIMEOUT < TIMEOUT_DELAY_SECONDS


def test_timeout_card_authorizes_but_answers_too_late(sandbox):
    token = sandbox.tokenize("4000000000000341")["id"]
    with pytest.raises(requests.exceptions.ReadTimeout):
        sandbox.a.authorize(token, 7000, key="slow-1", timeout=(1, CLIENT_READ_TIMEOUT))

    # The ambiguous attempt is resolved by a status query, not by charging again.
    found = sandbox.a.get("/v1/authorizations", params={"idempotency_key": "slow-1"}).json()["data"]
    assert len(found) == 1
    assert (found[0]["status"], found[0]["amount"]) == ("authorized", 7000)
    assert sandbox.a.get(f"/v1/authorizations/{found[0]['id']}").json()["status"] == "authorized"

    # Retrying with the same key replays the stored answer instead of authorizing twice.
    retry = sandbox.a.authorize(token, 7000, key="slow-1")
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert retry.json()["id"] == found[0]["id"]
    assert sandbox.stats()["sandbox"]["authorizations"] == 1
