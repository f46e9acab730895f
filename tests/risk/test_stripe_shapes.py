"""/v1/radar/value_lists, /v1/radar/value_list_items and /v1/reviews answer in Stripe's shapes: every field of
Stripe's own example objects (stripe_radar_examples.json, from stripe/openapi's fixtures3.json, unchanged) is there,
with the same JSON type (or null), nested objects included; Kassa's extra fields are allowed."""
import json
from pathlib import Path

from app.jobs.payments import _run_attempt
from app.payments import idempotency
from app.risk import rules
from tests.payments.conftest import mint_key
from tests.payments.helpers import make_deps
from tests.risk.test_payment_flow import GOOD, RiskGateway

EXAMPLES = json.loads((Path(__file__).parent / "stripe_radar_examples.json").read_text())["resources"]


def json_type(value) -> str:
    return {bool: "boolean", int: "number", float: "number", str: "string", list: "array", dict: "object",
            type(None): "null"}[type(value)]


def shape_differences(ours: dict, stripes: dict, path: str = "") -> list[str]:
    """Where ``ours`` lacks a field of Stripe's example or has another JSON type for it (null is any type)."""
    found = []
    for key, example in stripes.items():
        where = f"{path}{key}"
        if key not in ours:
            found.append(f"{where}: missing")
            continue
        value = ours[key]
        if value is None or example is None:
            continue
        if json_type(value) != json_type(example):
            found.append(f"{where}: {json_type(value)}, Stripe's is {json_type(example)}")
        elif isinstance(example, dict):
            found += shape_differences(value, example, f"{where}.")
    return found


def test_value_lists_items_and_their_deletion_in_stripes_shapes(client, db_session, merchant):
    auth = {"Authorization": f"Bearer {mint_key(db_session, merchant.id)}"}
    created = client.post("/v1/radar/value_lists", headers=auth, data={
        "alias": "custom_ip_blocklist", "name": "Custom IP Blocklist", "item_type": "ip_address",
        "metadata[team]": "fraud"})
    assert created.status_code == 200, created.json
    value_list = created.json
    assert shape_differences(value_list, EXAMPLES["radar.value_list"]) == []
    assert value_list["id"].startswith("rsl_") and value_list["metadata"] == {"team": "fraud"}
    assert value_list["list_items"]["url"] == f"/v1/radar/value_list_items?value_list={value_list['id']}"
    item = client.post("/v1/radar/value_list_items", headers=auth,
                       data={"value_list": value_list["id"], "value": "1.2.3.4"}).json
    assert shape_differences(item, EXAMPLES["radar.value_list_item"]) == []
    assert item["id"].startswith("rsli_") and (item["value"], item["value_list"]) == ("1.2.3.4", value_list["id"])
    assert item["livemode"] is False
    again = client.get(f"/v1/radar/value_lists/{value_list['id']}", headers=auth).json
    assert shape_differences(again, EXAMPLES["radar.value_list"]) == []
    assert [row["id"] for row in again["list_items"]["data"]] == [item["id"]]
    assert shape_differences(again["list_items"]["data"][0], EXAMPLES["radar.value_list_item"]) == []
    listed = client.get("/v1/radar/value_list_items", headers=auth, query_string={"value_list": value_list["id"]}).json
    assert listed["object"] == "list" and shape_differences(listed["data"][0], EXAMPLES["radar.value_list_item"]) == []
    deleted_item = client.delete(f"/v1/radar/value_list_items/{item['id']}", headers=auth).json
    assert deleted_item == {**EXAMPLES["deleted_radar.value_list_item"], "id": item["id"]}
    deleted = client.delete(f"/v1/radar/value_lists/{value_list['id']}", headers=auth).json
    assert deleted == {**EXAMPLES["deleted_radar.value_list"], "id": value_list["id"]}


def test_reviews_in_stripes_shape(client, db_session, merchant, scope, redis):
    auth = {"Authorization": f"Bearer {mint_key(db_session, merchant.id)}"}
    deps = make_deps(redis=redis, enqueued=[])
    rules.create_rule(db_session, scope, action="review", predicate=":amount: > 100")
    db_session.commit()
    body = idempotency.execute(db_session, scope, "payment.create", {
        "amount": 50000, "currency": "EUR", "payment_method": "tok_shape_review", "confirm": True,
        "customer_ip": "81.2.69.160"}, key=None, deps=deps, path="/test").body
    _run_attempt(body["attempts"][0]["id"], deps, RiskGateway(cards={"tok_shape_review": GOOD}))
    [listed] = client.get("/v1/reviews", headers=auth).json["data"]
    review = client.get(f"/v1/reviews/{listed['id']}", headers=auth).json
    for shown in (listed, review):
        assert shape_differences(shown, EXAMPLES["review"]) == []
    assert review["id"].startswith("prv_") and review["open"] is True and review["opened_reason"] == "rule"
    assert review["ip_address"] == "81.2.69.160" and review["ip_address_location"]["country"] == "GB"
    approved = client.post(f"/v1/reviews/{review['id']}/approve", headers=auth).json
    assert shape_differences(approved, EXAMPLES["review"]) == []
    assert approved["open"] is False and approved["closed_reason"] == "approved"
