"""Concurrent postings: 8 threads x 1,000 transfers among 20 accounts, one of them in every transfer;
and concurrent posts of one business key."""
import random
import threading
import time

import pytest
from sqlalchemy import case, create_engine, func, select, text
from sqlalchemy.orm import Session

from app.ledger.errors import BusinessKeyConflict, InsufficientBalance
from app.ledger.integration import run_verify
from app.ledger.models import Entry, JournalTransaction, LedgerAccount
from app.ledger.queries import trial_balance
from app.ledger.service import Leg, post_transaction
from tests.conftest import owner_connect
from tests.ledger.conftest import capture_legs, cr, dr

THREADS = 8
TRANSFERS_PER_THREAD = 1000
HOT = "merchant_revenue:USD"  # the platform fee account: in every real capture, so in every transfer here
COLD = (["cash:USD", "dispute_fees:USD", "psp_fees:USD"]
        + [f"psp_receivable:c{n}:USD" for n in range(4)] + [f"seller_payable:s{n}:USD" for n in range(12)])
assert len(COLD) + 1 == 20
FUNDING = 50_000  # what the accounts that may not go negative start with
# Long enough for 8 threads' worth of postings on a slow CI machine; only bounds a hang.
JOIN_TIMEOUT = 600


@pytest.fixture(scope="module")
def engine(app):
    """An engine of its own with a connection per thread (the app's pool is for the app)."""
    engine = create_engine(app.config["SQLALCHEMY_DATABASE_URI"], pool_size=THREADS + 2, max_overflow=0)
    yield engine
    engine.dispose()


def _run_threads(target, count):
    errors: list[BaseException] = []

    def guarded(index):
        try:
            target(index)
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(i,), name=f"poster-{i}") for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(JOIN_TIMEOUT)
    assert not any(thread.is_alive() for thread in threads), "a posting thread hung"
    return errors


def test_eight_threads_with_one_hot_account(engine, database, db_session, book, hmac_key):
    with Session(engine) as session:
        post_transaction(session, book, "funding", "funding", [
            dr("cash:USD", FUNDING), dr("dispute_fees:USD", FUNDING),
            cr(HOT, FUNDING), cr("seller_payable:s0:USD", FUNDING)], hmac_key=hmac_key)
        session.commit()
    # Statistics, as a live ledger has them: plans cached on this new database's near-empty tables would
    # scan where they should look up, for as long as autovacuum has not analyzed them (time, not rules).
    with owner_connect(database) as conn:
        conn.execute("ANALYZE ledger_accounts, ledger_transactions, ledger_entries")
    engine.dispose()
    outcomes = [[0, 0] for _ in range(THREADS)]  # [posted, refused as an overdraft] per thread

    def poster(index):
        rng = random.Random(index)  # reproducible per thread
        commit = index % 2 == 0  # half the threads hand the COMMIT to the posting, half commit themselves
        with Session(engine) as session:  # each thread its own session and connection
            for n in range(TRANSFERS_PER_THREAD):
                other = rng.choice(COLD)
                amount = rng.randint(1, 5_000)
                source, target = (HOT, other) if rng.random() < 0.5 else (other, HOT)
                legs = [Leg(source, "debit", amount, "USD"), Leg(target, "credit", amount, "USD")]
                try:
                    post_transaction(session, book, f"t:{index}:{n}", "transfer", legs, hmac_key=hmac_key,
                                     commit=commit)
                except InsufficientBalance:
                    session.rollback()
                    outcomes[index][1] += 1
                    continue
                if not commit:
                    session.commit()
                outcomes[index][0] += 1

    errors = _run_threads(poster, THREADS)
    assert errors == []  # no deadlock, no serialization failure, no other database error reached a caller
    posted = sum(o[0] for o in outcomes)
    refused = sum(o[1] for o in outcomes)
    assert posted + refused == THREADS * TRANSFERS_PER_THREAD and posted > 0

    db_session.rollback()
    accounts = {a.code: a for a in db_session.scalars(book.select(LedgerAccount))}
    # No lost update: the hot account saw every posting, in a gapless version sequence.
    assert accounts[HOT].version == posted + 1
    assert db_session.scalar(select(func.count()).select_from(JournalTransaction)
                             .where(JournalTransaction.merchant_id == book.merchant_id)) == posted + 1
    # Every balance is the sum of its entries, and forbidden overdrafts never happened.
    for account in accounts.values():
        signed = case((Entry.direction == account.normal_balance, Entry.amount), else_=-Entry.amount)
        total = db_session.scalar(select(func.coalesce(func.sum(signed), 0)).where(Entry.account_id == account.id))
        assert account.balance == total, account.code
        assert account.allow_negative or account.balance >= 0, account.code
    # Totals conserved: debit balances equal credit balances.
    assert trial_balance(db_session, book).balanced
    report = run_verify(db_session, hmac_key, book)
    assert report.ok, report.first
    assert report.entries == 2 * posted + 4


def _waiting_backends(engine, count: int) -> None:
    """Block until `count` sessions of this database wait on a lock (the followers queue behind the leader)."""
    deadline = time.monotonic() + JOIN_TIMEOUT
    with engine.connect() as conn:
        while time.monotonic() < deadline:
            waiting = conn.execute(text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock'")).scalar()
            if waiting >= count:
                return
            conn.rollback()
            time.sleep(0.01)  # polling another process's state; not waiting for time to pass
    raise AssertionError("the followers never queued behind the leader")


@pytest.mark.parametrize("leader_commits", [True, False])
def test_concurrent_posts_of_one_key_leave_one_transaction(engine, db_session, book, hmac_key, leader_commits):
    """The leader claims the key and holds it; the others queue on the claim, before taking any account lock.

    When the leader commits, each follower gets the leader's transaction back; when it rolls back, one
    follower posts and the rest get that one. Nobody sees a database error.
    """
    followers = THREADS - 1
    results: list[str] = []
    leader_posted = threading.Event()
    release = threading.Event()

    def leader():
        with Session(engine) as session:
            transaction_id = post_transaction(session, book, "capture:race", "capture", capture_legs(),
                                              hmac_key=hmac_key).id
            leader_posted.set()
            release.wait(JOIN_TIMEOUT)
            if leader_commits:
                session.commit()
                results.append(transaction_id)
            else:
                session.rollback()

    def follower(index):
        leader_posted.wait(JOIN_TIMEOUT)
        with Session(engine) as session:
            commit = index % 2 == 1  # both ways of committing meet the same claim
            results.append(post_transaction(session, book, "capture:race", "capture", capture_legs(),
                                            hmac_key=hmac_key, commit=commit).id)
            session.commit()

    threads = [threading.Thread(target=leader)]
    errors: list[BaseException] = []
    runner = threading.Thread(target=lambda: errors.extend(_run_threads(follower, followers)))
    threads[0].start()
    runner.start()
    _waiting_backends(engine, followers)
    release.set()
    threads[0].join(JOIN_TIMEOUT)
    runner.join(JOIN_TIMEOUT)
    assert errors == []
    assert len(results) == followers + (1 if leader_commits else 0)
    assert len(set(results)) == 1
    db_session.rollback()
    assert db_session.scalar(select(func.count()).select_from(JournalTransaction)
                             .where(JournalTransaction.merchant_id == book.merchant_id)) == 1
    assert db_session.scalar(select(LedgerAccount.balance).where(
        LedgerAccount.merchant_id == book.merchant_id, LedgerAccount.code == HOT)) == 300


def test_concurrent_posts_of_one_key_with_other_legs_get_a_conflict(engine, db_session, book, hmac_key):
    leader_posted = threading.Event()
    release = threading.Event()
    conflicts: list[BaseException] = []

    def leader():
        with Session(engine) as session:
            post_transaction(session, book, "capture:race2", "capture", capture_legs(), hmac_key=hmac_key)
            leader_posted.set()
            release.wait(JOIN_TIMEOUT)
            session.commit()

    def follower(_index):
        leader_posted.wait(JOIN_TIMEOUT)
        with Session(engine) as session:
            try:
                post_transaction(session, book, "capture:race2", "capture", capture_legs(20000), hmac_key=hmac_key)
            except BusinessKeyConflict as exc:
                conflicts.append(exc)

    lead = threading.Thread(target=leader)
    errors: list[BaseException] = []
    runner = threading.Thread(target=lambda: errors.extend(_run_threads(follower, 3)))
    lead.start()
    runner.start()
    _waiting_backends(engine, 3)
    release.set()
    lead.join(JOIN_TIMEOUT)
    runner.join(JOIN_TIMEOUT)
    assert errors == [] and len(conflicts) == 3
