"""/v1/checkout/sessions: create (JSON and form), validation naming the parameter, retrieve, list, expire."""
import re
import time
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from app.accounts.api_keys import SECRET, create_key
from app.api.auth import hmac_key
from app.checkout.models import CheckoutSession
from app.events import Event
from app.models_base import utcnow
from app.payments.service import create_seller
from app.scoping import Scope
from tests import factories
from tests.conftest import app_config

ID = re.compile(r"^cs_[0-9A-Z]{26}[A-Za-z0-9_-]{24}$")


@pytest.fixture(scope="module")
def app(database):
    from app import create_app
    from app.extensions import db

    application = create_app(app_config(database, CONFIRM_WAIT_SECONDS=0))
    with application.app_context():
        application.extensions["redis"].flushdb()
    yield application
    with application.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def auth(db_session, merchant):
    key = create_key(db_session, Scope(merchant.id, False), SECRET, hmac_key=hmac_key())
    db_session.commit()
    return {"Authorization": f"Bearer {key.plaintext}"}


def create(client, auth, **body):
    payload = {"currency": "usd", "amount": 2500, "success_url": "https://shop.example/thanks"}
    payload.update(body)
    payload = {k: v for k, v in payload.items() if v is not None}
    return client.post("/v1/checkout/sessions", json=payload, headers=auth)


def test_create_with_line_items(client, auth, db_session, scope):
    response = create(client, auth, amount=None, currency="eur", line_items=[
        {"name": "Shoes", "quantity": 1, "unit_amount": 12900},
        {"name": "Socks", "quantity": 2, "unit_amount": 1450},
    ], cancel_url="https://shop.example/cart", customer_email="a@example.com", client_reference_id="order-1",
        metadata={"order": "1"})
    assert response.status_code == 200, response.json
    body = response.json
    assert ID.match(body["id"])
    assert body["object"] == "checkout.session"
    assert body["status"] == "open" and body["payment_status"] == "unpaid"
    assert body["url"] == f"http://localhost/c/{body['id']}"
    assert body["amount_total"] == 12900 + 2 * 1450
    assert body["currency"] == "EUR"
    assert body["line_items"][1] == {"name": "Socks", "quantity": 2, "unit_amount": 1450, "amount": 2900}
    assert body["client_reference_id"] == "order-1" and body["metadata"] == {"order": "1"}
    assert body["livemode"] is False and body["payment"] is None and body["attempt_number"] == 1
    # Default expiry: 24 hours.
    assert abs(body["expires_at"] - body["created"] - 24 * 3600) <= 1
    row = db_session.get(CheckoutSession, body["id"])
    assert row.merchant_id == scope.merchant_id


def test_create_form_encoded_like_curl(client, auth):
    response = client.post("/v1/checkout/sessions", headers=auth, data={
        "currency": "jpy", "line_items[0][name]": "Tea", "line_items[0][quantity]": "3",
        "line_items[0][unit_amount]": "500", "success_url": "https://shop.example/ok",
    })
    assert response.status_code == 200, response.json
    assert response.json["amount_total"] == 1500 and response.json["currency"] == "JPY"


def test_ids_are_unguessable_and_unique(client, auth):
    ids = {create(client, auth).json["id"] for _ in range(5)}
    assert len(ids) == 5
    # The random tails differ even for sessions created in the same millisecond.
    assert len({i[-24:] for i in ids}) == 5


def test_public_base_url_names_the_page(app, client, auth):
    app.config["PUBLIC_BASE_URL"] = "https://pay.example.com/"
    try:
        body = create(client, auth).json
    finally:
        app.config["PUBLIC_BASE_URL"] = ""
    assert body["url"] == f"https://pay.example.com/c/{body['id']}"


@pytest.mark.parametrize("body, param", [
    ({"currency": None}, "currency"),
    ({"currency": "xxx"}, "currency"),
    ({"amount": None}, "amount"),
    ({"amount": 0}, "amount"),
    ({"amount": "12"}, "amount"),
    ({"line_items": [{"name": "A", "unit_amount": 100}]}, "amount"),
    ({"amount": None, "line_items": []}, "line_items"),
    ({"amount": None, "line_items": [{"name": "A", "quantity": 0, "unit_amount": 100}]}, "line_items[0][quantity]"),
    ({"amount": None, "line_items": [{"name": "A", "quantity": 1}]}, "line_items[0][unit_amount]"),
    ({"amount": None, "line_items": [{"quantity": 1, "unit_amount": 5}]}, "line_items[0][name]"),
    ({"amount": None, "line_items": [{"name": "A", "unit_amount": 5, "colour": "red"}]}, "line_items[0][colour]"),
    ({"amount": None, "line_items": [{"name": "A", "unit_amount": 0}]}, "line_items"),
    ({"success_url": None}, "success_url"),
    ({"success_url": "javascript:alert(1)"}, "success_url"),
    ({"success_url": "/relative"}, "success_url"),
    ({"cancel_url": "ftp://shop.example/"}, "cancel_url"),
    ({"customer_email": "not-an-email"}, "customer_email"),
    ({"expires_at": 1}, "expires_at"),
    ({"metadata": {"k": {"nested": 1}}}, "metadata[k]"),
    ({"surprise": 1}, "surprise"),
    ({"split": [{"seller": "sel_nope", "amount": 2500}]}, "split[0][seller]"),
])
def test_validation_errors_name_the_parameter(client, auth, body, param):
    response = create(client, auth, **body)
    assert response.status_code == 400, response.json
    assert response.json["error"]["param"] == param
    assert response.json["error"]["type"] == "invalid_request_error"


def test_expires_at_within_bounds(client, auth):
    soon = int(time.time()) + 3600
    response = create(client, auth, expires_at=soon)
    assert response.status_code == 200
    assert response.json["expires_at"] == soon
    assert create(client, auth, expires_at=int(time.time()) + 25 * 3600).status_code == 400


def test_split_across_sellers(client, auth, db_session, scope):
    seller_a = create_seller(db_session, scope, name="A")
    seller_b = create_seller(db_session, scope, name="B")
    db_session.commit()
    split = [{"seller": seller_a.id, "amount": 1500, "fee": 45}, {"seller": seller_b.id, "amount": 1000, "fee": 30}]
    response = create(client, auth, split=split)
    assert response.status_code == 200, response.json
    assert response.json["split"] == split
    mismatch = create(client, auth, split=[{"seller": seller_a.id, "amount": 100}])
    assert mismatch.status_code == 400 and mismatch.json["error"]["param"] == "split"


def test_retrieve_is_scoped_to_the_key(client, auth, db_session):
    session_id = create(client, auth).json["id"]
    assert client.get(f"/v1/checkout/sessions/{session_id}", headers=auth).json["id"] == session_id
    other = factories.merchant(db_session, name="Other")
    other_key = create_key(db_session, Scope(other.id, False), SECRET, hmac_key=hmac_key())
    live_key = create_key(db_session, Scope(auth_merchant(db_session, session_id), True), SECRET, hmac_key=hmac_key())
    db_session.commit()
    for key in (other_key, live_key):
        response = client.get(f"/v1/checkout/sessions/{session_id}", headers={"Authorization": f"Bearer {key.plaintext}"})
        assert response.status_code == 404
    assert client.get("/v1/checkout/sessions/cs_nope", headers=auth).status_code == 404
    assert client.get(f"/v1/checkout/sessions/{session_id}").status_code == 401


def auth_merchant(db_session, session_id):
    return db_session.get(CheckoutSession, session_id).merchant_id


def test_list_pages_and_filters(client, auth):
    made = [create(client, auth, client_reference_id=f"ref-{i}").json["id"] for i in range(3)]
    first = client.get("/v1/checkout/sessions?limit=2", headers=auth).json
    assert first["object"] == "list" and first["has_more"] is True
    assert [s["id"] for s in first["data"]] == made[::-1][:2]
    rest = client.get(f"/v1/checkout/sessions?limit=2&starting_after={first['data'][-1]['id']}", headers=auth).json
    assert rest["data"][0]["id"] == made[0]
    only = client.get("/v1/checkout/sessions?client_reference_id=ref-1", headers=auth).json["data"]
    assert [s["id"] for s in only] == [made[1]]
    assert client.get("/v1/checkout/sessions?status=bogus", headers=auth).json["error"]["param"] == "status"


def test_expire_records_the_event_once(client, auth, db_session):
    session_id = create(client, auth).json["id"]
    response = client.post(f"/v1/checkout/sessions/{session_id}/expire", headers=auth)
    assert response.status_code == 200, response.json
    assert response.json["status"] == "expired" and response.json["url"] is None
    assert response.json["expired_at"] is not None
    again = client.post(f"/v1/checkout/sessions/{session_id}/expire", headers=auth)
    assert again.status_code == 200 and again.json["status"] == "expired"
    events = db_session.scalars(select(Event).where(Event.object_id == session_id)).all()
    assert [e.type for e in events] == ["checkout.session.expired"]
    assert events[0].data["id"] == session_id and events[0].data["status"] == "expired"
    # The page no longer takes payments.
    page = client.get(f"/c/{session_id}")
    assert page.status_code == 410 and b"pay-form" not in page.data


def test_expire_a_complete_session_is_refused(client, auth, db_session):
    session_id = create(client, auth).json["id"]
    db_session.execute(update(CheckoutSession).where(CheckoutSession.id == session_id)
                       .values(status="complete", completed_at=utcnow()))
    db_session.commit()
    response = client.post(f"/v1/checkout/sessions/{session_id}/expire", headers=auth)
    assert response.status_code == 400
    assert response.json["error"]["code"] == "checkout_session_complete"


def test_an_overdue_session_reads_as_expired_through_the_page(client, auth, db_session):
    session_id = create(client, auth).json["id"]
    db_session.execute(update(CheckoutSession).where(CheckoutSession.id == session_id)
                       .values(expires_at=utcnow() - timedelta(seconds=1)))
    db_session.commit()
    assert client.get(f"/c/{session_id}").status_code == 410
    assert client.get(f"/v1/checkout/sessions/{session_id}", headers=auth).json["status"] == "expired"
