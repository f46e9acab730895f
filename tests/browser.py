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
  to the browser and the other way round. Stopping it waits for every request thread, so nothing the
  server started still holds a database connection when the module's engine is disposed.
- ``browser`` (module scope): one headless Chromium (Debian's /usr/bin/chromium when present, else the one
  Playwright installed).
- ``page`` (function scope): a fresh browser context (no cookies) and page per test, 1280x800 unless the
  test asks for another size with ``page.set_viewport_size``.
- ``assert_accessible(page)``: runs axe-core (shipped with axe-playwright-python) on the current page.
- ``record_csp_violations(page)`` before navigating, then ``csp_violations(page)``: the current document's
  Content-Security-Policy violations (``securitypolicyviolation`` events), as readable lines.
"""
import logging
import os
import socket
import threading
from contextlib import suppress

import pytest
from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler

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
class _RequestHandler(WSGIRequestHandler):
    """werkzeug's handler, telling the server while its connection is still waiting for a request line."""

    def setup(self) -> None:
        super().setup()
        self.server.waiting_for_request(self.connection, True)

    def parse_request(self) -> bool:
        # Called once the request line has been read: from here on the connection is serving a request.
        self.server.waiting_for_request(self.connection, False)
        return super().parse_request()

    def finish(self) -> None:
        self.server.waiting_for_request(self.connection, False)
        super().finish()


class _JoiningServer(ThreadedWSGIServer):
    """werkzeug's threaded server, whose ``server_close()`` waits for its request threads.

    werkzeug makes request threads daemons, and socketserver neither tracks nor joins daemon threads, so
    ``server_close()`` returned while a request could still be running, or werkzeug, in the same thread
    once the body was sent, could still be running the response's ``call_on_close`` callbacks (the API
    request log and the key's last-use time are written there, on a pooled connection of their own). The
    module's engine was then disposed under them, and the connection they returned to the discarded pool
    was later closed by the garbage collector, with psycopg's "deleted while still open" warning.
    Non-daemon threads are tracked, and ``server_close()`` joins them (socketserver's ``block_on_close``).
    """

    daemon_threads = False

    def __init__(self, host: str, port: int, app):
        self._lock = threading.Lock()
        self._idle: set[socket.socket] = set()
        self._closing = False
        super().__init__(host, port, app, handler=_RequestHandler)

    def waiting_for_request(self, connection: socket.socket, waiting: bool) -> None:
        with self._lock:
            if not waiting:
                self._idle.discard(connection)
            elif self._closing:  # accepted just before the server stopped: end it at once
                _end(connection)
            else:
                self._idle.add(connection)

    def server_close(self) -> None:
        """Close the listening socket and wait for the request threads, ending idle connections first.

        werkzeug's ``serve_forever`` calls this itself once its loop has stopped (``shutdown()``)."""
        self.close_idle_connections()
        super().server_close()

    def close_idle_connections(self) -> None:
        """End connections that have not sent a request (a browser's preconnect, a context a failed test left
        open), now and from now on: their threads would otherwise wait for a request line until the client
        closed them, and ``server_close()`` would wait for those threads."""
        with self._lock:
            self._closing = True
            for connection in self._idle:
                _end(connection)


def _end(connection: socket.socket) -> None:
    with suppress(OSError):  # already closed by the client
        connection.shutdown(socket.SHUT_RDWR)  # a thread blocked reading it gets b"" (end of stream)


class LiveServer:
    """A werkzeug server for a Flask app, accepting in a background thread, a thread per request."""

    def __init__(self, app, host: str = "127.0.0.1"):
        self.app = app
        # Port 0: the OS picks a free port, so parallel runs and other servers never collide.
        self._server = _JoiningServer(host, 0, app)
        self.base_url = f"http://{host}:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="live-server", daemon=True)

    def start(self) -> "LiveServer":
        self._thread.start()
        return self

    def url(self, path: str = "") -> str:
        """The absolute URL of a path on this server."""
        return self.base_url + path

    def stop(self) -> None:
        """Stop accepting, then wait for every request, and what runs after its response, to finish."""
        self._server.shutdown()  # ends serve_forever's loop: no connection is accepted after this
        # serve_forever then calls server_close() in that thread, which returns once every request thread
        # has finished.
        self._thread.join()


@pytest.fixture(scope="module")
def live_server(app):
    """The module's app, served for the whole module (``live_server.url("/login")``).

    Stopped before the ``app`` fixture's teardown disposes the engine (this fixture depends on ``app``),
    and stopping joins the request threads: no server thread holds a pooled connection by then."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request drowns test output
    server = LiveServer(app).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium for the module."""
    from playwright.sync_api import expect, sync_playwright

    # Assertions' waits too (their own default is 5 s), for every context of the module: the suite runs two
    # modules at once on a 2-CPU machine, where a page's answer can take seconds.
    expect.set_options(timeout=DEFAULT_TIMEOUT_MS)

    # The context manager stops Playwright (its driver process) even when the launch fails, so that the
    # next module gets a clear launch error instead of "Sync API inside the asyncio loop".
    with sync_playwright() as playwright:
        options = {"headless": True, "args": CHROMIUM_ARGS}
        if os.path.exists(CHROMIUM):
            options["executable_path"] = CHROMIUM
        instance = playwright.chromium.launch(**options)
        try:
            yield instance
        finally:
            instance.close()


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



# Registered before any page script on every navigation (Playwright's init scripts are not subject to the CSP).
_RECORD_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__cspViolations.push(`${e.violatedDirective} blocked ${e.blockedURI || "inline"} at ${e.sourceFile}:${e.lineNumber}`);
});
"""


def record_csp_violations(page) -> None:
    """From the next navigation on, record every document's CSP violations for ``csp_violations``."""
    page.add_init_script(_RECORD_VIOLATIONS)


def csp_violations(page) -> list[str]:
    """The CSP violations of the current document (``record_csp_violations`` must have been called first)."""
    return page.evaluate("window.__cspViolations")
