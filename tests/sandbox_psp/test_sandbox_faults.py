"""Fault injection: refused connections, injected 503s, latency settings."""
import socket

import pytest
import requests
from sbx_helpers import wait_until


def set_faults(sandbox, **faults):
    return sandbox.admin("/_admin/faults", {"acquirer": "sandbox", **faults})


def test_refuse_connections_closes_and_reopens_the_listener(sandbox):
    token = sandbox.tokenize()["id"]
    assert sandbox.a.authorize(token).status_code == 200  # a pooled connection would exist now
    assert set_faults(sandbox, refuse_connections=True)["refuse_connections"] is True

    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", sandbox.a.port), timeout=1).close()
    with pytest.raises(requests.exceptions.ConnectionError):
        sandbox.a.authorize(token, timeout=(1, 1))
    # The other acquirer, same vault, still works: failover has somewhere to go.
    assert sandbox.b.authorize(token).json()["status"] == "authorized"
    assert sandbox.stats()["sandbox"]["authorizations"] == 1

    set_faults(sandbox, refuse_connections=False)
    assert sandbox.a.authorize(token).json()["status"] == "authorized"
    assert sandbox.stats()["sandbox"]["authorizations"] == 2


def test_reset_reopens_a_refused_listener(sandbox):
    set_faults(sandbox, refuse_connections=True)
    sandbox.admin("/_admin/reset")
    assert wait_until(lambda: sandbox.a.get("/healthz").status_code == 200)


def test_error_rate_fails_every_nth_post_without_processing(sandbox):
    token = sandbox.tokenize()["id"]
    assert set_faults(sandbox, error_rate=0.5)["error_rate"] == 0.5
    statuses = [sandbox.a.authorize(token).status_code for _ in range(6)]
    assert statuses == [200, 503, 200, 503, 200, 503]
    failed = sandbox.a.authorize(token, key="k-fault-ok")  # 7th: passes
    assert failed.status_code == 200
    error = sandbox.a.authorize(token, key="k-fault")  # 8th: injected error
    assert error.json()["error"] == {"code": "processing_error", "message": "Injected fault: not processed.",
                                     "param": None, "processed": False}
    assert sandbox.a.get("/v1/authorizations", params={"idempotency_key": "k-fault"}).json()["data"] == []
    stats = sandbox.stats()["sandbox"]
    assert (stats["authorizations"], stats["injected_errors"]) == (4, 4)
    # GETs are never failed, so status queries keep working.
    assert sandbox.a.get("/v1/disputes").status_code == 200

    set_faults(sandbox, error_rate=1.0)
    assert sandbox.a.authorize(token).status_code == 503
    assert sandbox.b.authorize(token).status_code == 200  # faults are per acquirer


def test_fault_settings_are_validated_and_listed(sandbox):
    response = sandbox.public.post(sandbox.public_url + "/_admin/faults", json={"acquirer": "nope"})
    assert response.status_code == 400
    response = sandbox.public.post(sandbox.public_url + "/_admin/faults",
                                   json={"acquirer": "sandbox", "error_rate": 2})
    assert response.status_code == 400
    set_faults(sandbox, latency_ms=5)
    faults = sandbox.public.get(sandbox.public_url + "/_admin/faults").json()
    assert faults["sandbox"] == {"latency_ms": 5, "error_rate": 0.0, "refuse_connections": False,
                                 "read_error_status": None}
    assert faults["sandbox_b"]["latency_ms"] == 0
    assert sandbox.a.get("/healthz").status_code == 200


@pytest.mark.parametrize(("status", "code"), [(429, "rate_limited"), (503, "processing_error"), (401, "unauthorized"),
                                              (500, "internal_error")])
def test_read_error_status_fails_every_status_query_and_no_write(sandbox, status, code):
    token = sandbox.tokenize()["id"]
    key = f"k-read-{status}"
    assert set_faults(sandbox, read_error_status=status)["read_error_status"] == status
    authorized = sandbox.a.authorize(token, key=key)
    assert authorized.status_code == 200  # writes go on
    for path, params in ((f"/v1/authorizations/{authorized.json()['id']}", None),
                         ("/v1/authorizations", {"idempotency_key": key}), ("/v1/refunds/rf_x", None)):
        answer = sandbox.a.get(path, params=params)
        assert answer.status_code == status and answer.json()["error"]["code"] == code
    assert sandbox.b.get("/v1/authorizations", params={"idempotency_key": key}).status_code == 200  # per acquirer
    assert sandbox.stats()["sandbox"]["injected_errors"] == 3

    set_faults(sandbox, read_error_status=None)
    assert sandbox.a.get("/v1/authorizations", params={"idempotency_key": key}).json()["data"][0]["status"] == \
        "authorized"


def test_read_error_status_is_validated_and_cleared_by_a_reset(sandbox):
    response = sandbox.public.post(sandbox.public_url + "/_admin/faults",
                                   json={"acquirer": "sandbox", "read_error_status": 418})
    assert response.status_code == 400 and response.json()["error"]["param"] == "read_error_status"
    set_faults(sandbox, read_error_status=429)
    assert set_faults(sandbox, latency_ms=0)["read_error_status"] == 429  # left out: kept
    sandbox.admin("/_admin/reset")
    assert sandbox.public.get(sandbox.public_url + "/_admin/faults").json()["sandbox"]["read_error_status"] is None
