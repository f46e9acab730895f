"""The process itself: ready line, clean exit on SIGINT, data kept across restarts."""
import signal
import socket

import sbx_helpers
from sbx_helpers import FUTURE_YEAR, WAIT_SECONDS, new_session, start_ready_sandbox, start_sandbox

CARD = {"number": "4242424242424242", "exp_month": 12, "exp_year": FUTURE_YEAR, "cvc": "123"}


def run_once(data_dir, log_path):
    """Start a sandbox, tokenize a card, stop it with SIGINT; return (token, exit status)."""
    process, log_file, ports = start_ready_sandbox(data_dir, log_path, hook_url=None)
    try:
        with new_session() as http:
            token = http.post(f"http://127.0.0.1:{ports['public']}/v1/tokens", json=CARD).json()
    finally:
        process.send_signal(signal.SIGINT)
        returncode = process.wait(timeout=WAIT_SECONDS)
        process.stdout.close()
        log_file.close()
    return token, returncode


def test_sigint_exits_cleanly_and_the_vault_survives_a_restart(tmp_path):
    first, returncode = run_once(tmp_path / "data", tmp_path / "first.log")
    assert returncode == 0
    second, returncode = run_once(tmp_path / "data", tmp_path / "second.log")
    assert returncode == 0
    assert first["card"]["fingerprint"] == second["card"]["fingerprint"]  # vault key persisted


def test_port_in_use_fails_fast(tmp_path, monkeypatch):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        monkeypatch.setattr(sbx_helpers, "free_port", lambda: port)
        process, log_file, _ = start_sandbox(tmp_path / "data", tmp_path / "busy.log", hook_url=None)
        returncode = process.wait(timeout=WAIT_SECONDS)
        process.stdout.close()
        log_file.close()
    assert returncode == 1
    assert "cannot listen" in (tmp_path / "busy.log").read_text()
