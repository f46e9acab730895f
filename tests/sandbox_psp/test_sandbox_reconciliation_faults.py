"""Reconciliation faults of the sandbox (POST /_admin/settlement_faults) and its camt.053 bank statement.

Each fault changes exactly what it names in the settlement CSV or the statement, so that Kassa's tests can
produce each kind of reconciliation break on purpose.
"""
import csv
import io
from xml.etree import ElementTree

from sbx_helpers import SECRET

SATURDAY = 1893801600  # 2030-01-05T00:00:00Z
DAY = 86400
NS = {"c": "urn:iso:std:iso:20022:tech:xsd:camt.053.001.02"}


def report(sandbox, day: str) -> list[list[str]]:
    response = sandbox.a.get(f"/v1/settlements/{day}.csv")
    assert response.status_code == 200
    return list(csv.reader(io.StringIO(response.text)))[1:]


def statement(sandbox, day: str) -> list[tuple[str, str, str, str]]:
    response = sandbox.public.get(f"{sandbox.public_url}/v1/bank_statements/{day}.xml",
                                  headers={"Authorization": f"Bearer {SECRET}"})
    assert response.status_code == 200, response.text
    root = ElementTree.fromstring(response.content)
    return [(e.find("c:NtryDtls/c:TxDtls/c:RmtInf/c:Ustrd", NS).text, e.find("c:Amt", NS).text,
             e.find("c:Amt", NS).get("Ccy"), e.find("c:CdtDbtInd", NS).text)
            for e in root.iterfind("c:BkToCstmrStmt/c:Stmt/c:Ntry", NS)]


def fault(sandbox, **body):
    return sandbox.admin("/_admin/settlement_faults", {"acquirer": "sandbox", **body})


def test_each_fault_changes_only_what_it_names(sandbox):
    sandbox.admin("/_admin/clock", {"now": SATURDAY + 3600})
    captures = []
    for amount in (1000, 2000, 3000, 4000):  # a sandbox minute apart: lines are ordered by time
        captures.append(sandbox.captured(amount=amount))
        sandbox.admin("/_admin/clock", {"advance_seconds": 60})
    one, two, three, four = captures
    batch = "po_sandbox_20300105_USD"
    clean = report(sandbox, "2030-01-05")
    assert [row[0] for row in clean] == [one["id"], two["id"], three["id"], four["id"]]
    assert {row[6] for row in clean} == {batch}
    assert statement(sandbox, "2030-01-06") == [(batch, "95.90", "USD", "CRDT")]  # 100.00 less 4.10 of fees

    fault(sandbox, action="drop", reference=one["id"])
    fault(sandbox, action="duplicate", reference=two["id"])
    fault(sandbox, action="alter", reference=three["id"], amount=-100)
    fault(sandbox, action="delay", reference=four["id"])
    fault(sandbox, action="unknown", date="2030-01-05", reference="auth_nobody", amount=500)
    fault(sandbox, action="short", batch_id=batch, amount=7)
    fault(sandbox, action="no_batch", date="2030-01-06", batch_id="po_mystery", amount=123)
    rows = report(sandbox, "2030-01-05")
    assert [row[:6] for row in rows] == [
        [two["id"], "charge", "2000", "88", "1912", "USD"],
        [two["id"], "charge", "2000", "88", "1912", "USD"],
        [three["id"], "charge", "2900", "117", "2783", "USD"],
        ["auth_nobody", "charge", "500", "45", "455", "USD"],
    ]
    # The delayed line arrives the next day, in that day's batch.
    assert report(sandbox, "2030-01-06") == [[four["id"], "charge", "4000", "146", "3854", "USD",
                                              "po_sandbox_20300106_USD"]]
    total = 1912 * 2 + 2783 + 455 - 7
    assert statement(sandbox, "2030-01-06") == [(batch, f"{total // 100}.{total % 100:02d}", "USD", "CRDT"),
                                                ("po_mystery", "1.23", "USD", "CRDT")]


def test_fault_requests_are_checked(sandbox):
    response = sandbox.public.post(sandbox.public_url + "/_admin/settlement_faults",
                                   json={"acquirer": "sandbox", "action": "explode"})
    assert response.status_code == 400 and response.json()["error"]["param"] == "action"
    response = sandbox.public.post(sandbox.public_url + "/_admin/settlement_faults",
                                   json={"acquirer": "sandbox", "action": "drop"})
    assert response.status_code == 400 and response.json()["error"]["param"] == "reference"
    response = sandbox.public.get(sandbox.public_url + "/v1/bank_statements/2030-01-05.xml")
    assert response.status_code == 401
    sandbox.admin("/_admin/settlement_faults", {"acquirer": "sandbox", "action": "drop", "reference": "auth_x"})
    sandbox.admin("/_admin/reset")
    assert sandbox.public.get(sandbox.public_url + "/_admin/settlement_faults").json() == {"sandbox": [], "sandbox_b": []}


def test_kassa_fetches_and_parses_the_report_and_the_statement(sandbox):
    """What app/reconciliation/fetch.py gets over HTTP parses as Kassa expects (camt.053 through defusedxml)."""
    from app.reconciliation import fetch
    from app.reconciliation.parsing import parse_camt053, parse_settlement_csv

    sandbox.admin("/_admin/clock", {"now": SATURDAY + 3600})
    auth = sandbox.captured(amount=2000)
    config = {"SANDBOX_ACQUIRER_URLS": f"sandbox={sandbox.a.url}", "SANDBOX_PSP_URL": sandbox.public_url,
              "SANDBOX_PSP_SECRET": SECRET}
    import datetime as dt

    [line] = parse_settlement_csv(fetch.fetch_settlement(config, "sandbox", dt.date(2030, 1, 5)))
    assert (line.reference, line.type, line.gross, line.fee, line.batch_id) == (
        auth["id"], "charge", 2000, 88, "po_sandbox_20300105_USD")
    [entry] = parse_camt053(fetch.fetch_statement(config, dt.date(2030, 1, 6)))
    assert (entry.amount, entry.currency, entry.batch_id, entry.booking_date) == (
        1912, "USD", "po_sandbox_20300105_USD", dt.date(2030, 1, 6))
    try:
        fetch.fetch_statement(config | {"SANDBOX_PSP_SECRET": "wrong"}, dt.date(2030, 1, 6))
    except fetch.FetchFailed as exc:
        assert "401" in str(exc)
    else:
        raise AssertionError("a refused fetch must raise FetchFailed")


def test_a_missed_dispute_is_only_in_the_report(sandbox):
    """The ``missed_dispute`` fault: a chargeback whose notice is never sent; the day's report carries its dispute
    and fee lines, and a lookup of the dispute finds it (what Kassa asks when such a line matches nothing)."""
    sandbox.admin("/_admin/clock", {"now": SATURDAY + 10 * DAY + 3600})
    missed, noticed = sandbox.captured(amount=2500), sandbox.captured(amount=1000)
    fault(sandbox, action="missed_dispute", reference=missed["id"])
    fault(sandbox, action="missed_dispute", reference=missed["id"])  # one dispute per authorization
    [dispute] = sandbox.a.get("/v1/disputes", params={"authorization": missed["id"]}).json()["data"]
    assert (dispute["amount"], dispute["status"]) == (2500, "needs_response")
    assert sandbox.a.get(f"/v1/disputes/{dispute['id']}").json()["authorization"] == missed["id"]
    rows = report(sandbox, "2030-01-15")
    assert [row[:6] for row in rows if row[0] == dispute["id"]] == [
        [dispute["id"], "dispute", "-2500", "0", "-2500", "USD"], [dispute["id"], "fee", "0", "1500", "-1500", "USD"]]
    # Notices leave in order: the next dispute's arrives, the missed one's never does.
    sandbox.admin("/_admin/disputes", {"authorization": noticed["id"]})
    created = sandbox.receiver.wait_for("dispute.created")
    assert [event[1]["data"]["authorization"] for event in created] == [noticed["id"]]
