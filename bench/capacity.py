"""Capacity benchmark (issue 16): payments per second and confirm latency when the PSP takes its time.

    source an environment like the test run's (DATABASE_ADMIN_URL, DATABASE_URL, DATABASE_OWNER_URL,
    REDIS_URL, KASSA_TEMPLATE_DB = a database migrated to head, secrets), then:

    .venv/bin/python bench/capacity.py [--latency-ms 300] [--clients 64] [--rate 50] [--write]

Kassa runs as `kassa.py run` starts it (launcher.processes.Services with the same options: gunicorn gthread
2 x 8, KASSA_WORKERS worker processes, one per CPU by default, each with PSP_CONCURRENCY PSP calls in
flight, supervision on), against a fresh database cloned from the template; the sandbox PSP's fault
control (``POST /_admin/faults`` ``latency_ms``) slows both acquirers. Every payment is create + confirm
with automatic capture in one ``POST /v1/payments`` (``confirm=true``), one card token each.

1. Closed loop, ``--clients`` clients, PSP latency 0 ms and then ``--latency-ms`` in the same run:
   payments/s for each (counted until the last one succeeded), their ratio, and the share answered
   ``processing`` (target: at least 0.8 of the 0 ms figure, under 1 % ``processing``).
2. Open loop, ``--rate`` confirms/s for ``--duration`` s at ``--latency-ms``: confirm latency to a final
   status (an answer that says ``processing`` counts until a read shows the final status), p50/p99
   (target: p99 under latency + 200 ms, under 1 % ``processing``).
3. The same open loop with ``--timeout-share`` of the confirms using the PSP-timeout card: p99 of the
   others (target: within 20 % of run 2) and whether any circuit breaker opened (target: none).
4. Memory: PSS (shared pages counted once) of every Kassa process at the end of run 2 (target: < 1.5 GB).

The API key's rate limit is raised (as in bench/payments.py): the benchmark measures payments, not the
per-key limit. ``--write`` replaces the "Capacity" section of bench/RESULTS.md.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import inspect
import json
import os
import platform
import sys
import tempfile
import threading
import time
import uuid
from datetime import date
from pathlib import Path

import psutil
import psycopg
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from payments import (  # noqa: E402 - the end-to-end benchmark's set-up, reused
    HTTP_TIMEOUT,
    ROOT,
    Bench,
    cpu_by_component,
    http,
    libpq,
    percentile,
    write_section,
)

from launcher.processes import Ports, Services  # noqa: E402

SECTION = ("<!-- capacity:start -->", "<!-- capacity:end -->")
VISA = "4242424242424242"
TIMEOUT_CARD = "4000000000000341"
# A payment answered `processing` is read again this often until its status is final.
POLL_SECONDS = 0.05
# Payments made before measuring: imports, pools and prepared statements in every process.
WARM_UP_PAYMENTS = 64


class Tokens:
    """Card tokens minted ahead (a token pays for one payment only), per card number."""

    def __init__(self, sandbox_url: str):
        self.url = sandbox_url
        self._pools: dict[str, list[str]] = {}
        self._lock = threading.Lock()

    def mint(self, number: str) -> str:
        response = http().post(f"{self.url}/v1/tokens", json={
            "number": number, "exp_month": 12, "exp_year": date.today().year + 5, "cvc": "123"}, timeout=HTTP_TIMEOUT)
        response.raise_for_status()
        return response.json()["id"]

    def fill(self, number: str, count: int) -> None:
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            minted = list(pool.map(lambda _: self.mint(number), range(count)))
        with self._lock:
            self._pools.setdefault(number, []).extend(minted)

    def take(self, number: str = VISA) -> str:
        with self._lock:
            pool = self._pools.get(number)
            if pool:
                return pool.pop()
        return self.mint(number)


class Capacity:
    def __init__(self, args):
        self.args = args
        self.bench = Bench(args)  # environment checks, fresh databases, a merchant's key

    def start(self) -> tuple[Services, str, Tokens]:
        env = {**self.bench.env, **self.bench.fresh_database("capacity")}
        key = self.bench.merchant_key(env)
        log_dir = Path(tempfile.mkdtemp(prefix="kassa-bench-capacity-"))
        options = {}
        accepted = inspect.signature(Services).parameters
        if "workers" in accepted:  # what `kassa.py run` passes (an older checkout starts one worker)
            from launcher.processes import default_workers

            options = {"workers": default_workers(), "supervise": True}
        services = Services(env, Ports.pick(), log_dir, log_dir=log_dir / "logs", **options).start()
        tokens = Tokens(services.sandbox_url)
        tokens.fill(VISA, WARM_UP_PAYMENTS)
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda _: self.pay(services.web_url, key, tokens.take()), range(WARM_UP_PAYMENTS)))
        self.wait_all_final(services)
        return services, key, tokens

    def latency(self, services: Services, milliseconds: int) -> None:
        for acquirer in ("sandbox", "sandbox_b"):
            http().post(f"{services.sandbox_url}/_admin/faults", json={"acquirer": acquirer,
                                                                       "latency_ms": milliseconds},
                        timeout=HTTP_TIMEOUT).raise_for_status()

    def pay(self, url: str, key: str, token: str, session: requests.Session | None = None) -> dict:
        session = session or http()
        headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": uuid.uuid4().hex}
        body = {"amount": 1999, "currency": "usd", "payment_method": token, "confirm": True}
        try:
            response = session.post(f"{url}/v1/payments", json=body, headers=headers, timeout=HTTP_TIMEOUT)
        except requests.ConnectionError:
            # A kept-alive connection that gunicorn closed while idle (its keep-alive is 2 s): the same
            # request again, with the same key, is safe (the first answer, if there was one, comes back).
            response = session.post(f"{url}/v1/payments", json=body, headers=headers, timeout=HTTP_TIMEOUT)
        body = response.json()
        return body if response.status_code == 200 else {"status": f"http_{response.status_code}", "id": None}

    def wait_all_final(self, services: Services, limit: float = 120.0) -> tuple[float, int]:
        """Wait (at most ``limit`` s) until no payment is processing: (monotonic time then, payments succeeded)."""
        deadline = time.monotonic() + limit
        with psycopg.connect(libpq(services.env["DATABASE_URL"]), autocommit=True) as conn:
            while True:
                processing, succeeded = conn.execute(
                    "SELECT count(*) FILTER (WHERE status = 'processing'), count(*) FILTER (WHERE status = 'succeeded')"
                    " FROM payments").fetchone()
                if processing == 0 or time.monotonic() > deadline:
                    return time.monotonic(), succeeded
                time.sleep(0.02)

    # -- 1. closed loop --------------------------------------------------------------------------------

    def closed_loop(self, services: Services, key: str, tokens: Tokens, milliseconds: int) -> dict:
        self.latency(services, milliseconds)
        tokens.fill(VISA, int(self.args.closed_seconds * 200))
        url = services.web_url
        stop_at = time.monotonic() + self.args.closed_seconds
        statuses: list[str] = []
        lock = threading.Lock()

        def client() -> None:
            session = http()
            while time.monotonic() < stop_at:
                body = self.pay(url, key, tokens.take(), session)
                with lock:
                    statuses.append(body["status"])

        _, succeeded_before = self.wait_all_final(services, limit=0)
        started = time.monotonic()
        cpu_before = cpu_by_component(services)
        threads = [threading.Thread(target=client) for _ in range(self.args.clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        # Counted until the last one succeeded; a system that cannot keep up is given a minute more, and
        # what succeeded by then is its figure.
        done_at, succeeded = self.wait_all_final(services, limit=60)
        cpu_after = cpu_by_component(services)
        total = succeeded - succeeded_before
        return {"latency_ms": milliseconds, "clients": self.args.clients, "payments": total,
                "requests": len(statuses), "seconds": round(done_at - started, 2),
                "per_second": round(total / (done_at - started), 1),
                "processing_share": round(100 * statuses.count("processing") / max(total, 1), 2),
                "other_statuses": sum(1 for s in statuses if s not in ("processing", "succeeded")),
                "cpu_ms_per_payment": {name: round(1000 * (cpu_after[name] - cpu_before.get(name, 0.0))
                                                   / max(total, 1), 1) for name in cpu_after}}

    # -- 2./3. open loop -------------------------------------------------------------------------------

    def open_loop(self, services: Services, key: str, tokens: Tokens, timeout_share: float) -> dict:
        self.latency(services, self.args.latency_ms)
        total = int(self.args.rate * self.args.duration)
        every = round(1 / timeout_share) if timeout_share else 0
        slow = {index for index in range(total) if every and index % every == every - 1}
        tokens.fill(VISA, total - len(slow))
        if slow:
            tokens.fill(TIMEOUT_CARD, len(slow))
        url = services.web_url
        local = threading.local()

        def confirm(index: int) -> tuple[bool, float, str]:
            if not hasattr(local, "session"):
                local.session = http()
            began = time.perf_counter()
            body = self.pay(url, key, tokens.take(TIMEOUT_CARD if index in slow else VISA), local.session)
            answered = body["status"]
            status = answered
            while status == "processing" and body.get("id"):
                time.sleep(POLL_SECONDS)
                status = local.session.get(f"{url}/v1/payments/{body['id']}",
                                           headers={"Authorization": f"Bearer {key}"}, timeout=HTTP_TIMEOUT).json()["status"]
            return index in slow, (time.perf_counter() - began) * 1000, answered

        with concurrent.futures.ThreadPoolExecutor(max_workers=400) as pool:
            futures = []
            t0 = time.perf_counter() + 0.5
            for index in range(total):
                pause = t0 + index / self.args.rate - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)
                futures.append(pool.submit(confirm, index))
            results = [future.result() for future in futures]
        memory = pss_by_component(services)
        others = [latency for was_slow, latency, _ in results if not was_slow]
        answered_processing = sum(1 for was_slow, _, answered in results if not was_slow and answered == "processing")
        return {"rate": self.args.rate, "seconds": self.args.duration, "latency_ms": self.args.latency_ms,
                "confirms": total, "timeout_card_share": timeout_share, "timeout_cards": len(slow),
                "p50_ms": round(percentile(others, 50), 1), "p95_ms": round(percentile(others, 95), 1),
                "p99_ms": round(percentile(others, 99), 1), "max_ms": round(max(others), 1),
                "processing_share": round(100 * answered_processing / max(len(others), 1), 2),
                "breakers_opened": breakers_opened(services), "pss_mb": memory}

    def run(self) -> dict:
        results = {"when": date.today().isoformat(), "load_before": [round(x, 1) for x in os.getloadavg()],
                   "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
                   "code": str(ROOT)}
        services, key, tokens = self.start()
        try:
            results["workers"] = sum(1 for c in services.children if c.name.startswith("worker"))
            results["psp_concurrency"] = services.env.get("PSP_CONCURRENCY") or "32 (the default)"
            for milliseconds in (0, self.args.latency_ms):
                print(f"closed loop, {self.args.clients} clients, PSP latency {milliseconds} ms ...", flush=True)
                results.setdefault("closed", []).append(self.closed_loop(services, key, tokens, milliseconds))
                print(json.dumps(results["closed"][-1]), flush=True)
            for share in (() if self.args.closed_only else (0.0, self.args.timeout_share)):
                print(f"open loop, {self.args.rate}/s for {self.args.duration} s, {share:.0%} timeout cards ...",
                      flush=True)
                results.setdefault("open", []).append(self.open_loop(services, key, tokens, share))
                print(json.dumps(results["open"][-1]), flush=True)
        finally:
            services.stop()
            self.bench.drop_databases()
        results["load_after"] = [round(x, 1) for x in os.getloadavg()]
        return results


def kassa_processes(services: Services) -> dict[str, list[psutil.Process]]:
    """Kassa's processes by component (each child with its own children: gunicorn's workers)."""
    found: dict[str, list[psutil.Process]] = {}
    for child in services.children:
        name = "worker" if child.name.startswith("worker") else child.name
        try:
            leader = psutil.Process(child.pid)
            found.setdefault(name, []).extend([leader, *leader.children(recursive=True)])
        except psutil.Error:
            continue
    return found


def pss_by_component(services: Services) -> dict[str, float]:
    """PSS in MB per component and in total (PostgreSQL and Redis are not Kassa's processes: not counted)."""
    sizes: dict[str, float] = {}
    for name, processes in kassa_processes(services).items():
        for process in processes:
            try:
                sizes[name] = sizes.get(name, 0.0) + process.memory_full_info().pss / 2**20
            except psutil.Error:
                continue
    sizes = {name: round(size, 1) for name, size in sizes.items()}
    sizes["total"] = round(sum(sizes.values()), 1)
    return sizes


def breakers_opened(services: Services) -> int:
    """Circuit breaker transitions to open so far (from /metrics, every process)."""
    text = http().get(f"{services.web_url}/metrics", headers={"Authorization": f"Bearer {services.env['METRICS_TOKEN']}"},
                      timeout=HTTP_TIMEOUT).text
    return int(sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("kassa_psp_breaker_transitions_total{") and 'to_state="open"' in line))


def render(results: dict) -> str:
    zero, slow = results["closed"]
    plain, mixed = results["open"]
    ratio = slow["per_second"] / zero["per_second"] if zero["per_second"] else 0.0
    change = (mixed["p99_ms"] / plain["p99_ms"] - 1) * 100 if plain["p99_ms"] else 0.0
    return f"""{SECTION[0]}
## Capacity

`bench/capacity.py` ({results['when']}, {results['machine']}, load average {results['load_before'][0]} before and
{results['load_after'][0]} after the run). Kassa as `kassa.py run` starts it: gunicorn gthread (2 processes x 32
threads), {results['workers']} worker processes with PSP_CONCURRENCY {results['psp_concurrency']} each, the
sandbox PSP with `latency_ms` on both acquirers; create + confirm + automatic capture in one call, one token
per payment.

| run | figure | target |
|---|---|---|
| closed loop, {zero['clients']} clients, PSP 0 ms | {zero['per_second']} payments/s, {zero['processing_share']} % `processing` | |
| closed loop, {slow['clients']} clients, PSP {slow['latency_ms']} ms | {slow['per_second']} payments/s ({ratio:.2f} of 0 ms), {slow['processing_share']} % `processing` | ≥ 0.8, < 1 % |
| open loop {plain['rate']:g}/s, {plain['seconds']:g} s, PSP {plain['latency_ms']} ms | p50 {plain['p50_ms']} ms, p99 {plain['p99_ms']} ms, {plain['processing_share']} % `processing` | p99 < {plain['latency_ms'] + 200} ms, < 1 % |
| the same, {mixed['timeout_card_share']:.0%} timeout cards ({mixed['timeout_cards']}) | others: p50 {mixed['p50_ms']} ms, p99 {mixed['p99_ms']} ms ({change:+.0f} %), breakers opened: {mixed['breakers_opened']} | within 20 %, none |
| memory (PSS) at the end of the open loop | {plain['pss_mb']['total']} MB | < 1.5 GB |
{before_rows(results)}
CPU per payment (ms) in the closed loops, by process: 0 ms {zero['cpu_ms_per_payment']}; {slow['latency_ms']} ms {slow['cpu_ms_per_payment']}.
PSS by process (MB): {plain['pss_mb']}.

{results.get('analysis', '')}

Raw figures: `{json.dumps({k: v for k, v in results.items() if k != 'analysis'})}`
{SECTION[1]}
"""


def before_rows(results: dict) -> str:
    """Rows for the previous code's figures, when measured the same way (``--closed-only`` on its checkout)
    and added to the results as ``before``, and for open loops at a lower rate (``slower_open``)."""
    rows = []
    for run in results.get("before", []):
        rows.append(f"| before issue 16 (one PSP call at a time per worker), closed loop, {run['clients']} clients, "
                    f"PSP {run['latency_ms']} ms | {run['per_second']} payments/s, {run['processing_share']} % "
                    f"`processing` | |")
    for run in results.get("slower_open", []):  # the open loops of a run with a lower --rate
        rows.append(f"| open loop {run['rate']:g}/s, {run['seconds']:g} s, PSP {run['latency_ms']} ms, "
                    f"{run['timeout_card_share']:.0%} timeout cards | p50 {run['p50_ms']} ms, p99 {run['p99_ms']} ms, "
                    f"{run['processing_share']} % `processing`, breakers opened: {run['breakers_opened']} | |")
    return "\n".join(rows) + ("\n" if rows else "")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency-ms", type=int, default=300)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--closed-seconds", type=float, default=20.0)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--timeout-share", type=float, default=0.05)
    parser.add_argument("--closed-only", action="store_true", help="only the closed loops (e.g. on older code)")
    parser.add_argument("--analysis", default="", help="the analysis paragraph for RESULTS.md")
    parser.add_argument("--save", help="also store the raw results as JSON in this file")
    parser.add_argument("--from-json", help="render (and --write) results saved by --save instead of running")
    parser.add_argument("--write", action="store_true", help="write the Capacity section of bench/RESULTS.md")
    args = parser.parse_args()
    if args.from_json:
        results = json.loads(Path(args.from_json).read_text())
    else:
        results = Capacity(args).run()
        if args.save:
            Path(args.save).write_text(json.dumps(results, indent=1))
    if args.analysis:
        results["analysis"] = args.analysis
    if not results.get("open"):  # --closed-only: the figures, nothing to write
        print(json.dumps(results["closed"]))
        return 0
    text = render(results)
    print(text)
    if args.write:
        write_section(text, *SECTION)
    return 0


if __name__ == "__main__":
    sys.exit(main())
