"""Chaos: a worker killed with SIGKILL in the middle of an authorization.

The launcher's supervisor starts the worker again (launcher/processes.py), and the payment ends in one
definite state, with exactly one authorization at the PSP and a balanced ledger: the attempt's lease runs
out, so it is due again (the janitor), a dispatcher claims it, asks the PSP by the attempt's idempotency
key, finds the authorization and books it.
"""
import os
import signal
import threading
import time
import uuid

from sqlalchemy import select

from app.extensions import db
from app.payments.models import PaymentAttempt
from app.scoping import Scope
from tests.payments.helpers import assert_ledger_balanced, event_types, ledger_balances
from tests.payments.live_helpers import WAIT_SECONDS, Api, Sandbox, new_merchant_key

# The acquirer answers after 3 s (injected latency), well inside a 8 s read timeout, so the worker is
# surely inside the PSP call when it is killed; a 6 s lease lets another run take over soon after.
LATENCY_MS = 3000
LIVE_ENV = {"PSP_READ_TIMEOUT": "8", "PAYMENTS_ATTEMPT_STUCK_SECONDS": "6"}
LIVE_SERVICES = {"supervise": True}


def _started_attempt(app):
    """The authorize attempt of our payment once a worker has claimed it (tries=1), else None."""
    with app.app_context():
        row = db.session.execute(
            select(PaymentAttempt.id, PaymentAttempt.payment_id, PaymentAttempt.tries)
            .where(PaymentAttempt.operation == "authorize", PaymentAttempt.tries >= 1)
            .order_by(PaymentAttempt.id.desc()).limit(1)).one_or_none()
        db.session.remove()
    return row


def test_sigkill_mid_authorization_ends_with_one_authorization_and_balanced_books(app, live):
    merchant_id, key = new_merchant_key(app, "Chaos shop")
    api, sandbox = Api(live.url, key), Sandbox(live.sandbox_url)
    token = sandbox.token("visa")
    for acquirer in ("sandbox", "sandbox_b"):
        sandbox.faults(acquirer, latency_ms=LATENCY_MS)

    answers = []
    request = threading.Thread(target=lambda: answers.append(api.post(
        "/v1/payments", key=str(uuid.uuid4()), amount=5000, currency="usd", payment_method=token, confirm=True,
        description="chaos")))
    request.start()
    deadline = time.monotonic() + WAIT_SECONDS
    attempt = None
    while attempt is None:
        assert time.monotonic() < deadline, "no worker claimed the authorization"
        attempt = _started_attempt(app)
        time.sleep(0.02)
    worker = live.child("worker")
    os.killpg(worker.pid, signal.SIGKILL)  # mid-call: the acquirer is still sleeping on its latency
    request.join()
    assert answers[0].status_code == 200 and answers[0].json()["status"] == "processing"
    for acquirer in ("sandbox", "sandbox_b"):
        sandbox.faults(acquirer, latency_ms=0)

    # Nobody but the launcher starts it again.
    while live.services.restarts["worker"] == 0:
        assert time.monotonic() < deadline + WAIT_SECONDS, "the launcher did not restart the killed worker"
        time.sleep(0.1)
    restarted = live.child("worker")
    assert restarted.pid != worker.pid and restarted.alive()
    payment = api.wait_for(attempt.payment_id, "succeeded")
    assert sandbox.authorizations(f"kassa-{attempt.id}") == 1
    authorize = [a for a in payment["attempts"] if a["operation"] == "authorize"]
    assert len(authorize) == 1 and authorize[0]["tries"] >= 2
    assert payment["amount_received"] == 5000
    scope = Scope(merchant_id, False)
    with app.app_context():
        assert_ledger_balanced(db.session, scope)
        balances = ledger_balances(db.session, scope)
        assert event_types(db.session, scope, payment["id"]).count("payment.succeeded") == 1
        db.session.remove()
    assert balances[f"psp_receivable:{payment['connector']}:USD"] == 5000
    assert sum(v for k, v in balances.items() if k.startswith("seller_payable:")) == 5000
