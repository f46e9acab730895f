"""/v1/openapi.json matches the implementation: it lists exactly the /v1 routes the app serves, its examples
match its schemas, and schemathesis finds no 5xx and no schema violation.

Runs in-process against the WSGI app (no worker: confirm answers `processing` at once). Examples are
bounded and derandomized so that the run is repeatable and quick.
"""
import re

import jsonschema_rs
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from app.api.openapi import build_document
from app.api.payments import IDEMPOTENCY_KEY_PATTERN
from app.payments.idempotency import MAX_KEY_LENGTH
from tests.payments.conftest import mint_key


@pytest.fixture(scope="module")
def api_schema(app):
    return schemathesis.openapi.from_wsgi("/v1/openapi.json", app)


@pytest.fixture(scope="module")
def world(app, database):
    """A merchant with an API key and one real object of each kind, so path ids are sometimes real."""
    from app.checkout.service import create_session
    from app.events import Event
    from app.extensions import db
    from app.jobs.payments import _run_attempt, _run_refund
    from app.payments import idempotency
    from app.scoping import Scope
    from app.webhooks import service as webhooks
    from app.webhooks.settings import settings_for
    from tests import factories
    from tests.payments.helpers import ScriptedGateway, make_deps

    with app.app_context():
        merchant = factories.merchant(db.session, name="Schemathesis")
        db.session.commit()
        key = mint_key(db.session, merchant.id)
        scope, deps, gateway = Scope(merchant.id, False), make_deps(), ScriptedGateway()
        paid = idempotency.execute(db.session, scope, "payment.create", {
            "amount": 5000, "currency": "USD", "payment_method": "tok_1", "confirm": True}, key=None, deps=deps).body
        _run_attempt(paid["attempts"][0]["id"], deps, gateway)
        refund = idempotency.execute(db.session, scope, "refund.create", {"payment": paid["id"], "amount": 100},
                                     key=None, deps=deps).body
        _run_refund(refund["id"], deps, gateway)
        event = db.session.scalars(scope.select(Event)).first()
        ids = {"payment_id": [paid["id"]], "refund_id": [refund["id"]], "event_id": [event.id],
               "seller_id": [paid["split"][0]["seller"]]}
        session_row = create_session(db.session, scope, currency="EUR", amount=1500,
                                     success_url="https://shop.example/thanks")
        endpoint, _secret = webhooks.create_endpoint(db.session, scope, settings_for(app),
                                                     url="https://shop.example/hooks", enabled_events=["*"])
        ids.update(session_id=[session_row.id], endpoint_id=[endpoint.id])
        db.session.commit()
        for capture_method in ("automatic", "manual", "manual"):
            ids["payment_id"].append(idempotency.execute(db.session, scope, "payment.create", {
                "amount": 700, "currency": "EUR", "capture_method": capture_method}, key=None, deps=deps).body["id"])
        db.session.remove()
    return {"auth": {"Authorization": f"Bearer {key}"}, "ids": ids}


# (schemathesis.pytest.from_fixture relies on a pytest internal that pytest 9 removed, so the
# operations are parametrized from the document itself and each runs its own Hypothesis test.)
OPERATIONS = [(path, method) for path, item in build_document()["paths"].items() for method in item]


@pytest.mark.parametrize("path,method", OPERATIONS, ids=[f"{m.upper()} {p}" for p, m in OPERATIONS])
def test_api_conforms_to_its_openapi_document(api_schema, world, path, method):
    operation = api_schema[path][method]

    @given(case=operation.as_strategy(), pick=st.integers(min_value=0, max_value=15))
    @settings(max_examples=30, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def check(case, pick):
        for name, real in world["ids"].items():
            if case.path_parameters and name in case.path_parameters and pick < 2 * len(real):
                case.path_parameters[name] = real[pick // 2]  # about half the examples use a real id
        case.call_and_validate(headers=world["auth"], checks=[
            not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance])

    check()


def test_the_document_lists_exactly_the_routes_the_app_serves(app, client):
    document = client.get("/v1/openapi.json").json
    documented = {(path, method.upper()) for path, item in document["paths"].items() for method in item}
    served = {(re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule), method) for rule in app.url_map.iter_rules()
              if rule.rule.startswith("/v1/") for method in rule.methods - {"HEAD", "OPTIONS"}}
    assert ("/v1/checkout/sessions", "POST") in served and ("/v1/account", "GET") in served
    assert served - documented == set(), "routes missing from app/api/openapi.py"
    assert documented - served == set(), "documented operations the app does not serve"


def _validator(document: dict, schema: dict) -> jsonschema_rs.Draft202012Validator:
    """A validator of ``schema`` whose #/components/... references resolve in the document (jsonschema_rs:
    schemathesis's own validator)."""
    return jsonschema_rs.Draft202012Validator({**schema, "components": document["components"]},
                                              validate_formats=True)


def test_every_operation_has_examples_that_match_its_schemas():
    """JSON answers and bodies have examples that match their schemas; a file download (no JSON) documents its
    headers with examples, and an upload's form an example (its file field holds a file name)."""
    document = build_document()
    for path, item in document["paths"].items():
        for method, operation in item.items():
            answered = operation["responses"]["200"]
            answer = answered["content"].get("application/json")
            if answer is None:
                assert all(media["schema"] == {"type": "string", "format": "binary"}
                           for media in answered["content"].values()), f"{method} {path}: neither JSON nor a file"
                assert answered["headers"] and all("example" in h for h in answered["headers"].values())
            else:
                assert "example" in answer, f"{method} {path}: no response example"
                _validator(document, answer["schema"]).validate(answer["example"])
            content = operation.get("requestBody", {}).get("content", {})
            body = content.get("application/json") or content.get("multipart/form-data")
            if body:
                assert "example" in body, f"{method} {path}: no request example"
                _validator(document, body["schema"]).validate(body["example"])
            for parameter in operation["parameters"]:
                if "example" in parameter:
                    _validator(document, parameter["schema"]).validate(parameter["example"])


def test_the_documented_download_headers_are_those_sent():
    from app.api.openapi import DOWNLOAD_HEADERS_EXAMPLE, FILE_ID
    from app.disputes.files import download_headers
    from app.disputes.models import File

    sent = download_headers(File(id=FILE_ID, type="pdf"))
    assert {name: sent[name] for name in DOWNLOAD_HEADERS_EXAMPLE} == DOWNLOAD_HEADERS_EXAMPLE


def test_the_constraints_the_server_enforces_are_documented(client, auth):
    document = build_document()
    create = document["paths"]["/v1/payments"]["post"]
    [key] = [p for p in create["parameters"] if p["name"] == "Idempotency-Key"]
    assert (key["schema"]["pattern"], key["schema"]["maxLength"]) == (IDEMPOTENCY_KEY_PATTERN, MAX_KEY_LENGTH)
    for bad in ("two words", "x" * (MAX_KEY_LENGTH + 1), "caf\u00e9"):
        response = client.post("/v1/payments", headers={**auth, "Idempotency-Key": bad},
                               json={"amount": 100, "currency": "usd"})
        assert (response.status_code, response.json["error"]["param"]) == (400, "Idempotency-Key"), bad
    listing = {p["name"]: p for p in document["paths"]["/v1/payments"]["get"]["parameters"]}
    assert listing["page"]["schema"]["not"] == {"required": ["starting_after", "ending_before"]}
    both = client.get("/v1/payments?starting_after=pay_a&ending_before=pay_b", headers=auth)
    assert (both.status_code, both.json["error"]["param"]) == (400, "ending_before")
    checkout = document["paths"]["/v1/checkout/sessions"]["post"]["requestBody"]["content"]["application/json"]
    assert checkout["schema"]["oneOf"] == [{"required": ["amount"]}, {"required": ["line_items"]}]
    # Only the operations that honour Idempotency-Key document it.
    honouring = {op["operationId"] for item in document["paths"].values() for op in item.values()
                 if any(p["name"] == "Idempotency-Key" for p in op["parameters"])}
    assert honouring == {"createPayment", "confirmPayment", "capturePayment", "cancelPayment", "createRefund",
                         "createSeller", "createPayout", "cancelPayout"}
