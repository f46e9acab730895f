"""The sandbox's dispute lifecycle: deadlines, the evidence endpoint, decisions N sandbox days after submission,
inquiries that become disputes or close, withdrawals, acceptance; every money movement in the settlement file."""
import csv
import io
import uuid

DAY = 86400
SATURDAY = 1893801600  # 2030-01-05T00:00:00Z: fixed days keep the reports deterministic
DECISION_DAYS = 2  # the sandbox's default --dispute-decision-days


def opened(sandbox, number: str = "4242424242424242", amount: int = 3000, **body) -> tuple[dict, dict]:
    """A captured authorization and a dispute opened on it now (admin)."""
    auth = sandbox.captured(number, amount=amount)
    return auth, sandbox.admin("/_admin/disputes", {"authorization": auth["id"], **body})


def submit(sandbox, dispute_id: str, evidence: dict, key: str | None = None):
    return sandbox.a.post(f"/v1/disputes/{dispute_id}/evidence", {"evidence": evidence}, key=key or str(uuid.uuid4()))


def settlement(sandbox, day: str) -> list[list[str]]:
    """The day's lines without their batch id (tests/sandbox_psp/test_sandbox_settlement.py checks those)."""
    return [row[:6] for row in csv.reader(io.StringIO(sandbox.a.get(f"/v1/settlements/{day}.csv").text))][1:]


def test_a_dispute_is_due_seven_days_after_opening_and_decided_after_its_evidence(sandbox):
    sandbox.admin("/_admin/clock", {"now": SATURDAY + 3600})
    auth, dispute = opened(sandbox)
    assert (dispute["status"], dispute["reason"], dispute["amount"]) == ("needs_response", "fraudulent", 3000)
    assert dispute["evidence_details"] == {"due_by": dispute["created"] + 7 * DAY, "has_evidence": False,
                                           "past_due": False, "submission_count": 0}
    assert dispute["balance_transactions"] == [{"type": "dispute", "amount": -3000, "fee": 1500, "currency": "USD",
                                                "created": dispute["created"]}]
    assert sandbox.receiver.wait_for("dispute.created")[0][1]["data"] == dispute

    key = str(uuid.uuid4())
    answer = submit(sandbox, dispute["id"], {"uncategorized_text": "Delivered, signed: winning_evidence"}, key)
    assert answer.status_code == 200, answer.text
    reviewed = answer.json()
    assert reviewed["status"] == "under_review" and reviewed["evidence_details"]["submission_count"] == 1
    # The same key replays the answer; evidence is taken once.
    assert submit(sandbox, dispute["id"], {"uncategorized_text": "Delivered, signed: winning_evidence"}, key).json() \
        == reviewed
    again = submit(sandbox, dispute["id"], {"uncategorized_text": "more"})
    assert again.status_code == 400 and again.json()["error"]["code"] == "invalid_state"
    assert sandbox.receiver.wait_for("dispute.updated")[0][1]["data"]["status"] == "under_review"

    sandbox.admin("/_admin/clock", {"advance_seconds": DECISION_DAYS * DAY - 60})
    assert sandbox.a.get(f"/v1/disputes/{dispute['id']}").json()["status"] == "under_review"
    sandbox.admin("/_admin/clock", {"advance_seconds": 60})
    won = sandbox.receiver.wait_for("dispute.closed")[0][1]["data"]
    assert won["status"] == "won" and won["balance_transactions"][-1]["type"] == "dispute_reversal"
    # Every movement is in the settlement files: debit and fee the day it opened, reinstatement the day it was won.
    assert settlement(sandbox, "2030-01-05")[-2:] == [[dispute["id"], "dispute", "-3000", "0", "-3000", "USD"],
                                                     [dispute["id"], "fee", "0", "1500", "-1500", "USD"]]
    assert settlement(sandbox, "2030-01-07") == [[dispute["id"], "dispute", "3000", "0", "3000", "USD"]]
    # Won: the payment may be refunded again.
    assert sandbox.a.post("/v1/refunds", {"authorization": auth["id"], "amount": 100}).json()["status"] == "succeeded"


def test_the_decision_rule(sandbox):
    cases = [({"uncategorized_text": "losing_evidence", "receipt": {"file": "file_1", "type": "pdf"}}, "lost"),
             ({"product_description": "A lamp"}, "lost"),
             ({"receipt": {"file": "file_2", "type": "pdf", "size": 10, "sha256": "ab"}}, "won")]
    disputes = []
    for evidence, _expected in cases:
        _auth, dispute = opened(sandbox)
        assert submit(sandbox, dispute["id"], evidence).status_code == 200
        disputes.append(dispute["id"])
    sandbox.admin("/_admin/clock", {"advance_seconds": DECISION_DAYS * DAY})
    assert [sandbox.a.get(f"/v1/disputes/{d}").json()["status"] for d in disputes] == [c[1] for c in cases]


def test_evidence_after_the_deadline_is_refused_and_an_unanswered_dispute_is_lost(sandbox):
    _auth, dispute = opened(sandbox)
    sandbox.admin("/_admin/clock", {"advance_seconds": 7 * DAY + 1})
    late = submit(sandbox, dispute["id"], {"uncategorized_text": "winning_evidence"})
    assert late.status_code == 400 and late.json()["error"]["code"] == "past_due"
    sandbox.admin("/_admin/clock", {"advance_seconds": DECISION_DAYS * DAY})
    assert sandbox.a.get(f"/v1/disputes/{dispute['id']}").json()["status"] == "lost"


def test_accepting_loses_a_dispute_and_closes_an_inquiry(sandbox):
    _auth, dispute = opened(sandbox)
    accepted = sandbox.a.post(f"/v1/disputes/{dispute['id']}/close", key=str(uuid.uuid4()))
    assert accepted.status_code == 200 and accepted.json()["status"] == "lost"
    assert sandbox.a.post(f"/v1/disputes/{dispute['id']}/close").json()["error"]["code"] == "invalid_state"
    _auth, inquiry = opened(sandbox, inquiry=True, reason="general")
    assert sandbox.a.post(f"/v1/disputes/{inquiry['id']}/close").json()["status"] == "warning_closed"


def test_an_inquiry_moves_no_money_can_be_refunded_and_closes_when_refunded(sandbox):
    sandbox.admin("/_admin/clock", {"now": SATURDAY + 3600})
    auth = sandbox.captured("4000000000001976", amount=2500)
    sandbox.admin("/_admin/clock", {"advance_seconds": DAY})
    inquiry = sandbox.receiver.wait_for("dispute.created")[0][1]["data"]
    assert (inquiry["status"], inquiry["reason"], inquiry["is_charge_refundable"]) == (
        "warning_needs_response", "general", True)
    assert inquiry["balance_transactions"] == []
    refund = sandbox.a.post("/v1/refunds", {"authorization": auth["id"]}).json()
    assert refund["status"] == "succeeded"
    closed = sandbox.receiver.wait_for("dispute.closed")[0][1]["data"]
    assert closed["status"] == "warning_closed"
    assert [line[1] for line in settlement(sandbox, "2030-01-06")] == ["refund"]


def test_an_inquiry_becomes_a_dispute(sandbox):
    _auth, inquiry = opened(sandbox, inquiry=True)
    escalated = sandbox.admin(f"/_admin/disputes/{inquiry['id']}/escalate")
    assert escalated["status"] == "needs_response" and escalated["balance_transactions"][0]["amount"] == -3000
    assert escalated["evidence_details"]["due_by"] >= inquiry["evidence_details"]["due_by"]
    # An inquiry answered with losing evidence becomes a dispute too.
    _auth, other = opened(sandbox, inquiry=True)
    assert submit(sandbox, other["id"], {"uncategorized_text": "losing_evidence"}).json()["status"] == \
        "warning_under_review"
    sandbox.admin("/_admin/clock", {"advance_seconds": DECISION_DAYS * DAY})
    assert sandbox.a.get(f"/v1/disputes/{other['id']}").json()["status"] == "needs_response"


def test_the_issuer_withdraws_a_dispute(sandbox):
    auth, dispute = opened(sandbox, reason="product_not_received")
    refused = sandbox.a.post("/v1/refunds", {"authorization": auth["id"], "amount": 100}).json()
    assert (refused["status"], refused["failure_code"]) == ("failed", "charge_disputed")
    withdrawn = sandbox.admin(f"/_admin/disputes/{dispute['id']}/withdraw")
    assert withdrawn["status"] == "won" and [m["type"] for m in withdrawn["balance_transactions"]] == [
        "dispute", "dispute_reversal"]
    again = sandbox.public.post(f"{sandbox.public_url}/_admin/disputes/{dispute['id']}/withdraw", json={})
    assert again.status_code == 400


def test_the_not_received_card_opens_its_reason(sandbox):
    sandbox.captured("4000000000002685", amount=1200)
    sandbox.admin("/_admin/clock", {"advance_seconds": DAY})
    dispute = sandbox.receiver.wait_for("dispute.created")[0][1]["data"]
    assert (dispute["reason"], dispute["status"], dispute["amount"]) == ("product_not_received", "needs_response", 1200)
