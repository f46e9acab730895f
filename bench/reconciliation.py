"""Reconciliation benchmark (issue 21): import, match and post a settlement file of N lines against N booked
captures and refunds, beside a plain ``COPY ... FROM STDIN (FORMAT csv)`` of the same file.

    source an environment like the test run's (DATABASE_URL, DATABASE_OWNER_URL, DATABASE_ADMIN_URL,
    KASSA_TEMPLATE_DB = a database migrated to head, LEDGER_HMAC_KEY), then:

    .venv/bin/python bench/reconciliation.py [--lines 1000000] [--merchants 100] [--write]

(`python3 kassa.py servers-only --ephemeral` prints such an environment; KASSA_TEMPLATE_DB is then a database
migrated there with `flask --app wsgi db upgrade`.)

Seeding: N payments and refunds of ``--merchants`` books (90 % captures, 10 % refunds) with the ledger
transactions that booked them (one ``capture:``/``refund:`` key each), written by SQL as the superuser with
triggers off (``session_replication_role = replica``: seeding through the ledger would take minutes per run),
once, into a template database named after N; each run clones it. The seeded transactions carry no entries:
the benchmark measures matching and posting, which need only the business keys; never verify such a database.

Measured, in one run: (1) the importer, a child process (its own peak RSS, from getrusage), from the start of
``reconcile_settlement`` until the commit: store the file, COPY its raw bytes into a temporary staging table, check
and match the lines in SQL, post per batch and book, write the lines once with their postings, check for breaks; (2) ``COPY reconciliation_lines_baseline FROM STDIN (FORMAT csv)`` of the same bytes into a
logged table with no indexes. Target: at least 0.25 x the COPY's lines/s, peak RSS under 300 MB.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
import uuid
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

RESULTS = ROOT / "bench" / "RESULTS.md"
SECTION_START = "<!-- reconciliation:start -->"
SECTION_END = "<!-- reconciliation:end -->"
DAY = date(2030, 6, 1)
PSP = "sandbox"


def libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def with_database(url: str, name: str) -> str:
    return make_url(url).set(database=name).render_as_string(hide_password=False)


def env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        sys.exit(f"{name} is not set (see the docstring)")
    return value


def fee(gross: int) -> int:
    return (gross * 29 + 500) // 1000 + 30


def amount(i: int) -> int:
    return 1000 + (i * 7919) % 90000


def seed(admin_url: str, template: str, name: str, lines: int, merchants: int) -> None:
    """The template database of N lines' worth of booked payments and refunds (once)."""
    with psycopg.connect(libpq(admin_url), autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            return
        # Seeded under another name and renamed when complete: a seeding that failed is never taken as done.
        conn.execute(f'DROP DATABASE IF EXISTS "{name}_seeding" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}_seeding" TEMPLATE "{template}" OWNER kassa_owner')
    final, name = name, f"{name}_seeding"
    captures, refunds = lines - lines // 10, lines // 10
    started = time.monotonic()
    with psycopg.connect(libpq(with_database(admin_url, name))) as conn:
        conn.execute("SET session_replication_role = replica")  # seeding only: no triggers (see the docstring)
        conn.execute("INSERT INTO merchants (id, name) SELECT 'mer_bench_' || m, 'Bench ' || m "
                     "FROM generate_series(1, %s) m", (merchants,))
        conn.execute(f"""
            INSERT INTO payments (id, merchant_id, livemode, amount, currency, status, capture_method,
                                  amount_received, connector, psp_reference, capture_count, captured_at)
            SELECT 'pay_b' || i, 'mer_bench_' || (1 + i % {merchants}), false, 1000 + (i::bigint * 7919) % 90000, 'USD',
                   'succeeded', 'automatic', 1000 + (i::bigint * 7919) % 90000, '{PSP}', 'auth_b' || i, 1,
                   TIMESTAMPTZ '{DAY}T10:00:00Z'
              FROM generate_series(1, {captures}) i""")
        conn.execute(f"""
            INSERT INTO refunds (id, merchant_id, livemode, payment_id, amount, currency, status, allocations,
                                 connector, psp_reference, idempotency_key)
            SELECT 're_b' || i, 'mer_bench_' || (1 + i % {merchants}), false, 'pay_b' || i, 500, 'USD', 'succeeded',
                   '[]'::jsonb, '{PSP}', 'rf_b' || i, 'bench_' || i
              FROM generate_series(1, {refunds}) i""")
        conn.execute(f"""
            INSERT INTO ledger_transactions (id, merchant_id, livemode, business_key, kind, reference)
            SELECT 'ltxn_bc' || i, 'mer_bench_' || (1 + i % {merchants}), false, 'capture:pay_b' || i, 'capture', NULL
              FROM generate_series(1, {captures}) i
            UNION ALL
            SELECT 'ltxn_br' || i, 'mer_bench_' || (1 + i % {merchants}), false, 'refund:re_b' || i, 'refund', NULL
              FROM generate_series(1, {refunds}) i""")
        conn.commit()
    with psycopg.connect(libpq(with_database(admin_url, name)), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    with psycopg.connect(libpq(admin_url), autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{name}" RENAME TO "{final}"')
    print(f"seeded {name}: {captures} captures, {refunds} refunds in {time.monotonic() - started:.1f} s", flush=True)


def report(path: Path, lines: int) -> None:
    """The settlement CSV of every seeded capture and refund, one batch."""
    captures, refunds = lines - lines // 10, lines // 10
    batch = f"po_{PSP}_{DAY:%Y%m%d}_USD"
    with path.open("w") as out:
        out.write("reference,type,gross,fee,net,currency,batch_id\n")
        for i in range(1, captures + 1):
            gross = amount(i)
            out.write(f"auth_b{i},charge,{gross},{fee(gross)},{gross - fee(gross)},USD,{batch}\n")
        for i in range(1, refunds + 1):
            out.write(f"rf_b{i},refund,-500,0,-500,USD,{batch}\n")


def importer(db_url: str, path: str) -> None:
    """Child process: reconcile the file, print seconds and peak RSS as JSON."""
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    import app.models  # noqa: F401
    from app.reconciliation.service import reconcile_settlement

    engine = create_engine(db_url.replace("postgresql://", "postgresql+psycopg://", 1))
    key = os.environ.get("LEDGER_HMAC_KEY", "bench").encode()
    with Session(engine) as session:
        session.execute(__import__("sqlalchemy").text("SELECT 1"))
        started = time.monotonic()
        content = Path(path).read_bytes()
        result = reconcile_settlement(session, psp=PSP, livemode=False, report_date=DAY, content=content,
                                      hmac_key=key)
        session.commit()
        seconds = time.monotonic() - started
    print(json.dumps({"seconds": seconds, "statuses": result.statuses, "transactions": len(result.transactions),
                      "breaks": len(result.breaks_opened),
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def baseline(db_url: str, path: Path) -> float:
    with psycopg.connect(libpq(db_url)) as conn:
        conn.execute("CREATE TABLE reconciliation_lines_baseline (reference text, type text, gross bigint, "
                     "fee bigint, net bigint, currency text, batch_id text)")
        conn.commit()
        started = time.monotonic()
        with conn.cursor() as cursor, cursor.copy("COPY reconciliation_lines_baseline FROM STDIN "
                                                  "(FORMAT csv, HEADER true)") as copy, path.open("rb") as data:
            while chunk := data.read(1 << 20):
                copy.write(chunk)
        conn.commit()
        return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--merchants", type=int, default=100)
    parser.add_argument("--write", action="store_true")
    parser.add_argument("--importer", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.importer:
        importer(*args.importer)
        return
    admin_url = env("DATABASE_ADMIN_URL")
    template = f"bench_recon_{args.lines}_{args.merchants}"
    seed(admin_url, env("KASSA_TEMPLATE_DB"), template, args.lines, args.merchants)
    run = f"bench_recon_run_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(libpq(admin_url), autocommit=True) as conn:
        # FILE_COPY: the clone copied as files between two checkpoints, not written through the WAL (PostgreSQL 15+'s
        # default, WAL_LOG, wrote the whole template into the WAL right before the import, whose own writes then
        # met the checkpoint that volume requested: one of the causes of the runs' spread).
        conn.execute(f'CREATE DATABASE "{run}" TEMPLATE "{template}" OWNER kassa_owner STRATEGY FILE_COPY')
    path = Path(f"/tmp/{run}.csv")
    try:
        report(path, args.lines)
        app_url = with_database(env("DATABASE_URL"), run)
        load = os.getloadavg()
        child = subprocess.run([sys.executable, __file__, "--importer", libpq(app_url), str(path)],
                               capture_output=True, text=True, check=True)
        figures = json.loads(child.stdout.strip().splitlines()[-1])
        copy_seconds = baseline(with_database(env("DATABASE_OWNER_URL"), run), path)
    finally:
        path.unlink(missing_ok=True)
        with psycopg.connect(libpq(admin_url), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{run}" WITH (FORCE)')
    rate, copy_rate = args.lines / figures["seconds"], args.lines / copy_seconds
    figures.update(lines=args.lines, merchants=args.merchants, lines_per_second=round(rate),
                   copy_seconds=round(copy_seconds, 2), copy_lines_per_second=round(copy_rate),
                   ratio=round(rate / copy_rate, 3), load_before=[round(x, 1) for x in load],
                   machine=f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
                   when=date.today().isoformat())
    text = (f"## Reconciliation\n\n`bench/reconciliation.py --lines {args.lines}` ({figures['when']}, {figures['machine']}, "
            f"load average {figures['load_before'][0]} before): a settlement file of {args.lines:,} lines (90 % charges, "
            f"10 % refunds, {args.merchants} books, one batch) against as many booked captures and refunds.\n\n"
            "| figure | value | target |\n|---|---|---|\n"
            f"| import + match + post, start to commit | {figures['seconds']:.1f} s, {rate:,.0f} lines/s | |\n"
            f"| plain `COPY ... (FORMAT csv)` of the same file, logged table, no index | {copy_seconds:.1f} s, "
            f"{copy_rate:,.0f} lines/s | |\n"
            f"| ratio | {rate / copy_rate:.3f} | ≥ 0.25 |\n"
            f"| importer's peak RSS | {figures['peak_rss_mb']:.0f} MB | < 300 MB |\n\n"
            f"Raw figures: `{json.dumps(figures)}`\n")
    print(text)
    if args.write:
        current = RESULTS.read_text()
        block = f"{SECTION_START}\n{text}{SECTION_END}"
        if SECTION_START in current:
            head, rest = current.split(SECTION_START, 1)
            current = head + block + rest.split(SECTION_END, 1)[1]
        else:
            current = current.rstrip("\n") + "\n\n" + block + "\n"
        RESULTS.write_text(current)


if __name__ == "__main__":
    main()
