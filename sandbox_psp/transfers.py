"""Outgoing bank transfers: the sandbox's payout rail for Kassa's payouts (the sandbox plays the platform's bank).

``POST /v1/bank_transfers`` is idempotent by the payout id (``id``): the same id again returns the same transfer,
another amount, currency or account under it is refused (409). A transfer settles ``TRANSFER_DAYS`` sandbox days
after it was made (``SANDBOX_TRANSFER_DAYS``, default 2): then ``paid``, or ``failed`` for the test account numbers
below (matched on the account number, or an IBAN ending in it); ``GET /v1/bank_transfers/<id>`` answers its state at
the sandbox clock (404: no such transfer, surely). ``POST /_admin/bank_transfers/<id>/return`` makes a paid transfer
come back (failed after paid, as a bank return). When a transfer becomes paid or failed at the sandbox clock (and
when a paid one is returned), a signed callback ``bank_transfer.paid`` / ``bank_transfer.failed`` carrying the
transfer goes to Kassa through the callback outbox (sandbox_psp/callbacks.py), once per change. Paid transfers are debits on the bank statement of the day they
settled, with the payout id as remittance (sandbox_psp/settlement.py).

| account number | fails with |
|---|---|
| 000111111116 | no_account |
| 000111111113 | account_closed |
| 000444444440 | invalid_currency |
"""
import os

from . import callbacks

DAY = 86400
TRANSFER_DAYS = int(os.environ.get("SANDBOX_TRANSFER_DAYS", "2"))
FAILING_ACCOUNTS = {"000111111116": "no_account", "000111111113": "account_closed", "000444444440": "invalid_currency"}


class TransferConflict(ValueError):
    """The id was used for another transfer."""


def failure_of(account: str) -> str | None:
    for number, code in FAILING_ACCOUNTS.items():
        if account.endswith(number):
            return code
    return None


def view(row, now: int) -> dict:
    """A transfer as the API shows it at sandbox time ``now``."""
    status, code = "in_transit", None
    if row["returned_at"] is not None and now >= row["returned_at"]:
        status, code = "failed", row["return_code"]
    elif now >= row["settles_at"]:
        code = failure_of(row["account"])
        status = "failed" if code else "paid"
    return {"id": row["id"], "object": "bank_transfer", "amount": row["amount"], "currency": row["currency"],
            "status": status, "failure_code": code, "created": row["created"], "arrival": row["settles_at"],
            "account_last4": row["account"][-4:]}


def create(conn, body: dict, now: int) -> dict:
    """The transfer of ``body['id']``, made now if new."""
    existing = conn.execute("SELECT * FROM bank_transfers WHERE id = ?", (body["id"],)).fetchone()
    if existing is not None:
        if (existing["amount"], existing["currency"], existing["account"]) != (body["amount"], body["currency"],
                                                                               body["account"]):
            raise TransferConflict(f"transfer {body['id']} was made with other details")
        return view(existing, now)
    conn.execute("INSERT INTO bank_transfers (id, amount, currency, account, holder, created, settles_at) "
                 "VALUES (?, ?, ?, ?, ?, ?, ?)", (body["id"], body["amount"], body["currency"], body["account"],
                                                  body.get("holder") or "", now, now + TRANSFER_DAYS * DAY))
    return view(conn.execute("SELECT * FROM bank_transfers WHERE id = ?", (body["id"],)).fetchone(), now)


def paid_between(conn, start: int, end: int) -> list[tuple[str, int, str]]:
    """Transfers that left the bank in [start, end): (id, amount, currency), for the statement's debits."""
    rows = conn.execute("SELECT id, amount, currency, account FROM bank_transfers WHERE settles_at >= ? AND "
                        "settles_at < ? ORDER BY settles_at, id", (start, end)).fetchall()
    return [(r["id"], r["amount"], r["currency"]) for r in rows if failure_of(r["account"]) is None]


# Transfers whose status at ``now`` is news: settled and never announced, or returned and not yet announced failed.
_DUE = ("SELECT * FROM bank_transfers WHERE (announced IS NULL AND settles_at <= ?) OR (returned_at IS NOT NULL AND "
        "returned_at <= ? AND COALESCE(announced, '') != 'failed') ORDER BY settles_at, id")


def announce_due(conn, now: int) -> int:
    """Enqueue a callback for every transfer that became paid or failed (or was returned) by ``now``, in the
    caller's write transaction; return how many. Each change is announced once (``announced`` keeps the last)."""
    count = 0
    for row in conn.execute(_DUE, (now, now)).fetchall():
        transfer = view(row, now)
        if transfer["status"] == row["announced"]:
            continue
        callbacks.enqueue(conn, f"bank_transfer.{transfer['status']}", transfer, now)
        conn.execute("UPDATE bank_transfers SET announced = ? WHERE id = ?", (transfer["status"], row["id"]))
        count += 1
    return count
