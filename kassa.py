#!/usr/bin/env python3
"""Kassa's two commands:

    python3 kassa.py run                  # Kassa with demo data, embedded PostgreSQL + Redis, until Ctrl-C
    python3 kassa.py test [pytest args]   # the test suite against ephemeral servers

(and `python3 kassa.py servers-only [--ephemeral]`: just PostgreSQL + Redis, provisioned; and
`python3 kassa.py flask <command>`: a flask command in the environment of the running `run`).

Stdlib-only bootstrap: creates `.venv` with this interpreter, installs Kassa into it
(`pip install -e '.[dev]'`, skipped while pyproject.toml is unchanged), then re-executes itself
as `.venv/bin/python -m launcher ...`. DATABASE_URL (an admin URL) and REDIS_URL use existing
servers instead of embedded ones.
"""
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path

MIN_PYTHON = (3, 11)
ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
VENV_PYTHON = VENV / "bin" / "python"
STAMP = VENV / ".kassa-installed"  # sha256 of the pyproject.toml last installed
PIP_JSON_URL = "https://pypi.org/pypi/pip/json"
COMMANDS = ("run", "test", "servers-only", "flask")


def say(message):
    print(f"kassa: {message}", file=sys.stderr, flush=True)


def venv_usable():
    """The venv exists and its interpreter runs and is new enough (Python upgrades break venvs)."""
    if not VENV_PYTHON.exists():
        return False
    check = f"import sys; sys.exit(sys.version_info < {MIN_PYTHON!r})"
    try:
        return subprocess.run([str(VENV_PYTHON), "-c", check], stdin=subprocess.DEVNULL).returncode == 0
    except OSError:
        return False


def create_venv():
    import venv

    if VENV.exists():
        say("recreating .venv (its interpreter is missing or too old)")
        shutil.rmtree(VENV)
    say(f"creating .venv with Python {sys.version.split()[0]}")
    try:
        import ensurepip  # noqa: F401  (Debian ships it separately, in python3-venv)
        with_pip = True
    except ImportError:
        with_pip = False
    venv.EnvBuilder(with_pip=with_pip).create(VENV)
    if not with_pip:
        install_pip_from_pypi()


def install_pip_from_pypi():
    """Without ensurepip: download pip's wheel from PyPI (hash-checked) and let it install itself."""
    say("ensurepip is not available (Debian's python3-venv); installing pip from PyPI")
    try:
        # 60 s each: small downloads (metadata, a 2 MB wheel); this only bounds a stalled connection.
        with urllib.request.urlopen(PIP_JSON_URL, timeout=60) as response:
            release = json.load(response)
        file = next(f for f in release["urls"] if f["packagetype"] == "bdist_wheel")
        with urllib.request.urlopen(urllib.parse.urljoin(PIP_JSON_URL, file["url"]), timeout=60) as response:
            data = response.read()
        if hashlib.sha256(data).hexdigest() != file["digests"]["sha256"]:
            raise OSError("sha256 mismatch")
        wheel = VENV / file["filename"]  # pip insists on a proper wheel file name
        wheel.write_bytes(data)
    except (OSError, ValueError, KeyError, StopIteration) as exc:
        shutil.rmtree(VENV)
        sys.exit(f"kassa: could not download pip ({exc}); install python3-venv (apt-get install python3-venv)")
    # A pip wheel runs from its own archive: python pip.whl/pip install pip.
    subprocess.run([str(VENV_PYTHON), f"{wheel}/pip", "install", "--quiet", str(wheel)], check=True,
                   stdin=subprocess.DEVNULL)
    wheel.unlink()


def ensure_installed():
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text().strip() == digest:
        return
    # One pip at a time per venv: concurrent runs after a pyproject.toml change would collide.
    with open(VENV / ".kassa-install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (STAMP.exists() and STAMP.read_text().strip() == digest):
            install(digest)


def install(digest):
    say("installing Kassa and its dependencies into .venv (the first time takes a few minutes)")
    STAMP.unlink(missing_ok=True)
    env = dict(os.environ, PIP_ROOT_USER_ACTION="ignore", PIP_DISABLE_PIP_VERSION_CHECK="1")
    result = subprocess.run([str(VENV_PYTHON), "-m", "pip", "install", "--quiet", "-e", ".[dev]"],
                            cwd=ROOT, env=env, stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        sys.exit(f"kassa: pip install -e '.[dev]' failed (exit {result.returncode}); see above")
    STAMP.write_text(digest + "\n")


def main(argv):
    if sys.version_info < MIN_PYTHON:
        sys.exit(f"kassa: Python {'.'.join(map(str, MIN_PYTHON))} or newer is required; "
                 f"this is {sys.version.split()[0]} ({sys.executable})")
    if not argv or argv[0] not in COMMANDS:
        print(__doc__.strip().split("\n\n")[1], file=sys.stderr)
        return 2
    if not venv_usable():
        create_venv()
    ensure_installed()
    if argv[0] != "flask":  # a flask command keeps the caller's directory, for the paths it is given
        os.chdir(ROOT)
    python = str(VENV_PYTHON)
    os.execv(python, [python, "-m", "launcher", *argv])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
