"""/v1/reviews and /v1/radar/value_lists, /v1/radar/value_list_items: Stripe's shapes, refusals, tenancy."""
import pytest

from app.jobs.payments import _run_attempt
from app.payments import idempotency
from app.risk import rules
from tests import factories
from tests.payments.conftest import mint_key
from tests.payments.helpers import make_deps
from tests.risk.test_payment_flow import GOOD, RiskGateway


def bearer(key):
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def auth(db_session, merchant):
    return bearer(mint_key(db_session, merchant.id))


@pytest.fixture
def other_auth(db_session):
    other = factories.merchant(db_session, name="Other shop")
    db_session.commit()
    return bearer(mint_key(db_session, other.id))


def test_value_lists_and_items_in_stripes_shapes(client, auth, other_auth):
    created = client.post("/v1/radar/value_lists", headers=auth,
                          data={"alias": "custom_ip_blocklist", "name": "Custom IP Blocklist", "item_type": "ip_address"})
    assert created.status_code == 200, created.json
    value_list = created.json
    assert value_list["object"] == "radar.value_list" and value_list["id"].startswith("rsl_")
    assert value_list["list_items"]["object"] == "list"
    item = client.post("/v1/radar/value_list_items", headers=auth,
                       data={"value_list": value_list["id"], "value": "203.0.113.7/24"})
    assert item.status_code == 200 and item.json["value"] == "203.0.113.0/24"
    assert item.json["object"] == "radar.value_list_item"
    bad = client.post("/v1/radar/value_list_items", headers=auth, data={"value_list": value_list["id"], "value": "nope"})
    assert bad.status_code == 400 and bad.json["error"]["param"] == "value"
    duplicate = client.post("/v1/radar/value_lists", headers=auth,
                            data={"alias": "custom_ip_blocklist", "name": "Again", "item_type": "ip_address"})
    assert duplicate.status_code == 400 and duplicate.json["error"]["param"] == "alias"
    platform = client.post("/v1/radar/value_lists", headers=auth,
                           data={"alias": "platform_mine", "name": "x", "item_type": "email"})
    assert platform.status_code == 400
    listed = client.get("/v1/radar/value_lists", headers=auth).json
    assert [row["id"] for row in listed["data"]] == [value_list["id"]]
    assert client.get("/v1/radar/value_lists", headers=auth,
                      query_string={"contains": "203.0.113.0/24"}).json["data"][0]["id"] == value_list["id"]
    items = client.get("/v1/radar/value_list_items", headers=auth, query_string={"value_list": value_list["id"]}).json
    assert [row["id"] for row in items["data"]] == [item.json["id"]]
    # Another merchant sees none of it and can change none of it.
    assert client.get("/v1/radar/value_lists", headers=other_auth).json["data"] == []
    assert client.get(f"/v1/radar/value_lists/{value_list['id']}", headers=other_auth).status_code == 404
    assert client.post(f"/v1/radar/value_lists/{value_list['id']}", headers=other_auth,
                       data={"name": "mine"}).status_code == 404
    assert client.delete(f"/v1/radar/value_list_items/{item.json['id']}", headers=other_auth).status_code == 404
    assert client.post("/v1/radar/value_list_items", headers=other_auth,
                       data={"value_list": value_list["id"], "value": "198.51.100.1"}).status_code == 404
    assert client.delete(f"/v1/radar/value_lists/{value_list['id']}", headers=other_auth).status_code == 404
    # A list that a rule uses cannot be deleted; deleting the item and then the unused list works.
    assert client.delete(f"/v1/radar/value_list_items/{item.json['id']}", headers=auth).json["deleted"] is True
    deleted = client.delete(f"/v1/radar/value_lists/{value_list['id']}", headers=auth)
    assert deleted.status_code == 200 and deleted.json == {"id": value_list["id"], "object": "radar.value_list",
                                                           "deleted": True}


def test_a_list_used_by_a_rule_is_not_deleted(client, auth, db_session, scope):
    created = client.post("/v1/radar/value_lists", headers=auth,
                          data={"alias": "vip_emails", "name": "VIP", "item_type": "email"}).json
    rules.create_rule(db_session, scope, action="allow", predicate=":email: in @vip_emails")
    db_session.commit()
    refused = client.delete(f"/v1/radar/value_lists/{created['id']}", headers=auth)
    assert refused.status_code == 400 and refused.json["error"]["code"] == "value_list_in_use"


def test_reviews_list_retrieve_and_approve_once(client, auth, other_auth, db_session, scope, redis):
    deps = make_deps(redis=redis, enqueued=[])
    rules.create_rule(db_session, scope, action="review", predicate=":amount: > 100")
    db_session.commit()
    body = idempotency.execute(db_session, scope, "payment.create", {
        "amount": 50000, "currency": "EUR", "payment_method": "tok_api_review", "confirm": True,
        "customer_ip": "81.2.69.160"}, key=None, deps=deps, path="/test").body
    _run_attempt(body["attempts"][0]["id"], deps, RiskGateway(cards={"tok_api_review": GOOD}))
    listed = client.get("/v1/reviews", headers=auth).json
    [review] = listed["data"]
    assert review["object"] == "review" and review["open"] is True and review["payment"] == body["id"]
    assert review["opened_reason"] == "rule" and review["ip_address_location"]["country"] == "GB"
    payment = client.get(f"/v1/payments/{body['id']}", headers=auth).json
    assert payment["status"] == "requires_capture" and payment["review"] == review["id"]
    assert payment["outcome"]["type"] == "manual_review" and payment["customer_ip"] == "81.2.69.160"
    held = client.get("/v1/payments", headers=auth, query_string={"outcome": "manual_review"}).json["data"]
    assert [p["id"] for p in held] == [body["id"]]
    assert client.get("/v1/payments", headers=auth, query_string={"outcome": "blocked"}).json["data"] == []
    level = payment["outcome"]["risk_level"]
    assert [p["id"] for p in client.get("/v1/payments", headers=auth, query_string={"risk_level": level}).json[
        "data"]] == [body["id"]]
    refused = client.get("/v1/payments", headers=auth, query_string={"risk_level": "medium"})
    assert refused.status_code == 400 and refused.json["error"]["param"] == "risk_level"
    assert client.get(f"/v1/reviews/{review['id']}", headers=other_auth).status_code == 404
    assert client.post(f"/v1/reviews/{review['id']}/approve", headers=other_auth).status_code == 404
    assert client.get("/v1/reviews", headers=other_auth).json["data"] == []
    approved = client.post(f"/v1/reviews/{review['id']}/approve", headers=auth, data={"note": "Known customer"})
    assert approved.status_code == 200 and approved.json["closed_reason"] == "approved"
    again = client.post(f"/v1/reviews/{review['id']}/approve", headers=auth)
    assert again.status_code == 409 and again.json["error"]["code"] == "review_closed"
    assert client.get("/v1/reviews", headers=auth).json["data"] == []
    assert client.get("/v1/reviews", headers=auth, query_string={"open": "false"}).json["data"][0]["id"] == review["id"]


def test_a_platform_review_is_not_the_merchants_to_approve(client, auth, db_session, scope, redis):
    deps = make_deps(redis=redis, enqueued=[])
    rule = rules.create_rule(db_session, None, action="review", predicate=":amount: > 4000")
    db_session.commit()
    body = idempotency.execute(db_session, scope, "payment.create", {
        "amount": 500000, "currency": "EUR", "payment_method": "tok_api_platform", "confirm": True},
        key=None, deps=deps, path="/test").body
    _run_attempt(body["attempts"][0]["id"], deps, RiskGateway(cards={"tok_api_platform": GOOD}))
    rules.delete_rule(db_session, None, rule.id)
    db_session.commit()
    review = client.get("/v1/reviews", headers=auth).json["data"][0]
    assert review["owner"] == "platform"
    refused = client.post(f"/v1/reviews/{review['id']}/approve", headers=auth)
    assert refused.status_code == 403 and refused.json["error"]["code"] == "review_not_owned"
    capture = client.post(f"/v1/payments/{body['id']}/capture", headers=auth)
    assert capture.status_code == 409 and capture.json["error"]["code"] == "payment_in_review"


def test_confirm_takes_customer_ip_and_refuses_a_bad_one(client, auth):
    refused = client.post("/v1/payments", headers=auth, data={"amount": 1000, "currency": "EUR",
                                                              "customer_ip": "not-an-ip"})
    assert refused.status_code == 400 and refused.json["error"]["param"] == "customer_ip"
    created = client.post("/v1/payments", headers=auth, data={"amount": 1000, "currency": "EUR",
                                                              "customer_ip": "2001:db8::1"})
    assert created.status_code == 200 and created.json["customer_ip"] == "2001:db8::1"
