"""The app shell: health, metrics, request ids, JSON errors, scoping and the event outbox."""
import psycopg
import pytest

from app.events import Event, record_event
from app.scoping import Scope
from tests import factories
from tests.conftest import app_connect, owner_connect


def test_healthz_checks_database_and_redis(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json == {"status": "ok", "checks": {"database": "ok", "redis": "ok"}}


def test_metrics_require_the_token(client, app):
    client.get("/healthz")
    assert client.get("/metrics").status_code == 404
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 404
    response = client.get("/metrics", headers={"Authorization": f"Bearer {app.config['METRICS_TOKEN']}"})
    assert response.status_code == 200
    assert b"kassa_http_request_duration_seconds" in response.data


def test_request_id_is_honoured_or_generated(client):
    assert client.get("/healthz", headers={"X-Request-ID": "abc-123"}).headers["X-Request-ID"] == "abc-123"
    generated = client.get("/healthz", headers={"X-Request-ID": "bad id with spaces"}).headers["X-Request-ID"]
    assert generated.startswith("req_")


def test_unknown_api_route_is_json_404(client):
    response = client.get("/v1/nope")
    assert response.status_code == 404
    assert response.json["error"]["code"] == "resource_missing"


def test_unknown_page_is_html_404(client):
    response = client.get("/nope")
    assert response.status_code == 404
    assert b"Page not found" in response.data


def test_scope_never_reads_another_merchants_rows(db_session):
    merchant_a = factories.merchant(db_session, name="A")
    merchant_b = factories.merchant(db_session, name="B")
    scope_a, scope_b = Scope(merchant_a.id, False), Scope(merchant_b.id, False)
    event = record_event(db_session, scope_a, "test.happened", "thing", "thing_1", {"x": 1})
    assert scope_a.get(db_session, Event, event.id).id == event.id
    assert scope_b.get(db_session, Event, event.id) is None
    assert Scope(merchant_a.id, True).get(db_session, Event, event.id) is None


def test_events_are_append_only_in_the_database(database, db_session):
    merchant = factories.merchant(db_session)
    event_id = record_event(db_session, Scope(merchant.id, False), "test.happened", "thing", "t1", {}).id
    db_session.commit()
    db_session.close()  # hold no lock on events while other connections try to change it
    with app_connect(database) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied"):
            conn.execute("UPDATE events SET type = 'x' WHERE id = %s", (event_id,))
    # Even the owner, who has every privilege, is stopped by the trigger.
    with owner_connect(database) as conn:
        for statement in ("UPDATE events SET type = 'x' WHERE id = %s", "DELETE FROM events WHERE id = %s"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
                conn.execute(statement, (event_id,))
            conn.rollback()
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
            conn.execute("TRUNCATE events CASCADE")


@pytest.mark.parametrize("hops", [0, 1])
def test_the_client_address_and_scheme_behind_trusted_proxies(database, hops):
    """TRUSTED_PROXIES=1: the reverse proxy's X-Forwarded-For/-Proto name the client and the scheme (the
    login and checkout limits count per client address); 0 (the default): those headers are not trusted."""
    from flask import request

    from app import create_app
    from app.extensions import db
    from tests.conftest import app_config

    application = create_app(app_config(database, TRUSTED_PROXIES=hops))
    application.add_url_rule("/whoami", "whoami", lambda: f"{request.remote_addr} {request.scheme}")
    response = application.test_client().get("/whoami", environ_base={"REMOTE_ADDR": "10.0.0.2"},
                                             headers={"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"})
    assert response.get_data(as_text=True) == ("203.0.113.7 https" if hops else "10.0.0.2 http")
    with application.app_context():
        db.engine.dispose()
