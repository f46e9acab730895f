"""SQLite storage of the sandbox PSP: schema, transactions, idempotency records.

One database file in ``--data DIR``. Every write runs in one ``BEGIN IMMEDIATE``
transaction taken under a process-wide lock, so two requests with the same
idempotency key are strictly serialised: the second one sees the first one's stored
response (no "check then insert" race). The sandbox is a single process, so the lock
is cheap and spares SQLite's busy-waiting; BEGIN IMMEDIATE still protects the file if a
second process (a debugging shell) writes to it.
"""
import contextlib
import hashlib
import json
import os
import sqlite3
import threading

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
-- What the vault keeps of a card: never the number or the CVC. ``outcome`` is the
-- test behaviour derived from the number at tokenization time.
CREATE TABLE IF NOT EXISTS tokens (
    id TEXT PRIMARY KEY,
    brand TEXT NOT NULL,
    last4 TEXT NOT NULL,
    exp_month INTEGER NOT NULL,
    exp_year INTEGER NOT NULL,
    fingerprint TEXT NOT NULL,
    outcome TEXT NOT NULL,
    risk_hint TEXT,
    bin TEXT,
    funding TEXT,
    country TEXT,
    created INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS authorizations (
    id TEXT PRIMARY KEY,
    acquirer TEXT NOT NULL,
    token TEXT NOT NULL REFERENCES tokens(id),
    outcome TEXT NOT NULL,
    status TEXT NOT NULL,
    amount INTEGER NOT NULL CHECK (amount > 0),
    currency TEXT NOT NULL,
    captured_amount INTEGER NOT NULL DEFAULT 0,
    refunded_amount INTEGER NOT NULL DEFAULT 0 CHECK (refunded_amount <= captured_amount),
    decline_code TEXT,
    action_url TEXT,
    return_url TEXT,
    reference TEXT NOT NULL,
    idempotency_key TEXT,
    card TEXT NOT NULL,
    created INTEGER NOT NULL,
    captured_at INTEGER,
    three_d_secure TEXT
);
CREATE INDEX IF NOT EXISTS authorizations_by_key ON authorizations (acquirer, idempotency_key);
CREATE INDEX IF NOT EXISTS authorizations_by_capture ON authorizations (captured_at);
CREATE TABLE IF NOT EXISTS refunds (
    id TEXT PRIMARY KEY,
    acquirer TEXT NOT NULL,
    authorization_id TEXT NOT NULL REFERENCES authorizations(id),
    amount INTEGER NOT NULL CHECK (amount > 0),
    currency TEXT NOT NULL,
    status TEXT NOT NULL,
    failure_code TEXT,
    created INTEGER NOT NULL,
    failed_at INTEGER  -- a refund that succeeded and failed later (POST /_admin/refunds/<id>/fail)
);
-- One dispute per authorization (sandbox_psp/disputes.py). ``withdrawn_at``: when a chargeback took the
-- amount and ``fee`` (NULL for an inquiry); ``reinstated_at``: when a won one gave the amount back.
CREATE TABLE IF NOT EXISTS disputes (
    id TEXT PRIMARY KEY,
    acquirer TEXT NOT NULL,
    authorization_id TEXT NOT NULL UNIQUE REFERENCES authorizations(id),
    amount INTEGER NOT NULL,
    currency TEXT NOT NULL,
    reason TEXT NOT NULL,
    status TEXT NOT NULL,
    created INTEGER NOT NULL,
    closed_at INTEGER,
    due_by INTEGER,
    evidence TEXT,
    evidence_submitted_at INTEGER,
    submission_count INTEGER NOT NULL DEFAULT 0,
    decision_at INTEGER,
    withdrawn_at INTEGER,
    reinstated_at INTEGER,
    fee INTEGER NOT NULL DEFAULT 0
);
-- The stored first response of every acquirer POST that carried an Idempotency-Key.
CREATE TABLE IF NOT EXISTS idempotency_keys (
    acquirer TEXT NOT NULL,
    key TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    status INTEGER NOT NULL,
    body TEXT NOT NULL,
    created INTEGER NOT NULL,
    PRIMARY KEY (acquirer, key)
);
-- Outbox of callbacks to Kassa, written in the transaction of the change they announce.
CREATE TABLE IF NOT EXISTS callbacks (
    id TEXT PRIMARY KEY,
    type TEXT NOT NULL,
    body TEXT NOT NULL,
    created INTEGER NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    last_error TEXT,
    delivered_at REAL
);
CREATE INDEX IF NOT EXISTS callbacks_due ON callbacks (state, next_attempt_at);
-- Outgoing bank transfers (Kassa's payouts, sandbox_psp/transfers.py): one per payout id.
CREATE TABLE IF NOT EXISTS bank_transfers (
    id TEXT PRIMARY KEY,
    amount INTEGER NOT NULL,
    currency TEXT NOT NULL,
    account TEXT NOT NULL,
    holder TEXT NOT NULL,
    created INTEGER NOT NULL,
    settles_at INTEGER NOT NULL,
    returned_at INTEGER,
    return_code TEXT,
    announced TEXT  -- the last status a callback announced (paid, failed); NULL: none yet
);
-- Issuers' early fraud warnings (sandbox_psp/fraud_warnings.py): raised by /_admin/early_fraud_warnings.
CREATE TABLE IF NOT EXISTS early_fraud_warnings (
    id TEXT PRIMARY KEY,
    acquirer TEXT NOT NULL,
    authorization_id TEXT NOT NULL REFERENCES authorizations(id),
    fraud_type TEXT NOT NULL,
    actionable INTEGER NOT NULL,
    created INTEGER NOT NULL
);
"""

# (table, column, type) added to SCHEMA since its first version, for data folders made before.
ADDED_COLUMNS = (
    ("refunds", "failed_at", "INTEGER"),
    ("disputes", "due_by", "INTEGER"),
    ("disputes", "evidence", "TEXT"),
    ("disputes", "evidence_submitted_at", "INTEGER"),
    ("disputes", "submission_count", "INTEGER NOT NULL DEFAULT 0"),
    ("disputes", "decision_at", "INTEGER"),
    ("disputes", "withdrawn_at", "INTEGER"),
    ("disputes", "reinstated_at", "INTEGER"),
    ("disputes", "fee", "INTEGER NOT NULL DEFAULT 0"),
    ("tokens", "bin", "TEXT"),
    ("tokens", "funding", "TEXT"),
    ("tokens", "country", "TEXT"),
    ("authorizations", "three_d_secure", "TEXT"),
    ("bank_transfers", "announced", "TEXT"),
)
# Run once when the column is added: what rows made before it mean in its terms. Disputes then were all
# chargebacks that took their amount and a 1500 fee when they opened, and gave the amount back when won.
BACKFILLS = {
    ("disputes", "withdrawn_at"): "UPDATE disputes SET withdrawn_at = created, fee = 1500, due_by = created + 604800, "
                                  "reinstated_at = CASE WHEN status = 'won' THEN closed_at END",
}

# Tables emptied by a reset; ``meta`` keeps the vault key so fingerprints stay stable.
DATA_TABLES = ("bank_transfers", "callbacks", "idempotency_keys", "early_fraud_warnings", "disputes", "refunds", "authorizations", "tokens")

# How long a connection waits for SQLite's file lock before failing. Writers in this
# process are already serialised by a lock, so this only matters if an outside process
# holds the file; 30 s is far beyond any sandbox transaction.
BUSY_TIMEOUT_SECONDS = 30


class Store:
    """The sandbox database: one file; writes on one long-lived connection, reads on short-lived ones."""

    def __init__(self, path: str):
        self.path = path
        self._write_lock = threading.Lock()
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        # Kept open for the life of the store, and the connection of every write (they take turns
        # under the lock): while one connection stays open, SQLite does not checkpoint and delete the
        # WAL file each time a short-lived connection closes, and a write opens no connection.
        self._keeper = self._connect()
        # WAL lets readers (GET requests, the callback thread) run while a write is open.
        self._keeper.execute("PRAGMA journal_mode=WAL")
        self._keeper.executescript(SCHEMA)
        self._add_missing_columns()

    def _add_missing_columns(self) -> None:
        """Columns added after a data folder was created (CREATE TABLE IF NOT EXISTS leaves its tables as they were)."""
        for table, column, kind in ADDED_COLUMNS:
            names = {row["name"] for row in self._keeper.execute(f"PRAGMA table_info({table})")}
            if column not in names:
                self._keeper.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
                if (table, column) in BACKFILLS:
                    self._keeper.execute(BACKFILLS[(table, column)])

    def close(self) -> None:
        """Close the long-lived connection (SQLite then checkpoints the WAL)."""
        self._keeper.close()

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, nothing implicit.
        conn = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None, check_same_thread=False
        )
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA foreign_keys=ON")
        # NORMAL is durable across application crashes in WAL mode; only a power cut can
        # lose the last commits, which is acceptable for a sandbox.
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    @contextlib.contextmanager
    def write(self):
        """A write transaction (BEGIN IMMEDIATE), committed on success, rolled back on error."""
        with self._write_lock:
            conn = self._keeper
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    @contextlib.contextmanager
    def read(self):
        """A connection for reads (each statement sees committed data)."""
        conn = self._connect()
        try:
            yield conn
        finally:
            conn.close()

    def wipe(self) -> None:
        """Delete all payment data (tests); the vault key survives."""
        with self.write() as conn:
            for table in DATA_TABLES:
                conn.execute(f"DELETE FROM {table}")
            conn.execute("DELETE FROM meta WHERE key != 'vault_key'")


def get_meta(conn: sqlite3.Connection, key: str) -> str | None:
    """A value from the meta table, or None."""
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return row["value"] if row else None


def set_meta(conn: sqlite3.Connection, key: str, value: str) -> None:
    """Insert or replace a value in the meta table."""
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?, ?) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (key, value),
    )


def request_hash(method: str, path: str, body: dict) -> str:
    """Fingerprint of a request for idempotency: same method, path and JSON body."""
    canonical = json.dumps([method, path, body], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def find_idempotent(conn: sqlite3.Connection, acquirer: str, key: str) -> sqlite3.Row | None:
    """The stored response for an idempotency key of an acquirer, if any."""
    return conn.execute(
        "SELECT request_hash, status, body FROM idempotency_keys WHERE acquirer = ? AND key = ?",
        (acquirer, key),
    ).fetchone()


def save_idempotent(
    conn: sqlite3.Connection, acquirer: str, key: str, req_hash: str, status: int, body: str, now: int
) -> None:
    """Store the response of the first request made with an idempotency key."""
    conn.execute(
        "INSERT INTO idempotency_keys (acquirer, key, request_hash, status, body, created) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (acquirer, key, req_hash, status, body, now),
    )
