"""Tampering that gets past the triggers (a superuser disabling them) is caught by verify."""
import hashlib
import hmac

import pytest
from sqlalchemy import select

from app.ledger.integration import run_verify
from app.ledger.models import Entry
from app.ledger.queries import account_by_code
from tests.conftest import admin_connect, owner_connect
from tests.ledger.conftest import capture_legs, cr, dr, post


@pytest.fixture
def history(db_session, book, hmac_key) -> dict:
    """Three postings on seller A's account; returns A's entries (by version) and account id."""
    post(db_session, book, "capture:1", capture_legs(), hmac_key)
    post(db_session, book, "capture:2", capture_legs(), hmac_key)
    post(db_session, book, "refund:1", [dr("seller_payable:A:USD", 1000), cr("psp_receivable:sandbox:USD", 1000)],
         hmac_key)
    account = account_by_code(db_session, book, "seller_payable:A:USD")
    entries = list(db_session.scalars(select(Entry).where(Entry.account_id == account.id)
                                      .order_by(Entry.version_after)))
    result = {"account_id": account.id, "entries": [(e.id, e.transaction_id) for e in entries]}
    db_session.rollback()  # ALTER TABLE below needs every other transaction on the table to be over
    assert run_verify(db_session, hmac_key, book).ok
    return result


def tamper(database, *statements, params=()) -> None:
    """As a superuser: disable the triggers, run the statements, enable the triggers, commit."""
    with admin_connect(database) as conn:
        conn.execute("SET lock_timeout = '10s'")  # a forgotten open transaction fails the test, not hangs it
        for table in ("ledger_entries", "ledger_transactions"):
            conn.execute(f"ALTER TABLE {table} DISABLE TRIGGER USER")
        for statement in statements:
            conn.execute(statement, params)
        for table in ("ledger_entries", "ledger_transactions"):
            conn.execute(f"ALTER TABLE {table} ENABLE TRIGGER USER")
        conn.commit()


def test_an_altered_amount_is_caught(database, db_session, book, hmac_key, history):
    entry_id = history["entries"][1][0]
    tamper(database, "UPDATE ledger_entries SET amount = amount + 100 WHERE id = %s", params=(entry_id,))
    report = run_verify(db_session, hmac_key, book)
    assert not report.ok
    assert (report.first.problem, report.first.entry_id) == ("balance_mismatch", entry_id)
    assert "hmac_mismatch" in {d.problem for d in report.discrepancies if d.entry_id == entry_id}


def test_a_consistently_rewritten_history_is_caught_by_the_hmac(database, db_session, book, hmac_key, history):
    """A's first entry shrunk, every later balance snapshot and the account made to agree, the transaction
    kept balanced: the arithmetic all adds up on A, and only the key-bound chain tells."""
    first_id, first_txn = history["entries"][0]
    tamper(database,
           "UPDATE ledger_entries SET amount = amount - 5000 WHERE id = %(e)s",
           "UPDATE ledger_entries SET balance_after = balance_after - 5000 WHERE account_id = %(a)s",
           "UPDATE ledger_accounts SET balance = balance - 5000 WHERE id = %(a)s",
           "UPDATE ledger_entries SET amount = amount - 5000 WHERE transaction_id = %(t)s AND direction = 'debit'",
           params={"a": history["account_id"], "e": first_id, "t": first_txn})
    report = run_verify(db_session, hmac_key, book)
    on_a = [d for d in report.discrepancies if d.account_id == history["account_id"]]
    assert {d.problem for d in on_a} == {"hmac_mismatch"}
    assert on_a[0].entry_id == first_id and len(on_a) == 3  # and every later link of A's chain


def test_a_removed_transaction_breaks_the_chain(database, db_session, book, hmac_key, history):
    middle_txn = history["entries"][1][1]
    tamper(database, "DELETE FROM ledger_entries WHERE transaction_id = %(t)s",
           "DELETE FROM ledger_transactions WHERE id = %(t)s", params={"t": middle_txn})
    problems = {d.problem for d in run_verify(db_session, hmac_key, book).discrepancies}
    assert {"version_gap", "hmac_mismatch"} <= problems


def test_an_entry_resigned_with_another_key_is_caught(database, db_session, book, hmac_key, history):
    entry_id = history["entries"][0][0]
    forged = hmac.new(b"the attacker's key", b"whatever", hashlib.sha256).digest()
    tamper(database, "UPDATE ledger_entries SET hmac = %s WHERE id = %s", params=(forged, entry_id))
    report = run_verify(db_session, hmac_key, book)
    assert (report.first.problem, report.first.entry_id) == ("hmac_mismatch", entry_id)


def test_an_account_balance_changed_by_the_owner_is_caught(database, db_session, book, hmac_key, history):
    """The owner may update balance columns (the guard trigger allows it); verify notices."""
    with owner_connect(database) as conn:
        conn.execute("UPDATE ledger_accounts SET balance = balance + 1 WHERE id = %s", (history["account_id"],))
    report = run_verify(db_session, hmac_key, book)
    assert (report.first.problem, report.first.account_id) == ("account_mismatch", history["account_id"])


def test_an_account_rule_changed_by_a_superuser_is_caught(database, db_session, book, hmac_key, history):
    """Past the foreign key to its type (DISABLE TRIGGER ALL): verify takes the rule from the code."""
    with admin_connect(database) as conn:
        conn.execute("ALTER TABLE ledger_accounts DISABLE TRIGGER ALL")
        conn.execute("UPDATE ledger_accounts SET allow_negative = false WHERE id = %s", (history["account_id"],))
        conn.execute("ALTER TABLE ledger_accounts ENABLE TRIGGER ALL")
        conn.commit()
    report = run_verify(db_session, hmac_key, book)
    assert [(d.problem, d.account_id) for d in report.discrepancies] == [
        ("account_rule_mismatch", history["account_id"])]
    assert report.first.message == ("account seller_payable:A:USD is liability and may not go negative, but the "
                                    "code's rule for seller_payable is: liability, may go negative")


def test_the_wrong_key_fails_everything(db_session, book, history):
    report = run_verify(db_session, b"not the key", book)
    assert report.discrepancy_count == report.entries + report.transactions > 0


# A transaction's own columns: its seal.

@pytest.mark.parametrize("assignment", [
    "kind = 'payout'", "description = 'rewritten'", "reference = 'pay_other'", "business_key = 'capture:other'",
    "posted_at = posted_at - interval '1 day'",
])
def test_a_transaction_changed_in_any_column_is_caught(database, db_session, book, hmac_key, history, assignment):
    txn_id = history["entries"][1][1]
    tamper(database, f"UPDATE ledger_transactions SET {assignment} WHERE id = %s", params=(txn_id,))
    report = run_verify(db_session, hmac_key, book)
    assert [(d.problem, d.transaction_id) for d in report.discrepancies] == [("transaction_altered", txn_id)]
    assert report.first.message.startswith(f"transaction {txn_id} (")
    assert "does not match its seal: its kind, description, reference, business key" in report.first.message


def test_a_removed_seal_breaks_the_transactions_entries(database, db_session, book, hmac_key, history):
    """Without its seal a transaction would be checked as posted before 0015, which covers no kind."""
    txn_id = history["entries"][1][1]
    tamper(database, "UPDATE ledger_transactions SET hmac = NULL, kind = 'payout' WHERE id = %s", params=(txn_id,))
    report = run_verify(db_session, hmac_key, book)
    broken = {d.entry_id for d in report.discrepancies if d.problem == "hmac_mismatch" and d.transaction_id == txn_id}
    assert len(broken) == 4  # every entry of the capture
    assert "its transaction has no seal, or its seal was removed" in report.first.message


def test_a_seal_copied_from_another_transaction_is_caught(database, db_session, book, hmac_key, history):
    first_txn, second_txn = history["entries"][0][1], history["entries"][1][1]
    tamper(database, "UPDATE ledger_transactions SET hmac = (SELECT hmac FROM ledger_transactions WHERE id = %(a)s), "
                     "kind = 'payout' WHERE id = %(b)s", params={"a": first_txn, "b": second_txn})
    problems = {(d.problem, d.transaction_id) for d in run_verify(db_session, hmac_key, book).discrepancies}
    assert ("transaction_altered", second_txn) in problems and ("hmac_mismatch", second_txn) in problems


def test_the_cli_reports_the_first_discrepancy_and_exits_1(app, database, db_session, book, hmac_key, history):
    entry_id = history["entries"][2][0]
    tamper(database, "UPDATE ledger_entries SET direction = 'credit' WHERE id = %s", params=(entry_id,))
    result = app.test_cli_runner().invoke(args=["ledger", "verify", "--merchant", book.merchant_id])
    assert result.exit_code == 1
    assert f"FIRST DISCREPANCY [balance_mismatch]: account seller_payable:A:USD: entry {entry_id}" in result.output
    assert app.test_cli_runner().invoke(args=["ledger", "verify"]).exit_code == 1


def test_the_cli_reports_a_changed_transaction_kind_and_exits_1(app, database, book, history):
    txn_id = history["entries"][2][1]
    tamper(database, "UPDATE ledger_transactions SET kind = 'capture' WHERE id = %s", params=(txn_id,))
    result = app.test_cli_runner().invoke(args=["ledger", "verify", "--merchant", book.merchant_id])
    assert result.exit_code == 1
    assert (f"FIRST DISCREPANCY [transaction_altered]: transaction {txn_id} (refund:1, capture) does not match "
            "its seal") in result.output
