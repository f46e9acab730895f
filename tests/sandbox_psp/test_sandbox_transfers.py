"""Outgoing bank transfers (the payout rail): idempotent by payout id, paid or failed after the sandbox's transfer
days on its clock, the failing test account numbers, a return after paid, and paid transfers as statement debits."""
from sbx_helpers import SECRET, verify_signature

DAY = 86400
MONDAY = 1894147200  # 2030-01-09T00:00:00Z


def transfer(sandbox, body=None, **changes):
    body = body or {"id": "po_01TEST", "amount": 5820, "currency": "USD", "account": "000123456789",
                    "holder": "Ann"}
    return sandbox.public.post(sandbox.public_url + "/v1/bank_transfers", json={**body, **changes},
                               headers={"Authorization": f"Bearer {SECRET}"})


def status(sandbox, transfer_id):
    return sandbox.public.get(sandbox.public_url + f"/v1/bank_transfers/{transfer_id}",
                              headers={"Authorization": f"Bearer {SECRET}"})


def test_a_transfer_is_made_once_and_paid_after_the_transfer_days(sandbox):
    sandbox.admin("/_admin/clock", {"now": MONDAY + 3600})
    first = transfer(sandbox)
    assert first.status_code == 200 and first.json()["status"] == "in_transit"
    assert transfer(sandbox).json() == first.json()  # the same payout id: the same transfer
    assert transfer(sandbox, amount=1).status_code == 409
    assert status(sandbox, "po_unknown").status_code == 404  # surely absent
    sandbox.admin("/_admin/clock", {"advance_seconds": DAY})
    assert status(sandbox, "po_01TEST").json()["status"] == "in_transit"
    sandbox.admin("/_admin/clock", {"advance_seconds": DAY})
    assert status(sandbox, "po_01TEST").json()["status"] == "paid"
    statement = sandbox.public.get(sandbox.public_url + "/v1/bank_statements/2030-01-11.xml",
                                   headers={"Authorization": f"Bearer {SECRET}"}).text
    assert "<Ustrd>po_01TEST</Ustrd>" in statement and "<CdtDbtInd>DBIT</CdtDbtInd>" in statement
    returned = sandbox.admin("/_admin/bank_transfers/po_01TEST/return", {"failure_code": "account_closed"})
    assert (returned["status"], returned["failure_code"]) == ("failed", "account_closed")


def test_failing_test_accounts(sandbox):
    sandbox.admin("/_admin/clock", {"now": MONDAY + 3600})
    for number, code in (("000111111116", "no_account"), ("000111111113", "account_closed"),
                         ("000444444440", "invalid_currency")):
        assert transfer(sandbox, id=f"po_{code}", account=number).json()["status"] == "in_transit"
    sandbox.admin("/_admin/clock", {"advance_seconds": 2 * DAY})
    for code in ("no_account", "account_closed", "invalid_currency"):
        body = status(sandbox, f"po_{code}").json()
        assert (body["status"], body["failure_code"]) == ("failed", code)


def test_paid_failed_and_returned_transfers_are_announced_once_by_signed_callback(sandbox):
    sandbox.admin("/_admin/clock", {"now": MONDAY + 3600})
    assert transfer(sandbox).status_code == 200
    assert transfer(sandbox, id="po_closed", account="DE00000000000111111113").status_code == 200
    sandbox.admin("/_admin/clock", {"advance_seconds": DAY})
    assert sandbox.receiver.events() == []  # nothing happened yet: nothing announced
    sandbox.admin("/_admin/clock", {"advance_seconds": DAY})  # the transfer day: one paid, one failed
    [(headers, paid, raw)] = sandbox.receiver.wait_for("bank_transfer.paid")
    [(_, failed, _)] = sandbox.receiver.wait_for("bank_transfer.failed")
    assert verify_signature(headers["Sandbox-Signature"], raw)
    assert (paid["data"]["id"], paid["data"]["status"], paid["data"]["amount"]) == ("po_01TEST", "paid", 5820)
    assert (failed["data"]["id"], failed["data"]["failure_code"]) == ("po_closed", "account_closed")
    sandbox.admin("/_admin/clock", {"advance_seconds": DAY})  # later ticks announce nothing again
    sandbox.admin("/_admin/bank_transfers/po_01TEST/return", {"failure_code": "no_account"})
    returned = sandbox.receiver.wait_for("bank_transfer.failed", count=2)
    assert [(c["data"]["id"], c["data"]["failure_code"]) for _, c, _ in returned] == [
        ("po_closed", "account_closed"), ("po_01TEST", "no_account")]
    sandbox.admin("/_admin/clock", {"advance_seconds": DAY})
    outbox = sandbox.public.get(sandbox.public_url + "/_admin/callbacks").json()["data"]  # written with the change
    assert sorted((c["type"], c["data"]["id"]) for c in outbox) == [
        ("bank_transfer.failed", "po_01TEST"), ("bank_transfer.failed", "po_closed"), ("bank_transfer.paid", "po_01TEST")]
