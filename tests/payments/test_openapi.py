"""/v1/openapi.json matches the implementation: schemathesis finds no 5xx and no schema violation.

Runs in-process against the WSGI app (no worker: confirm answers `processing` at once). Examples are
bounded and derandomized so that the run is repeatable and quick.
"""
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
from tests.payments.conftest import mint_key

PAYMENT_MODULES = ("app.api.payments", "app.api.refunds", "app.api.sellers", "app.api.events", "app.api.balance",
                   "app.api.disputes", "app.api.files")


@pytest.fixture(scope="module")
def api_schema(app):
    return schemathesis.openapi.from_wsgi("/v1/openapi.json", app)


@pytest.fixture(scope="module")
def world(app, database):
    """A merchant with an API key and one real object of each kind, so path ids are sometimes real."""
    from app.events import Event
    from app.extensions import db
    from app.jobs.payments import _run_attempt, _run_refund
    from app.payments import idempotency
    from app.scoping import Scope
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


def test_every_payments_route_is_documented(app, client):
    document = client.get("/v1/openapi.json").json
    documented = {(path, method.upper()) for path, item in document["paths"].items() for method in item}
    routes = set()
    for rule in app.url_map.iter_rules():
        view = app.view_functions[rule.endpoint]
        if getattr(view, "__module__", "") in PAYMENT_MODULES or \
                getattr(getattr(view, "__wrapped__", None), "__module__", "") in PAYMENT_MODULES:
            path = rule.rule.replace("<", "{").replace(">", "}")
            routes |= {(path, m) for m in rule.methods - {"HEAD", "OPTIONS"}}
    assert routes and routes <= documented, routes - documented

