"""Start, health-check and stop Kassa's own processes: sandbox PSP, web (gunicorn) and worker.

`kassa.py run` uses it, and so does tests/conftest.py for end-to-end tests (live web + worker +
sandbox PSP against a per-test database). Stdlib only.

API:

    ports = Ports.pick()                        # all free; Ports.pick(web=5000, sandbox=8200) prefers those
    with Services(env, ports, data_dir, log_dir=...) as services:
        services.env                            # `env` plus SANDBOX_PSP_URL / SANDBOX_ACQUIRER_URLS for `ports`
        services.web_url, services.sandbox_url  # http://127.0.0.1:PORT
        services.dead()                         # the first Child that exited, or None
    # on leaving the block every process is stopped (see `stop_children`)

`Services(...).start()` / `.stop()` do the same without `with`. Options: `web_workers=2`,
`web_threads=32`, `workers=1` (worker processes: "worker", with the scheduler, then "worker-2", ...),
`with_scheduler=True`, `sandbox_args=["--timeout-delay", "2"]` (extra flags), `supervise=False`.

Supervision (`supervise=True`, what `kassa.py run` uses): a thread restarts any child that exits, after
RESTART_BASE_SECONDS doubling up to RESTART_MAX_SECONDS while it keeps dying (reset once it ran for
RESTART_STABLE_SECONDS), with a log line each time; only `stop()` (Ctrl-C) stops everything.
`services.restarts` counts restarts per child name.
`env` must hold what the conventions table lists (DATABASE_URL, REDIS_URL, the secrets,
SANDBOX_PSP_SECRET, SANDBOX_WEBHOOK_SECRET, ...); the sandbox PSP stores its data in
`data_dir/sandbox`. With `log_dir`, each process writes `<log_dir>/<name>.log`; without it they
inherit stdout/stderr. Processes run with cwd = the repository root.

Lower level: `spawn(name, argv, env, log_path)` -> `Child` (own process group, no stdin),
`wait_healthy(child, url)`, `stop_children(children)`, `free_port()`, `port_is_free(port)`.
"""
from __future__ import annotations

import glob
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from launcher import ROOT, LauncherError

# Gunicorn imports the whole app in each worker and a cold CI machine also compiles every .pyc
# first; that takes seconds, so a minute without a healthy answer means it is broken, not slow.
HEALTH_TIMEOUT = 60.0
# Longer than gunicorn's --graceful-timeout (10 s, in-flight requests finish) and than a worker's
# current job (its PSP call is bounded by the 5 s read timeout); after that, SIGKILL.
STOP_TIMEOUT = 15.0
# Ports never to hand out: a system PostgreSQL and Redis may listen there.
RESERVED_PORTS = {5432, 6379}
# Threads per web process: a confirm holds its thread while it waits for the worker's outcome (the PSP's
# latency, up to 2 s), so by Little's law 2 x 32 threads carry 64 confirms at once: about 180 per second at
# an acquirer's 300 ms, more than the machine's CPU does. A waiting thread holds no database connection.
WEB_THREADS = 32
# A child that exits is started again after 1 s, then 2, 4 ... up to 30 s while it keeps exiting: quick
# after a one-off crash, and a child that cannot start costs a log line every half minute, not a busy loop.
# One that ran for a minute was healthy: its next restart starts from 1 s again.
RESTART_BASE_SECONDS = 1.0
RESTART_MAX_SECONDS = 30.0
RESTART_STABLE_SECONDS = 60.0
# The supervisor looks at its children this often (a waitid per child: nothing).
SUPERVISE_SECONDS = 0.2
# Worker processes `kassa.py run` starts when KASSA_WORKERS is not set: one per CPU (a worker's CPU per
# payment is its limit; its PSP calls wait in threads), at most 8 (each holds a database pool).
MAX_DEFAULT_WORKERS = 8


def default_workers() -> int:
    """KASSA_WORKERS, else one worker process per CPU (at most MAX_DEFAULT_WORKERS)."""
    value = os.environ.get("KASSA_WORKERS")
    if value:
        return max(1, int(value))
    return max(1, min(MAX_DEFAULT_WORKERS, os.cpu_count() or 1))


def forget_metrics_of(pid: int, env: dict[str, str]) -> None:
    """What prometheus_client.multiprocess.mark_process_dead does, without importing it (stdlib only): a
    dead process's live gauges (in-flight calls, worker heartbeats) no longer count."""
    directory = env.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        for path in glob.glob(os.path.join(directory, f"gauge_live*_{pid}.db")):
            os.remove(path)

# Health checks go straight to 127.0.0.1, never through an HTTP proxy from the environment.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class Child:
    """A process started by `spawn`: the leader of its own process group."""

    name: str
    popen: subprocess.Popen
    log_path: Path | None = None

    @property
    def pid(self) -> int:
        return self.popen.pid

    def exit_status(self) -> str | None:
        """None while running, else 'exit code N' / 'signal N' (without reaping the process)."""
        if self.popen.returncode is not None:
            return _describe(self.popen.returncode)
        try:
            # WNOWAIT leaves the exited leader a zombie, so its pid (= the group id) cannot be
            # reused before stop_children has killed the rest of the group.
            info = os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return "exited"
        if info is None:
            return None
        return f"signal {info.si_status}" if info.si_code in (os.CLD_KILLED, os.CLD_DUMPED) else f"exit code {info.si_status}"

    def alive(self) -> bool:
        return self.exit_status() is None

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of the log file, for error messages."""
        if not self.log_path or not self.log_path.exists():
            return ""
        text = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        return "\n".join(f"    {line}" for line in text)


def _describe(returncode: int) -> str:
    return f"signal {-returncode}" if returncode < 0 else f"exit code {returncode}"


def spawn(name: str, argv: list[str], env: dict[str, str], log_path: Path | None = None,
          cwd: Path = ROOT, **popen_kwargs) -> Child:
    """Start argv in its own session (so a terminal's Ctrl-C reaches only the launcher, which
    stops children in order), with no stdin, output appended to log_path if given."""
    log = open(log_path, "ab") if log_path else None
    try:
        popen = subprocess.Popen(
            argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT if log else None,
            start_new_session=True, **popen_kwargs,
        )
    finally:
        if log:
            log.close()
    return Child(name, popen, log_path)


def _killpg(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def stop_children(children: list[Child], timeout: float = STOP_TIMEOUT, sig: int = signal.SIGTERM,
                  whole_group: bool = True) -> None:
    """Stop children together: `sig` to each process group (or to the leader only if not
    `whole_group`), wait up to `timeout` for the leaders, then SIGKILL whatever is left in each
    group (leftovers of a clean exit too), and reap."""
    for child in children:
        if child.alive():
            if whole_group:
                _killpg(child.pid, sig)
            else:
                try:
                    os.kill(child.pid, sig)
                except ProcessLookupError:
                    pass
    deadline = time.monotonic() + timeout
    for child in children:
        while child.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        if child.alive():
            print(f"kassa: {child.name} did not stop within {timeout:.0f} s; killing it", file=sys.stderr)
    for child in children:
        if child.popen.returncode is None:
            _killpg(child.pid, signal.SIGKILL)
            child.popen.wait()


def port_is_free(port: int) -> bool:
    """True if nothing listens on 127.0.0.1:port (checked the way servers bind, SO_REUSEADDR)."""
    if port in RESERVED_PORTS or not 0 < port < 65536:
        return False
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


# Listening ports are drawn below Linux's ephemeral range (32768-60999 by default): a port the OS
# hands out for bind(0) may be taken by an outgoing connection's local port before our server binds it.
LISTEN_PORT_RANGE = (20000, 32000)


def free_port(exclude: set[int] = frozenset()) -> int:
    """A port free on 127.0.0.1 a moment ago (there is a small window before the user binds it)."""
    while True:
        port = random.randint(*LISTEN_PORT_RANGE)
        if port in RESERVED_PORTS or port in exclude:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port


@dataclass(frozen=True)
class Ports:
    """Ports of one set of services: web, the sandbox's public listener and its two acquirers."""

    web: int
    sandbox: int
    sandbox_a: int
    sandbox_b: int

    @classmethod
    def pick(cls, web: int | None = None, sandbox: int | None = None) -> "Ports":
        """Use `web` and `sandbox`..`sandbox+2` where free, free ports otherwise."""
        taken: set[int] = set()

        def one(preferred: int | None) -> int:
            port = preferred if preferred and preferred not in taken and port_is_free(preferred) else free_port(taken)
            taken.add(port)
            return port

        web_port = one(web)
        if sandbox and all(p not in taken and port_is_free(p) for p in (sandbox, sandbox + 1, sandbox + 2)):
            taken.update((sandbox, sandbox + 1, sandbox + 2))
            return cls(web_port, sandbox, sandbox + 1, sandbox + 2)
        return cls(web_port, one(None), one(None), one(None))


def service_env(env: dict[str, str], ports: Ports) -> dict[str, str]:
    """env plus the sandbox URLs that match `ports` (these always follow the ports)."""
    env = dict(env)
    env["SANDBOX_PSP_URL"] = f"http://127.0.0.1:{ports.sandbox}"
    env["SANDBOX_ACQUIRER_URLS"] = (
        f"sandbox=http://127.0.0.1:{ports.sandbox_a},sandbox_b=http://127.0.0.1:{ports.sandbox_b}"
    )
    return env


def wait_healthy(child: Child, url: str, timeout: float = HEALTH_TIMEOUT) -> None:
    """Poll `url` until it answers 200; fail early, with the log's tail, if the process exits."""
    deadline = time.monotonic() + timeout
    last_error: object = None
    while True:
        status = child.exit_status()
        if status:
            raise LauncherError(f"{child.name} exited ({status}) before {url} answered\n{child.log_tail()}")
        try:
            # 2 s per attempt: a local health check answers in milliseconds; this only bounds a
            # listener that accepted but hangs, so that the overall deadline is still honoured.
            with _opener.open(url, timeout=2) as response:
                if response.status == 200:
                    return
                last_error = f"HTTP {response.status}"
        except urllib.error.HTTPError as exc:
            last_error = f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            last_error = exc
        if time.monotonic() > deadline:
            raise LauncherError(f"{child.name}: {url} not healthy after {timeout:.0f} s ({last_error})\n{child.log_tail()}")
        time.sleep(0.1)


@dataclass
class _Restart:
    """Supervision state of one child name."""

    argv: list[str]
    started_at: float
    count: int = 0          # restarts so far
    streak: int = 0         # restarts since it last ran long enough to count as healthy
    due_at: float | None = None


class Services:
    """Sandbox PSP, workers (the first with the scheduler) and web, started together and stopped together."""

    def __init__(self, env: dict[str, str], ports: Ports, data_dir: Path, log_dir: Path | None = None,
                 web_workers: int = 2, web_threads: int = WEB_THREADS, with_scheduler: bool = True,
                 sandbox_args: list[str] = (), python: str = sys.executable, workers: int = 1,
                 supervise: bool = False) -> None:
        self.env = service_env(env, ports)
        self.ports = ports
        self.data_dir = Path(data_dir)
        self.log_dir = Path(log_dir) if log_dir else None
        self.web_workers, self.web_threads = web_workers, web_threads
        self.workers = workers
        self.with_scheduler = with_scheduler
        self.sandbox_args = list(sandbox_args)
        self.python = python
        self.supervise = supervise
        self.children: list[Child] = []
        self._restarts: dict[str, _Restart] = {}
        self._stop_supervising = threading.Event()
        self._supervisor: threading.Thread | None = None

    @property
    def restarts(self) -> dict[str, int]:
        """Restarts so far per child name."""
        return {name: state.count for name, state in self._restarts.items()}

    @property
    def web_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.web}"

    @property
    def sandbox_url(self) -> str:
        return self.env["SANDBOX_PSP_URL"]

    def _log(self, name: str) -> Path | None:
        if not self.log_dir:
            return None
        self.log_dir.mkdir(parents=True, exist_ok=True)
        return self.log_dir / f"{name}.log"

    def _spawn(self, name: str, argv: list[str]) -> Child:
        child = spawn(name, argv, self.env, self._log(name))
        self.children.append(child)
        self._restarts[name] = _Restart(argv, time.monotonic())
        return child

    def start(self) -> "Services":
        """Start all three and wait until sandbox and web answer /healthz (the worker has no
        endpoint: it counts as started if it is still running once web is healthy)."""
        p, web = self.ports, self.web_url
        try:
            sandbox_data = self.data_dir / "sandbox"
            sandbox_data.mkdir(parents=True, exist_ok=True)
            sandbox = self._spawn("sandbox-psp", [
                self.python, "-m", "sandbox_psp", "--port", str(p.sandbox),
                "--acquirer", f"sandbox={p.sandbox_a}", "--acquirer", f"sandbox_b={p.sandbox_b}",
                "--data", str(sandbox_data),
                "--secret", self.env["SANDBOX_PSP_SECRET"], "--webhook-secret", self.env["SANDBOX_WEBHOOK_SECRET"],
                "--hook-url", f"{web}/hooks/sandbox",
                "--cors-origin", web, "--cors-origin", f"http://localhost:{p.web}", *self.sandbox_args,
            ])
            for number in range(1, self.workers + 1):
                scheduler = ["--with-scheduler"] if self.with_scheduler and number == 1 else []
                self._spawn("worker" if number == 1 else f"worker-{number}", [self.python, "worker.py", *scheduler])
            web_child = self._spawn("web", [
                self.python, "-m", "gunicorn", "wsgi:app", "--bind", f"127.0.0.1:{p.web}",
                "--worker-class", "gthread", "--workers", str(self.web_workers), "--threads", str(self.web_threads),
                # In-flight requests get 10 s to finish on SIGTERM (less than STOP_TIMEOUT).
                "--graceful-timeout", "10", "--access-logfile", "-",
            ])
            wait_healthy(sandbox, f"{self.sandbox_url}/healthz")
            wait_healthy(web_child, f"{web}/healthz")
            dead = self.dead()
            if dead:
                raise LauncherError(f"{dead.name} exited ({dead.exit_status()})\n{dead.log_tail()}")
        except BaseException:
            self.stop()
            raise
        if self.supervise:
            self._supervisor = threading.Thread(target=self._supervise_forever, name="supervisor", daemon=True)
            self._supervisor.start()
        return self

    def dead(self) -> Child | None:
        """The first process that has exited, if any."""
        return next((c for c in self.children if not c.alive()), None)

    def restart_dead(self, now: float | None = None) -> None:
        """One round of supervision: note each child that exited (and when to start it again), and start
        again those whose backoff is over."""
        now = time.monotonic() if now is None else now
        for index, child in enumerate(list(self.children)):
            status = child.exit_status()
            if status is None:
                continue
            state = self._restarts[child.name]
            if state.due_at is None:
                if now - state.started_at >= RESTART_STABLE_SECONDS:
                    state.streak = 0
                delay = min(RESTART_MAX_SECONDS, RESTART_BASE_SECONDS * 2 ** state.streak)
                state.due_at = now + delay
                print(f"kassa: {child.name} exited ({status}); starting it again in {delay:.0f} s"
                      + (f", log {child.log_path}" if child.log_path else ""), file=sys.stderr, flush=True)
            elif now >= state.due_at:
                _killpg(child.pid, signal.SIGKILL)  # whatever is left of its process group
                child.popen.wait()
                forget_metrics_of(child.pid, self.env)
                fresh = spawn(child.name, state.argv, self.env, self._log(child.name))
                self.children[index] = fresh
                state.count += 1
                state.streak += 1
                state.started_at, state.due_at = now, None
                print(f"kassa: {child.name} started again (pid {fresh.pid}, restart {state.count})",
                      file=sys.stderr, flush=True)

    def _supervise_forever(self) -> None:
        while not self._stop_supervising.wait(SUPERVISE_SECONDS):
            try:
                self.restart_dead()
            except Exception as exc:  # noqa: BLE001 - supervision must outlive one failed restart
                print(f"kassa: could not restart a process: {exc}", file=sys.stderr, flush=True)

    def stop(self) -> None:
        self._stop_supervising.set()
        if self._supervisor is not None:
            self._supervisor.join()
            self._supervisor = None
        stop_children(self.children)
        self.children = []

    def __enter__(self) -> "Services":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
