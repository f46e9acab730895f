"""Browser tests: the app served by a live server thread, driven by headless Chromium through Playwright.

Use the fixtures from a test package's conftest.py::

    from tests.browser import browser, live_server, page  # noqa: F401  (pytest fixtures)

then, in a test::

    def test_something(page, live_server):
        page.goto(live_server.url("/login"))
        page.get_by_label("Email").fill("owner@example.com")
        ...
        assert_accessible(page)   # axe-core: no serious or critical violations

- ``live_server`` (module scope): the module's ``app`` (tests/conftest.py, bound to the module's own
  database) served by werkzeug's threaded server on a free port of 127.0.0.1. ``live_server.url(path)`` is
  an absolute URL; ``live_server.app`` the app (the same names as pytest-flask's fixture, which this one
  replaces: pytest-flask pushes its request context from ``live_server.app``).
  The test's own ``db_session`` and the server see the same database, so rows a test commits are visible
  to the browser and the other way round.
- ``browser`` (module scope): one headless Chromium (Debian's /usr/bin/chromium when present, else the one
  Playwright installed).
- ``page`` (function scope): a fresh browser context (no cookies) and page per test, 1280x800 unless the
  test asks for another size with ``page.set_viewport_size``.
- ``assert_accessible(page)``: runs axe-core (shipped with axe-playwright-python) on the current page.
"""
import logging
import os
import threading

import pytest
from werkzeug.serving import make_server

CHROMIUM = "/usr/bin/chromium"
# No sandbox: CI runs as root in a container, where Chromium's sandbox cannot start. The rest turns off
# background traffic (updates, sync, field trials) that would make a test depend on the network.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run",
]
# Playwright's waits, in milliseconds: generous, because a first page load in a cold CI container can
# take seconds; a passing test never waits this long.
DEFAULT_TIMEOUT_MS = 15_000
BLOCKING_IMPACTS = ("serious", "critical")


class LiveServer:
    """A werkzeug server for a Flask app in a daemon thread."""

    def __init__(self, app, host: str = "127.0.0.1"):
        self.app = app
        # Port 0: the OS picks a free port, so parallel runs and other servers never collide.
        self._server = make_server(host, 0, app, threaded=True)
        self.base_url = f"http://{host}:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="live-server", daemon=True)

    def start(self) -> "LiveServer":
        self._thread.start()
        return self

    def url(self, path: str = "") -> str:
        """The absolute URL of a path on this server."""
        return self.base_url + path

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


@pytest.fixture(scope="module")
def live_server(app):
    """The module's app, served for the whole module (``live_server.url("/login")``)."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request drowns test output
    server = LiveServer(app).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium for the module."""
    from playwright.sync_api import sync_playwright

    playwright = sync_playwright().start()
    options = {"headless": True, "args": CHROMIUM_ARGS}
    if os.path.exists(CHROMIUM):
        options["executable_path"] = CHROMIUM
    instance = playwright.chromium.launch(**options)
    yield instance
    instance.close()
    playwright.stop()


@pytest.fixture
def page(browser):
    """A page in a fresh context (its own cookies), closed after the test."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(DEFAULT_TIMEOUT_MS)
    tab = context.new_page()
    yield tab
    context.close()


def axe_violations(page, impacts=BLOCKING_IMPACTS) -> list[dict]:
    """axe-core's violations on the current page with one of the given impacts."""
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    return [v for v in results.response["violations"] if v.get("impact") in impacts]


def assert_accessible(page, impacts=BLOCKING_IMPACTS) -> None:
    """Fail with a readable list when axe-core finds serious or critical accessibility violations."""
    violations = axe_violations(page, impacts)
    if violations:
        lines = [f"{page.url}: {len(violations)} accessibility violation(s)"]
        for violation in violations:
            targets = ", ".join(str(node.get("target")) for node in violation.get("nodes", [])[:5])
            lines.append(f"- [{violation['impact']}] {violation['id']}: {violation['help']} ({targets})")
        raise AssertionError("\n".join(lines))
