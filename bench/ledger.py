"""Ledger benchmark (issue 3): transfers per second through post_transaction() against a plain-SQL baseline.

    source an environment like the test run's (DATABASE_URL, DATABASE_OWNER_URL, DATABASE_ADMIN_URL,
    KASSA_TEMPLATE_DB = a database migrated to head), then:

    .venv/bin/python bench/ledger.py [--threads 8] [--transfers 500] [--accounts 1000] [--rounds 3] [--write]

(`python3 kassa.py servers-only --ephemeral` prints such an environment for embedded servers; add
KASSA_TEMPLATE_DB after migrating a database there with `flask --app wsgi db upgrade heads`.)

One run, one PostgreSQL server, one Python process, a scratch database cloned from the template (dropped
at the end). Every figure is 8 (``--threads``) posting threads, each with its own connection, one transfer
per database transaction, committed at once:

* ``post()`` cold: transfers between two of 1,000 accounts picked at random; the caller commits.
* ``post()`` hot: every transfer also touches one hot account (the platform revenue account).
* ``post(commit)`` cold / hot: the same with ``commit=True``: the COMMIT goes out with the call, so the
  server commits as soon as the posting function returns (the design answer for hot accounts).
* baseline cold / hot: the same work as plain SQL statements through the same driver (psycopg) and
  threads: claim the key (INSERT ... ON CONFLICT DO NOTHING), lock the accounts with their chain heads
  (SELECT ... ORDER BY id FOR UPDATE), compute balances, versions and HMACs in Python, UPDATE the
  accounts, INSERT the entries, COMMIT.

Each scenario has a book (merchant) of its own with its accounts opened beforehand; the tables are then
ANALYZEd, and the scenarios run in turn, ``--rounds`` times, each on fresh connections; the best round of
each is reported (the least disturbed by the rest of the machine), with every round's figure alongside.
Client and server CPU per transfer are measured too (the server's from /proc, for a local server).
At the end ``verify`` checks every chain the run wrote, the baseline's included. ``--write`` replaces the
"Ledger" section of bench/RESULTS.md.
"""
from __future__ import annotations

import argparse
import os
import platform
import random
import sys
import threading
import time
import uuid
from datetime import date, datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from sqlalchemy import create_engine  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

import app.models  # noqa: E402,F401  (every mapper, so that relationships resolve)
from app.ids import new_id  # noqa: E402
from app.ledger import chain  # noqa: E402
from app.ledger.service import Leg, post_transaction  # noqa: E402
from app.ledger.verify import verify  # noqa: E402
from app.scoping import Scope  # noqa: E402

RESULTS = ROOT / "bench" / "RESULTS.md"
SECTION_START = "<!-- ledger:start -->"
SECTION_END = "<!-- ledger:end -->"
HOT = "merchant_revenue:USD"
SCENARIOS = (  # name, hot, mode
    ("post() cold", False, "post"), ("post(commit) cold", False, "post_commit"), ("baseline cold", False, "baseline"),
    ("post() hot", True, "post"), ("post(commit) hot", True, "post_commit"), ("baseline hot", True, "baseline"),
)
# Setup opens accounts fifty at a time (the service takes at most 100 legs per posting).
OPEN_BATCH = 50
# Bounds a hung scenario (a lock never released) so the benchmark fails instead of waiting forever.
JOIN_TIMEOUT = 900


def libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def sqlalchemy_url(url: str) -> str:
    return make_url(url).set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


def with_database(url: str, name: str) -> str:
    return make_url(url).set(database=name).render_as_string(hide_password=False)


def env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        sys.exit(f"bench/ledger.py: {name} is not set (see the module docstring)")
    return value


def backend_cpu(pid: int) -> float | None:
    """CPU seconds a local PostgreSQL backend has used (None when it is not on this machine or not readable)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def cold_code(n: int) -> str:
    return f"seller_payable:s{n:04d}:USD"


class Scenario:
    """One book and a way to post a transfer into it (mode: "post", "post_commit" or "baseline")."""

    def __init__(self, name: str, hot: bool, mode: str, merchant_id: str):
        self.name, self.hot, self.mode = name, hot, mode
        self.scope = Scope(merchant_id, False)
        self.rounds: list[float] = []
        self.cpu_us: list[float] = []
        self.server_cpu_us: list[float] = []

    def legs(self, rng: random.Random, accounts: int, amount: int) -> list[Leg]:
        source = cold_code(rng.randrange(accounts))
        if self.hot:
            # The hot account is credited (revenue only grows), so it never hits its no-overdraft rule.
            return [Leg(source, "debit", amount, "USD"), Leg(HOT, "credit", amount, "USD")]
        target = source
        while target == source:
            target = cold_code(rng.randrange(accounts))
        return [Leg(source, "debit", amount, "USD"), Leg(target, "credit", amount, "USD")]


class PlainSqlPoster:
    """The baseline: the same rows as ledger_post, as separate statements from Python."""

    def __init__(self, conn: psycopg.Connection, hmac_key: bytes):
        self.conn, self.key = conn, hmac_key

    def post(self, scope: Scope, business_key: str, legs: list[Leg]) -> None:
        conn = self.conn
        txn_id = new_id("ltxn")
        claimed_at = datetime.now(timezone.utc)
        seal = chain.transaction_hmac(
            self.key, transaction_id=txn_id, merchant_id=scope.merchant_id, livemode=scope.livemode,
            business_key=business_key, kind="transfer", description="", reference=None, posted_at=claimed_at)
        claimed = conn.execute(
            "INSERT INTO ledger_transactions (id, merchant_id, livemode, business_key, kind, posted_at, hmac) "
            "VALUES (%s, %s, %s, %s, 'transfer', %s, %s) "
            "ON CONFLICT (merchant_id, livemode, business_key) DO NOTHING RETURNING id",
            (txn_id, scope.merchant_id, scope.livemode, business_key, claimed_at, seal)).fetchone()
        if claimed is None:
            conn.rollback()
            return
        codes = sorted({leg.account_code for leg in legs})
        rows = conn.execute(
            "SELECT id, code, balance, version, normal_balance, allow_negative, last_hmac FROM ledger_accounts "
            "WHERE merchant_id = %s AND livemode = %s AND code = ANY(%s) ORDER BY id FOR UPDATE",
            (scope.merchant_id, scope.livemode, codes)).fetchall()
        state = {code: [account_id, balance, version, normal, allow, bytes(head) if head is not None else None]
                 for account_id, code, balance, version, normal, allow, head in rows}
        posted_at = datetime.now(timezone.utc)  # taken under the locks, like ledger_post's clock_timestamp()
        entries = []
        for leg in legs:
            s = state[leg.account_code]
            s[1] += leg.amount if leg.direction == s[3] else -leg.amount
            s[2] += 1
            entry_id = new_id("lent")
            mac = chain.entry_hmac(
                self.key, entry_id=entry_id, transaction_id=txn_id, transaction_hmac=seal, business_key=business_key,
                merchant_id=scope.merchant_id, livemode=scope.livemode, account_id=s[0], direction=leg.direction,
                amount=leg.amount, currency=leg.currency, balance_after=s[1], version_after=s[2],
                posted_at=posted_at, previous_hmac=s[5])
            s[5] = mac
            entries.append((entry_id, txn_id, s[0], scope.merchant_id, scope.livemode, leg.direction, leg.amount,
                            leg.currency, s[1], s[2], posted_at, mac))
        if any(not s[4] and s[1] < 0 for s in state.values()):
            conn.rollback()
            return
        values = list(state.values())
        conn.execute(
            "UPDATE ledger_accounts x SET balance = u.balance, version = u.version, last_hmac = u.head "
            "FROM unnest(%s::text[], %s::bigint[], %s::bigint[], %s::bytea[]) AS u(id, balance, version, head) "
            "WHERE x.id = u.id",
            ([s[0] for s in values], [s[1] for s in values], [s[2] for s in values], [s[5] for s in values]))
        placeholders = ", ".join(["(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"] * len(entries))
        conn.execute(
            "INSERT INTO ledger_entries (id, transaction_id, account_id, merchant_id, livemode, direction, amount, "
            f"currency, balance_after, version_after, posted_at, hmac) VALUES {placeholders}",
            [value for entry in entries for value in entry])
        conn.commit()


class Bench:
    def __init__(self, args):
        self.args = args
        self.admin_url = libpq(env("DATABASE_ADMIN_URL"))
        self.template = env("KASSA_TEMPLATE_DB")
        self.dbname = f"bench_ledger_{uuid.uuid4().hex[:8]}"
        self.app_url = libpq(with_database(env("DATABASE_URL"), self.dbname))
        self.hmac_key = (os.environ.get("LEDGER_HMAC_KEY") or "bench-ledger-key").encode()
        self.server_version = ""
        self.server_label = ""

    # -- set-up -------------------------------------------------------------------------------------
    def create_database(self) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.dbname}" TEMPLATE "{self.template}" OWNER kassa_owner')
            self.server_version = conn.execute("SELECT version()").fetchone()[0]
            settings = dict(conn.execute(
                "SELECT name, setting FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit')").fetchall())
        info = make_url(self.admin_url)
        self.server_label = (f"{info.host}:{info.port or 5432}, fsync={settings.get('fsync')}, "
                             f"synchronous_commit={settings.get('synchronous_commit')}")

    def analyze(self) -> None:
        """Statistics, as a live ledger has them (autovacuum would gather them within a minute or so).

        Without them, plans made on the near-empty tables of a new database scan where they should look up.
        """
        with psycopg.connect(with_database(self.admin_url, self.dbname), autocommit=True) as conn:
            conn.execute("ANALYZE ledger_accounts, ledger_transactions, ledger_entries, merchants")

    def drop_database(self) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.dbname}" WITH (FORCE)')

    def open_books(self, engine) -> list[Scenario]:
        """A book per scenario, each with its cold accounts and the hot account opened (and committed)."""
        scenarios = []
        with Session(engine) as session, psycopg.connect(self.app_url) as conn:
            for name, hot, mode in SCENARIOS:
                merchant_id = new_id("mer")
                conn.execute("INSERT INTO merchants (id, name) VALUES (%s, %s)", (merchant_id, f"bench {name}"))
                conn.commit()
                scenario = Scenario(name, hot, mode, merchant_id)
                accounts = self.args.accounts
                opening = [[Leg(HOT, "credit", 1, "USD"), Leg("psp_receivable:bench:USD", "debit", 1, "USD")]]
                for start in range(0, accounts, OPEN_BATCH):
                    batch = range(start, min(start + OPEN_BATCH, accounts))
                    opening.append([Leg(cold_code(n), "credit", 1, "USD") for n in batch]
                                   + [Leg("psp_receivable:bench:USD", "debit", len(batch), "USD")])
                for n, legs in enumerate(opening):
                    post_transaction(session, scenario.scope, f"open:{n}", "setup", legs, hmac_key=self.hmac_key)
                    session.commit()
                scenarios.append(scenario)
        return scenarios

    # -- measuring ----------------------------------------------------------------------------------
    def run_scenario(self, scenario: Scenario, engine, round_no: int) -> float:
        threads, per_thread = self.args.threads, self.args.transfers
        start_gate = threading.Barrier(threads + 1)
        errors: list[BaseException] = []

        server_cpu: list[float | None] = []

        def worker(index: int) -> None:
            rng = random.Random(f"{scenario.name}:{round_no}:{index}")
            try:
                if scenario.mode == "baseline":
                    with psycopg.connect(self.app_url) as conn:
                        pid = conn.info.backend_pid
                        poster = PlainSqlPoster(conn, self.hmac_key)
                        start_gate.wait()
                        before = backend_cpu(pid)
                        for n in range(per_thread):
                            poster.post(scenario.scope, f"r{round_no}:{index}:{n}",
                                        scenario.legs(rng, self.args.accounts, rng.randint(1, 10_000)))
                        after = backend_cpu(pid)
                else:
                    with Session(engine) as session:
                        # Check a connection out before the clock starts (the same one all along: no pool churn).
                        pid = session.connection().connection.driver_connection.info.backend_pid
                        session.rollback()
                        start_gate.wait()
                        before = backend_cpu(pid)
                        commit = scenario.mode == "post_commit"
                        for n in range(per_thread):
                            post_transaction(session, scenario.scope, f"r{round_no}:{index}:{n}", "transfer",
                                             scenario.legs(rng, self.args.accounts, rng.randint(1, 10_000)),
                                             hmac_key=self.hmac_key, commit=commit)
                            if not commit:
                                session.commit()
                        after = backend_cpu(pid)
                server_cpu.append(None if before is None or after is None else after - before)
            except BaseException as exc:  # noqa: BLE001 - reported after the run
                errors.append(exc)
                start_gate.abort()  # release the others (and the clock) instead of leaving them waiting

        workers = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(threads)]
        for w in workers:
            w.start()
        start_gate.wait()
        started, cpu_started = time.perf_counter(), time.process_time()
        for w in workers:
            w.join(JOIN_TIMEOUT)
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        if errors or any(w.is_alive() for w in workers):
            raise SystemExit(f"{scenario.name}: {errors[0] if errors else 'a thread hung'}")
        # This process's CPU per transfer: its threads share one GIL, so this bounds what they can drive.
        scenario.cpu_us.append(cpu / (threads * per_thread) * 1e6)
        if server_cpu and None not in server_cpu:
            scenario.server_cpu_us.append(sum(server_cpu) / (threads * per_thread) * 1e6)
        return threads * per_thread / elapsed

    def run(self) -> dict:
        self.create_database()
        try:
            engine = create_engine(sqlalchemy_url(self.app_url), pool_size=self.args.threads + 2, max_overflow=0)
            scenarios = self.open_books(engine)
            self.analyze()
            for round_no in range(self.args.rounds):
                for scenario in scenarios:
                    # Fresh connections for every scenario, post() and baseline alike: no plan cached
                    # by an earlier scenario (or by the set-up, on near-empty tables) carries over.
                    engine.dispose()
                    tps = self.run_scenario(scenario, engine, round_no)
                    scenario.rounds.append(tps)
                    server = f", server CPU {scenario.server_cpu_us[-1]:5.0f}" if scenario.server_cpu_us else ""
                    print(f"round {round_no + 1}: {scenario.name:<18} {tps:8.0f} transfers/s, "
                          f"client CPU {scenario.cpu_us[-1]:5.0f}{server} us/transfer", flush=True)
            with Session(engine) as session:
                report = verify(session, self.hmac_key)
            engine.dispose()
            if not report.ok:
                raise SystemExit(f"verify failed after the benchmark: {report.first}")
            return ({s.name: s.rounds for s in scenarios} | {"_verify_entries": report.entries}
                    | {"_cpu": {s.name: min(s.cpu_us) for s in scenarios}}
                    | {"_server_cpu": {s.name: min(s.server_cpu_us) if s.server_cpu_us else None
                                       for s in scenarios}})
        finally:
            if not self.args.keep:
                self.drop_database()


def summarize(bench: Bench, figures: dict, args) -> str:
    best = {name: max(rounds) for name, rounds in figures.items() if not name.startswith("_")}
    rounds = {name: ", ".join(f"{v:.0f}" for v in values) for name, values in figures.items()
              if not name.startswith("_")}
    lines = [
        f"PostgreSQL: {bench.server_version}",
        f"server: {bench.server_label}",
        f"machine: {os.cpu_count()} cores ({platform.machine()}), Python {platform.python_version()}, "
        f"{args.threads} posting threads, {args.transfers} transfers per thread per round, "
        f"{args.accounts} cold accounts, best of {args.rounds} rounds",
        "",
        "| scenario | transfers/s (best) | every round | client CPU us/transfer | server CPU us/transfer |",
        "|---|---:|---|---:|---:|",
    ]
    for name, _hot, _mode in SCENARIOS:
        server = figures["_server_cpu"][name]
        lines.append(f"| {name} | {best[name]:.0f} | {rounds[name]} | {figures['_cpu'][name]:.0f} | "
                     f"{'n/a' if server is None else f'{server:.0f}'} |")

    def ratio(a: str, b: str) -> str:
        return f"{best[a] / best[b]:.2f}"

    lines += [
        "",
        "| ratio | value | target |",
        "|---|---:|---:|",
        f"| post() / baseline, cold | {ratio('post() cold', 'baseline cold')} | >= 0.5 |",
        f"| post() / baseline, hot | {ratio('post() hot', 'baseline hot')} | >= 0.5 |",
        f"| post(commit) / baseline, cold | {ratio('post(commit) cold', 'baseline cold')} | >= 0.5 |",
        f"| post(commit) / baseline, hot | {ratio('post(commit) hot', 'baseline hot')} | >= 0.5 |",
        f"| hot / cold, post() | {ratio('post() hot', 'post() cold')} | >= 0.5 |",
        f"| hot / cold, post(commit) | {ratio('post(commit) hot', 'post(commit) cold')} | >= 0.5 |",
        f"| hot / cold, baseline | {ratio('baseline hot', 'baseline cold')} | (for comparison) |",
        "",
        f"verify after the run: OK ({figures['_verify_entries']} entries)",
    ]
    return "\n".join(lines)


def write_results(text: str) -> None:
    """Replace (or append) the Ledger section of bench/RESULTS.md, between its markers."""
    measured = f"_Measured {date.today().isoformat()} with `bench/ledger.py`._"
    section = f"{SECTION_START}\n## Ledger\n\n{measured}\n\n```\n{text}\n```\n{SECTION_END}"
    current = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    if SECTION_START in current and SECTION_END in current:
        head, rest = current.split(SECTION_START, 1)
        _, tail = rest.split(SECTION_END, 1)
        RESULTS.write_text(head + section + tail)
    else:
        RESULTS.write_text(current.rstrip("\n") + "\n\n" + section + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--transfers", type=int, default=500, help="per thread and round")
    parser.add_argument("--accounts", type=int, default=1000, help="cold accounts per book")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    parser.add_argument("--write", action="store_true", help="update the Ledger section of bench/RESULTS.md")
    args = parser.parse_args()
    bench = Bench(args)
    figures = bench.run()
    text = summarize(bench, figures, args)
    print("\n" + text)
    if args.write:
        write_results(text)
        print(f"\nwritten to {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
