"""The /v1 payments API in-process: parameters, errors, idempotency over HTTP, pagination, tenancy.

No worker runs here: tests drive PSP outcomes by running the jobs' logic inline with a scripted PSP.
"""
import pytest
from sqlalchemy import select

from app.jobs.payments import _run_attempt, _run_refund, payments_deps
from app.payments.models import Payment, PaymentAttempt, Refund
from tests.payments.helpers import ScriptedGateway


def err(response):
    return response.json["error"]


def post(client, path, auth, key=None, **body):
    headers = dict(auth)
    if key:
        headers["Idempotency-Key"] = key
    return client.post(path, json=body, headers=headers)


def drain(db_session, gateway=None):
    """Run every open attempt and pending refund inline (what the worker would do)."""
    gateway = gateway or ScriptedGateway()
    deps = payments_deps()
    while True:
        db_session.expire_all()
        attempt = db_session.scalars(select(PaymentAttempt.id).where(PaymentAttempt.status == "processing")).first()
        refund = db_session.scalars(select(Refund.id).where(Refund.status == "pending")).first()
        if attempt:
            _run_attempt(attempt, deps, gateway)
        elif refund:
            _run_refund(refund, deps, gateway)
        else:
            db_session.commit()
            return gateway


def test_create_retrieve_and_list(client, auth):
    created = post(client, "/v1/payments", auth, amount=2000, currency="usd", customer_email="Ann@Example.com",
                   metadata={"order": "42"}, description="Two shirts")
    assert created.status_code == 200
    body = created.json
    assert body["id"].startswith("pay_") and body["object"] == "payment"
    assert (body["amount"], body["currency"], body["status"]) == (2000, "USD", "requires_payment_method")
    assert body["metadata"] == {"order": "42"} and body["livemode"] is False
    assert client.get(f"/v1/payments/{body['id']}", headers=auth).json == body
    listed = client.get("/v1/payments", headers=auth).json
    assert listed["object"] == "list" and body["id"] in [p["id"] for p in listed["data"]]


@pytest.mark.parametrize("body,param,code", [
    ({"amount": 0, "currency": "usd"}, "amount", "parameter_invalid"),
    ({"amount": -5, "currency": "usd"}, "amount", "parameter_invalid"),
    ({"amount": "10", "currency": "usd"}, "amount", "parameter_invalid"),
    ({"amount": 10.5, "currency": "usd"}, "amount", "parameter_invalid"),
    ({"currency": "usd"}, "amount", "parameter_missing"),
    ({"amount": 100, "currency": "xyz"}, "currency", "parameter_invalid"),
    ({"amount": 100, "currency": "usd", "colour": "red"}, "colour", "parameter_unknown"),
    ({"amount": 100, "currency": "usd", "capture_method": "later"}, "capture_method", "parameter_invalid"),
    ({"amount": 100, "currency": "usd", "confirm": True}, "payment_method", "parameter_missing"),
    ({"amount": 100, "currency": "usd", "split": [{"seller": "sel_x", "amount": 100}]}, "split[0][seller]",
     "resource_missing"),
    ({"amount": 100, "currency": "usd", "metadata": {"k": "v" * 501}}, "metadata[k]", "parameter_invalid"),
])
def test_invalid_requests_are_4xx_and_change_nothing(client, auth, db_session, scope, body, param, code):
    before = len(db_session.scalars(scope.select(Payment)).all())
    response = post(client, "/v1/payments", auth, key=f"bad-{param}-{code}", **body)
    assert response.status_code == 400
    assert (err(response)["param"], err(response)["code"]) == (param, code)
    db_session.expire_all()
    assert len(db_session.scalars(scope.select(Payment)).all()) == before


def test_split_that_does_not_add_up(client, auth):
    seller = post(client, "/v1/sellers", auth, name="Shop A").json
    response = post(client, "/v1/payments", auth, amount=1000, currency="eur",
                    split=[{"seller": seller["id"], "amount": 900, "fee": 10}])
    assert response.status_code == 400 and err(response)["code"] == "split_mismatch"


def test_idempotency_over_http(client, auth):
    first = post(client, "/v1/payments", auth, key="order-1", amount=500, currency="usd")
    replay = post(client, "/v1/payments", auth, key="order-1", amount=500, currency="usd")
    assert replay.status_code == first.status_code and replay.data == first.data
    assert replay.headers["Idempotent-Replayed"] == "true"
    different = post(client, "/v1/payments", auth, key="order-1", amount=501, currency="usd")
    assert different.status_code == 400 and err(different)["type"] == "idempotency_error"
    # A request refused by validation is not stored: the key works afterwards.
    refused = post(client, "/v1/payments", auth, key="order-2", amount=0, currency="usd")
    assert refused.status_code == 400
    assert post(client, "/v1/payments", auth, key="order-2", amount=5, currency="usd").status_code == 200


def test_full_flow_manual_capture_and_refund(client, auth, db_session):
    created = post(client, "/v1/payments", auth, amount=1000, currency="usd", capture_method="manual",
                   payment_method="tok_visa", confirm=True).json
    assert created["status"] == "processing"
    drain(db_session)
    payment = client.get(f"/v1/payments/{created['id']}", headers=auth).json
    assert payment["status"] == "requires_capture" and payment["amount_capturable"] == 1000
    too_much = post(client, f"/v1/payments/{created['id']}/capture", auth, amount=1001)
    assert too_much.status_code == 400 and err(too_much)["code"] == "amount_too_large"
    post(client, f"/v1/payments/{created['id']}/capture", auth, amount=600)
    drain(db_session)
    payment = client.get(f"/v1/payments/{created['id']}", headers=auth).json
    assert (payment["status"], payment["amount_received"]) == ("succeeded", 600)
    refund = post(client, "/v1/refunds", auth, payment=created["id"], amount=200, reason="requested_by_customer")
    assert refund.status_code == 200 and refund.json["status"] == "pending"
    drain(db_session)
    assert client.get(f"/v1/refunds/{refund.json['id']}", headers=auth).json["status"] == "succeeded"
    beyond = post(client, "/v1/refunds", auth, payment=created["id"], amount=401)
    assert beyond.status_code == 400 and err(beyond)["code"] == "amount_too_large"
    balance = client.get("/v1/balance", headers=auth).json
    assert balance["object"] == "balance" and sum(s["amount"] for s in balance["sellers"]) == 400
    refunds = client.get(f"/v1/refunds?payment={created['id']}", headers=auth).json
    assert [r["id"] for r in refunds["data"]] == [refund.json["id"]]
    events = client.get(f"/v1/events?object={created['id']}", headers=auth).json["data"]
    assert [e["type"] for e in reversed(events)] == [
        "payment.created", "payment.processing", "payment.requires_capture", "payment.succeeded"]
    one = client.get(f"/v1/events/{events[0]['id']}", headers=auth).json
    assert one["data"]["object"]["status"] == "succeeded"


def test_forbidden_transitions_are_400(client, auth, db_session):
    created = post(client, "/v1/payments", auth, amount=1000, currency="usd").json
    capture = post(client, f"/v1/payments/{created['id']}/capture", auth)
    assert capture.status_code == 400 and err(capture)["code"] == "payment_unexpected_state"
    assert post(client, f"/v1/payments/{created['id']}/cancel", auth).json["status"] == "canceled"
    again = post(client, f"/v1/payments/{created['id']}/confirm", auth, payment_method="tok_1")
    assert again.status_code == 400 and err(again)["code"] == "payment_unexpected_state"
    refund = post(client, "/v1/refunds", auth, payment=created["id"])
    assert refund.status_code == 400


def test_cancel_is_refused_while_processing(client, auth, db_session):
    created = post(client, "/v1/payments", auth, amount=1000, currency="usd", payment_method="tok_1",
                   confirm=True).json
    response = post(client, f"/v1/payments/{created['id']}/cancel", auth)
    assert response.status_code == 400 and err(response)["code"] == "payment_unexpected_state"
    drain(db_session)


def test_pagination_and_filters(client, auth):
    seller = post(client, "/v1/sellers", auth, name="Filter seller").json
    ids = [post(client, "/v1/payments", auth, amount=100 + i, currency="usd", customer_email="page@example.com",
                split=[{"seller": seller["id"], "amount": 100 + i}]).json["id"] for i in range(5)]
    first = client.get("/v1/payments?limit=2&customer_email=page@example.com", headers=auth).json
    assert [p["id"] for p in first["data"]] == ids[::-1][:2] and first["has_more"]
    second = client.get(f"/v1/payments?limit=2&customer_email=page@example.com&starting_after={ids[3]}",
                        headers=auth).json
    assert [p["id"] for p in second["data"]] == [ids[2], ids[1]] and second["has_more"]
    last = client.get(f"/v1/payments?limit=2&customer_email=page@example.com&starting_after={ids[1]}",
                      headers=auth).json
    assert [p["id"] for p in last["data"]] == [ids[0]] and not last["has_more"]
    by_seller = client.get(f"/v1/payments?seller={seller['id']}&limit=100", headers=auth).json
    assert sorted(p["id"] for p in by_seller["data"]) == sorted(ids)
    created = client.get(f"/v1/payments/{ids[0]}", headers=auth).json["created"]
    ranged = client.get(f"/v1/payments?created[gte]={created}&created[lte]={created + 3600}&limit=100"
                        f"&status=requires_payment_method&customer_email=page@example.com", headers=auth).json
    assert set(ids) <= {p["id"] for p in ranged["data"]}
    assert client.get("/v1/payments?limit=0", headers=auth).status_code == 400
    assert client.get("/v1/payments?status=nope", headers=auth).status_code == 400
    assert client.get("/v1/payments?bogus=1", headers=auth).status_code == 400


def test_sellers(client, auth):
    listed = client.get("/v1/sellers", headers=auth).json
    assert any(s["default"] for s in listed["data"])
    created = post(client, "/v1/sellers", auth, name="Marketplace shop", email="shop@example.com").json
    assert created["id"].startswith("sel_") and not created["default"]
    assert client.get(f"/v1/sellers/{created['id']}", headers=auth).json == created
    assert client.get("/v1/sellers/sel_nope", headers=auth).status_code == 404
    assert post(client, "/v1/sellers", auth).status_code == 400


def test_merchant_b_cannot_see_or_touch_merchant_a(client, auth, other_auth, db_session):
    created = post(client, "/v1/payments", auth, amount=1000, currency="usd", capture_method="manual",
                   payment_method="tok_1", confirm=True).json
    drain(db_session)
    pid = created["id"]
    assert client.get(f"/v1/payments/{pid}", headers=other_auth).status_code == 404
    assert pid not in [p["id"] for p in client.get("/v1/payments?limit=100", headers=other_auth).json["data"]]
    for path, body in [(f"/v1/payments/{pid}/capture", {}), (f"/v1/payments/{pid}/cancel", {}),
                       (f"/v1/payments/{pid}/confirm", {"payment_method": "tok_2"}), ("/v1/refunds", {"payment": pid})]:
        response = post(client, path, other_auth, **body)
        assert response.status_code == 404, path
    assert client.get(f"/v1/events?object={pid}", headers=other_auth).json["data"] == []
    assert client.get("/v1/balance", headers=other_auth).json["sellers"] == []
    assert client.get(f"/v1/payments/{pid}", headers=auth).json["status"] == "requires_capture"


def test_authentication_is_required(client):
    response = client.post("/v1/payments", json={"amount": 1, "currency": "usd"})
    assert response.status_code == 401 and err(response)["type"] == "authentication_error"


def test_text_the_database_cannot_hold_is_a_400_not_a_500(client, auth):
    response = post(client, "/v1/payments", auth, amount=100, currency="usd", description="nul\u0000byte")
    assert response.status_code == 400 and err(response)["param"] == "description"
    response = post(client, "/v1/payments", auth, amount=100, currency="usd", metadata={"k\u0000": "v"})
    assert response.status_code == 400
    assert client.get("/v1/payments?customer_email=a%00b", headers=auth).status_code == 400
    assert client.get("/v1/payments/pay_%00", headers=auth).status_code == 404
    assert client.get("/v1/openapi.json").json["openapi"].startswith("3.")
