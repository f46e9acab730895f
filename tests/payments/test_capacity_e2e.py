"""Capacity over HTTP: a slow acquirer, one merchant's flood and the PSP-timeout card do not hold up other
payments (gunicorn + worker + the sandbox PSP with its latency fault, tests/payments/conftest.py).

The checks are functional, never timings: the other payment reaches ``succeeded`` while the slow ones are
still ``processing``, which a worker running one PSP call at a time, first in first out, could not do.
The worker runs 8 PSP calls at once here (PSP_CONCURRENCY), 6 per connector and credential (its bulkhead).
"""
import concurrent.futures
import json
import uuid

from app.accounts.models import Merchant
from app.extensions import db
from app.ids import new_id
from tests.payments.conftest import mint_key
from tests.payments.live_helpers import Api, Sandbox, new_merchant_key

# Routed to sandbox_b first (every other merchant: sandbox first, as by default).
FAST_LANE = new_id("mer")
ROUTES = [{"merchant": FAST_LANE, "mode": "test", "connectors": ["sandbox_b", "sandbox"]},
          {"mode": "test", "connectors": ["sandbox", "sandbox_b"]}]
# Calls that wait seconds at the acquirer stay well inside the read timeout (8 s): slow, not failed. The
# confirms answer at once (no wait for the outcome), so that a flood is committed before the next payment.
LIVE_ENV = {"PSP_CONCURRENCY": "8", "PSP_READ_TIMEOUT": "8", "PSP_ROUTES": json.dumps(ROUTES),
            "CONFIRM_WAIT_SECONDS": "0"}
# The timeout card stalls longer than the read timeout: its calls hold their slot for the whole 8 s.
LIVE_SERVICES = {"sandbox_args": ["--timeout-delay", "20"]}
SLOW_MS = 2000
FLOOD_SLOW_MS = 5000


def _pay(api: Api, token: str, capture_method: str = "automatic") -> dict:
    response = api.post("/v1/payments", key=str(uuid.uuid4()), amount=1500, currency="eur", payment_method=token,
                        confirm=True, capture_method=capture_method)
    assert response.status_code == 200, response.text
    return response.json()


def _flood(api: Api, sandbox: Sandbox, count: int, card: str = "visa", capture_method: str = "automatic") -> list[str]:
    """``count`` payments sent together (each answered `processing` at once); their ids."""
    tokens = [sandbox.token(card) for _ in range(count)]
    with concurrent.futures.ThreadPoolExecutor(count) as pool:
        return [body["id"] for body in pool.map(
            lambda token: _pay(Api(api.base_url, api.key), token, capture_method), tokens)]


def _still_processing(api: Api, ids: list[str]) -> int:
    return sum(1 for payment_id in ids if api.payment(payment_id)["status"] == "processing")


def _slow(sandbox: Sandbox, milliseconds: int) -> None:
    sandbox.faults("sandbox", latency_ms=milliseconds)


def test_a_slow_acquirer_does_not_delay_payments_routed_to_the_other(app, live):
    with app.app_context():
        db.session.add(Merchant(id=FAST_LANE, name="Fast lane"))
        db.session.commit()
        fast_key = mint_key(db.session, FAST_LANE)
        db.session.remove()
    _, slow_key = new_merchant_key(app, "Slow lane")
    sandbox = Sandbox(live.sandbox_url)
    slow_api, fast_api = Api(live.url, slow_key), Api(live.url, fast_key)
    _slow(sandbox, SLOW_MS)
    try:
        backlog = _flood(slow_api, sandbox, 24)  # 6 at a time at sandbox: four rounds of 2 s
        fast = _pay(fast_api, sandbox.token())
        assert fast_api.wait_for(fast["id"], "succeeded")["connector"] == "sandbox_b"
        assert _still_processing(slow_api, backlog) > 0
    finally:
        _slow(sandbox, 0)
    for payment_id in backlog:
        assert slow_api.wait_for(payment_id, "succeeded")["connector"] == "sandbox"


def test_one_merchants_flood_does_not_starve_another_merchant(app, live):
    _, flood_key = new_merchant_key(app, "Flooding shop")
    _, small_key = new_merchant_key(app, "Small shop")
    sandbox = Sandbox(live.sandbox_url)
    flood_api, small_api = Api(live.url, flood_key), Api(live.url, small_key)
    # One call per flooding payment (manual capture), each 5 s: six at a time, the flood lasts five rounds
    # (25 s), far longer than sending it takes even on a loaded machine; the small payment needs two turns.
    _slow(sandbox, FLOOD_SLOW_MS)
    try:
        backlog = _flood(flood_api, sandbox, 30, capture_method="manual")  # the same acquirer for both merchants
        small = _pay(small_api, sandbox.token())  # due after all of the flood, served at its first turn
        small_api.wait_for(small["id"], "succeeded")
        assert _still_processing(flood_api, backlog) > 0
    finally:
        _slow(sandbox, 0)
    for payment_id in backlog:
        flood_api.wait_for(payment_id, "requires_capture")


def test_timeout_cards_do_not_delay_other_payments_nor_open_the_breaker(app, live):
    _, key = new_merchant_key(app, "Timeout shop")
    sandbox = Sandbox(live.sandbox_url)
    api = Api(live.url, key)
    stalled = _flood(api, sandbox, 3, card="timeout")  # each holds a slot until the 8 s read timeout
    others = _flood(api, sandbox, 10)
    for payment_id in others:
        api.wait_for(payment_id, "succeeded")
    assert _still_processing(api, stalled) == 3
    for payment_id in stalled:  # resolved by a status query: authorized once, captured
        payment = api.wait_for(payment_id, "succeeded")
        assert sandbox.authorizations(f"kassa-{payment['attempts'][0]['id']}") == 1
    metrics = api.http.get(f"{live.url}/metrics", headers={
        "Authorization": f"Bearer {live.services.env['METRICS_TOKEN']}"}, timeout=30).text
    opened = [line for line in metrics.splitlines()
              if line.startswith("kassa_psp_breaker_transitions_total{") and 'to_state="open"' in line]
    assert all(line.endswith(" 0.0") for line in opened), opened
