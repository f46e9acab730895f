"""The launcher's commands: `run`, `test`, `servers-only` and `flask`.

Each of the first three sets up PostgreSQL and Redis (embedded unless DATABASE_URL / REDIS_URL are set;
DATABASE_URL is then an admin URL of an external server), provisions roles and the database, builds the
child environment, migrates, and then runs Kassa (`run`) or pytest (`test`). Whatever happens,
everything started is stopped again, children first, then Redis and PostgreSQL.

`run` leaves the environment of its processes in `.kassa/run.env` while it runs; `flask` runs a Flask
command in that environment (or, without a running `run`, in the caller's own, e.g. in production).
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from launcher import ROOT, LauncherError
from launcher.embedded import EmbeddedPostgres, EmbeddedRedis, ensure_traversable
from launcher.environment import child_env, load_secrets, read_run_env, write_run_env
from launcher.processes import (
    RESTART_BASE_SECONDS,
    RESTART_MAX_SECONDS,
    STOP_TIMEOUT,
    Ports,
    Services,
    default_workers,
)
from launcher.provision import provision

# Migrating an empty database takes seconds; seeding demo data a few more. These bound a hang
# (a lock held by a forgotten session) so that CI fails with a message instead of timing out.
MIGRATE_TIMEOUT = 600.0
SEED_TIMEOUT = 300.0
PYTEST_NO_TESTS = 5


class Interrupted(BaseException):
    """SIGINT, SIGTERM or SIGHUP arrived; unwinding stops everything that was started."""


_stopping = False


def _on_signal(signum, frame):
    global _stopping
    if _stopping:
        print("kassa: already stopping, please wait", file=sys.stderr)
        return
    _stopping = True
    print(f"\nkassa: {signal.Signals(signum).name}, stopping...", file=sys.stderr)
    raise Interrupted(signum)


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)  # SIGHUP: the terminal was closed


def install_signal_handlers() -> None:
    for signum in STOP_SIGNALS:
        signal.signal(signum, _on_signal)


def shielded(stop):
    """A clean-up callback during which (and after which) signals no longer interrupt."""
    def call():
        global _stopping
        _stopping = True
        stop()
    return call


@dataclass
class Backing:
    """What PostgreSQL and Redis set-up produced."""

    env: dict[str, str]
    postgres: EmbeddedPostgres | None
    redis: EmbeddedRedis | None

    def dead(self) -> str | None:
        for name, server in (("PostgreSQL", self.postgres), ("Redis", self.redis)):
            if server and not server.alive():
                return f"embedded {name} exited; log {server.log_path}:\n{server.child.log_tail() if server.child else ''}"
        return None

    def restart_dead(self, retry_at: dict[str, float]) -> None:
        """Start an embedded server that exited again, on its port (its clients reconnect), with the same
        backoff as the processes' (launcher/processes.py); ``retry_at`` keeps when each may be tried next."""
        for name, server in (("PostgreSQL", self.postgres), ("Redis", self.redis)):
            if not server or server.alive() or time.monotonic() < retry_at.get(name, 0.0):
                continue
            status = server.child.exit_status() if server.child else "stopped"
            print(f"kassa: embedded {name} exited ({status}); starting it again on port {server.port}",
                  file=sys.stderr, flush=True)
            failures = retry_at.get(f"{name} failures", 0)
            try:
                if server.child:
                    server.child.popen.wait()
                server.start()
                retry_at[f"{name} failures"] = 0
            except LauncherError as exc:
                delay = min(RESTART_MAX_SECONDS, RESTART_BASE_SECONDS * 2 ** failures)
                retry_at[f"{name} failures"] = failures + 1
                retry_at[name] = time.monotonic() + delay
                print(f"kassa: could not start {name} ({exc}); trying again in {delay:.0f} s",
                      file=sys.stderr, flush=True)


@contextmanager
def backing_services(data_dir: Path, secret_values: dict[str, str], dbname: str, ephemeral: bool,
                     defaults: dict[str, str], forced: dict[str, str], recreate_db: bool = False):
    """Start (or reach) PostgreSQL and Redis, provision `dbname` (dropped first if `recreate_db`),
    yield a `Backing`; stop them on exit. `ephemeral` servers trade durability for speed."""
    with ExitStack() as stack:
        logs = data_dir / "logs"
        postgres = redis = None
        if os.environ.get("DATABASE_URL"):
            admin_url = os.environ["DATABASE_URL"]
            print("kassa: using the PostgreSQL server of DATABASE_URL (as admin)")
        else:
            postgres = EmbeddedPostgres(data_dir, logs / "postgres.log", ephemeral=ephemeral)
            stack.callback(shielded(postgres.stop))
            postgres.start()
            admin_url = postgres.set_password(secret_values["KASSA_DB_ADMIN_PASSWORD"])
            print(f"kassa: embedded PostgreSQL on 127.0.0.1:{postgres.port} (data {postgres.pgdata})")
        if os.environ.get("REDIS_URL"):
            redis_url = os.environ["REDIS_URL"]
            print("kassa: using the Redis server of REDIS_URL")
        else:
            redis = EmbeddedRedis(data_dir, logs / "redis.log", secret_values["KASSA_REDIS_PASSWORD"],
                                  persistent=not ephemeral)
            stack.callback(shielded(redis.stop))
            redis.start()
            redis_url = redis.url
            print(f"kassa: embedded Redis on 127.0.0.1:{redis.port}")
        urls = provision(admin_url, dbname, secret_values["KASSA_DB_OWNER_PASSWORD"],
                         secret_values["KASSA_DB_APP_PASSWORD"], recreate=recreate_db)
        env = child_env(secret_values, urls.app, urls.owner, urls.admin, redis_url, defaults, forced)
        yield Backing(env, postgres, redis)


def run_child(argv: list[str], env: dict[str, str], timeout: float, capture: bool = False) -> subprocess.CompletedProcess:
    """Run a short-lived command in its own process group; kill the group if we are interrupted."""
    proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE if capture else None, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise LauncherError(f"{' '.join(argv[2:])} did not finish within {timeout:.0f} s") from None
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return subprocess.CompletedProcess(argv, proc.returncode, out, None)


def flask(env: dict[str, str], *args: str, timeout: float, capture: bool = False) -> subprocess.CompletedProcess:
    result = run_child([sys.executable, "-m", "flask", "--app", "wsgi", *args], env, timeout, capture)
    if result.returncode != 0:
        if capture and result.stdout:
            print(result.stdout, end="")
        raise LauncherError(f"`flask {' '.join(args)}` failed ({result.returncode})")
    return result


def migrate(env: dict[str, str]) -> None:
    """Upgrade to the head (there is one: tests/test_launcher.py), then fail on drift."""
    print("kassa: migrating (flask db upgrade)")
    flask(env, "db", "upgrade", timeout=MIGRATE_TIMEOUT)
    flask(env, "db", "check", timeout=MIGRATE_TIMEOUT)


def _data_dir_path() -> Path:
    # Relative to the repository, whatever the caller's directory (`flask` keeps the caller's).
    return (ROOT / (os.environ.get("KASSA_DATA_DIR") or ".kassa")).resolve()


def _data_dir() -> Path:
    path = _data_dir_path()
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


RUN_ENV = "run.env"  # in the data folder while `run` runs: the environment `flask` uses
_TRUE = ("1", "true", "yes", "on")  # the words app/webhooks/settings.py reads as true


def development_notice(env: dict[str, str]) -> str | None:
    """What this environment relaxes for a developer's machine, said when `run` starts; None in production."""
    kassa_env = env.get("KASSA_ENV") or "production"
    if kassa_env == "production":
        return None
    relaxed = ["insecure cookies (no Secure flag, so plain http works)"]
    private = env.get("WEBHOOKS_ALLOW_PRIVATE", "true" if kassa_env == "development" else "")
    if private.strip().lower() in _TRUE:
        relaxed.append("private webhook targets allowed (localhost and private networks)")
    relaxed.append("the mail outbox open to anyone at /dashboard/dev/mail")
    return (f"{kassa_env} mode (KASSA_ENV={kassa_env}), for this machine only: {'; '.join(relaxed)}. "
            "Never expose it to a network; for production see README.md, 'Running in production'.")


def _fresh_dir(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def _port(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


def cmd_run() -> int:
    """Kassa with demo data in the foreground until Ctrl-C / SIGTERM."""
    data_dir = _data_dir()
    secret_values = load_secrets(data_dir / "secrets.env")
    defaults = {"KASSA_ENV": "development"}
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        defaults["PROMETHEUS_MULTIPROC_DIR"] = str(_fresh_dir(data_dir / "prometheus"))
    install_signal_handlers()
    try:
        with backing_services(data_dir, secret_values, "kassa", False, defaults, {}) as backing:
            migrate(backing.env)
            ports = Ports.pick(web=_port("KASSA_PORT", 5000), sandbox=_port("KASSA_SANDBOX_PORT", 8200))
            # Links in mails and seed output name the address the web server will listen on.
            backing.env.setdefault("PUBLIC_BASE_URL", f"http://127.0.0.1:{ports.web}")
            demo = flask(backing.env, "seed-demo", timeout=SEED_TIMEOUT, capture=True).stdout
            workers = default_workers()
            services = Services(backing.env, ports, data_dir, log_dir=data_dir / "logs", workers=workers,
                                supervise=True)
            with ExitStack() as stack:
                stack.callback(shielded(services.stop))
                services.start()
                run_env = data_dir / RUN_ENV
                stack.callback(os.close, write_run_env(run_env, services.env))
                stack.callback(run_env.unlink, missing_ok=True)
                web = services.web_url
                print(f"\nKassa is running (logs in {data_dir / 'logs'}):\n"
                      f"  dashboard    {web}/dashboard/\n"
                      f"  admin        {web}/admin/\n"
                      f"  API          {web}/v1/\n"
                      f"  sandbox PSP  {services.sandbox_url}/\n")
                print(demo.rstrip())
                print("\nFlask commands run in this environment with `python3 kassa.py flask <command>` "
                      "(e.g. `python3 kassa.py flask ledger verify`).")
                concurrency = services.env.get("PSP_CONCURRENCY") or "32"
                print(f"\nkassa: {workers} worker process{'es' if workers > 1 else ''} (KASSA_WORKERS; default one "
                      f"per CPU), each with up to {concurrency} PSP calls in flight (PSP_CONCURRENCY; default 32). "
                      "A process that exits is started again; Ctrl-C stops everything.")
                notice = development_notice(services.env)
                if notice:
                    print(f"\nkassa: {notice}")
                print("\nPress Ctrl-C to stop.", flush=True)
                retry_at: dict[str, float] = {}
                while True:
                    # The processes' supervisor is a thread of Services; the embedded servers are ours.
                    backing.restart_dead(retry_at)
                    time.sleep(0.5)  # polling server liveness; nothing here waits on time passing
    except Interrupted:
        print("kassa: stopped")
        return 0


def pytest_exit_status(returncode: int) -> int:
    """pytest's exit code, except that 'no tests collected' is a failure, never a silent pass."""
    if returncode == PYTEST_NO_TESTS:
        print("kassa: pytest collected no tests; treating that as a failure", file=sys.stderr)
        return 1
    if returncode < 0:  # killed by a signal: the shell's convention, 128 + signal number
        return 128 - returncode
    return returncode


def _become_subreaper() -> None:
    """Orphaned descendants (e.g. servers of a test whose pytest was killed) become our children,
    so that `_stop_strays` can find them. Linux only; elsewhere a no-op."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        pass


def _stop_strays(keep: set[int]) -> None:
    """Stop our child processes other than `keep` (each with its process group)."""
    import psutil

    def signal_group(p: psutil.Process, sig: int) -> None:
        try:
            if os.getpgid(p.pid) == p.pid:  # a group of its own (never ours)
                os.killpg(p.pid, sig)
            else:
                p.send_signal(sig)
        except (ProcessLookupError, psutil.NoSuchProcess):
            pass

    strays = [p for p in psutil.Process().children() if p.pid not in keep]
    for p in strays:
        print(f"kassa: stopping leftover process {p.pid}", file=sys.stderr)
        signal_group(p, signal.SIGTERM)
    _, alive = psutil.wait_procs(strays, timeout=STOP_TIMEOUT)  # wait_procs also reaps them
    for p in alive:
        signal_group(p, signal.SIGKILL)
    psutil.wait_procs(alive, timeout=STOP_TIMEOUT)


def run_pytest(env: dict[str, str], args: list[str]) -> int:
    """Run pytest in its own group. SIGINT/SIGTERM/SIGHUP reach it as SIGINT, which pytest turns
    into an orderly stop (fixtures' teardown stops their servers); a second signal kills it."""
    proc = subprocess.Popen([sys.executable, "-m", "pytest", *args], env=env, cwd=ROOT, start_new_session=True)
    signals = []

    def forward(signum, frame):
        signals.append(signum)
        try:
            if len(signals) == 1:
                os.kill(proc.pid, signal.SIGINT)
            else:
                os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    for signum in STOP_SIGNALS:
        signal.signal(signum, forward)
    try:
        returncode = proc.wait()
    finally:
        install_signal_handlers()
    if signals:
        print("kassa: tests interrupted", file=sys.stderr)
        return returncode or 130
    return returncode


def whole_suite_args() -> list[str]:
    """The whole suite, its modules spread over one pytest-xdist worker per CPU (`KASSA_TEST_WORKERS`
    overrides; 1 runs in this process). Each module stays on one worker (`--dist loadfile`): a module's
    fixtures (its database, app, live servers) are set up once. tests/conftest.py gives each worker its own
    Redis database and metrics directory."""
    workers = int(os.environ.get("KASSA_TEST_WORKERS") or os.cpu_count() or 1)
    if workers <= 1:
        return ["tests"]
    return ["tests", "-n", str(workers), "--dist", "loadfile"]


def cmd_test(pytest_args: list[str]) -> int:
    """Ephemeral servers, a migrated template database, then pytest."""
    install_signal_handlers()
    tmp = Path(tempfile.mkdtemp(prefix="kassa-test-"))
    try:
        if os.geteuid() == 0:
            ensure_traversable(tmp)  # PostgreSQL runs as its own user below it
        forced = {"KASSA_ENV": "test", "KASSA_TEMPLATE_DB": "kassa_template"}
        defaults = {
            # Tests exercise timeouts against a local sandbox: fail fast instead of waiting 1 s / 5 s.
            "PSP_CONNECT_TIMEOUT": "0.5", "PSP_READ_TIMEOUT": "1",
            "PROMETHEUS_MULTIPROC_DIR": str(_fresh_dir(tmp / "prometheus")),
        }
        secret_values = load_secrets(None)
        if os.environ.get("DATABASE_URL"):
            # Roles are server-wide: keep the passwords that `run` uses against the same server.
            stored = load_secrets(_data_dir() / "secrets.env")
            secret_values.update({k: stored[k] for k in ("KASSA_DB_OWNER_PASSWORD", "KASSA_DB_APP_PASSWORD")})
        _become_subreaper()
        # The template is recreated: on an external server it may hold an older run's schema.
        with backing_services(tmp, secret_values, "kassa_template", True, defaults, forced,
                              recreate_db=True) as backing:
            migrate(backing.env)
            pytest_args = pytest_args or whole_suite_args()
            print(f"kassa: running pytest {' '.join(pytest_args)}", flush=True)
            try:
                return pytest_exit_status(run_pytest(backing.env, pytest_args))
            finally:
                keep = {s.child.pid for s in (backing.postgres, backing.redis) if s and s.child}
                shielded(lambda: _stop_strays(keep))()
    except Interrupted:
        print("kassa: test run interrupted", file=sys.stderr)
        return 130
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def cmd_servers_only(ephemeral: bool) -> int:
    """PostgreSQL + Redis, provisioned (database `kassa`, migrated to head), until Ctrl-C."""
    install_signal_handlers()
    tmp = Path(tempfile.mkdtemp(prefix="kassa-servers-")) if ephemeral else None
    try:
        if tmp and os.geteuid() == 0:
            ensure_traversable(tmp)
        data_dir = tmp or _data_dir()
        secret_values = load_secrets(None if ephemeral else data_dir / "secrets.env")
        defaults = {"KASSA_ENV": "development"}
        with backing_services(data_dir, secret_values, "kassa", ephemeral, defaults, {}) as backing:
            migrate(backing.env)  # what a benchmark or a hand-run `flask` command expects to find
            print("\n# environment for Kassa processes (secrets included: keep private)")
            for key in ("DATABASE_URL", "DATABASE_OWNER_URL", "DATABASE_ADMIN_URL", "REDIS_URL", "KASSA_ENV",
                        "SECRET_KEY", "KASSA_ENCRYPTION_KEYS", "LEDGER_HMAC_KEY", "API_KEY_HMAC_KEY",
                        "METRICS_TOKEN", "SANDBOX_PSP_SECRET", "SANDBOX_WEBHOOK_SECRET"):
                print(f"export {key}='{backing.env[key]}'")
            print("\nPress Ctrl-C to stop.", flush=True)
            while True:
                problem = backing.dead()
                if problem:
                    raise LauncherError(problem)
                time.sleep(0.5)  # polling server liveness
    except Interrupted:
        return 0
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


def cmd_flask(args: list[str]) -> int:
    """`flask <args>` (Kassa's app, wsgi.py) in the environment of the running `kassa.py run`, else in the
    caller's own environment if it names a database; the caller's working directory is kept."""
    run_env_path = _data_dir_path() / RUN_ENV
    run_env = read_run_env(run_env_path)
    if run_env is not None:
        env = {**os.environ, **run_env}
        print(f"kassa: using the environment of the running `kassa.py run` ({run_env_path})", file=sys.stderr)
    elif os.environ.get("DATABASE_URL"):
        env = dict(os.environ)
    else:
        raise LauncherError(
            "Kassa is not running, and DATABASE_URL is not set. Start it with `python3 kassa.py run` (in another "
            "terminal) and run this again, or set Kassa's environment (DATABASE_URL, SECRET_KEY, ...: README.md, "
            "'Running in production') to use your own servers.")
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-m", "flask", "--app", str(ROOT / "wsgi.py"), *args], env)
    return 0  # not reached: execve replaces this process
