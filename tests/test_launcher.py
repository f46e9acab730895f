"""The launcher: `python kassa.py run` starts everything, serves, and leaves nothing behind on Ctrl-C."""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest

from launcher import ROOT
from launcher.commands import pytest_exit_status
from launcher.environment import MANAGED
from launcher.processes import free_port

# A first `run` on an empty data folder does initdb, migrations and demo seeding, then starts
# three processes that import the whole app; slow CI machines need tens of seconds. This bounds a hang.
START_TIMEOUT = 300
# Children get 15 s to stop (in parallel), PostgreSQL 30 s; anything slower is a hang.
STOP_TIMEOUT = 120

_no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def test_no_tests_collected_is_a_failure():
    assert pytest_exit_status(5) != 0
    assert pytest_exit_status(0) == 0
    assert pytest_exit_status(1) == 1
    assert pytest_exit_status(-9) == 137


def _healthy(url: str) -> bool:
    try:
        # 2 s per attempt: a local server answers in milliseconds; bounds a stuck listener.
        with _no_proxy.open(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _tree(proc: psutil.Process) -> set[psutil.Process]:
    try:
        return set(proc.children(recursive=True))
    except psutil.NoSuchProcess:
        return set()


def _alive(procs) -> list[psutil.Process]:
    alive = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                alive.append(p)
        except psutil.NoSuchProcess:
            pass
    return alive


def _run_once(env: dict, web_port: int, log_path) -> None:
    with open(log_path, "ab") as log:
        launcher = subprocess.Popen([sys.executable, str(ROOT / "kassa.py"), "run"], env=env, cwd=ROOT,
                                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
    root = psutil.Process(launcher.pid)
    seen: set[psutil.Process] = set()
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not _healthy(f"http://127.0.0.1:{web_port}/healthz"):
            seen |= _tree(root)
            assert launcher.poll() is None, f"launcher exited ({launcher.returncode}):\n{log_path.read_text()}"
            assert time.monotonic() < deadline, f"not healthy in {START_TIMEOUT} s:\n{log_path.read_text()}"
            time.sleep(0.2)  # polling for start-up; no test outcome depends on this
        seen |= _tree(root)
        names = {p.name() for p in _alive(seen)}
        assert {"postgres", "redis-server"} <= names, names
        assert len(seen) >= 8, "postgres, redis, sandbox, worker, gunicorn master + 2 workers, ..."

        launcher.send_signal(signal.SIGINT)
        assert launcher.wait(timeout=STOP_TIMEOUT) == 0, log_path.read_text()
        deadline = time.monotonic() + 10  # reparented orphans are reaped by init asynchronously
        while _alive(seen) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(seen), f"left behind: {[(p.pid, p.name()) for p in _alive(seen)]}"
    finally:
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)
            launcher.wait()
        for p in _alive(seen):
            p.kill()


@pytest.fixture
def data_dir():
    # Not under pytest's tmp_path: as root, PostgreSQL runs as its own user and must traverse the
    # parents, and every pytest session resets /tmp/pytest-of-<user> to 0700.
    path = Path(tempfile.mkdtemp(prefix="kassa-launcher-test-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_run_starts_serves_and_stops_without_leftovers(data_dir):
    env = {k: v for k, v in os.environ.items() if k not in MANAGED and not k.startswith("KASSA_")}
    web_port = free_port()
    env.update(KASSA_DATA_DIR=str(data_dir / "data"), KASSA_PORT=str(web_port),
               KASSA_SANDBOX_PORT=str(free_port({web_port})))
    # Twice on the same data folder: the second run reuses the database, secrets and demo data.
    for _ in range(2):
        _run_once(env, web_port, data_dir / "launcher.log")
    assert oct((data_dir / "data" / "secrets.env").stat().st_mode & 0o777) == "0o600"
