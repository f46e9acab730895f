"""Risk benchmark (issue 19): evaluation time per confirmation, and end-to-end payments/s with risk on and off.

    source an environment like the test run's (DATABASE_ADMIN_URL, DATABASE_URL, DATABASE_OWNER_URL,
    REDIS_URL, KASSA_TEMPLATE_DB = a database migrated to head, secrets; `python3 kassa.py servers-only
    --ephemeral` prints one), then:

    .venv/bin/python bench/risk.py [--evaluations 2000] [--seconds 20] [--clients 8] [--rounds 4] [--write]

What it measures, each in the same run on the same machine, against fresh databases cloned from the template:

1. Evaluation (``app.risk.evaluate.assess``: signals, every velocity counter recorded and read in Redis, the
   score, the rules, the value-list lookups and the assessment's INSERT, then rolled back) for a
   merchant with 50 enabled rules (none matching, so every one runs) and 5 value lists of 100,000 items each
   that the rules name, plus the platform's built-in rules and lists. Timed in a dedicated thread
   (``perf_counter`` around each call) so that no other thread of the bench is scheduled inside a sample;
   p50, p99 and max. Beside it, in the same process and thread: the floor (one ``SELECT 1`` and one Redis
   ``PING``, the round trips no evaluation can avoid) and the built-in rules alone (no merchant rules).
2. End-to-end payments per second (``POST /v1/payments`` with ``confirm=true``, automatic capture, sandbox with
   no added latency, one worker, ``--clients`` closed-loop clients; bench/payments.py's harness) with the same
   50 rules and 5 lists, risk screening on and off (``RISK_SCREENING=false``) in the same run: both stacks
   started first, then measured in ``--rounds`` alternating windows each (on, off, off, on...), with the CPU
   each payment cost each process (web, worker, sandbox, PostgreSQL, Redis): on a shared machine the rates
   move with the other work, the CPU per payment much less.

``--write`` replaces the "Risk" section of bench/RESULTS.md.
"""
from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import threading
import time
import uuid
from datetime import date
from types import SimpleNamespace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402

from bench import payments as payments_bench  # noqa: E402
from bench.timing import say, summary, timed_in_thread  # noqa: E402,F401  (shared with bench/risk_learned.py)

SECTION_START = "<!-- risk:start -->"
SECTION_END = "<!-- risk:end -->"
LOAD_BEFORE = "?"
LIST_SIZE = 100_000
LISTS = (("bench_fingerprints", "card_fingerprint", lambda n: f"fp_bench{n:010d}", "card_fingerprint"),
         ("bench_emails", "email", lambda n: f"user{n}@bench.example", "email"),
         ("bench_domains", "email_domain", lambda n: f"d{n}.bench.example", "email_domain"),
         ("bench_ips", "ip_address", lambda n: f"10.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}", "ip_address"),
         ("bench_bins", "card_bin", lambda n: f"{100000 + n:06d}", "card_bin"))


def rule_texts() -> list[tuple[str, str]]:
    """50 rules that do not match the benchmark's payment (every one is evaluated)."""
    rules = [("block", ":card_fingerprint: in @bench_fingerprints"), ("block", ":email: in @bench_emails"),
             ("review", ":email_domain: in @bench_domains"), ("block", ":ip_address: in @bench_ips"),
             ("review", ":card_bin: in @bench_bins")]
    windows = ("10m", "1h", "24h")
    for index in range(45):
        window = windows[index % 3]
        kind = index % 5
        if kind == 0:
            rules.append(("review", f":email_payments_{window}: > {50 + index} and :amount: > {1000 + index}"))
        elif kind == 1:
            rules.append(("block", f":email_distinct_cards_{window}: > {20 + index} or :email_declines_{window}: > {30 + index}"))
        elif kind == 2:
            rules.append(("review", f":card_country: != :ip_country: and :risk_score: > {90 + index % 9}"))
        elif kind == 3:
            rules.append(("request_3ds", f":amount: > {5000 + index} and :card_funding: = 'prepaid'"))
        else:
            rules.append(("block", f":ip_country: in ('KP', 'IR', 'X{index % 10}') and not :is_3d_secure:"))
    return rules


def seed_risk(app, merchant_id: str) -> None:
    """The 50 rules and 5 lists of 100,000 items for a merchant (items by COPY: the service adds one at a time)."""
    from app.extensions import db
    from app.risk import lists, rules
    from app.scoping import Scope

    scope = Scope(merchant_id, False)
    with app.app_context():
        made = {alias: lists.create_value_list(db.session, scope, alias=alias, name=alias, item_type=item_type)
                for alias, item_type, _, _ in LISTS}
        db.session.commit()
        raw = db.engine.raw_connection()
        try:
            cursor = raw.cursor()
            for alias, item_type, value, _ in LISTS:
                with cursor.copy("COPY risk_value_list_items (merchant_id, livemode, id, value_list_id, value) "
                                 "FROM STDIN") as copy:
                    for n in range(LIST_SIZE):
                        copy.write_row((merchant_id, False, f"rsli_bench_{alias}_{n}", made[alias].id, value(n)))
            raw.commit()
        finally:
            raw.close()
        for action, text in rule_texts():
            rules.create_rule(db.session, scope, action=action, predicate=text)
        db.session.commit()
        db.session.remove()


def make_app(env: dict):
    from app import create_app

    os.environ.update({k: v for k, v in env.items() if isinstance(v, str)})
    return create_app({"SQLALCHEMY_DATABASE_URI": env["DATABASE_URL"].replace("postgresql://", "postgresql+psycopg://", 1),
                       "API_KEY_HMAC_KEY": env.get("API_KEY_HMAC_KEY", "bench")})


def evaluation(bench: payments_bench.Bench, count: int) -> dict:
    env = {**bench.env, **bench.fresh_database("riskeval")}
    saved = dict(os.environ)
    try:
        return _evaluation(env, count)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _evaluation(env: dict, count: int) -> dict:
    app = make_app(env)
    from sqlalchemy import text

    from app.accounts.models import Merchant
    from app.extensions import db
    from app.ids import new_id
    from app.payments.models import Payment
    from app.risk import evaluate
    from app.scoping import Scope

    with app.app_context():
        merchants = []
        for name in ("Bench rules", "Bench plain"):
            merchant = Merchant(id=new_id("mer"), name=name)
            db.session.add(merchant)
            merchants.append(merchant.id)
        db.session.commit()
    say("seeding 50 rules and 5 lists of 100,000 items")
    seed_risk(app, merchants[0])
    redis = app.extensions["redis"]
    rng = random.Random(7)
    # The counters are platform-wide in Redis and outlive a run: this run's shopper is its own.
    run_id = uuid.uuid4().int
    shopper_ip = f"198.18.{run_id % 250}.{(run_id >> 8) % 250 + 1}"
    shopper_email = f"shopper-{run_id % 10**9}@example.com"
    results = {}
    with app.app_context():
        def payment_for(merchant_id):
            row = Scope(merchant_id, False).new(
                Payment, id=new_id("pay"), amount=4200, currency="EUR", status="processing", capture_method="automatic",
                customer_email=shopper_email, customer_ip=shopper_ip)
            db.session.add(row)
            db.session.commit()
            # What the engine reads of a payment, detached: the timed thread has a session of its own.
            return SimpleNamespace(id=row.id, merchant_id=merchant_id, livemode=False, amount=4200, currency="EUR",
                                   customer_email=shopper_email, customer_ip=shopper_ip)

        card = {"brand": "visa", "funding": "credit", "country": "US", "bin": "424242", "risk_hint": None,
                "fingerprint": "fp_bench_shopper"}

        def one(payment):
            def run():
                # A new fingerprint now and then, so that the distinct-card counters grow as in real traffic.
                facts = {**card, "fingerprint": f"fp_bench_{run_id % 10**6}_{rng.randrange(10)}"}
                decision = evaluate.assess(db.session, payment, redis=redis, card=facts)
                assert decision.outcome == "allow", decision.rule
                db.session.rollback()
            return run

        def floor():
            db.session.execute(text("SELECT 1"))
            redis.ping()
            db.session.rollback()

        full, plain = payment_for(merchants[0]), payment_for(merchants[1])
        for fn in (one(full), one(plain), floor):  # warm up: imports, compiled rules, prepared plans
            timed_in_thread(app, fn, 50)
        say(f"timing {count} evaluations")
        for key, fn in (("floor", floor), ("builtin", one(plain)), ("full", one(full))):
            cpu: list[float] = []
            results[key] = summary(timed_in_thread(app, fn, count, cpu))
            results[key]["cpu_p50"] = round(statistics.median(cpu), 3)
        db.session.remove()
        db.engine.dispose()
    return results


class RiskBench(payments_bench.Bench):
    """bench/payments.py's harness, with the merchant given the 50 rules and 5 lists."""

    def merchant_key(self, env):
        key = super().merchant_key(env)
        with psycopg.connect(payments_bench.libpq(env["DATABASE_URL"]), autocommit=True) as conn:
            merchant_id = conn.execute("SELECT id FROM merchants WHERE name = 'Bench shop'").fetchone()[0]
        saved = dict(os.environ)
        try:
            app = make_app(env)
            seed_risk(app, merchant_id)
            with app.app_context():
                from app.extensions import db
                db.engine.dispose()
        finally:
            os.environ.clear()
            os.environ.update(saved)
        return key


def end_to_end(args) -> dict:
    """Risk on and off, each its own stack (web, one worker, sandbox, fresh database with the 50 rules and 5
    lists), both started first and then measured in alternating windows (on, off, off, on, ...), so that the
    other work on a shared machine falls on both alike rather than on whichever ran second."""
    stacks = {}
    try:
        for label, screening in (("on", "true"), ("off", "false")):
            bench = RiskBench(args)
            bench.env["RISK_SCREENING"] = screening
            say(f"starting the risk-{label} stack")
            stacks[label] = (bench, *bench.start(f"risk{label}", 1, int(args.throughput_seconds * 100)))
        totals = {label: {"payments": 0, "seconds": 0.0, "answered_processing": 0, "errors": 0, "cpu": {}}
                  for label in stacks}
        window = args.throughput_seconds / args.rounds
        for number in range(args.rounds):
            for label in (("on", "off") if number % 2 == 0 else ("off", "on")):
                bench, services, key, tokens = stacks[label]
                say(f"round {number + 1}/{args.rounds}: risk {label}, {window:.1f} s")
                measured = window_of(bench, services, key, tokens, window)
                total = totals[label]
                for name in ("payments", "seconds", "answered_processing", "errors"):
                    total[name] += measured[name]
                for name, used in measured["cpu"].items():
                    total["cpu"][name] = total["cpu"].get(name, 0.0) + used
    finally:
        for bench, services, *_ in stacks.values():
            services.stop()
            bench.drop_databases()
    results = {}
    for label, total in totals.items():
        payments = max(total["payments"], 1)
        results[label] = {"payments": total["payments"], "seconds": round(total["seconds"], 2),
                          "per_second": round(total["payments"] / total["seconds"], 1) if total["seconds"] else 0,
                          "answered_processing": total["answered_processing"], "errors": total["errors"],
                          "cpu_ms_per_payment": {name: round(1000 * used / payments, 1)
                                                 for name, used in total["cpu"].items()}}
    return results


def window_of(bench: RiskBench, services, key: str, tokens, seconds: float) -> dict:
    """bench/payments.py's closed loop for ``seconds`` on one stack, up to its last payment's success."""
    url = services.web_url
    counts = {"succeeded": 0, "processing": 0, "errors": 0}
    lock = threading.Lock()
    cpu_before = payments_bench.cpu_by_component(services)
    started = time.monotonic()
    stop_at = started + seconds

    def client() -> None:
        session = payments_bench.http()
        session.headers["Authorization"] = f"Bearer {key}"
        while time.monotonic() < stop_at:
            response = session.post(f"{url}/v1/payments", json={
                "amount": 1999, "currency": "usd", "payment_method": tokens.take(), "confirm": True},
                headers={"Idempotency-Key": uuid.uuid4().hex}, timeout=payments_bench.HTTP_TIMEOUT)
            with lock:
                if response.status_code != 200:
                    counts["errors"] += 1
                    continue
                counts["succeeded" if response.json()["status"] == "succeeded" else "processing"] += 1

    threads = [threading.Thread(target=client) for _ in range(bench.args.clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = bench.wait_all_succeeded(services.env["DATABASE_URL"]) - started
    cpu_after = payments_bench.cpu_by_component(services)
    return {"payments": counts["succeeded"] + counts["processing"], "seconds": elapsed,
            "answered_processing": counts["processing"], "errors": counts["errors"],
            "cpu": {name: cpu_after[name] - cpu_before.get(name, 0.0) for name in cpu_after}}


def render(evaluations: dict, e2e: dict, args) -> str:
    lines = [SECTION_START, "## Risk", "",
             f"{date.today().isoformat()}, {platform.machine()}, Python {platform.python_version()}, "
             f"{os.cpu_count()} CPUs shared with other work (load average {LOAD_BEFORE} before the run); "
             f"`bench/risk.py --evaluations {args.evaluations} "
             f"--seconds {args.throughput_seconds} --clients {args.clients} --rounds {args.rounds}`.", "",
             "Evaluation per confirmation, in a dedicated thread (ms; CPU: the thread's own CPU time, median):", "",
             "| what | n | p50 | p99 | max | CPU p50 |", "|---|---|---|---|---|---|"]
    names = {"floor": "floor: `SELECT 1` + Redis `PING`", "builtin": "built-in platform rules only, all counters",
             "full": "50 rules, 5 lists × 100,000 items, all counters"}
    for key in ("floor", "builtin", "full"):
        row = evaluations[key]
        lines.append(f"| {names[key]} | {row['n']} | {row['p50']} | {row['p99']} | {row['max']} | "
                     f"{row.get('cpu_p50', '')} |")
    lines += ["", "End to end (1 worker each, closed loop, sandbox without added latency), same 50 rules and lists; "
              f"both stacks up at once, measured in {args.rounds} alternating windows each:", "",
              "| risk | payments | seconds | payments/s | answered processing | errors |", "|---|---|---|---|---|---|"]
    for key in ("on", "off"):
        row = e2e[key]
        lines.append(f"| {key} | {row['payments']} | {row['seconds']} | {row['per_second']} | "
                     f"{row['answered_processing']} | {row['errors']} |")
    components = sorted({name for key in ("on", "off") for name in e2e[key].get("cpu_ms_per_payment", {})})
    if components:
        lines += ["", "CPU per payment (ms, each process's user + system time over the run / payments):", "",
                  "| risk | " + " | ".join(components) + " | total |", "|---|" + "---|" * (len(components) + 1)]
        for key in ("on", "off"):
            cpu = e2e[key].get("cpu_ms_per_payment", {})
            lines.append(f"| {key} | " + " | ".join(str(cpu.get(name, "")) for name in components)
                         + f" | {round(sum(cpu.values()), 1)} |")
    ratio = e2e["on"]["per_second"] / e2e["off"]["per_second"] if e2e["off"]["per_second"] else 0
    lines += ["", f"Risk on / off: {ratio:.2f} (target ≥ 0.9); evaluation p99 {evaluations['full']['p99']} ms "
                  "(target < 5 ms). Risk on adds one vault read (GET /v1/tokens/<id>) and one short transaction "
                  "per authorization; an evaluation is one Redis script and two database round trips while the "
                  "per-process cache of compiled rules is current (one statement: the configuration stamps, the "
                  "first-seen fact and every value-list lookup of both owners; then the assessment's insert; "
                  "counted by tests/risk/test_engine.py). On a machine whose bare round trips reach "
                  f"{evaluations['floor']['p99']} ms at p99 (the floor above, 2 CPUs shared with other work), the "
                  "p99 mostly measures scheduling; compare the rows with each other.",
              SECTION_END]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--evaluations", type=int, default=2000)
    parser.add_argument("--seconds", dest="throughput_seconds", type=float, default=20.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=4,
                        help="alternating on/off windows the end-to-end seconds are split into (per stack)")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    global LOAD_BEFORE
    LOAD_BEFORE = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    bench = payments_bench.Bench(args)
    try:
        evaluations = evaluation(bench, args.evaluations)
    finally:
        bench.drop_databases()
    e2e = end_to_end(args)
    text = render(evaluations, e2e, args)
    print(text)
    if args.write:
        payments_bench.write_section(text, SECTION_START, SECTION_END)
    return 0


if __name__ == "__main__":
    sys.exit(main())
