"""Signed callbacks with retries, and disputes driven by the sandbox clock."""
import time

from sbx_helpers import WEBHOOK_SECRET, verify_signature

DAY = 86400


def test_dispute_opens_one_sandbox_day_after_capture(sandbox):
    auth = sandbox.captured("4000000000000259", amount=3000)
    assert sandbox.a.get("/v1/disputes").json() == {"data": []}
    sandbox.admin("/_admin/clock", {"advance_seconds": DAY - 60})
    assert sandbox.a.get("/v1/disputes").json() == {"data": []}

    sandbox.admin("/_admin/clock", {"advance_seconds": 60})
    headers, event, raw = sandbox.receiver.wait_for("dispute.created")[0]
    assert verify_signature(headers["Sandbox-Signature"], raw)
    assert not verify_signature(headers["Sandbox-Signature"], raw, secret=WEBHOOK_SECRET + "x")
    assert not verify_signature(headers["Sandbox-Signature"], raw + b" ")

    disputes = sandbox.a.get("/v1/disputes").json()["data"]
    assert len(disputes) == 1
    dispute = disputes[0]
    assert dispute["id"].startswith("dp_")
    assert (dispute["authorization"], dispute["amount"], dispute["currency"], dispute["reason"],
            dispute["status"]) == (auth["id"], 3000, "USD", "fraudulent", "needs_response")
    assert event["data"] == dispute
    assert sandbox.a.get(f"/v1/disputes/{dispute['id']}").json() == dispute
    assert sandbox.b.get("/v1/disputes").json() == {"data": []}  # other acquirer, other ledger

    # While disputed, a refund is refused as a failed refund, and nothing is refunded.
    refund = sandbox.a.post("/v1/refunds", {"authorization": auth["id"], "amount": 100}).json()
    assert (refund["status"], refund["failure_code"]) == ("failed", "charge_disputed")
    assert sandbox.a.get(f"/v1/authorizations/{auth['id']}").json()["refunded_amount"] == 0

    closed = sandbox.admin(f"/_admin/disputes/{dispute['id']}/close", {"status": "won"})
    assert closed["status"] == "won"
    _, closed_event, _ = sandbox.receiver.wait_for("dispute.closed")[0]
    assert closed_event["data"] == closed
    assert len(sandbox.receiver.events("dispute.created")) == 1  # opened once only


def test_dispute_opens_when_listing_after_the_real_clock_passed(sandbox):
    # Capture "a day ago" by moving the clock back first, then return to real time:
    # listing disputes notices the due dispute without any clock advance.
    sandbox.admin("/_admin/clock", {"now": int(time.time()) - DAY - 10})
    auth = sandbox.captured("4000000000000259")
    sandbox.public.post(sandbox.public_url + "/_admin/clock", json={"reset": True})
    disputes = sandbox.a.get("/v1/disputes", params={"authorization": auth["id"]}).json()["data"]
    assert [d["authorization"] for d in disputes] == [auth["id"]]


def test_ordinary_cards_open_no_dispute(sandbox):
    sandbox.captured("4242424242424242")
    sandbox.admin("/_admin/clock", {"advance_seconds": 3 * DAY})
    assert sandbox.a.get("/v1/disputes").json() == {"data": []}


def test_failed_callbacks_are_retried_with_the_same_id(sandbox):
    sandbox.receiver.fail_next = 1
    auth = sandbox.a.authorize(sandbox.tokenize("4000000000003220")["id"]).json()
    sandbox.public.post(auth["action_url"], data={"result": "approve"})
    first, second = sandbox.receiver.wait_for("authorization.updated", count=2)[:2]
    assert first[1]["id"] == second[1]["id"]
    assert first[2] == second[2]  # the same body, signed again at send time
    assert verify_signature(second[0]["Sandbox-Signature"], second[2])
    callbacks = sandbox.public.get(sandbox.public_url + "/_admin/callbacks").json()["data"]
    assert (callbacks[0]["state"], callbacks[0]["attempts"]) == ("delivered", 2)


def test_clock_admin(sandbox):
    clock = sandbox.admin("/_admin/clock", {"now": 1893456000})  # 2030-01-01T00:00:00Z
    assert clock["date"] == "2030-01-01" and abs(clock["now"] - 1893456000) <= 1
    assert sandbox.public.get(sandbox.public_url + "/_admin/clock").json()["date"] == "2030-01-01"
    assert sandbox.admin("/_admin/clock", {"advance_seconds": DAY})["date"] == "2030-01-02"
    token = sandbox.tokenize()
    assert token["created"] >= 1893456000 + DAY
    assert sandbox.admin("/_admin/clock", {"reset": True})["offset"] == 0


def test_a_succeeded_refund_can_fail_later_and_says_so(sandbox):
    auth = sandbox.captured(amount=3000)
    refund = sandbox.a.post("/v1/refunds", {"authorization": auth["id"], "amount": 1200}).json()
    assert refund["status"] == "succeeded" and refund["acquirer"] == "sandbox"

    failed = sandbox.admin(f"/_admin/refunds/{refund['id']}/fail", {"failure_code": "lost_or_stolen_card"})
    assert (failed["id"], failed["status"], failed["failure_code"]) == (refund["id"], "failed", "lost_or_stolen_card")
    assert sandbox.a.get(f"/v1/refunds/{refund['id']}").json() == failed
    assert sandbox.a.get(f"/v1/authorizations/{auth['id']}").json()["refunded_amount"] == 0
    headers, event, raw = sandbox.receiver.wait_for("refund.updated")[0]
    assert verify_signature(headers["Sandbox-Signature"], raw) and event["data"] == failed

    # Only a succeeded refund fails later; the amount may be refunded again.
    again = sandbox.public.post(f"{sandbox.public_url}/_admin/refunds/{refund['id']}/fail", json={})
    assert again.status_code == 400 and again.json()["error"]["code"] == "invalid_state"
    assert sandbox.public.post(f"{sandbox.public_url}/_admin/refunds/rf_nope/fail", json={}).status_code == 404
    assert sandbox.a.post("/v1/refunds", {"authorization": auth["id"]}).json()["amount"] == 3000
