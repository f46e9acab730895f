"""Helpers of the live payments tests: an API client, sandbox tokens and stats, polling a payment."""
import datetime
import time

import requests

from app.extensions import db
from tests import factories
from tests.payments.conftest import mint_key

# Upper bound when waiting for something the system does by itself (the janitor, a callback, the
# worker); a healthy run needs a fraction of it, so reaching it means broken, not slow.
WAIT_SECONDS = 45
FUTURE_YEAR = datetime.date.today().year + 5
CARDS = {
    "visa": "4242424242424242",
    "mastercard": "5555555555554444",
    "insufficient_funds": "4000000000009995",
    "three_d_secure": "4000000000003220",
    "timeout": "4000000000000341",
}


def session() -> requests.Session:
    http = requests.Session()
    http.trust_env = False  # straight to 127.0.0.1, never through a proxy from the environment
    return http


class Api:
    """A merchant's API client against the live web server."""

    def __init__(self, base_url: str, key: str):
        self.base_url = base_url
        self.key = key
        self.http = session()
        self.http.headers["Authorization"] = f"Bearer {key}"

    def post(self, path: str, key: str | None = None, **body) -> requests.Response:
        headers = {"Idempotency-Key": key} if key else {}
        # 30 s: confirm waits about 2 s for the worker; anything near this bound is a hang.
        return self.http.post(self.base_url + path, json=body, headers=headers, timeout=30)

    def get(self, path: str, **params) -> requests.Response:
        return self.http.get(self.base_url + path, params=params, timeout=30)

    def payment(self, payment_id: str) -> dict:
        return self.get(f"/v1/payments/{payment_id}").json()

    def wait_for(self, payment_id: str, *statuses: str) -> dict:
        """Poll the payment until it reaches one of ``statuses`` (the worker or janitor moves it)."""
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            body = self.payment(payment_id)
            if body["status"] in statuses:
                return body
            if time.monotonic() > deadline:
                raise AssertionError(f"payment stayed {body['status']}, expected {statuses}: {body}")
            time.sleep(0.1)

    def wait_for_refund(self, refund_id: str) -> dict:
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            body = self.get(f"/v1/refunds/{refund_id}").json()
            if body["status"] != "pending":
                return body
            if time.monotonic() > deadline:
                raise AssertionError(f"refund stayed pending: {body}")
            time.sleep(0.1)


class Sandbox:
    """The sandbox PSP's public listener: tokens, the 3-D Secure page, admin (faults, stats)."""

    def __init__(self, url: str):
        self.url = url
        self.http = session()

    def token(self, card: str = "visa") -> str:
        response = self.http.post(f"{self.url}/v1/tokens", json={
            "number": CARDS.get(card, card), "exp_month": 12, "exp_year": FUTURE_YEAR, "cvc": "123"}, timeout=10)
        assert response.status_code == 201, response.text
        return response.json()["id"]

    def stats(self, idempotency_key: str | None = None) -> dict:
        params = {"idempotency_key": idempotency_key} if idempotency_key else None
        return self.http.get(f"{self.url}/_admin/stats", params=params, timeout=10).json()

    def authorizations(self, idempotency_key: str) -> int:
        """Authorizations with this key across both acquirers."""
        stats = self.stats(idempotency_key)
        return sum(acquirer["authorizations"] for acquirer in _acquirers(stats))

    def total(self, counter: str) -> int:
        return sum(acquirer[counter] for acquirer in _acquirers(self.stats()))

    def faults(self, acquirer: str, **settings) -> None:
        self.http.post(f"{self.url}/_admin/faults", json={"acquirer": acquirer, **settings}, timeout=10)

    def answer_challenge(self, action_url: str, approve: bool = True) -> None:
        response = self.http.post(action_url, data={"result": "approve" if approve else "fail"},
                                  allow_redirects=False, timeout=10)
        assert response.status_code in (200, 303), response.text


def _acquirers(stats: dict) -> list[dict]:
    data = stats.get("data", stats)
    if isinstance(data, dict):
        return [v for v in data.values() if isinstance(v, dict) and "authorizations" in v]
    return list(data)


def new_merchant_key(app, name: str = "Live Shop") -> tuple[str, str]:
    """(merchant_id, secret key) of a fresh merchant in the live database."""
    with app.app_context():
        merchant = factories.merchant(db.session, name=name)
        db.session.commit()
        key = mint_key(db.session, merchant.id)
        merchant_id = merchant.id
        db.session.remove()
    return merchant_id, key
