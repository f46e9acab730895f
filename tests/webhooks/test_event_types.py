"""Event types: the merchant receives the documented list only; internal events (``psp.*``: a PSP callback as
received, with the PSP's idempotency keys and action URLs) are neither on /v1/events nor sent to endpoints.
"""
import ast
import importlib
from pathlib import Path

from sqlalchemy import select

from app.events import MERCHANT_EVENT_TYPES, PLATFORM_EVENT_TYPES, is_internal_event
from app.jobs.webhooks import run_due
from app.payments.state import TRANSITIONS
from app.webhooks import service
from app.webhooks.models import WebhookDelivery
from tests.webhooks.conftest import emit, make_endpoint
from tests.webhooks.test_api import key_for
from tests.webhooks.test_missed import enable, send_missed

APP = Path(__file__).resolve().parents[2] / "app"
from app.payouts.state import TRANSITIONS as PAYOUT_TRANSITIONS  # noqa: E402

INTERNAL = "psp.authorization.updated"
# What a PSP callback carries as received (app/psp/callbacks.py records it as psp.<type>).
PSP_PAYLOAD = {"id": "auth_1", "idempotency_key": "att_01J:authorize", "action_url": "https://psp.example/3ds/1"}

# Call sites whose event type is computed, with every type each can write (reviewed by hand: a new computed
# call site fails test_every_event_type_written_is_listed_or_internal until it is added here).
COMPUTED = {
    "app.payments.state:transition": set(TRANSITIONS.values()),
    # A dispute notice writes what it changed (app/disputes/service.py: apply_notice and the money it books).
    "app.disputes.service:apply_notice": {"dispute.created", "dispute.updated", "dispute.closed",
                                          "dispute.funds_withdrawn", "dispute.funds_reinstated"},
    # The payout state machine's table (app/payouts/state.py).
    "app.payouts.state:transition": set(PAYOUT_TRANSITIONS.values()),
}


def _call_name(node: ast.Call) -> str:
    func = node.func
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""


def _type_argument(node: ast.Call) -> ast.expr | None:
    """The event-type argument of ``record_event(session, scope, type, ...)`` or of an ``Event(type=...)`` row."""
    if _call_name(node) == "record_event":
        return node.args[2] if len(node.args) > 2 else next(
            (k.value for k in node.keywords if k.arg == "event_type"), None)
    if any(isinstance(arg, ast.Name) and arg.id == "Event" for arg in [node.func, *node.args]):
        return next((k.value for k in node.keywords if k.arg == "type"), None)
    return None


def _resolve(node: ast.expr, module, function: ast.AST) -> set[str] | None:
    """The types an argument can be: a literal, a module constant, an f-string's internal prefix, or the string
    literals assigned to a local name; None when it is computed some other way."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {node.value}
    if isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[0], ast.Constant):
        prefix = node.values[0].value
        return {prefix + "x"} if is_internal_event(prefix) else None
    if isinstance(node, ast.Name):
        if isinstance(getattr(module, node.id, None), str):
            return {getattr(module, node.id)}
        assigned = {n.value.value for n in ast.walk(function) if isinstance(n, ast.Assign)
                    and any(isinstance(t, ast.Name) and t.id == node.id for t in n.targets)
                    and isinstance(n.value, ast.Constant) and isinstance(n.value.value, str)}
        return assigned or None
    return None


def written_event_types() -> tuple[set[str], set[str]]:
    """(every type the app's code writes as far as it can be read, the computed call sites it could not read)."""
    types, computed = set(), set()
    for path in sorted(APP.rglob("*.py")):
        tree = ast.parse(path.read_text())
        module_name = ".".join(path.relative_to(APP.parent).with_suffix("").parts)
        module = None
        for function in [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]:
            for call in [n for n in ast.walk(function) if isinstance(n, ast.Call)]:
                argument = _type_argument(call)
                if argument is None:
                    continue
                module = module or importlib.import_module(module_name)
                resolved = _resolve(argument, module, function)
                if resolved is None:
                    computed.add(f"{module_name}:{function.name}")
                else:
                    types |= resolved
    return types, computed


def test_every_event_type_written_is_listed_or_internal():
    types, computed = written_event_types()
    assert computed <= set(COMPUTED), f"review the types these can write and add them to COMPUTED: " \
                                      f"{computed - set(COMPUTED)}"
    assert set(COMPUTED) <= computed, f"these no longer compute their types: {set(COMPUTED) - computed}"
    for site in computed:
        types |= COMPUTED[site]
    assert {"payment.succeeded", "refund.failed", "checkout.session.completed", "webhook.test"} <= types
    assert any(is_internal_event(t) for t in types)  # the psp.<type> f-string was read
    unclassified = {t for t in types if t not in MERCHANT_EVENT_TYPES + PLATFORM_EVENT_TYPES and not is_internal_event(t)}
    assert not unclassified, f"list these in app.events.MERCHANT_EVENT_TYPES or make them internal: {unclassified}"


def test_the_documented_event_types_are_the_list(client, app):
    document = client.get("/v1/openapi.json").json
    assert document["components"]["schemas"]["Event"]["properties"]["type"]["enum"] == list(MERCHANT_EVENT_TYPES)
    docs = (APP.parent / "docs" / "webhooks.md").read_text()
    assert all(f"`{t}`" in docs for t in MERCHANT_EVENT_TYPES)
    assert not any(is_internal_event(t) for t in MERCHANT_EVENT_TYPES)


def test_internal_events_are_not_on_the_events_api(client, db_session, book):
    auth = key_for(db_session, book.merchant_id)
    [internal] = emit(db_session, book, INTERNAL, **PSP_PAYLOAD)
    [public] = emit(db_session, book, "payment.succeeded")
    listed = client.get("/v1/events", headers=auth).json["data"]
    assert [e["id"] for e in listed] == [public.id]
    assert client.get(f"/v1/events?type={INTERNAL}", headers=auth).json["data"] == []
    assert client.get(f"/v1/events/{internal.id}", headers=auth).status_code == 404
    assert client.get(f"/v1/events/{public.id}", headers=auth).status_code == 200


def test_internal_events_are_never_delivered(db_session, book, settings, receiver):
    endpoint, _ = make_endpoint(db_session, book, settings, receiver.url(), events=("*",), receiver=receiver)
    [internal] = emit(db_session, book, INTERNAL, **PSP_PAYLOAD)
    [public] = emit(db_session, book, "payment.succeeded")
    run_due(db_session, settings)
    assert receiver.ids() == [public.id]
    assert db_session.scalars(select(WebhookDelivery).where(WebhookDelivery.event_id == internal.id)).all() == []


def test_internal_events_are_not_among_missed_events(db_session, book, settings, receiver):
    endpoint, _ = make_endpoint(db_session, book, settings, receiver.url(), events=("*",), receiver=receiver)
    service.update_endpoint(db_session, book, settings, endpoint.id, disabled=True)
    db_session.commit()
    [internal] = emit(db_session, book, INTERNAL, **PSP_PAYLOAD)
    [public] = emit(db_session, book, "payment.succeeded")
    run_due(db_session, settings)
    # A missed row an older fan-out wrote for an internal event is not sent either.
    db_session.add(book.new(WebhookDelivery, id="whd_legacy_internal", event_id=internal.id, endpoint_id=endpoint.id,
                            event_type=INTERNAL, status="missed", attempt_count=0, next_trigger="automatic",
                            created_at=settings.clock()))
    db_session.commit()
    enable(db_session, book, settings, endpoint.id)
    assert send_missed(db_session, book, settings, endpoint.id) == 1
    run_due(db_session, settings)
    assert receiver.ids() == [public.id]


def test_an_endpoint_cannot_subscribe_to_internal_events(client, db_session, book):
    response = client.post("/v1/webhook_endpoints", headers=key_for(db_session, book.merchant_id),
                           json={"url": "https://example.com/hooks", "enabled_events": [INTERNAL]})
    assert response.status_code == 400
    assert response.json["error"]["param"] == "enabled_events" and "internal" in response.json["error"]["message"]
