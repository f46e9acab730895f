"""Payments benchmark: Kassa as the run command serves it, the load generator on the same machine.

    source an environment like the test run's (DATABASE_ADMIN_URL, DATABASE_URL, DATABASE_OWNER_URL,
    REDIS_URL, KASSA_TEMPLATE_DB = a database migrated to head, secrets), then:

    .venv/bin/python bench/payments.py [--duration 60] [--rate 50] [--clients 16] [--write]

What it measures (issue 5), each against a fresh database cloned from the template:

1. End-to-end payments per second, create + confirm + automatic capture in one API call
   (``POST /v1/payments`` with ``confirm=true``), sandbox PSP with no added latency, with 1 and then 2
   worker processes (KassaWorker, as worker.py runs it), closed loop from ``--clients`` threads.
   The rate counts payments that reached ``succeeded``, up to the moment the last one did.
2. Confirm latency at a fixed (open-loop) arrival rate: ``--rate`` confirms per second for
   ``--duration`` seconds, on payments created beforehand, sent on schedule whether or not earlier
   ones have answered; p50/p95/p99 and the share that answered ``processing`` (the wait ran out).
3. Latency of a replayed idempotent request (same key, same body).
4. Baseline: the same rows each payment leaves (idempotency key with its stored response, payment,
   order, two attempts, three events with their fan-out rows, two rollup deltas, the API request log
   row, the ledger posting through ``ledger_post``), with payloads shaped like the real ones, inserted
   by plain SQL from the same number of Python threads, one transaction per payment.

``--write`` replaces the "Payments" section of bench/RESULTS.md with the figures.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import platform
import re
import sys
import tempfile
import threading
import time
import uuid
from datetime import date, datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
import requests  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from launcher.processes import Ports, Services, spawn  # noqa: E402

RESULTS = ROOT / "bench" / "RESULTS.md"
SECTION_START = "<!-- payments:start -->"
SECTION_END = "<!-- payments:end -->"
FUTURE_YEAR = date.today().year + 5
# Requests are bounded so that a hang shows up as an error, not as a stuck benchmark.
HTTP_TIMEOUT = 30
# Payments made through every process before measuring (imports, pools, prepared statements).
WARM_UP_PAYMENTS = 40


def libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def with_database(url: str, name: str) -> str:
    return make_url(url).set(database=name).render_as_string(hide_password=False)


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def cpu_by_component(services: Services) -> dict[str, float]:
    """CPU seconds (user + system) used so far by web, workers, sandbox, PostgreSQL, Redis and this
    load generator: where each payment's CPU goes, which on a small machine is the bottleneck."""
    import psutil

    totals: dict[str, float] = {}

    def add(name: str, process) -> None:
        try:
            times = process.cpu_times()
        except psutil.Error:
            return
        totals[name] = totals.get(name, 0.0) + times.user + times.system

    for child in services.children:
        name = "worker" if child.name.startswith("worker") else child.name
        try:
            leader = psutil.Process(child.pid)
        except psutil.Error:
            continue
        for process in [leader, *leader.children(recursive=True)]:
            add(name, process)
    database = make_url(services.env["DATABASE_URL"]).database
    for process in psutil.process_iter(["name", "cmdline"]):
        command = " ".join(process.info["cmdline"] or [])
        if command.startswith("postgres:") and f" {database} " in f"{command} ":
            add("postgresql (our backends)", process)  # other databases on the server are not ours
        elif (process.info["name"] or "").startswith("redis-server"):
            add("redis (shared server)", process)
    add("load generator", psutil.Process())
    return totals


def baseline_payment(pay: str, authorize: str, capture: str, seller: str, created: int) -> dict:
    """A payment object shaped like the API's (app/payments/serializers.py), for the baseline's JSON columns:
    the same rows means the same payloads, not a stub."""
    def attempt(attempt_id: str, operation: str) -> dict:
        return {"id": attempt_id, "object": "payment_attempt", "operation": operation, "status": "succeeded",
                "amount": 1999, "currency": "USD", "connector": "sandbox", "psp_reference": "auth_" + pay,
                "decline_code": None, "error_message": None, "tries": 1, "created": created, "started": created,
                "finished": created, "latency_ms": 2}

    return {"id": pay, "object": "payment", "livemode": False, "created": created, "amount": 1999, "currency": "USD",
            "status": "succeeded", "capture_method": "automatic", "amount_capturable": 0, "amount_received": 1999,
            "amount_refunded": 0, "customer_email": None, "description": None, "metadata": {},
            "payment_method": {"vault": "sandbox", "brand": "visa", "last4": "4242", "exp_month": 12,
                               "exp_year": FUTURE_YEAR, "fingerprint": "fp_" + "0" * 24},
            "connector": "sandbox", "next_action": None, "return_url": None, "last_payment_error": None,
            "cancellation_reason": None, "canceled_at": None,
            "split": [{"seller": seller, "amount": 1999, "fee": 0, "amount_captured": 1999, "fee_captured": 0,
                       "amount_refunded": 0, "fee_refunded": 0}],
            "attempts": [attempt(authorize, "authorize"), attempt(capture, "capture")]}


def http() -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    # Pools as large as the thread pools that share a session (creating the latency run's payments).
    session.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=32))
    return session


class TokenPool:
    """Sandbox card tokens, one per payment (a token pays for one payment only, issue 14): minted before
    the timed part, in parallel; should a run outgrow the pool, the rest are minted as they are taken."""

    # Minted ahead per second of a throughput run: above the ~85 payments/s measured with 2 workers.
    PER_SECOND = 150

    def __init__(self, sandbox_url: str, count: int):
        self.sandbox_url = sandbox_url
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            self._tokens = list(pool.map(lambda _: self.mint(), range(count)))
        self._lock = threading.Lock()

    def mint(self) -> str:
        response = http().post(f"{self.sandbox_url}/v1/tokens", json={
            "number": "4242424242424242", "exp_month": 12, "exp_year": FUTURE_YEAR, "cvc": "123"},
            timeout=HTTP_TIMEOUT)
        response.raise_for_status()
        return response.json()["id"]

    def take(self) -> str:
        with self._lock:
            if self._tokens:
                return self._tokens.pop()
        return self.mint()


class Bench:
    def __init__(self, args):
        self.args = args
        self.env = dict(os.environ)
        for name in ("DATABASE_ADMIN_URL", "DATABASE_URL", "DATABASE_OWNER_URL", "REDIS_URL", "KASSA_TEMPLATE_DB"):
            if not self.env.get(name):
                sys.exit(f"bench: {name} is not set (see the module docstring)")
        self.env.setdefault("SANDBOX_PSP_SECRET", uuid.uuid4().hex)
        self.env.setdefault("SANDBOX_WEBHOOK_SECRET", uuid.uuid4().hex)
        self.env.setdefault("LEDGER_HMAC_KEY", uuid.uuid4().hex)
        self.env.setdefault("API_KEY_HMAC_KEY", uuid.uuid4().hex)
        self.env.setdefault("SECRET_KEY", uuid.uuid4().hex)
        self.env["KASSA_ENV"] = "development"
        # The benchmark measures payments, not the per-key rate limit (100/s by default).
        self.env["API_RATE_LIMIT"] = "1000000/second"
        self.databases: list[str] = []

    # -- set-up ----------------------------------------------------------------------------------------

    def fresh_database(self, label: str) -> dict[str, str]:
        name = f"bench_{label}_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(libpq(self.env["DATABASE_ADMIN_URL"]), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{self.env["KASSA_TEMPLATE_DB"]}" OWNER kassa_owner')
        self.databases.append(name)
        return {"DATABASE_URL": with_database(self.env["DATABASE_URL"], name),
                "DATABASE_OWNER_URL": with_database(self.env["DATABASE_OWNER_URL"], name),
                "DATABASE_ADMIN_URL": with_database(self.env["DATABASE_ADMIN_URL"], name)}

    def drop_databases(self) -> None:
        with psycopg.connect(libpq(self.env["DATABASE_ADMIN_URL"]), autocommit=True) as conn:
            for name in self.databases:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def merchant_key(self, env: dict[str, str]) -> str:
        """A merchant and a secret key in the benchmark database, made through the app's own service."""
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            from app import create_app
            from app.accounts.api_keys import SECRET, create_key
            from app.accounts.models import Merchant
            from app.extensions import db
            from app.ids import new_id
            from app.scoping import Scope

            app = create_app({"SQLALCHEMY_DATABASE_URI": env["DATABASE_URL"].replace(
                "postgresql://", "postgresql+psycopg://", 1), "API_KEY_HMAC_KEY": env["API_KEY_HMAC_KEY"]})
            with app.app_context():
                merchant = Merchant(id=new_id("mer"), name="Bench shop")
                db.session.add(merchant)
                db.session.flush()
                key = create_key(db.session, Scope(merchant.id, False), SECRET,
                                 hmac_key=env["API_KEY_HMAC_KEY"].encode()).plaintext
                db.session.commit()
                db.session.remove()
                db.engine.dispose()
            return key
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    def start(self, label: str, workers: int, payments: int) -> tuple[Services, str, TokenPool]:
        env = {**self.env, **self.fresh_database(label)}
        key = self.merchant_key(env)
        log_dir = Path(tempfile.mkdtemp(prefix=f"kassa-bench-{label}-"))
        services = Services(env, Ports.pick(), log_dir, log_dir=log_dir / "logs").start()
        for number in range(2, workers + 1):
            services.children.append(spawn(f"worker-{number}", [sys.executable, "worker.py"], services.env,
                                           log_dir / "logs" / f"worker-{number}.log"))
        tokens = TokenPool(services.sandbox_url, payments + WARM_UP_PAYMENTS)
        self.warm_up(services.web_url, key, tokens)
        return services, key, tokens

    def warm_up(self, url: str, key: str, tokens: TokenPool, count: int = WARM_UP_PAYMENTS) -> None:
        """A few payments through every process first: imports, connection pools and prepared
        statements are not what is measured (a freshly spawned worker spends seconds importing)."""
        def one(index: int) -> None:
            session = http()
            session.headers["Authorization"] = f"Bearer {key}"
            session.post(f"{url}/v1/payments", json={"amount": 100, "currency": "usd", "confirm": True,
                                                     "payment_method": tokens.take()},
                         timeout=HTTP_TIMEOUT)

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            list(pool.map(one, range(count)))

    # -- 1. throughput ---------------------------------------------------------------------------------

    def throughput(self, workers: int) -> dict:
        services, key, tokens = self.start(f"tput{workers}", workers,
                                           int(self.args.throughput_seconds * TokenPool.PER_SECOND))
        try:
            url = services.web_url
            stop_at = time.monotonic() + self.args.throughput_seconds
            counts = {"succeeded": 0, "processing": 0, "errors": 0}
            ids: list[str] = []
            lock = threading.Lock()
            started = time.monotonic()

            def client(number: int) -> None:
                session = http()
                session.headers["Authorization"] = f"Bearer {key}"
                while time.monotonic() < stop_at:
                    response = session.post(f"{url}/v1/payments", json={
                        "amount": 1999, "currency": "usd", "payment_method": tokens.take(),
                        "confirm": True}, headers={"Idempotency-Key": uuid.uuid4().hex}, timeout=HTTP_TIMEOUT)
                    with lock:
                        if response.status_code != 200:
                            counts["errors"] += 1
                            continue
                        body = response.json()
                        ids.append(body["id"])
                        counts["succeeded" if body["status"] == "succeeded" else "processing"] += 1

            cpu_before = cpu_by_component(services)
            threads = [threading.Thread(target=client, args=(n,)) for n in range(self.args.clients)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            done_at = self.wait_all_succeeded(services.env["DATABASE_URL"])
            elapsed = done_at - started
            cpu_after = cpu_by_component(services)
            total = len(ids)
            cpu_ms = {name: round(1000 * (cpu_after[name] - cpu_before.get(name, 0.0)) / max(total, 1), 1)
                      for name in cpu_after}
            return {"workers": workers, "payments": total, "seconds": round(elapsed, 2),
                    "per_second": round(total / elapsed, 1), "answered_processing": counts["processing"],
                    "errors": counts["errors"], "cpu_ms_per_payment": cpu_ms}
        finally:
            services.stop()

    def wait_all_succeeded(self, database_url: str) -> float:
        """Monotonic time at which no payment is left processing (polled, bounded)."""
        deadline = time.monotonic() + 120
        with psycopg.connect(libpq(database_url), autocommit=True) as conn:
            while time.monotonic() < deadline:
                left = conn.execute("SELECT count(*) FROM payments WHERE status = 'processing'").fetchone()[0]
                if left == 0:
                    return time.monotonic()
                time.sleep(0.02)
        raise RuntimeError("payments still processing after 120 s")

    # -- 2. confirm latency (open loop) and 3. replays -------------------------------------------------

    def latency(self, workers: int, rate: float) -> dict:
        services, key, tokens = self.start(f"lat{workers}", workers, int(rate * self.args.duration) + 1)
        try:
            url = services.web_url
            session = http()
            session.headers["Authorization"] = f"Bearer {key}"
            total = int(rate * self.args.duration)
            payments = []
            # Created beforehand (and not timed): the measurement is of confirm alone.
            with concurrent.futures.ThreadPoolExecutor(16) as pool:
                payments = list(pool.map(lambda _: session.post(f"{url}/v1/payments", json={
                    "amount": 2500, "currency": "eur"}, timeout=HTTP_TIMEOUT).json()["id"], range(total)))
            local = threading.local()

            def confirm(index: int, due: float) -> tuple[float, str, float]:
                if not hasattr(local, "session"):
                    local.session = http()
                    local.session.headers["Authorization"] = f"Bearer {key}"
                began = time.perf_counter()
                response = local.session.post(f"{url}/v1/payments/{payments[index]}/confirm", json={
                    "payment_method": tokens.take()}, headers={"Idempotency-Key": uuid.uuid4().hex},
                    timeout=HTTP_TIMEOUT)
                latency = time.perf_counter() - began
                status = response.json().get("status", f"http_{response.status_code}")
                return latency, status, began - due

            futures = []
            # Enough threads that a slow answer never delays the next arrival (open loop).
            with concurrent.futures.ThreadPoolExecutor(max_workers=200) as pool:
                t0 = time.perf_counter() + 0.5
                for index in range(total):
                    due = t0 + index / rate
                    pause = due - time.perf_counter()
                    if pause > 0:
                        time.sleep(pause)
                    futures.append(pool.submit(confirm, index, due))
                results = [f.result() for f in futures]
            latencies = [r[0] * 1000 for r in results]
            processing = sum(1 for r in results if r[1] == "processing")
            other = sum(1 for r in results if r[1] not in ("processing", "succeeded"))
            late = [r[2] * 1000 for r in results]
            replay = self.replays(session, url, tokens)
            return {
                "workers": workers, "rate": rate, "seconds": self.args.duration, "confirms": total,
                "p50_ms": round(percentile(latencies, 50), 1), "p95_ms": round(percentile(latencies, 95), 1),
                "p99_ms": round(percentile(latencies, 99), 1), "max_ms": round(max(latencies), 1),
                "processing_share": round(100 * processing / total, 2), "other_statuses": other,
                "max_send_lag_ms": round(max(late), 1), "replay": replay,
            }
        finally:
            services.stop()

    def replays(self, session: requests.Session, url: str, tokens: TokenPool, count: int = 500) -> dict:
        key = uuid.uuid4().hex
        body = {"amount": 3100, "currency": "usd", "payment_method": tokens.take(), "confirm": True}
        first = session.post(f"{url}/v1/payments", json=body, headers={"Idempotency-Key": key}, timeout=HTTP_TIMEOUT)
        first.raise_for_status()
        latencies = []
        for _ in range(count):
            began = time.perf_counter()
            response = session.post(f"{url}/v1/payments", json=body, headers={"Idempotency-Key": key},
                                    timeout=HTTP_TIMEOUT)
            latencies.append((time.perf_counter() - began) * 1000)
            assert response.headers.get("Idempotent-Replayed") == "true" and response.content == first.content
        return {"requests": count, "p50_ms": round(percentile(latencies, 50), 2),
                "p95_ms": round(percentile(latencies, 95), 2), "p99_ms": round(percentile(latencies, 99), 2)}

    # -- 4. baseline -----------------------------------------------------------------------------------

    def baseline(self) -> dict:
        env = {**self.env, **self.fresh_database("sql")}
        from app.ids import new_id
        from app.ledger.chain import key_pads
        from app.ledger.service import _POST

        inner, outer = key_pads(env["LEDGER_HMAC_KEY"].encode())
        merchant_id = new_id("mer")
        seller_id = new_id("sel")
        with psycopg.connect(libpq(env["DATABASE_OWNER_URL"]), autocommit=True) as conn:
            conn.execute("INSERT INTO merchants (id, name) VALUES (%s, 'Baseline')", (merchant_id,))
            conn.execute("INSERT INTO sellers (id, merchant_id, name, is_default) VALUES (%s, %s, 'Default', true)",
                         (seller_id, merchant_id))
        post_sql = re.sub(r":(\w+)", r"%(\1)s", str(_POST))  # the same one-round-trip posting as the service
        stop_at = time.monotonic() + self.args.throughput_seconds
        done = [0]
        lock = threading.Lock()

        def one(conn) -> None:
            pay, att1, att2 = new_id("pay"), new_id("att"), new_id("att")
            now = datetime.now(timezone.utc)
            params = {"amount": 1999, "currency": "usd", "payment_method": "tok_baseline", "confirm": True}
            payment_json = json.dumps(baseline_payment(pay, att1, att2, seller_id, int(now.timestamp())))
            bucket = now.replace(minute=now.minute - now.minute % 15, second=0, microsecond=0)
            with conn.transaction():
                conn.execute(
                    "INSERT INTO idempotency_keys (id, merchant_id, livemode, key, operation, request_method, "
                    "request_path, request_params, request_fingerprint, recovery_point, state, response_status, "
                    "response_body, created_at, last_run_at, finished_at) VALUES (%s, %s, false, %s, 'payment.create', "
                    "'POST', '/v1/payments', %s, %s, 'finished', %s, 200, %s, %s, %s, %s)",
                    (new_id("idk"), merchant_id, uuid.uuid4().hex, json.dumps(params), uuid.uuid4().hex,
                     json.dumps({"payment_id": pay, "attempt_id": att1}), payment_json, now, now, now))
                conn.execute(
                    "INSERT INTO payments (id, merchant_id, livemode, amount, currency, status, capture_method, "
                    "amount_capturable, amount_received, amount_refunded, metadata, payment_method_token, "
                    "payment_method_vault, card_brand, card_last4, connector, psp_reference, latest_attempt_id, "
                    "capture_count, authorized_at, captured_at, created_at, updated_at) VALUES (%s, %s, false, 1999, "
                    "'USD', 'succeeded', 'automatic', 0, 1999, 0, '{}', 'tok_x', 'sandbox', 'visa', '4242', "
                    "'sandbox', %s, %s, 1, %s, %s, %s, %s)",
                    (pay, merchant_id, "auth_" + pay, att1, now, now, now, now))
                conn.execute(
                    "INSERT INTO payment_orders (id, merchant_id, livemode, payment_id, seller_id, position, amount, "
                    "fee, amount_captured, fee_captured) VALUES (%s, %s, false, %s, %s, 0, 1999, 0, 1999, 0)",
                    (new_id("po"), merchant_id, pay, seller_id))
                for attempt, operation in ((att1, "authorize"), (att2, "capture")):
                    conn.execute(
                        "INSERT INTO payment_attempts (id, merchant_id, livemode, payment_id, operation, status, "
                        "amount, currency, vault, connector, psp_reference, idempotency_key, tries, started_at, "
                        "finished_at, created_at, updated_at) VALUES (%s, %s, false, %s, %s, 'succeeded', 1999, 'USD', "
                        "'sandbox', 'sandbox', %s, %s, 1, %s, %s, %s, %s)",
                        (attempt, merchant_id, pay, operation, "auth_" + pay, "kassa-" + attempt, now, now, now, now))
                for kind in ("payment.created", "payment.processing", "payment.succeeded"):
                    event = new_id("evt")
                    conn.execute("INSERT INTO events (id, merchant_id, livemode, type, object_type, object_id, data, "
                                 "created_at) VALUES (%s, %s, false, %s, 'payment', %s, %s, %s)",
                                 (event, merchant_id, kind, pay, payment_json, now))
                    conn.execute("INSERT INTO event_fanout_pending (event_id, created_at) VALUES (%s, %s)",
                                 (event, now))
                    if kind != "payment.created":  # the two events that move Home's figures
                        conn.execute(
                            "INSERT INTO payment_rollup_deltas (id, merchant_id, livemode, bucket, currency, event_id, "
                            "created_at, attempted_count, succeeded_count, gross_amount, refund_count, refund_amount) "
                            "VALUES (%s, %s, false, %s, 'USD', %s, %s, %s, %s, %s, 0, 0)",
                            (new_id("rud"), merchant_id, bucket, event, now, int(kind == "payment.processing"),
                             int(kind == "payment.succeeded"), 1999 if kind == "payment.succeeded" else 0))
                conn.execute(
                    "INSERT INTO api_request_logs (id, merchant_id, livemode, api_key_id, method, path, status, "
                    "request_id, idempotency_key, latency_ms, ip, request_body, response_body, created_at) "
                    "VALUES (%s, %s, false, NULL, 'POST', '/v1/payments', 200, %s, %s, 30, '127.0.0.1', %s, %s, %s)",
                    (new_id("log"), merchant_id, uuid.uuid4().hex, uuid.uuid4().hex, json.dumps(params, indent=2),
                     json.dumps(json.loads(payment_json), indent=2), now))
                conn.execute(post_sql, {
                    "merchant_id": merchant_id, "livemode": False, "transaction_id": new_id("ltxn"),
                    "business_key": f"capture:{pay}", "kind": "capture", "description": "", "reference": pay,
                    "entry_ids": [new_id("lent"), new_id("lent")],
                    "codes": ["psp_receivable:sandbox:USD", f"seller_payable:{seller_id}:USD"],
                    "directions": ["debit", "credit"], "amounts": [1999, 1999], "currencies": ["USD", "USD"],
                    "account_ids": [new_id("lacc"), new_id("lacc")],
                    "account_types": ["psp_receivable", "seller_payable"], "subjects": ["sandbox", seller_id],
                    "mac_inner": inner, "mac_outer": outer}).fetchone()

        def worker() -> None:
            with psycopg.connect(libpq(env["DATABASE_URL"])) as conn:
                conn.autocommit = True  # each payment is its own explicit transaction (conn.transaction())
                while time.monotonic() < stop_at:
                    one(conn)
                    with lock:
                        done[0] += 1

        started = time.monotonic()
        threads = [threading.Thread(target=worker) for _ in range(self.args.clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - started
        return {"threads": self.args.clients, "payments": done[0], "seconds": round(elapsed, 2),
                "per_second": round(done[0] / elapsed, 1)}


def render(results: dict) -> str:
    t1, t2 = results["throughput"]
    base = results["baseline"]
    replay = results["latency"][-1]["replay"]
    share_1 = t1["per_second"] / base["per_second"]
    share_2 = t2["per_second"] / base["per_second"]
    latency_rows = "\n".join(
        f"| {lat['rate']:g}/s | {lat['workers']} | {lat['confirms']} | {lat['p50_ms']} | {lat['p95_ms']} | "
        f"{lat['p99_ms']} | {lat['processing_share']} % | {lat['max_send_lag_ms']} |" for lat in results["latency"])
    return f"""{SECTION_START}
## Payments

`bench/payments.py` ({results['when']}, {results['machine']}, load average {results['load_before'][0]} before
and {results['load_after'][0]} after the run); Kassa as `kassa.py run` serves it:
gunicorn gthread (2 processes x 8 threads), `KassaWorker` processes (worker.py: RQ's SimpleWorker), the sandbox PSP with no
added latency, PostgreSQL (durable: fsync on) and Redis on the same machine as the load generator.

**End-to-end throughput** (create + confirm + automatic capture in one `POST /v1/payments` with
`confirm=true`; {t1['payments']}/{t2['payments']} payments from {results['clients']} closed-loop clients
over {results['throughput_seconds']} s, counted until the last one succeeded):

| workers | payments/s | answered `processing` | errors |
|---|---|---|---|
| 1 | {t1['per_second']} | {t1['answered_processing']} | {t1['errors']} |
| 2 | {t2['per_second']} | {t2['answered_processing']} | {t2['errors']} |
| plain-SQL baseline ({base['threads']} threads) | {base['per_second']} | | |

End-to-end is {share_1:.0%} (1 worker) and {share_2:.0%} (2 workers) of the plain-SQL baseline
(target: at least 20 %). From 1 to 2 workers throughput changes by x{t2['per_second'] / t1['per_second']:.2f}.
The baseline inserts every row a payment leaves (idempotency key with its stored response, payment,
order, two attempts, three events with fan-out rows, two rollup deltas, the API request log row, the
ledger posting through `ledger_post`), with payloads shaped like the real ones, one transaction per
payment from {base['threads']} threads.

CPU per payment (ms, user + system) during the throughput runs, by process:
{cpu_table(t1, t2)}

**Confirm latency**, open loop for {results['latency'][0]['seconds']:g} s per rate, measured to the answer,
which carries the final status unless the 2 s wait ran out (target at 50/s: p99 < 200 ms, < 1 % `processing`):

| rate | workers | confirms | p50 ms | p95 ms | p99 ms | answered `processing` | max send lag ms |
|---|---|---|---|---|---|---|---|
{latency_rows}

**Replayed idempotent request** (same key and body, {replay['requests']} sequential requests):
p50 {replay['p50_ms']} ms, p95 {replay['p95_ms']} ms, p99 {replay['p99_ms']} ms.

**Bottleneck.** {results['bottleneck']}

Raw figures: `{json.dumps({k: v for k, v in results.items() if k not in ('bottleneck',)})}`
{SECTION_END}
"""


def cpu_table(one: dict, two: dict) -> str:
    names = sorted(set(one.get("cpu_ms_per_payment", {})) | set(two.get("cpu_ms_per_payment", {})))
    rows = ["| process | 1 worker | 2 workers |", "|---|---|---|"]
    for name in names:
        cells = [str(run.get("cpu_ms_per_payment", {}).get(name, "")) for run in (one, two)]
        rows.append(f"| {name} | {cells[0]} | {cells[1]} |")
    total_1 = round(sum(one.get("cpu_ms_per_payment", {}).values()), 1)
    total_2 = round(sum(two.get("cpu_ms_per_payment", {}).values()), 1)
    rows.append(f"| **all** | **{total_1}** | **{total_2}** |")
    return "\n".join(rows)


def write_section(text: str, start: str = SECTION_START, end: str = SECTION_END) -> None:
    """Replace the section between the ``start`` and ``end`` markers of bench/RESULTS.md (or append it)."""
    current = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    if start in current and end in current:
        before = current[:current.index(start)]
        after = current[current.index(end) + len(end):].lstrip("\n")
        current = before + text + ("\n" + after if after else "")
    else:
        current = current.rstrip("\n") + "\n\n" + text
    RESULTS.write_text(current)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of open-loop confirms")
    parser.add_argument("--rate", default="50", help="confirms per second (open loop); several: 10,50")
    parser.add_argument("--clients", type=int, default=16, help="closed-loop clients and baseline threads")
    parser.add_argument("--throughput-seconds", type=float, default=20.0)
    parser.add_argument("--latency-workers", type=int, default=2)
    parser.add_argument("--bottleneck", default="", help="the analysis sentence for RESULTS.md")
    parser.add_argument("--write", action="store_true", help="write the Payments section of bench/RESULTS.md")
    parser.add_argument("--save", help="also store the raw results as JSON in this file")
    parser.add_argument("--from-json", help="render (and --write) results saved by --save instead of running")
    parser.add_argument("--quick", action="store_true",
                        help="only end-to-end throughput with 1 worker and the baseline (while optimising)")
    args = parser.parse_args()
    if args.from_json:
        results = json.loads(Path(args.from_json).read_text())
        if args.bottleneck:
            results["bottleneck"] = args.bottleneck
        text = render(results)
        print(text)
        if args.write:
            write_section(text)
        return 0
    bench = Bench(args)
    try:
        results = {"when": date.today().isoformat(), "load_before": [round(x, 1) for x in os.getloadavg()],
                   "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
                   "clients": args.clients, "throughput_seconds": args.throughput_seconds}
        print("throughput, 1 worker ...", flush=True)
        one = bench.throughput(1)
        print(json.dumps(one), flush=True)
        if args.quick:
            print(json.dumps(bench.baseline()), flush=True)
            return 0
        print("throughput, 2 workers ...", flush=True)
        two = bench.throughput(2)
        print(json.dumps(two), flush=True)
        results["throughput"] = [one, two]
        results["latency"] = []
        for rate in [float(r) for r in args.rate.split(",")]:
            print(f"confirm latency, open loop {rate}/s for {args.duration} s ...", flush=True)
            results["latency"].append(bench.latency(args.latency_workers, rate))
            print(json.dumps(results["latency"][-1]), flush=True)
        print("plain-SQL baseline ...", flush=True)
        results["baseline"] = bench.baseline()
        print(json.dumps(results["baseline"]), flush=True)
        results["load_after"] = [round(x, 1) for x in os.getloadavg()]
        results["bottleneck"] = args.bottleneck or "(not analysed in this run)"
        if args.save:
            Path(args.save).write_text(json.dumps(results, indent=1))
        text = render(results)
        print(text)
        if args.write:
            write_section(text)
    finally:
        bench.drop_databases()
    return 0


if __name__ == "__main__":
    sys.exit(main())
