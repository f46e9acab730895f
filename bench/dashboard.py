"""Dashboard benchmark: server time of the payments list, its filters, a payment's page and Home at scale.

    .venv/bin/python bench/dashboard.py [--big 1000000] [--others 1000000] [--small 10000] [--runs 20] [--write]

Against a scratch database on a PostgreSQL server given by DATABASE_ADMIN_URL (a superuser URL; the
machine's system PostgreSQL at postgresql://postgres@127.0.0.1:5432/postgres by default), where the
roles kassa_owner / kassa_app exist (the launcher's provisioning creates them; passwords = role names
unless KASSA_OWNER_PASSWORD / KASSA_APP_PASSWORD say otherwise). The database is created, migrated to
head with `flask db upgrade heads`, seeded with COPY, and dropped at the end (--keep keeps it).

What it does (issue 8):

1. Seeds 100 merchants: ``--others`` payments spread over 99 of them and, for the big merchant, its
   ``--small`` most recent payments, all over the last year; each payment with its order, its
   authorization attempt and an event, refunds for the refunded ones; rollups rebuilt from the tables.
2. Measures, for the big merchant, the server time (in-process WSGI: routing, login check, queries,
   template) of each page, median of ``--runs`` runs after one warm-up run.
3. Seeds the big merchant's older history, up to ``--big`` payments, and measures the same again:
   cost must not grow with history.
4. Prints ``EXPLAIN (ANALYZE, BUFFERS)`` of the costliest statement of each page at full size.

``--write`` replaces the "Dashboard" section of bench/RESULTS.md.
"""
from __future__ import annotations

import argparse
import os
import platform
import random
import re
import statistics
import subprocess
import sys
import time
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from sqlalchemy import event  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402
from ulid import ULID  # noqa: E402

RESULTS = ROOT / "bench" / "RESULTS.md"
SECTION_START = "<!-- dashboard:start -->"
SECTION_END = "<!-- dashboard:end -->"
DB_NAME = "kassa_dashboard_bench"
PAGE = 25
DEEP_PAGE = 1000
TARGET_MS = 100.0
NOW = datetime.now(timezone.utc).replace(microsecond=0)
YEAR = timedelta(days=365)
CURRENCIES = ["USD"] * 16 + ["EUR"] * 3 + ["GBP"]
BRANDS = ["visa"] * 6 + ["mastercard"] * 3 + ["amex"]
# status, share in 100: most payments succeed; a few fail, wait for capture, are canceled or refunded.
STATUSES = (["succeeded"] * 85 + ["requires_payment_method"] * 5 + ["requires_capture"] * 3 + ["canceled"] * 4
            + ["refunded"] * 3)
EMAIL_POOL_BIG = 200_000
EMAIL_POOL_OTHER = 5_000


def libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def with_database(url: str, name: str, user: str | None = None, password: str | None = None) -> str:
    parsed = make_url(url).set(database=name)
    if user:
        parsed = parsed.set(username=user, password=password)
    return parsed.render_as_string(hide_password=False)


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


class Seeder:
    """COPY-based generator of merchants, payments and what hangs off them."""

    def __init__(self, owner_url: str, seed: int = 8):
        self.conn = psycopg.connect(libpq(owner_url), autocommit=True)
        self.random = random.Random(seed)
        self.sellers: dict[str, str] = {}

    def merchants(self, count: int) -> list[str]:
        ids = [f"mer_{ULID()}" for _ in range(count)]
        with self.conn.cursor() as cur:
            with cur.copy("COPY merchants (id, name, timezone) FROM STDIN") as copy:
                for i, merchant_id in enumerate(ids):
                    copy.write_row((merchant_id, f"Bench merchant {i}", "Europe/Paris" if i == 0 else "UTC"))
            with cur.copy("COPY sellers (id, merchant_id, livemode, name, is_default) FROM STDIN") as copy:
                for merchant_id in ids:
                    self.sellers[merchant_id] = f"sel_{ULID()}"
                    copy.write_row((self.sellers[merchant_id], merchant_id, False, "Default seller", True))
        return ids

    BATCH = 50_000
    COPY = {
        "payments": "COPY payments (id, merchant_id, livemode, amount, currency, status, capture_method,"
                    " amount_capturable, amount_received, amount_refunded, customer_email, metadata,"
                    " payment_method_token, payment_method_vault, card_brand, card_last4, card_exp_month,"
                    " card_exp_year, card_fingerprint, connector, psp_reference, last_error, capture_count,"
                    " authorized_at, captured_at, canceled_at, created_at, updated_at) FROM STDIN",
        "orders": "COPY payment_orders (id, merchant_id, livemode, payment_id, seller_id, position, amount, fee,"
                  " amount_captured, fee_captured, amount_refunded, fee_refunded) FROM STDIN",
        "attempts": "COPY payment_attempts (id, merchant_id, livemode, payment_id, operation, status, amount,"
                    " currency, vault, connector, psp_reference, decline_code, idempotency_key, tries, started_at,"
                    " finished_at, latency_ms, created_at, updated_at) FROM STDIN",
        "events": "COPY events (id, merchant_id, livemode, type, object_type, object_id, data, created_at)"
                  " FROM STDIN",
        "refunds": "COPY refunds (id, merchant_id, livemode, payment_id, amount, currency, status, reason,"
                   " allocations, idempotency_key, tries, created_at, updated_at, finished_at) FROM STDIN",
    }

    def payments(self, plan: list[tuple[str, int, datetime, datetime, int]]) -> None:
        """plan: (merchant_id, count, oldest, newest, email pool size); payments evenly over [oldest, newest)."""
        r = self.random
        started = time.perf_counter()
        total = 0
        rows: dict[str, list] = {name: [] for name in self.COPY}
        for merchant_id, count, oldest, newest, pool in plan:
            span = (newest - oldest).total_seconds()
            for i in range(count):
                created = oldest + timedelta(seconds=span * (i + r.random()) / count)
                self._payment(rows, merchant_id, created, pool)
                total += 1
                if len(rows["payments"]) >= self.BATCH:
                    self._flush(rows)
        self._flush(rows)
        say(f"  {total:,} payments (+ orders, attempts, events, refunds) in {time.perf_counter() - started:.0f} s")

    def _flush(self, rows: dict[str, list]) -> None:
        """One COPY per table, parents first (each COPY commits: the children's foreign keys see the parents)."""
        with self.conn.cursor() as cur:
            for name, statement in self.COPY.items():
                if rows[name]:
                    with cur.copy(statement) as copy:
                        for row in rows[name]:
                            copy.write_row(row)
                    rows[name].clear()

    def _payment(self, rows, merchant_id: str, created: datetime, pool: int) -> None:
        r = self.random
        payment_id = f"pay_{ULID.from_datetime(created)}"
        currency = r.choice(CURRENCIES)
        amount = r.randint(100, 50_000)
        status = r.choice(STATUSES)
        refunded = amount // 2 if status == "refunded" else 0
        status = "succeeded" if status == "refunded" else status
        received = amount if status == "succeeded" else 0
        captured_at = created + timedelta(seconds=1) if status == "succeeded" else None
        authorized = status in ("succeeded", "requires_capture", "canceled")
        brand = r.choice(BRANDS)
        last4 = f"{r.randint(0, 9999):04d}"
        reference = f"auth_{payment_id[4:]}" if authorized else None
        error = '{"code": "card_declined", "decline_code": "insufficient_funds"}' \
            if status == "requires_payment_method" else None
        rows["payments"].append((
            payment_id, merchant_id, False, amount, currency, status, "automatic",
            amount if status == "requires_capture" else 0, received, refunded,
            f"customer{r.randint(1, pool)}@example.com", "{}", f"tok_{payment_id[4:]}", "sandbox", brand, last4,
            r.randint(1, 12), 2030, f"fp_{last4}{brand}", "sandbox" if authorized else None, reference, error,
            1 if captured_at else 0, created if authorized else None, captured_at,
            created + timedelta(minutes=5) if status == "canceled" else None, created, captured_at or created))
        seller = self.sellers[merchant_id]
        rows["orders"].append((f"po_{ULID.from_datetime(created)}", merchant_id, False, payment_id, seller, 0,
                               amount, 0, received, 0, refunded, 0))
        attempt_status = "declined" if status == "requires_payment_method" else "succeeded"
        rows["attempts"].append((
            f"att_{ULID.from_datetime(created)}", merchant_id, False, payment_id, "authorize", attempt_status,
            amount, currency, "sandbox", "sandbox", reference,
            "insufficient_funds" if attempt_status == "declined" else None, f"kassa-att-{payment_id}", 1,
            created, created + timedelta(milliseconds=180), 180, created, created))
        rows["events"].append((f"evt_{ULID.from_datetime(created)}", merchant_id, False,
                               "payment.succeeded" if received else "payment.processing", "payment", payment_id,
                               f'{{"id": "{payment_id}", "currency": "{currency}", "amount": {amount}}}',
                               captured_at or created))
        if refunded:
            refund_id = f"re_{ULID.from_datetime(created)}"
            later = created + timedelta(hours=1)
            rows["refunds"].append((refund_id, merchant_id, False, payment_id, refunded, currency, "succeeded",
                                    "requested_by_customer",
                                    f'[{{"order": "x", "seller": "{seller}", "amount": {refunded}}}]',
                                    f"kassa-{refund_id}", 1, later, later, later))

    def analyze(self) -> None:
        started = time.perf_counter()
        self.conn.execute("ANALYZE")
        say(f"  ANALYZE in {time.perf_counter() - started:.0f} s")

    def rebuild_rollups(self, merchant_id: str | None = None) -> None:
        from app.reporting.rollups import REBUILD_SQL

        started = time.perf_counter()
        where = attempt_where = ""
        params = {}
        if merchant_id:
            where = "AND merchant_id = %(m)s AND livemode = false"
            attempt_where = "AND a.merchant_id = %(m)s AND a.livemode = false"
            params = {"m": merchant_id}
        with self.conn.transaction():
            self.conn.execute(f"DELETE FROM payment_rollups WHERE true {where}", params)
            self.conn.execute(REBUILD_SQL.format(scope=where, attempt_scope=attempt_where), params)
        say(f"  rollups rebuilt in {time.perf_counter() - started:.1f} s")


class Pages:
    """The big merchant's pages, requested in-process with a signed-in owner; statements captured per page."""

    def __init__(self, app_url: str, owner_url: str, merchant_id: str, runs: int):
        os.environ.setdefault("LOG_LEVEL", "WARNING")
        from app import create_app
        from app.extensions import db
        from tests import factories

        self.app = create_app({"SQLALCHEMY_DATABASE_URI": app_url.replace("postgresql://", "postgresql+psycopg://", 1),
                               "DATABASE_OWNER_URL": owner_url, "TESTING": True, "KASSA_ENV": "test",
                               "RATELIMIT_ENABLED": False})
        self.db = db
        self.merchant_id = merchant_id
        self.runs = runs
        self.client = self.app.test_client()
        with self.app.app_context():
            from app.accounts.models import Merchant
            from app.accounts.sessions import start_session

            user = factories.member(db.session, db.session.get(Merchant, merchant_id), role="owner")
            db.session.commit()
            _row, token = start_session(db.session, user)
            db.session.commit()
        with self.client.session_transaction() as cookie:
            cookie["sid"] = token
        self.captured: list[tuple[str, dict]] | None = None
        with self.app.app_context():
            @event.listens_for(db.engine, "before_cursor_execute")
            def _capture(_conn, _cursor, statement, parameters, _context, _many):
                if self.captured is not None:
                    self.captured.append((statement, parameters))

    def url(self, path: str) -> str:
        return f"/dashboard/{self.merchant_id}/test/{path}"

    def time(self, path: str) -> float:
        """Median server time in ms of GET path (one warm-up run first)."""
        timings = []
        for run in range(self.runs + 1):
            started = time.perf_counter()
            response = self.client.get(self.url(path))
            response.get_data()
            elapsed = (time.perf_counter() - started) * 1000
            if response.status_code != 200:
                raise RuntimeError(f"{path}: {response.status_code}")
            if run:
                timings.append(elapsed)
        return statistics.median(timings)

    def statements(self, path: str) -> list[tuple[str, dict]]:
        self.captured = []
        self.client.get(self.url(path)).get_data()
        captured, self.captured = self.captured, None
        return captured

    def explain(self, path: str, repeats: int = 5) -> tuple[float, list[tuple[str, str]]]:
        """The page's database time (median over ``repeats`` of the sum of its statements' execution
        times, from EXPLAIN ANALYZE) and the plans of its statements on the payment tables."""
        statements = [(sql, params) for sql, params in self.statements(path)
                      if sql.lstrip().upper().startswith(("SELECT", "WITH"))]
        totals, plans = [], []
        with self.app.app_context():
            connection = self.db.engine.connect()
            try:
                for repeat in range(repeats):
                    total = 0.0
                    for sql, params in statements:
                        rows = connection.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS, FORMAT TEXT) " + sql, params).all()
                        plan = "\n".join(r[0] for r in rows)
                        total += float(plan.rsplit("Execution Time: ", 1)[1].split(" ")[0])
                        if repeat == repeats - 1 and PAYMENT_TABLES.search(sql):
                            plans.append((sql, plan))
                    totals.append(total)
                connection.rollback()
            finally:
                connection.close()
        return statistics.median(totals), plans


# Statements worth showing a plan for: those on the tables that grow with payments (not the session,
# user, membership and merchant lookups every page makes).
PAYMENT_TABLES = re.compile(r"\b(FROM|JOIN)\s+(payments|refunds|payment_attempts|payment_orders|events|"
                            r"payment_rollups|payment_rollup_deltas|ledger_\w+|webhook_\w+)\b")


def cursors(owner_url: str, merchant_id: str, deep: int) -> dict:
    """Values the measured URLs need: the keyset cursor of page ``deep``, an email, a last 4, a payment."""
    with psycopg.connect(libpq(owner_url)) as conn:
        count = conn.execute("SELECT count(*) FROM payments WHERE merchant_id = %s AND NOT livemode",
                             (merchant_id,)).fetchone()[0]
        page = min(deep, max(count // PAGE, 1))
        after = conn.execute(
            "SELECT id FROM payments WHERE merchant_id = %s AND NOT livemode ORDER BY created_at DESC, id DESC"
            " OFFSET %s LIMIT 1", (merchant_id, (page - 1) * PAGE - 1)).fetchone()[0]
        recent = conn.execute(
            "SELECT id, customer_email, card_last4 FROM payments WHERE merchant_id = %s AND NOT livemode"
            " AND status = 'succeeded' AND amount_refunded > 0 ORDER BY created_at DESC LIMIT 1 OFFSET 20",
            (merchant_id,)).fetchone()
    return {"count": count, "page": page, "after": after, "payment": recent[0], "email": recent[1],
            "last4": recent[2]}


def measure(pages: Pages, owner_url: str, merchant_id: str) -> tuple[dict, dict, dict]:
    """Server time (median of runs) and database time of each page; the paths measured."""
    c = cursors(owner_url, merchant_id, DEEP_PAGE)
    local_today = NOW.astimezone(ZoneInfo("Europe/Paris")).date()
    paths = {
        "Payments, first page": "payments",
        f"Payments, page {DEEP_PAGE:,} by keyset": f"payments?after={c['after']}",
        "Status + date range (succeeded, last 30 days)":
            f"payments?status=succeeded&date_from={local_today - timedelta(days=29)}&date_to={local_today}",
        "Customer email": f"payments?email={c['email']}",
        "Card last 4": f"payments?last4={c['last4']}",
        "Payment detail": f"payments/{c['payment']}",
        "Home (last 7 days)": "",
    }
    server, database = {}, {}
    for name, path in paths.items():
        server[name] = pages.time(path)
        database[name], _plans = pages.explain(path)
        say(f"    {name:<48} {server[name]:7.1f} ms server, {database[name]:6.2f} ms database")
    return server, database, {"paths": paths, **c}


def run(args) -> dict:
    admin_url = os.environ.get("DATABASE_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    owner_pw = os.environ.get("KASSA_OWNER_PASSWORD", "kassa_owner")
    app_pw = os.environ.get("KASSA_APP_PASSWORD", "kassa_app")
    owner_url = with_database(admin_url, DB_NAME, "kassa_owner", owner_pw)
    app_url = with_database(admin_url, DB_NAME, "kassa_app", app_pw)
    with psycopg.connect(libpq(admin_url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DB_NAME}" OWNER kassa_owner')
        server_version = conn.execute("SHOW server_version").fetchone()[0]
        settings = {name: conn.execute(f"SHOW {name}").fetchone()[0] for name in ("shared_buffers", "work_mem")}
    env = {**os.environ, "DATABASE_URL": app_url, "DATABASE_OWNER_URL": owner_url, "FLASK_APP": "wsgi.py",
           "KASSA_ENV": "test", "SECRET_KEY": os.environ.get("SECRET_KEY", "bench"),
           "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/9")}
    os.environ.update({k: env[k] for k in ("DATABASE_URL", "DATABASE_OWNER_URL", "KASSA_ENV", "SECRET_KEY",
                                           "REDIS_URL")})
    say(f"migrating {DB_NAME} to head")
    subprocess.run([sys.executable, "-m", "flask", "db", "upgrade", "heads"], cwd=ROOT, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seeder = Seeder(owner_url)
    merchants = seeder.merchants(100)
    big, others = merchants[0], merchants[1:]
    per_other = args.others // len(others)
    recent_span = YEAR * (args.small / args.big)  # the big merchant's newest payments, at its usual rate
    say(f"seeding {per_other * len(others):,} payments over 99 merchants and the big merchant's newest {args.small:,}")
    seeder.payments([(m, per_other, NOW - YEAR, NOW, EMAIL_POOL_OTHER) for m in others]
                    + [(big, args.small, NOW - recent_span, NOW, EMAIL_POOL_BIG)])
    seeder.analyze()
    seeder.rebuild_rollups()
    pages = Pages(app_url, owner_url, big, args.runs)
    say(f"measuring at {args.small:,} payments")
    small, small_db, small_info = measure(pages, owner_url, big)
    say(f"seeding the big merchant's older history: {args.big - args.small:,} payments")
    seeder.payments([(big, args.big - args.small, NOW - YEAR, NOW - recent_span, EMAIL_POOL_BIG)])
    seeder.analyze()
    seeder.rebuild_rollups(big)
    say(f"measuring at {args.big:,} payments")
    large, large_db, large_info = measure(pages, owner_url, big)
    plans = {name: pages.explain(path, repeats=1)[1] for name, path in large_info["paths"].items()}
    total = seeder.conn.execute("SELECT count(*) FROM payments").fetchone()[0]
    if not args.keep:
        seeder.conn.close()
        with pages.app.app_context():
            pages.db.engine.dispose()
        with psycopg.connect(libpq(admin_url), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
    return {"small": small, "large": large, "small_db": small_db, "large_db": large_db, "small_info": small_info,
            "large_info": large_info, "plans": plans,
            "total": total, "server_version": server_version, "settings": settings, "args": vars(args)}


def report(result: dict) -> str:
    a = result["args"]
    lines = [
        SECTION_START,
        "## Dashboard",
        "",
        f"`bench/dashboard.py` on {date.today().isoformat()}: {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, PostgreSQL {result['server_version']} (the machine's system server, "
        f"shared_buffers {result['settings']['shared_buffers']}, work_mem {result['settings']['work_mem']}), "
        "scratch database migrated to head with `flask db upgrade heads`, seeded with COPY.",
        "",
        f"{result['total']:,} payments: the big merchant's {a['big']:,} (its newest {a['small']:,} first, then "
        f"its older history) and {a['others']:,} over 99 other merchants, each with its order, authorization "
        "attempt and event, refunds for the refunded 3 %, rollups rebuilt from the tables. Server time = the "
        "full request in-process (routing, session and membership check, queries, template), median of "
        f"{a['runs']} runs after a warm-up. Page size {PAGE}; the merchant's time zone Europe/Paris.",
        "",
        f"| page | server ms at {a['small']:,} | server ms at {a['big']:,} | ratio | database ms at {a['small']:,} "
        f"| database ms at {a['big']:,} | < {TARGET_MS:.0f} ms and ≤ 2× |",
        "|---|---:|---:|---:|---:|---:|:---:|",
    ]
    for name, small in result["small"].items():
        large = result["large"][name]
        label = name
        if "keyset" in name and result["small_info"]["page"] != DEEP_PAGE:
            label += f" (at {a['small']:,}: page {result['small_info']['page']}, its last)"
        ok = "yes" if large < TARGET_MS and large <= 2 * small else "**no**"
        lines.append(f"| {label} | {small:.1f} | {large:.1f} | {large / small:.2f} | {result['small_db'][name]:.2f} "
                     f"| {result['large_db'][name]:.2f} | {ok} |")
    recent_days = 365 * a["small"] / a["big"]
    lines += ["", "Database time = the sum of the execution times PostgreSQL reports (EXPLAIN ANALYZE) for every "
              "statement the page runs, median of 5; the rest of the server time is Python (session, "
              "templates).", "",
              "The merchant's history grows backwards in time: its newest payments are the same in both "
              "measurements, so a page that reads only its own rows costs the same. Home reads the rollups "
              "of its period (at most 96 buckets a day per currency, however long the history); its database "
              f"time grows here because at {a['small']:,} payments the merchant had traded for "
              f"{recent_days:.1f} of the 7 days, so it had fewer buckets to add up, not less history.", "",
              f"Plans at {a['big']:,} payments of every statement a page runs on the payment tables "
              "(the session, membership and merchant lookups every page makes are left out):", ""]
    for name, plans in result["plans"].items():
        lines += [f"<details><summary>{name}</summary>", ""]
        for sql, plan in plans:
            flat = " ".join(sql.split())
            start = flat.upper().find(" FROM ")
            shown = ("SELECT … " + flat[start + 1:]) if start > 0 else flat
            lines += [f"`{shown[:220]}{'…' if len(shown) > 220 else ''}`", "", "```", plan, "```", ""]
        lines += ["</details>", ""]
    lines.append(SECTION_END)
    return "\n".join(lines)


def write(section: str) -> None:
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    if SECTION_START in text and SECTION_END in text:
        before, rest = text.split(SECTION_START, 1)
        after = rest.split(SECTION_END, 1)[1]
        text = before + section + after
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    RESULTS.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--big", type=int, default=1_000_000)
    parser.add_argument("--others", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--write", action="store_true", help="replace the Dashboard section of bench/RESULTS.md")
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    args = parser.parse_args()
    result = run(args)
    section = report(result)
    print(section)
    if args.write:
        write(section)


if __name__ == "__main__":
    main()
