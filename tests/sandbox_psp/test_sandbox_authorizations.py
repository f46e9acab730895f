"""Acquirer API: test card outcomes, idempotency, capture, void, refunds."""
import concurrent.futures
import uuid

import pytest
from sbx_helpers import SECRET, new_session


@pytest.mark.parametrize("number, status, decline_code", [
    ("4242424242424242", "authorized", None),
    ("5555555555554444", "authorized", None),
    ("4000000000009995", "declined", "insufficient_funds"),
    ("4000000000009979", "declined", "stolen_card"),
    ("4000000000000069", "declined", "expired_card"),
    ("4000000000000127", "declined", "incorrect_cvc"),
    ("4000000000003220", "requires_action", None),
    ("4000000000000259", "authorized", None),
    ("4100000000000019", "authorized", None),
])
def test_test_card_outcomes(sandbox, number, status, decline_code):
    token = sandbox.tokenize(number)
    response = sandbox.a.authorize(token["id"], 2500, "eur", key="card-" + number[-4:])
    assert response.status_code == 200, response.text
    auth = response.json()
    assert auth["id"].startswith("auth_")
    assert (auth["status"], auth["decline_code"]) == (status, decline_code)
    assert auth["acquirer"] == "sandbox"
    assert (auth["amount"], auth["currency"], auth["captured_amount"], auth["refunded_amount"]) == (2500, "EUR", 0, 0)
    assert auth["reference"] == "pay_test"
    assert auth["idempotency_key"] == "card-" + number[-4:]
    assert auth["card"] == token["card"]
    assert isinstance(auth["created"], int)
    if status == "requires_action":
        assert auth["action_url"] == f"{sandbox.public_url}/challenge/{auth['id']}"
    else:
        assert auth["action_url"] is None
    assert sandbox.a.get(f"/v1/authorizations/{auth['id']}").json() == auth


def test_fraud_card_carries_a_risk_hint(sandbox):
    auth = sandbox.a.authorize(sandbox.tokenize("4100000000000019")["id"]).json()
    assert auth["card"]["risk_hint"] == "fraudulent"


def test_processing_error_card_is_not_processed(sandbox):
    token = sandbox.tokenize("4000000000000119")
    response = sandbox.a.authorize(token["id"], key="k-503")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "processing_error"
    assert response.json()["error"]["processed"] is False
    assert sandbox.a.get("/v1/authorizations", params={"idempotency_key": "k-503"}).json() == {"data": []}
    assert sandbox.stats()["sandbox"]["authorizations"] == 0
    # Nothing was stored under the key, so a retry runs again (and fails the same way).
    assert sandbox.a.authorize(token["id"], key="k-503").status_code == 503


def test_bad_requests(sandbox):
    token = sandbox.tokenize()["id"]
    unknown = sandbox.a.authorize("tok_nope")
    assert unknown.status_code == 400 and unknown.json()["error"]["code"] == "invalid_token"
    for body in ({"amount": 0}, {"amount": "10"}, {"currency": "dollars"}, {"reference": None}):
        response = sandbox.a.authorize(token, **body)
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "invalid_request"
    assert sandbox.a.get("/v1/authorizations/auth_nope").status_code == 404
    with new_session({"Authorization": "Bearer wrong"}) as http:
        response = http.post(sandbox.a.url + "/v1/authorizations", json={})
        assert response.status_code == 401
        assert http.get(sandbox.a.url + "/healthz").status_code == 200  # health needs no secret


def test_same_key_twice_gives_one_authorization(sandbox):
    token = sandbox.tokenize()["id"]
    first = sandbox.a.authorize(token, 1000, key="order-1")
    second = sandbox.a.authorize(token, 1000, key="order-1")
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json()
    assert second.headers["Idempotent-Replayed"] == "true"
    assert sandbox.stats()["sandbox"]["authorizations"] == 1
    found = sandbox.a.get("/v1/authorizations", params={"idempotency_key": "order-1"}).json()["data"]
    assert [auth["id"] for auth in found] == [first.json()["id"]]


def test_same_key_different_body_is_409(sandbox):
    token = sandbox.tokenize()["id"]
    assert sandbox.a.authorize(token, 1000, key="order-2").status_code == 200
    response = sandbox.a.authorize(token, 1001, key="order-2")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "idempotency_mismatch"
    assert sandbox.stats()["sandbox"]["authorizations"] == 1


def test_keys_are_scoped_per_acquirer(sandbox):
    token = sandbox.tokenize()["id"]
    on_a = sandbox.a.authorize(token, key="shared").json()
    on_b = sandbox.b.authorize(token, key="shared").json()
    assert on_a["id"] != on_b["id"] and on_b["acquirer"] == "sandbox_b"
    assert sandbox.b.get(f"/v1/authorizations/{on_a['id']}").status_code == 404  # separate ledgers
    stats = sandbox.stats(idempotency_key="shared")
    assert stats["sandbox"]["authorizations"] == stats["sandbox_b"]["authorizations"] == 1


def test_twenty_concurrent_identical_requests_give_one_authorization(sandbox):
    token = sandbox.tokenize()["id"]
    body = {"token": token, "amount": 4200, "currency": "USD", "reference": "pay_race"}
    headers = {"Authorization": f"Bearer {SECRET}", "Idempotency-Key": "race-key"}

    def call(_):
        with new_session(headers) as http:
            response = http.post(sandbox.a.url + "/v1/authorizations", json=body)
            return response.status_code, response.json()["id"]

    with concurrent.futures.ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(call, range(20)))
    assert {status for status, _ in results} == {200}
    assert len({auth_id for _, auth_id in results}) == 1
    assert sandbox.stats(idempotency_key="race-key")["sandbox"]["authorizations"] == 1
    assert sandbox.stats()["sandbox"]["authorizations"] == 1


def capture(sandbox, auth_id, body=None, key=None):
    return sandbox.a.post(f"/v1/authorizations/{auth_id}/capture", body or {}, key=key or str(uuid.uuid4()))


def test_full_capture(sandbox):
    auth = sandbox.a.authorize(sandbox.tokenize()["id"], 5000).json()
    captured = capture(sandbox, auth["id"]).json()
    assert (captured["status"], captured["captured_amount"]) == ("captured", 5000)
    again = capture(sandbox, auth["id"])
    assert again.status_code == 400 and again.json()["error"]["code"] == "invalid_state"
    assert sandbox.stats()["sandbox"]["captures"] == 1


def test_partial_capture_once(sandbox):
    auth = sandbox.a.authorize(sandbox.tokenize()["id"], 5000).json()
    too_much = capture(sandbox, auth["id"], {"amount": 5001})
    assert too_much.status_code == 400 and too_much.json()["error"]["code"] == "amount_too_large"
    captured = capture(sandbox, auth["id"], {"amount": 3000}, key="cap-1").json()
    assert (captured["status"], captured["captured_amount"]) == ("partially_captured", 3000)
    assert capture(sandbox, auth["id"], {"amount": 3000}, key="cap-1").json() == captured  # replay
    assert capture(sandbox, auth["id"], {"amount": 1000}).json()["error"]["code"] == "invalid_state"


def test_declined_authorization_cannot_be_captured(sandbox):
    auth = sandbox.a.authorize(sandbox.tokenize("4000000000009995")["id"]).json()
    assert capture(sandbox, auth["id"]).json()["error"]["code"] == "invalid_state"


def test_void(sandbox):
    auth = sandbox.a.authorize(sandbox.tokenize()["id"]).json()
    voided = sandbox.a.post(f"/v1/authorizations/{auth['id']}/void", key="void-1")
    assert voided.status_code == 200 and voided.json()["status"] == "voided"
    assert sandbox.a.post(f"/v1/authorizations/{auth['id']}/void", key="void-1").json() == voided.json()
    assert capture(sandbox, auth["id"]).json()["error"]["code"] == "invalid_state"
    captured = sandbox.captured()
    response = sandbox.a.post(f"/v1/authorizations/{captured['id']}/void")
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_state"
    assert sandbox.stats()["sandbox"]["voids"] == 1


def test_partial_refunds_up_to_the_captured_amount(sandbox):
    auth = sandbox.captured(amount=1000)
    first = sandbox.a.post("/v1/refunds", {"authorization": auth["id"], "amount": 300}, key="rf-1")
    assert first.status_code == 200
    refund = first.json()
    assert refund["id"].startswith("rf_")
    assert (refund["authorization"], refund["amount"], refund["currency"], refund["status"],
            refund["failure_code"]) == (auth["id"], 300, "USD", "succeeded", None)
    assert sandbox.a.post("/v1/refunds", {"authorization": auth["id"], "amount": 300}, key="rf-1").json() == refund
    assert sandbox.a.post("/v1/refunds", {"authorization": auth["id"], "amount": 600}).json()["status"] == "succeeded"

    too_much = sandbox.a.post("/v1/refunds", {"authorization": auth["id"], "amount": 101})
    assert too_much.status_code == 400
    assert too_much.json()["error"]["code"] == "amount_too_large"
    assert sandbox.a.post("/v1/refunds", {"authorization": auth["id"], "amount": 100}).status_code == 200
    assert sandbox.a.get(f"/v1/authorizations/{auth['id']}").json()["refunded_amount"] == 1000
    assert sandbox.a.get(f"/v1/refunds/{refund['id']}").json() == refund
    assert sandbox.stats()["sandbox"]["refunds"] == 3


def test_pending_refund_card_refunds_later_and_sets_the_amount_aside(sandbox):
    auth = sandbox.captured("4000000000007726", amount=1000)
    refund = sandbox.a.post("/v1/refunds", {"authorization": auth["id"], "amount": 600}, key="rf-pending").json()
    assert refund["status"] == "pending"
    assert sandbox.a.get(f"/v1/refunds/{refund['id']}").json()["status"] == "pending"
    too_much = sandbox.a.post("/v1/refunds", {"authorization": auth["id"], "amount": 500})
    assert too_much.json()["error"]["code"] == "amount_too_large"  # 600 are set aside while pending
    assert sandbox.stats()["sandbox"]["refunds"] == 0

    sandbox.admin("/_admin/clock", {"advance_seconds": 3600})
    assert sandbox.a.get(f"/v1/refunds/{refund['id']}").json()["status"] == "succeeded"
    assert sandbox.stats()["sandbox"]["refunds"] == 1
    assert sandbox.a.get(f"/v1/authorizations/{auth['id']}").json()["refunded_amount"] == 600


def test_refunds_need_a_capture_on_the_same_acquirer(sandbox):
    auth = sandbox.a.authorize(sandbox.tokenize()["id"]).json()
    not_captured = sandbox.a.post("/v1/refunds", {"authorization": auth["id"], "amount": 100})
    assert not_captured.json()["error"]["code"] == "invalid_state"
    captured = sandbox.captured()
    other = sandbox.b.post("/v1/refunds", {"authorization": captured["id"], "amount": 100})
    assert other.status_code == 404


def test_sale_captures_with_the_authorization(sandbox):
    token = sandbox.tokenize()["id"]
    sale = sandbox.a.post("/v1/authorizations", {"token": token, "amount": 2500, "currency": "usd",
                                                 "reference": "att_sale", "capture": True}, key="sale-1")
    assert sale.status_code == 200
    auth = sale.json()
    assert (auth["status"], auth["captured_amount"]) == ("captured", 2500)
    assert sandbox.stats()["sandbox"]["captures"] == 1
    assert capture(sandbox, auth["id"]).json()["error"]["code"] == "invalid_state"
    assert sandbox.a.post("/v1/refunds", {"authorization": auth["id"], "amount": 500}).json()["status"] == "succeeded"


@pytest.mark.parametrize("number, status", [("4000000000003220", "requires_action"),
                                            ("4000000000009995", "declined")])
def test_sale_captures_only_what_is_authorized_at_once(sandbox, number, status):
    auth = sandbox.a.post("/v1/authorizations", {"token": sandbox.tokenize(number)["id"], "amount": 2500,
                                                 "currency": "usd", "reference": "att_sale", "capture": True}).json()
    assert (auth["status"], auth["captured_amount"]) == (status, 0)
    assert sandbox.stats()["sandbox"]["captures"] == 0


def test_sale_flag_must_be_a_boolean(sandbox):
    response = sandbox.a.post("/v1/authorizations", {"token": sandbox.tokenize()["id"], "amount": 2500,
                                                     "currency": "usd", "reference": "att_x", "capture": "yes"})
    assert response.status_code == 400 and response.json()["error"]["param"] == "capture"
