"""Fixtures for the sandbox PSP tests: the sandbox as a real subprocess on free ports.

The sandbox starts once per test session (about a second) and is wiped through
``/_admin/reset`` before every test; a small local HTTP server receives its callbacks.
Nothing here needs PostgreSQL or Redis.
"""
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
# Test modules import sbx_helpers, unit tests import sandbox_psp in-process: make both
# importable whatever pytest's import mode or working directory is.
for path in (str(HERE), str(HERE.parents[1])):
    if path not in sys.path:
        sys.path.insert(0, path)

from sbx_helpers import (  # noqa: E402 - needs the sys.path set-up above
    WAIT_SECONDS,
    Acquirer,
    HookReceiver,
    Sandbox,
    new_session,
    start_ready_sandbox,
)


@pytest.fixture(scope="session")
def hook_receiver():
    """The local callback receiver the sandbox is pointed at (--hook-url)."""
    receiver = HookReceiver()
    receiver.start()
    yield receiver
    receiver.stop()


@pytest.fixture(scope="session")
def sandbox_process(hook_receiver, tmp_path_factory):
    """One sandbox subprocess for the session; stopped with SIGTERM, which must exit 0."""
    base = tmp_path_factory.mktemp("sandbox_psp")
    data_dir, log_path = base / "data", base / "sandbox.log"
    process, log_file, ports = start_ready_sandbox(data_dir, log_path, hook_receiver.url)
    try:
        with new_session() as http:  # the launcher's way: every listener answers /healthz
            for port in ports.values():
                assert http.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
        acquirers = {name: Acquirer(name, f"http://127.0.0.1:{ports[name]}", ports[name])
                     for name in ("sandbox", "sandbox_b")}
        handle = Sandbox(f"http://127.0.0.1:{ports['public']}", acquirers, hook_receiver, data_dir, log_path)
        yield handle
        handle.close()
    finally:
        process.terminate()
        returncode = process.wait(timeout=WAIT_SECONDS)
        process.stdout.close()
        log_file.close()
    assert returncode == 0, "the sandbox did not exit cleanly on SIGTERM"


@pytest.fixture
def sandbox(sandbox_process):
    """The running sandbox, wiped: no data, real time, no faults, no callbacks received."""
    sandbox_process.admin("/_admin/reset")
    sandbox_process.receiver.clear()
    return sandbox_process
