"""The launcher: `python kassa.py run` starts everything, serves, says it is in development mode, and leaves
nothing behind on Ctrl-C; `kassa.py flask` runs flask commands in its environment (or fails clearly); the
migrations have one head, so that a plain `flask db upgrade` takes a fresh database to it."""
import os
import re
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
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy.engine import make_url

from launcher import ROOT
from launcher.commands import development_notice, pytest_exit_status
from launcher.environment import MANAGED
from launcher.processes import RESTART_STABLE_SECONDS, Ports, Services, default_workers, free_port
from launcher.provision import provision
from tests.conftest import drop_test_database

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


def _started(log_path, runs_before: int) -> bool:
    """The launcher said it is up (after the environment file for `kassa.py flask` was written)."""
    return log_path.exists() and log_path.read_text().count("Press Ctrl-C to stop.") > runs_before


def _run_once(env: dict, web_port: int, log_path, while_running=lambda: None) -> None:
    runs_before = log_path.read_text().count("Press Ctrl-C to stop.") if log_path.exists() else 0
    with open(log_path, "ab") as log:
        launcher = subprocess.Popen([sys.executable, str(ROOT / "kassa.py"), "run"], env=env, cwd=ROOT,
                                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
    root = psutil.Process(launcher.pid)
    seen: set[psutil.Process] = set()
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not (_healthy(f"http://127.0.0.1:{web_port}/healthz") and _started(log_path, runs_before)):
            seen |= _tree(root)
            assert launcher.poll() is None, f"launcher exited ({launcher.returncode}):\n{log_path.read_text()}"
            assert time.monotonic() < deadline, f"not healthy in {START_TIMEOUT} s:\n{log_path.read_text()}"
            time.sleep(0.2)  # polling for start-up; no test outcome depends on this
        seen |= _tree(root)
        names = {p.name() for p in _alive(seen)}
        assert {"postgres", "redis-server"} <= names, names
        assert len(seen) >= 8, "postgres, redis, sandbox, worker, gunicorn master + 2 workers, ..."
        while_running()

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


def _plain_env(**values) -> dict:
    """The test's environment without anything Kassa's launcher manages: a user's plain shell."""
    env = {k: v for k, v in os.environ.items() if k not in MANAGED and not k.startswith("KASSA_")}
    env.update(values)
    return env


def _shell(command: str, env: dict, cwd=ROOT) -> subprocess.CompletedProcess:
    # 300 s bounds a hang; a flask command starts in seconds (the first may compile the app's .pyc files).
    return subprocess.run(command, shell=True, env=env, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=300)


def test_run_starts_serves_and_stops_without_leftovers(data_dir):
    web_port = free_port()
    env = _plain_env(KASSA_DATA_DIR=str(data_dir / "data"), KASSA_PORT=str(web_port),
                     KASSA_SANDBOX_PORT=str(free_port({web_port})))
    log_path = data_dir / "launcher.log"
    run_env = data_dir / "data" / "run.env"

    def use_the_printed_commands():
        assert oct(run_env.stat().st_mode & 0o777) == "0o600"
        # What the launcher suggests works pasted into a plain shell (no DATABASE_URL, no secrets).
        [hint] = re.findall(r"`(python3 kassa\.py flask api-key create --merchant mer_\w+)`", log_path.read_text())
        created = _shell(hint, env)
        assert created.returncode == 0, created.stderr
        assert created.stdout.strip().startswith("sk_test_")
        current = _shell("python3 kassa.py flask db current", env)
        assert current.returncode == 0, current.stderr
        assert "(head)" in current.stdout

    # Twice on the same data folder: the second run reuses the database, secrets and demo data (and prints
    # how to mint another key instead of the first one).
    _run_once(env, web_port, log_path)
    _run_once(env, web_port, log_path, while_running=use_the_printed_commands)
    assert oct((data_dir / "data" / "secrets.env").stat().st_mode & 0o777) == "0o600"
    assert not run_env.exists()  # removed when the run stopped
    log = log_path.read_text()
    assert "development mode (KASSA_ENV=development)" in log and "insecure cookies" in log


def test_development_notice_names_what_is_relaxed():
    notice = development_notice({"KASSA_ENV": "development"})
    for relaxed in ("insecure cookies", "private webhook targets allowed", "mail outbox open",
                    "Running in production"):
        assert relaxed in notice
    assert "private webhook" not in development_notice({"KASSA_ENV": "development", "WEBHOOKS_ALLOW_PRIVATE": "false"})
    assert development_notice({"KASSA_ENV": "production"}) is None
    assert development_notice({}) is None  # production is the default


def test_kassa_flask_fails_clearly_when_kassa_is_not_running(data_dir):
    env = _plain_env(KASSA_DATA_DIR=str(data_dir))
    (data_dir / "run.env").write_text("DATABASE_URL=postgresql://gone@127.0.0.1:1/kassa\n")  # a killed run's, unlocked
    result = _shell(f"python3 {ROOT / 'kassa.py'} flask ledger trial-balance", env, cwd=data_dir)
    assert result.returncode == 1
    assert "Kassa is not running, and DATABASE_URL is not set" in result.stderr
    assert "python3 kassa.py run" in result.stderr
    assert "Traceback" not in result.stderr


def _alembic() -> ScriptDirectory:
    config = Config(str(ROOT / "migrations" / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "migrations"))
    return ScriptDirectory.from_config(config)


def test_migrations_have_one_head():
    heads = _alembic().get_heads()
    assert len(heads) == 1, (f"migrations have {len(heads)} heads {heads}: chain the new revision on the head "
                             "(or add a merge revision), so that a plain `flask db upgrade` works")


def test_plain_flask_db_upgrade_takes_a_fresh_database_to_the_head(data_dir):
    """`kassa.py flask db upgrade` as an operator types it, in their own environment (DATABASE_URL set)."""
    app_url, owner_url = make_url(os.environ["DATABASE_URL"]), make_url(os.environ["DATABASE_OWNER_URL"])
    name = f"fresh_{data_dir.name[-8:].lower().replace('-', '_')}"
    urls = provision(os.environ["DATABASE_ADMIN_URL"], name, owner_url.password, app_url.password)
    try:
        env = {**_plain_env(KASSA_DATA_DIR=str(data_dir)), "DATABASE_URL": urls.app, "DATABASE_OWNER_URL": urls.owner,
               **{k: os.environ[k] for k in ("REDIS_URL", "SECRET_KEY", "KASSA_ENCRYPTION_KEYS", "LEDGER_HMAC_KEY",
                                             "API_KEY_HMAC_KEY", "KASSA_ENV")}}
        upgraded = _shell("python3 kassa.py flask db upgrade", env)
        assert upgraded.returncode == 0, upgraded.stderr
        current = _shell("python3 kassa.py flask db current", env)
        assert f"{_alembic().get_current_head()} (head)" in current.stdout, current.stderr
    finally:
        drop_test_database(name)


def _exited(child) -> None:
    deadline = time.monotonic() + 30
    while child.exit_status() is None:
        assert time.monotonic() < deadline, f"{child.name} did not exit"
        time.sleep(0.02)  # waiting for a killed process to be gone; no outcome depends on the time


def test_a_child_that_exits_is_started_again_with_backoff_and_its_gauges_are_forgotten(tmp_path, capsys):
    metrics = tmp_path / "prometheus"
    metrics.mkdir()
    services = Services({"PROMETHEUS_MULTIPROC_DIR": str(metrics)}, Ports(1, 2, 3, 4), tmp_path,
                        log_dir=tmp_path / "logs")
    first = services._spawn("worker", [sys.executable, "-c", "import time; time.sleep(600)"])
    gauges = metrics / f"gauge_livesum_{first.pid}.db"
    gauges.write_bytes(b"")
    start = time.monotonic()
    try:
        os.kill(first.pid, signal.SIGKILL)
        _exited(first)
        services.restart_dead(now=start + 1)
        assert "worker exited (signal 9); starting it again in 1 s" in capsys.readouterr().err
        services.restart_dead(now=start + 1.5)
        assert services.children == [first]  # not before its backoff is over
        services.restart_dead(now=start + 2)
        [second] = services.children
        assert second.pid != first.pid and second.alive() and services.restarts == {"worker": 1}
        assert not gauges.exists()  # a dead process's in-flight calls and heartbeat no longer count
        assert "worker started again" in capsys.readouterr().err

        os.kill(second.pid, signal.SIGKILL)  # dies again at once: twice the wait
        _exited(second)
        services.restart_dead(now=start + 3)
        assert "starting it again in 2 s" in capsys.readouterr().err
        services.restart_dead(now=start + 5)
        [third] = services.children
        assert third.alive() and services.restarts == {"worker": 2}

        os.kill(third.pid, signal.SIGKILL)  # after a long healthy run the backoff starts over
        _exited(third)
        services.restart_dead(now=start + 5 + RESTART_STABLE_SECONDS)
        assert "starting it again in 1 s" in capsys.readouterr().err
    finally:
        services.stop()


def test_kassa_run_starts_one_worker_per_cpu_unless_told(monkeypatch):
    monkeypatch.delenv("KASSA_WORKERS", raising=False)
    assert default_workers() == max(1, min(8, os.cpu_count() or 1))
    monkeypatch.setenv("KASSA_WORKERS", "3")
    assert default_workers() == 3
