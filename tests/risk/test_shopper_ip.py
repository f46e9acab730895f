"""The shopper's IP address for the risk rules behind a trusted reverse proxy (TRUSTED_PROXIES=1, Werkzeug's
ProxyFix): the checkout takes the address the proxy appended to X-Forwarded-For, never one the shopper wrote
before it, nor anything the page's JSON claims; an API confirmation takes only its ``customer_ip`` parameter
(the API call's own address is the merchant's server). The same without a proxy: tests/risk/test_e2e.py."""
import pytest

from app.checkout import service
from app.ids import new_id
from app.payments.models import Payment
from tests.conftest import app_config
from tests.payments.conftest import mint_key

PROXY = "10.0.0.2"          # the reverse proxy, as the app sees the connection
SHOPPER = "81.2.69.160"     # what the proxy appended: the shopper's real address
FORGED = "203.0.113.66"     # what the shopper wrote in the header it sent


@pytest.fixture(scope="module")
def app(database):
    from app import create_app
    from app.extensions import db

    # No worker here: confirmations answer at once (processing); one trusted proxy in front of the app.
    application = create_app(app_config(database, CONFIRM_WAIT_SECONDS=0, TRUSTED_PROXIES=1))
    with application.app_context():
        redis = application.extensions["redis"]
        for key in redis.scan_iter("kassa:checkout:*"):  # the card-testing limits count per address
            redis.delete(key)
    yield application
    with application.app_context():
        db.session.remove()
        db.engine.dispose()


def checkout_payment(client, db_session, scope, headers: dict, **body) -> Payment:
    cs = service.create_session(db_session, scope, currency="EUR", line_items=[
        {"name": "Shoes", "quantity": 1, "unit_amount": 12900}], success_url="https://shop.example/thanks")
    db_session.commit()
    answer = client.post(f"/c/{cs.id}/confirm", json={"token": new_id("tok"), "card": {"fingerprint": "fp_ip"},
                                                      **body},
                         headers=headers, environ_base={"REMOTE_ADDR": PROXY})
    assert answer.status_code == 200, answer.get_data(as_text=True)
    db_session.refresh(cs)
    return db_session.get(Payment, cs.payment_id)


def test_the_checkout_takes_the_address_the_trusted_proxy_appended(client, db_session, scope):
    forged = checkout_payment(client, db_session, scope, {"X-Forwarded-For": f"{FORGED}, {SHOPPER}"},
                              customer_ip=FORGED, ip_address=FORGED)
    assert forged.customer_ip == SHOPPER
    direct = checkout_payment(client, db_session, scope, {})
    assert direct.customer_ip == PROXY  # no header: the connection's own address


def test_an_api_confirmation_takes_only_customer_ip(client, db_session, merchant):
    auth = {"Authorization": f"Bearer {mint_key(db_session, merchant.id)}",
            "X-Forwarded-For": f"{FORGED}, {SHOPPER}"}
    without = client.post("/v1/payments", headers=auth, environ_base={"REMOTE_ADDR": PROXY},
                          data={"amount": 1000, "currency": "EUR"})
    assert without.status_code == 200 and without.json["customer_ip"] is None
    given = client.post("/v1/payments", headers=auth, environ_base={"REMOTE_ADDR": PROXY},
                        data={"amount": 1000, "currency": "EUR", "customer_ip": "2001:db8::7"})
    assert given.status_code == 200 and given.json["customer_ip"] == "2001:db8::7"
