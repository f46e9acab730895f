"""Redis stalls for 30 s (SIGSTOP), then dies (SIGKILL) and comes back empty, under a steady load of
payments and API reads: no Kassa process exits, every read answers within 2 s, every payment created
meanwhile ends succeeded with exactly one authorization, and `flask ledger verify` passes.

This module runs its own redis-server (the suite's is shared by every other test) and its own web,
worker and sandbox processes under the launcher's supervision against this module's database.
"""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest
import requests

from launcher import ROOT
from launcher.embedded import EmbeddedRedis
from launcher.processes import Ports, Services
from tests.payments.conftest import live_env
from tests.payments.live_helpers import WAIT_SECONDS, Api, Sandbox, new_merchant_key

STALL_SECONDS = 30
DOWN_SECONDS = 5
# The load: a payment (create + confirm in one call), and separately two reads, every this many seconds.
PACE_SECONDS = 0.5
# What an API read may take while Redis is away (the bound).
READ_TIMEOUT_SECONDS = 2


@pytest.fixture(scope="module")
def own_redis():
    base = Path(tempfile.mkdtemp(prefix="kassa-redis-outage-"))
    server = EmbeddedRedis(base, base / "redis.log", password=uuid.uuid4().hex, persistent=False)
    server.start()
    yield server
    if server.child and server.child.alive():
        os.kill(server.child.pid, signal.SIGCONT)  # never leave it stopped
    server.stop()
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def services(database, app, own_redis, request):
    data_dir = Path(tempfile.mkdtemp(prefix="kassa-redis-outage-live-"))
    started = Services(live_env(database, REDIS_URL=own_redis.url), Ports.pick(), data_dir,
                       log_dir=data_dir / "logs", web_workers=2, web_threads=8, supervise=True).start()
    try:
        yield started
    finally:
        started.stop()
        if request.session.testsfailed:
            print(f"\nlogs kept in {data_dir / 'logs'}")
        else:
            shutil.rmtree(data_dir, ignore_errors=True)


class Load:
    """A payment every PACE_SECONDS in one thread, API reads every PACE_SECONDS in another, until stopped."""

    def __init__(self, api: Api, sandbox: Sandbox):
        self.api, self.sandbox = api, sandbox
        self.payments: list[str] = []
        self.slow_reads: list[str] = []
        self.failures: list[str] = []
        self.answered_at: list[float] = []  # monotonic times of the reads that answered 200
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._pay, daemon=True),
                         threading.Thread(target=self._read, daemon=True)]
        self._tokens = [sandbox.token() for _ in range(int((STALL_SECONDS + DOWN_SECONDS + 30) / PACE_SECONDS))]

    def start(self) -> "Load":
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def _pay(self) -> None:
        while not self._stop.wait(PACE_SECONDS):
            try:
                created = self.api.post("/v1/payments", key=str(uuid.uuid4()), amount=1200, currency="eur",
                                        payment_method=self._tokens.pop(), confirm=True)
                if created.status_code != 200:
                    self.failures.append(f"create: {created.status_code} {created.text[:200]}")
                else:
                    self.payments.append(created.json()["id"])
            except requests.RequestException as error:
                self.failures.append(f"create: {error}")

    def _read(self) -> None:
        reader = requests.Session()
        reader.trust_env = False
        reader.headers["Authorization"] = self.api.http.headers["Authorization"]
        while not self._stop.wait(PACE_SECONDS):
            for path in ([f"/v1/payments/{self.payments[-1]}"] if self.payments else []) + ["/v1/payments"]:
                try:
                    response = reader.get(self.api.base_url + path, timeout=READ_TIMEOUT_SECONDS)
                    if response.status_code != 200:
                        self.failures.append(f"read {path}: {response.status_code}")
                    else:
                        self.answered_at.append(time.monotonic())
                except requests.RequestException as error:
                    self.slow_reads.append(f"read {path}: {error}")


def test_redis_stalled_then_killed_under_load_loses_nothing_and_stops_nothing(app, services, own_redis):
    _, key = new_merchant_key(app, "Redis outage shop")
    api, sandbox = Api(services.web_url, key), Sandbox(services.sandbox_url)
    pids = {child.name: child.pid for child in services.children}
    load = Load(api, sandbox).start()
    try:
        time.sleep(2 * PACE_SECONDS)  # a few payments with Redis up
        outage_began = time.monotonic()
        os.kill(own_redis.child.pid, signal.SIGSTOP)
        try:
            time.sleep(STALL_SECONDS)  # the outage's length is the point of the test
        finally:
            os.kill(own_redis.child.pid, signal.SIGCONT)
        time.sleep(2 * PACE_SECONDS)
        os.kill(own_redis.child.pid, signal.SIGKILL)
        own_redis.child.popen.wait()
        time.sleep(DOWN_SECONDS)
        own_redis.start()  # empty, on the same port
        outage_ended = time.monotonic()
        time.sleep(4 * PACE_SECONDS)
    finally:
        load.stop()

    assert load.failures == [] and load.slow_reads == [], (load.failures, load.slow_reads)
    # Reads answered throughout: in every 5 s of the outage (a hang would leave a gap and a slow read).
    for start in range(int(outage_began), int(outage_ended) - 5, 5):
        assert any(start <= at < start + 5 for at in load.answered_at), f"no read answered in {start}..{start + 5}"
    assert len(load.payments) > (STALL_SECONDS + DOWN_SECONDS) / (4 * PACE_SECONDS)
    assert {child.name: child.pid for child in services.children} == pids and services.dead() is None
    assert set(services.restarts.values()) == {0}
    for payment_id in load.payments:
        payment = api.wait_for(payment_id, "succeeded")
        [authorize] = [a for a in payment["attempts"] if a["operation"] == "authorize"]
        assert sandbox.authorizations(f"kassa-{authorize['id']}") == 1, payment
    verify = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "ledger", "verify"], env=services.env,
                            cwd=ROOT, capture_output=True, text=True, timeout=WAIT_SECONDS)
    assert verify.returncode == 0, verify.stdout + verify.stderr
