"""Developers › Logs: API requests recorded after the response, outside its transaction, redacted, 30 days."""
import json
import time
from datetime import timedelta

from sqlalchemy import event, select

from app.accounts.api_keys import SECRET, create_key
from app.api.auth import hmac_key
from app.extensions import db
from app.ids import new_id
from app.jobs.dashboard import sweep_request_logs
from app.models_base import utcnow
from app.reporting.models import ApiRequestLog
from app.reporting.request_logs import BatchWriter, body_text, log_row, redact
from tests.dashboard.conftest import login_as


def _key(db_session, scope) -> str:
    new = create_key(db_session, scope, SECRET, hmac_key=hmac_key())
    db_session.commit()
    return new.plaintext


def _logs(db_session, merchant_id: str) -> list[ApiRequestLog]:
    db_session.rollback()
    return list(db_session.scalars(select(ApiRequestLog).where(ApiRequestLog.merchant_id == merchant_id)
                                   .order_by(ApiRequestLog.created_at, ApiRequestLog.id)))


def test_api_requests_are_logged_redacted_and_shown(client, db_session, shop, jobs):
    s = shop()
    key = _key(db_session, s.scope)
    response = client.post("/v1/payments", headers={"Authorization": f"Bearer {key}", "Idempotency-Key": "order-77"},
                           json={"amount": 1500, "currency": "usd", "customer_email": "log@example.com",
                                 "payment_method": "tok_visa_123456789", "description": f"key {key}",
                                 "metadata": {"password": "hunter2"}})
    assert response.status_code == 200
    response.close()  # the row is written once the response has been sent (call_on_close)
    # Refused because of the card number (issue 14): its log row keeps the body, redacted.
    bad = client.post("/v1/payments", headers={"Authorization": f"Bearer {key}"},
                      json={"amount": 1500, "currency": "usd", "metadata": {"card": "4242 4242 4242 4242"}})
    assert bad.status_code == 400
    bad.close()
    client.get("/v1/payments", headers={"Authorization": "Bearer sk_test_not_a_key"}).close()  # no merchant: not logged

    created, refused = _logs(db_session, s.merchant.id)
    assert (created.method, created.path, created.status, created.idempotency_key) == \
        ("POST", "/v1/payments", 200, "order-77")
    assert created.request_id and created.request_id.startswith("req_") and created.latency_ms >= 0
    request_body = json.loads(created.request_body)
    assert request_body["amount"] == 1500 and request_body["metadata"]["password"] == "[redacted]"
    assert request_body["payment_method"] == "tok_visa…"
    assert key not in created.request_body and "hunter2" not in created.request_body
    assert json.loads(created.response_body)["id"].startswith("pay_")
    assert refused.status == 400 and "card_number_in_field" in refused.response_body
    assert json.loads(refused.request_body)["metadata"]["card"] == "[card number redacted]"
    assert "4242" not in refused.request_body

    login_as(client, db_session, s.users["developer"])
    page = client.get(s.url("developers/logs")).get_data(as_text=True)
    assert "POST /v1/payments" in page and created.request_id in page
    assert page.index(refused.id) < page.index(created.id)  # newest first
    assert client.get(s.url("developers/logs?status=4xx")).get_data(as_text=True).count("/developers/logs/log_") == 1
    assert created.id in client.get(s.url("developers/logs?q=order-77")).get_data(as_text=True)
    detail = client.get(s.url(f"developers/logs/{created.id}")).get_data(as_text=True)
    assert "order-77" in detail and "[redacted]" in detail and "hunter2" not in detail

    other = shop(name="Other")
    login_as(client, db_session, other.users["owner"])
    assert client.get(other.url(f"developers/logs/{created.id}")).status_code == 404
    assert "No API requests yet" in client.get(other.url("developers/logs")).get_data(as_text=True)


def test_a_request_whose_transaction_failed_is_still_logged(client, db_session, shop):
    s = shop()
    key = _key(db_session, s.scope)
    response = client.post("/v1/payments/pay_missing/capture", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 404
    response.close()
    [row] = _logs(db_session, s.merchant.id)
    assert row.status == 404 and row.path == "/v1/payments/pay_missing/capture"


def _row(merchant_id: str, path: str) -> dict:
    return log_row(merchant_id=merchant_id, livemode=False, api_key_id=None, method="GET", path=path, status=200,
                   request_id=None, idempotency_key=None, latency_ms=3, ip="127.0.0.1",
                   request_body={"card_number": "4242424242424242"}, response_body=None, created_at=utcnow())


def test_the_batch_writer_writes_waiting_rows_together_and_in_the_background(app, db_session, shop):
    s = shop()
    with app.app_context():
        engine = db.engine
    writer = BatchWriter(engine, interval=3600)   # no background write during the first part
    inserts = []

    def count(_conn, _cursor, statement, *_args):
        if statement.startswith("INSERT"):
            inserts.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        for number in range(3):
            writer.add(_row(s.merchant.id, f"/v1/payments/{number}"))
        assert _logs(db_session, s.merchant.id) == []      # waiting for the next flush
        assert writer.flush() == 3
    finally:
        event.remove(engine, "before_cursor_execute", count)
    rows = _logs(db_session, s.merchant.id)
    assert [row.path for row in rows] == ["/v1/payments/0", "/v1/payments/1", "/v1/payments/2"]
    assert "4242424242424242" not in rows[0].request_body          # redacted before it was queued
    assert len(inserts) == 1                                     # one multi-row INSERT

    background = BatchWriter(engine, interval=0.05)
    background.add(_row(s.merchant.id, "/v1/background"))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(_logs(db_session, s.merchant.id)) < 4:
        time.sleep(0.05)
    assert _logs(db_session, s.merchant.id)[-1].path == "/v1/background"


def test_the_batch_writer_drops_rows_beyond_its_bound(app, db_session, shop):
    s = shop()
    with app.app_context():
        writer = BatchWriter(db.engine, interval=3600, max_pending=2)
    for number in range(5):
        writer.add(_row(s.merchant.id, f"/v1/{number}"))
    assert writer.dropped == 3
    assert writer.flush() == 2
    assert len(_logs(db_session, s.merchant.id)) == 2


def test_logs_older_than_30_days_are_swept(db_session, shop):
    s = shop()
    for age in (31, 29):
        db_session.add(ApiRequestLog(id=new_id("log"), merchant_id=s.merchant.id, livemode=False, method="GET",
                                     path="/v1/payments", status=200, latency_ms=3,
                                     created_at=utcnow() - timedelta(days=age)))
    db_session.commit()
    assert sweep_request_logs() == 1
    assert [round((utcnow() - row.created_at).days) for row in _logs(db_session, s.merchant.id)] == [29]


def test_redaction_rules():
    assert redact({"client_secret": "x", "nested": [{"api_key": "k"}], "last4": "4242", "amount": 12}) == \
        {"client_secret": "[redacted]", "nested": [{"api_key": "[redacted]"}], "last4": "4242", "amount": 12}
    assert redact("rolled sk_live_abcdefghij1234 and whsec_abcdefgh") == "rolled sk_live_…1234 and whsec_…"
    assert redact({"payment_method": {"brand": "visa", "last4": "4242"}}) == \
        {"payment_method": {"brand": "visa", "last4": "4242"}}
    assert body_text(b"not json sk_test_abcdefghijkl") == "not json sk_test_…ijkl"
    assert len(body_text({"x": "y" * 50_000})) < 16_100


def test_each_row_records_the_api_key_that_made_the_request(client, db_session, shop):
    s = shop()
    new = create_key(db_session, s.scope, SECRET, hmac_key=hmac_key())
    db_session.commit()
    client.get("/v1/payments", headers={"Authorization": f"Bearer {new.plaintext}"}).close()
    client.post("/v1/payments", headers={"Authorization": f"Bearer {new.plaintext}"}, json={"amount": 1}).close()
    assert [row.api_key_id for row in _logs(db_session, s.merchant.id)] == [new.row.id, new.row.id]


def test_text_postgresql_cannot_store_is_logged_escaped(client, db_session, shop):
    s = shop()
    auth = {"Authorization": f"Bearer {_key(db_session, s.scope)}"}
    client.post("/v1/payments", headers=auth, json={"amount": 100, "currency": "usd",
                                                    "description": "nul \x00 and lone \ud800"}).close()
    client.post("/v1/payments", headers={**auth, "Content-Type": "text/plain"}, data=b"bad \xff\xfe utf-8 \x00").close()
    client.get("/v1/payments/pay_%00x", headers=auth).close()
    rows = _logs(db_session, s.merchant.id)
    assert [row.status for row in rows] == [400, 415, 404]
    nul_json, raw, nul_path = rows
    assert "nul \\u0000 and lone \\ud800" in nul_json.request_body
    assert raw.request_body == "bad \\xff\\xfe utf-8 \\u0000"
    assert nul_path.path == "/v1/payments/pay_\\u0000x"


def test_deeply_nested_json_is_refused_and_still_logged(client, db_session, shop):
    """Nesting the parser follows (900 levels) or gives up on (100,000): each a 400, each with its log row
    (redacting and re-encoding a deep body must not exhaust the recursion limit either)."""
    s = shop()
    auth = {"Authorization": f"Bearer {_key(db_session, s.scope)}", "Content-Type": "application/json"}
    for depth in (900, 100_000):
        body = '{"amount": 100, "currency": "usd", "metadata": ' + "[" * depth + "]" * depth + "}"
        response = client.post("/v1/payments", headers=auth, data=body)
        assert (response.status_code, response.json["error"]["code"]) == (400, "invalid_json")
        response.close()
    assert [row.status for row in _logs(db_session, s.merchant.id)] == [400, 400]


def test_a_row_the_database_refuses_does_not_cost_the_rest_of_its_batch(app, db_session, shop):
    first, second = shop(), shop(name="Second")
    with app.app_context():
        writer = BatchWriter(db.engine, interval=3600)
    writer.add(_row(first.merchant.id, "/v1/payments/a"))
    writer.add(_row("mer_gone", "/v1/payments/no-such-merchant"))   # refused: no such merchant
    writer.add(_row(second.merchant.id, "/v1/payments/b"))
    writer.add({**_row(second.merchant.id, "/v1/payments/c"), "request_body": "\x00\ud800"})
    assert writer.flush() == 3
    assert [row.path for row in _logs(db_session, first.merchant.id)] == ["/v1/payments/a"]
    assert [row.path for row in _logs(db_session, second.merchant.id)] == ["/v1/payments/b", "/v1/payments/c"]
