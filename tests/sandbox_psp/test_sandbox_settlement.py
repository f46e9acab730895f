"""Daily settlement CSV: charges on capture, refunds, disputes and their fee."""
import csv
import io
import uuid

DAY = 86400
HEADER = ["reference", "type", "gross", "fee", "net", "currency", "batch_id"]
A5, A6 = "po_sandbox_20300105_", "po_sandbox_20300106_"
SATURDAY = 1893801600  # 2030-01-05T00:00:00Z; a fixed day keeps the report deterministic


def report(acquirer, day: str) -> list[list[str]]:
    response = acquirer.get(f"/v1/settlements/{day}.csv")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/csv")
    return list(csv.reader(io.StringIO(response.text)))


def test_settlement_report(sandbox):
    sandbox.admin("/_admin/clock", {"now": SATURDAY + 3600})
    # One sandbox minute between events: lines of the same second are ordered by id.
    full = sandbox.captured(amount=10000)
    sandbox.admin("/_admin/clock", {"advance_seconds": 60})
    partial = sandbox.a.authorize(sandbox.tokenize()["id"], 8000, "EUR").json()
    sandbox.a.post(f"/v1/authorizations/{partial['id']}/capture", {"amount": 500}, key=str(uuid.uuid4()))
    sandbox.a.authorize(sandbox.tokenize()["id"], 999)  # authorized only: not settled
    voided = sandbox.a.authorize(sandbox.tokenize()["id"], 999).json()
    sandbox.a.post(f"/v1/authorizations/{voided['id']}/void")
    sandbox.a.authorize(sandbox.tokenize("4000000000009995")["id"], 999)  # declined: not settled
    sandbox.captured(amount=777, acquirer=sandbox.b)  # the other acquirer's report
    sandbox.admin("/_admin/clock", {"advance_seconds": 60})
    disputed = sandbox.captured("4000000000000259", amount=3000)
    sandbox.admin("/_admin/clock", {"advance_seconds": 60})
    refund = sandbox.a.post("/v1/refunds", {"authorization": full["id"], "amount": 2500}).json()

    assert report(sandbox.a, "2030-01-05") == [
        HEADER,
        [full["id"], "charge", "10000", "320", "9680", "USD", A5 + "USD"],
        [partial["id"], "charge", "500", "45", "455", "EUR", A5 + "EUR"],  # 14.5 rounds half up
        [disputed["id"], "charge", "3000", "117", "2883", "USD", A5 + "USD"],
        [refund["id"], "refund", "-2500", "0", "-2500", "USD", A5 + "USD"],
    ]
    assert report(sandbox.b, "2030-01-05")[1][1:] == ["charge", "777", "53", "724", "USD", "po_sandbox_b_20300105_USD"]

    sandbox.admin("/_admin/clock", {"advance_seconds": DAY})  # the dispute opens on 2030-01-06
    dispute = sandbox.a.get("/v1/disputes").json()["data"][0]
    assert report(sandbox.a, "2030-01-06") == [
        HEADER,
        [dispute["id"], "dispute", "-3000", "0", "-3000", "USD", A6 + "USD"],
        [dispute["id"], "fee", "0", "1500", "-1500", "USD", A6 + "USD"],
    ]
    sandbox.admin(f"/_admin/disputes/{dispute['id']}/close", {"status": "won"})
    assert report(sandbox.a, "2030-01-06")[-1] == [dispute["id"], "dispute", "3000", "0", "3000", "USD", A6 + "USD"]
    # A refund that fails after it succeeded stays on its own day and comes back on the day it failed.
    sandbox.admin(f"/_admin/refunds/{refund['id']}/fail")
    assert report(sandbox.a, "2030-01-05")[-1] == [refund["id"], "refund", "-2500", "0", "-2500", "USD", A5 + "USD"]
    assert report(sandbox.a, "2030-01-06")[-1] == [refund["id"], "refund_failure", "2500", "0", "2500", "USD", A6 + "USD"]

    assert report(sandbox.a, "2030-01-04") == [HEADER]
    days = sandbox.a.get("/v1/settlements").json()["data"]
    assert [day["date"] for day in days] == ["2030-01-05", "2030-01-06"]
    assert days[0]["url"] == "/v1/settlements/2030-01-05.csv"
    assert sandbox.a.get("/v1/settlements/2030-13-01.csv").status_code == 404


def test_a_data_folder_from_before_late_refund_failures_gets_the_column(tmp_path):
    import sqlite3

    from sandbox_psp.store import Store

    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE refunds (id TEXT PRIMARY KEY, acquirer TEXT NOT NULL, authorization_id TEXT "
                     "NOT NULL, amount INTEGER NOT NULL, currency TEXT NOT NULL, status TEXT NOT NULL, "
                     "failure_code TEXT, created INTEGER NOT NULL)")
    conn.close()
    for _ in range(2):  # and opening it again changes nothing
        store = Store(str(path))
        with store.read() as conn:
            assert "failed_at" in {row["name"] for row in conn.execute("PRAGMA table_info(refunds)")}
        store.close()
