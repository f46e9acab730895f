"""What the database itself refuses, written through raw SQL that bypasses the service.

The application role (``app_connect``) is what Kassa runs as; the owner (``owner_connect``) has every
privilege on the tables and is still stopped by the triggers. Deferred constraint triggers fire at COMMIT.
"""
import psycopg
import pytest

from app.ledger.accounts import ACCOUNT_TYPES
from app.ledger.queries import book_accounts
from tests.conftest import app_connect, owner_connect
from tests.ledger.conftest import capture_legs, cr, dr, post

MAC = b"\x00" * 32


@pytest.fixture
def accounts(db_session, book, hmac_key) -> dict[str, str]:
    """The book after one capture and one settlement: account code -> id."""
    post(db_session, book, "capture:pay_1", capture_legs(), hmac_key, kind="capture")
    post(db_session, book, "settlement:1", [dr("cash:USD", 9710), dr("psp_fees:USD", 290),
                                             cr("psp_receivable:sandbox:USD", 10000)], hmac_key, kind="settlement")
    ids = {a.code: a.id for a in book_accounts(db_session, book)}
    db_session.rollback()  # end the read: an open transaction would make the owner's TRUNCATE wait for it
    return ids


def insert_transaction(conn, book, txn_id: str, key: str) -> None:
    conn.execute("INSERT INTO ledger_transactions (id, merchant_id, livemode, business_key, kind) "
                 "VALUES (%s, %s, %s, %s, 'raw')", (txn_id, book.merchant_id, book.livemode, key))


def insert_entry(conn, book, txn_id: str, account_id: str, direction: str, amount: int, *,
                 currency: str = "USD", version: int = 1000, entry_id: str | None = None) -> None:
    conn.execute(
        "INSERT INTO ledger_entries (id, transaction_id, account_id, merchant_id, livemode, direction, amount, "
        "currency, balance_after, version_after, posted_at, hmac) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, 0, %s, now(), %s)",
        (entry_id or f"{txn_id}_{direction}_{version}", txn_id, account_id, book.merchant_id, book.livemode,
         direction, amount, currency, version, MAC))


# Rule 1: every transaction balances per currency, checked at COMMIT.

def test_an_unbalanced_transaction_fails_at_commit(database, book, accounts):
    with app_connect(database) as conn:
        insert_transaction(conn, book, "ltxn_raw_unbalanced", "raw:unbalanced")
        insert_entry(conn, book, "ltxn_raw_unbalanced", accounts["seller_payable:A:USD"], "debit", 100)
        insert_entry(conn, book, "ltxn_raw_unbalanced", accounts["seller_payable:B:USD"], "credit", 90)
        # Both inserts were accepted: the check is deferred to the end of the transaction.
        with pytest.raises(psycopg.errors.CheckViolation, match="does not balance in USD: debits 100 <> credits 90"):
            conn.commit()
        count = "SELECT count(*) FROM ledger_transactions WHERE id = 'ltxn_raw_unbalanced'"
        assert conn.execute(count).fetchone() == (0,)


def test_balancing_in_one_currency_does_not_excuse_another(database, db_session, book, accounts, hmac_key):
    post(db_session, book, "capture:eur", capture_legs(currency="EUR"), hmac_key, kind="capture")
    eur = {a.code: a.id for a in book_accounts(db_session, book)}
    with app_connect(database) as conn:
        insert_transaction(conn, book, "ltxn_raw_fx", "raw:fx")
        insert_entry(conn, book, "ltxn_raw_fx", accounts["seller_payable:A:USD"], "debit", 100, currency="USD")
        insert_entry(conn, book, "ltxn_raw_fx", eur["seller_payable:A:EUR"], "credit", 100, currency="EUR")
        with pytest.raises(psycopg.errors.CheckViolation, match="does not balance"):
            conn.commit()


def test_a_transaction_without_entries_fails_at_commit(database, book, accounts):
    with app_connect(database) as conn:
        insert_transaction(conn, book, "ltxn_raw_empty", "raw:empty")
        with pytest.raises(psycopg.errors.CheckViolation, match="needs at least one debit and one credit"):
            conn.commit()


def test_a_balanced_raw_transaction_is_accepted(database, book, accounts):
    """The control case: the same raw SQL, balanced, commits (so the failures above are the rules')."""
    with app_connect(database) as conn:
        insert_transaction(conn, book, "ltxn_raw_ok", "raw:ok")
        insert_entry(conn, book, "ltxn_raw_ok", accounts["seller_payable:A:USD"], "debit", 100)
        insert_entry(conn, book, "ltxn_raw_ok", accounts["seller_payable:B:USD"], "credit", 100)
        conn.commit()


# Rule 2: an entry's currency is its account's, and it stays in its account's and transaction's book.

def test_an_entry_in_another_currency_than_its_account_is_refused(database, book, accounts):
    with app_connect(database) as conn:
        insert_transaction(conn, book, "ltxn_raw_cur", "raw:cur")
        with pytest.raises(psycopg.errors.CheckViolation, match=r"is in EUR, but its account .* is in USD"):
            insert_entry(conn, book, "ltxn_raw_cur", accounts["seller_payable:A:USD"], "debit", 100, currency="EUR")


def test_an_entry_cannot_reach_into_another_book(database, db_session, book, accounts, hmac_key):
    from app.scoping import Scope

    live = Scope(book.merchant_id, True)
    post(db_session, live, "capture:live", capture_legs(), hmac_key, kind="capture")
    live_account = {a.code: a.id for a in book_accounts(db_session, live)}["seller_payable:A:USD"]
    with app_connect(database) as conn:
        insert_transaction(conn, book, "ltxn_raw_book", "raw:book")
        with pytest.raises(psycopg.errors.ForeignKeyViolation, match="fk_ledger_entries_account_book"):
            insert_entry(conn, book, "ltxn_raw_book", live_account, "debit", 100)


def test_amounts_are_positive_and_directions_known(database, book, accounts):
    with app_connect(database) as conn:
        insert_transaction(conn, book, "ltxn_raw_amt", "raw:amt")
        with pytest.raises(psycopg.errors.CheckViolation, match="ck_ledger_entries_amount_positive"):
            insert_entry(conn, book, "ltxn_raw_amt", accounts["seller_payable:A:USD"], "debit", 0)
        conn.rollback()
        insert_transaction(conn, book, "ltxn_raw_dir", "raw:dir")
        with pytest.raises(psycopg.errors.CheckViolation, match="ck_ledger_entries_direction"):
            insert_entry(conn, book, "ltxn_raw_dir", accounts["seller_payable:A:USD"], "left", 5)


# Rule 3: entries and transactions are never updated or deleted; accounts change only in balance and version.

@pytest.mark.parametrize("statement", [
    "UPDATE ledger_entries SET amount = amount + 1",
    "DELETE FROM ledger_entries",
    "TRUNCATE ledger_entries",
    "UPDATE ledger_transactions SET description = 'rewritten'",
    "DELETE FROM ledger_transactions",
    "TRUNCATE ledger_transactions CASCADE",
    "DELETE FROM ledger_accounts",
    "UPDATE ledger_accounts SET currency = 'EUR'",
    "ALTER TABLE ledger_entries DISABLE TRIGGER USER",
])
def test_the_application_role_may_not_rewrite_history(database, accounts, statement):
    with app_connect(database) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied|must be owner"):
            conn.execute(statement)


@pytest.mark.parametrize("statement", [
    "UPDATE ledger_entries SET amount = amount + 1",
    "DELETE FROM ledger_entries",
    "TRUNCATE ledger_entries",
    "UPDATE ledger_transactions SET description = 'rewritten'",
    "DELETE FROM ledger_transactions",
    "TRUNCATE ledger_transactions CASCADE",
    "DELETE FROM ledger_accounts",
    "TRUNCATE ledger_accounts CASCADE",
])
def test_even_the_owner_is_stopped_by_the_append_only_triggers(database, accounts, statement):
    with owner_connect(database) as conn:
        conn.execute("SET lock_timeout = '10s'")  # a forgotten open transaction fails the test, not hangs it
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="is not allowed: the table is append-only"):
            conn.execute(statement)


@pytest.mark.parametrize("assignment", [
    "currency = 'EUR'", "code = 'cash:EUR'", "allow_negative = true", "kind = 'liability'",
    "merchant_id = merchant_id || 'x'", "version = version - 1",
])
def test_an_accounts_identity_never_changes_and_its_version_never_goes_back(database, accounts, assignment):
    with owner_connect(database) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege,
                           match="only balance, version and last_hmac may change"):
            conn.execute(f"UPDATE ledger_accounts SET {assignment} WHERE id = %s", (accounts["cash:USD"],))


# Rule 4: no negative balance on an account that forbids it.

@pytest.mark.parametrize("code", ["cash:USD", "merchant_revenue:USD"])
def test_an_account_that_forbids_it_never_goes_negative(database, accounts, code):
    with app_connect(database) as conn:
        with pytest.raises(psycopg.errors.CheckViolation, match="ck_ledger_accounts_balance_not_negative"):
            conn.execute("UPDATE ledger_accounts SET balance = -1, version = version + 1 WHERE id = %s",
                          (accounts[code],))


@pytest.mark.parametrize("code", ["seller_payable:A:USD", "psp_receivable:sandbox:USD", "psp_fees:USD"])
def test_accounts_that_may_go_negative_can(database, accounts, code):
    with app_connect(database) as conn:
        conn.execute("UPDATE ledger_accounts SET balance = -1 WHERE id = %s", (accounts[code],))
        conn.rollback()  # leave the books as they were


def insert_account(conn, book, code: str, account_type: str, kind: str, allow_negative: bool) -> None:
    normal = "debit" if kind in ("asset", "expense") else "credit"
    conn.execute(
        "INSERT INTO ledger_accounts (id, merchant_id, livemode, code, account_type, kind, normal_balance, currency, "
        "allow_negative) VALUES (%s, %s, %s, %s, %s, %s, %s, 'EUR', %s)",
        (f"lacc_raw_{code}", book.merchant_id, book.livemode, code, account_type, kind, normal, allow_negative))


@pytest.mark.parametrize("account_type, kind, allow_negative", [
    ("cash", "asset", True),  # the overdraft that the type forbids
    ("cash", "liability", False),  # another kind than the type's
    ("merchant_revenue", "revenue", True),
    ("payouts_in_transit", "liability", True),
    ("treasure", "asset", False),  # no such type
])
def test_an_account_takes_its_types_kind_and_overdraft_rule(database, book, account_type, kind, allow_negative):
    with app_connect(database) as conn:
        with pytest.raises(psycopg.errors.ForeignKeyViolation, match="fk_ledger_accounts_type_rule"):
            insert_account(conn, book, f"{account_type}:EUR", account_type, kind, allow_negative)


def test_an_account_with_its_types_rule_is_accepted(database, book):
    """The control case: the same raw INSERT with the type's own rule goes through."""
    with app_connect(database) as conn:
        insert_account(conn, book, "cash:EUR", "cash", "asset", False)
        conn.rollback()


def test_the_database_rules_are_the_codes(database):
    with app_connect(database) as conn:
        rows = conn.execute("SELECT name, kind, allow_negative, subject FROM ledger_account_types").fetchall()
    assert {name: (kind, allow_negative, subject) for name, kind, allow_negative, subject in rows} == {
        t.name: (t.kind, t.allow_negative, t.subject) for t in ACCOUNT_TYPES.values()}


@pytest.mark.parametrize("statement", [
    "UPDATE ledger_account_types SET allow_negative = true WHERE name = 'cash'",
    "INSERT INTO ledger_account_types (name, kind, allow_negative) VALUES ('treasure', 'asset', true)",
    "DELETE FROM ledger_account_types WHERE name = 'payouts_in_transit'",
])
def test_the_application_role_may_only_read_the_account_types(database, statement):
    with app_connect(database) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied"):
            conn.execute(statement)


@pytest.mark.parametrize("statement", [
    "UPDATE ledger_account_types SET allow_negative = true WHERE name = 'payouts_in_transit'",
    "DELETE FROM ledger_account_types WHERE name = 'suspense'",
    "TRUNCATE ledger_account_types CASCADE",
])
def test_even_the_owner_only_adds_account_types(database, statement):
    with owner_connect(database) as conn:
        conn.execute("SET lock_timeout = '10s'")  # a forgotten open transaction fails the test, not hangs it
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="is not allowed: the table is append-only"):
            conn.execute(statement)


# Rule 5: a business key posts at most once per book.

def test_a_business_key_is_unique_in_its_book(database, book, accounts):
    with app_connect(database) as conn:
        with pytest.raises(psycopg.errors.UniqueViolation, match="uq_ledger_transactions_book_key"):
            insert_transaction(conn, book, "ltxn_raw_dup", "capture:pay_1")


def test_the_same_business_key_is_free_in_another_mode(database, book, accounts):
    from app.scoping import Scope

    with app_connect(database) as conn:
        insert_transaction(conn, Scope(book.merchant_id, True), "ltxn_raw_live", "capture:pay_1")
        conn.rollback()  # (it has no entries: committing would fail, which is rule 1)


def test_the_application_role_does_not_own_the_ledger(database):
    with app_connect(database) as conn:
        owners = conn.execute("SELECT DISTINCT tableowner FROM pg_tables WHERE tablename LIKE 'ledger_%'").fetchall()
        assert owners == [("kassa_owner",)]
        assert conn.execute("SELECT current_user").fetchone() == ("kassa_app",)
