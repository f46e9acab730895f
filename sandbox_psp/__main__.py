"""Command line: ``python -m sandbox_psp --port 8200 --acquirer sandbox=8201 ...``.

Starts the public listener and one listener per acquirer, each a threaded werkzeug
server in its own thread, plus the callback sender; prints ``sandbox_psp ready`` once
all sockets listen and exits cleanly on SIGTERM or SIGINT.
"""
import argparse
import logging
import os
import re
import signal
import sys
import threading

from werkzeug.serving import WSGIRequestHandler, make_server

from .app import create_acquirer_app, create_public_app
from .core import Config, Sandbox
from .disputes import DEFAULT_DECISION_DAYS

log = logging.getLogger("sandbox_psp")

ACQUIRER_RE = re.compile(r"^([a-z][a-z0-9_]*)=(\d+)$")
DEFAULT_ACQUIRERS = {"sandbox": 8201, "sandbox_b": 8202}
# The main thread wakes this often to notice a stop request, even if a signal
# arrived while it was not waiting.
MAIN_LOOP_SECONDS = 1.0
# How often a serve loop checks for shutdown: stopping a listener (refuse_connections,
# exit) waits up to this long, and ten idle wake-ups a second cost nothing.
SHUTDOWN_POLL_SECONDS = 0.1


class PlainLogHandler(WSGIRequestHandler):
    """werkzeug's handler, logging one plain line per request (no terminal colours)."""

    def log_request(self, code="-", size="-") -> None:
        log.info('%s -> :%s "%s" %s', self.address_string(), self.server.server_port, self.requestline, code)


class OneRequestPerConnection(PlainLogHandler):
    """HTTP/1.0 handler: the connection closes after each answer.

    Without keep-alive, no pooled client connection outlives a "refuse_connections"
    fault: once the listening socket is closed, the next call really is refused.
    """

    protocol_version = "HTTP/1.0"


class Listener:
    """One threaded werkzeug server that can be stopped and started again on its port."""

    def __init__(self, name: str, host: str, port: int, app, request_handler=None):
        self.name = name
        self.host = host
        self.port = port
        self.app = app
        self.request_handler = request_handler
        self._server = None
        self._thread = None

    def start(self) -> None:
        """Bind the port and serve in a background thread (no-op if already serving)."""
        if self._server is not None:
            return
        # werkzeug's server sets SO_REUSEADDR, so the port can be bound again right
        # after stop(); in-flight requests keep running in their own daemon threads.
        try:
            self._server = make_server(self.host, self.port, self.app, threaded=True,
                                       request_handler=self.request_handler)
        except SystemExit:  # werkzeug prints why (e.g. port in use) and calls sys.exit(1)
            raise OSError(f"cannot listen on {self.host}:{self.port} ({self.name})") from None
        self._thread = threading.Thread(target=self._server.serve_forever, args=(SHUTDOWN_POLL_SECONDS,),
                                        name=f"listener-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop accepting and close the listening socket (no-op if stopped)."""
        if self._server is None:
            return
        self._server.shutdown()  # returns once serve_forever has left its loop
        self._thread.join()  # serve_forever closes the socket on its way out
        self._server = None
        self._thread = None


def parse_args(argv=None) -> Config:
    """Turn the command line (and SANDBOX_* environment fallbacks) into a Config."""
    parser = argparse.ArgumentParser(prog="python -m sandbox_psp", description="Kassa's sandbox PSP.")
    parser.add_argument("--host", default="127.0.0.1", help="address of all listeners")
    parser.add_argument("--port", type=int, default=8200, help="public listener (vault, 3DS, admin)")
    parser.add_argument("--acquirer", action="append", default=[], metavar="NAME=PORT",
                        help="an acquirer listener (repeatable; default sandbox=8201 sandbox_b=8202)")
    parser.add_argument("--data", default=os.path.join(".kassa", "sandbox_psp"), help="storage folder")
    parser.add_argument("--secret", default=os.environ.get("SANDBOX_PSP_SECRET"),
                        help="Bearer secret of the acquirer API (default $SANDBOX_PSP_SECRET)")
    parser.add_argument("--webhook-secret", default=os.environ.get("SANDBOX_WEBHOOK_SECRET"),
                        help="HMAC secret of callbacks (default $SANDBOX_WEBHOOK_SECRET)")
    parser.add_argument("--hook-url", help="where callbacks go (Kassa's /hooks/sandbox)")
    parser.add_argument("--cors-origin", action="append", default=[],
                        help="browser origin allowed to tokenize (repeatable)")
    parser.add_argument("--timeout-delay", type=float, default=8.0,
                        help="seconds the timeout card stalls its answer")
    parser.add_argument("--public-url", help="public base URL in action_url (default http://HOST:PORT)")
    parser.add_argument("--dispute-decision-days", type=int, default=DEFAULT_DECISION_DAYS,
                        help="sandbox days from evidence to the issuer's decision (and after an unanswered "
                             f"deadline; default {DEFAULT_DECISION_DAYS})")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)

    acquirers = {}
    for spec in args.acquirer:
        match = ACQUIRER_RE.match(spec)
        if not match:
            parser.error(f"--acquirer must look like name=port, got {spec!r}")
        acquirers[match.group(1)] = int(match.group(2))
    if not args.secret:
        parser.error("--secret (or SANDBOX_PSP_SECRET) is required")
    if not args.webhook_secret:
        parser.error("--webhook-secret (or SANDBOX_WEBHOOK_SECRET) is required")
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    return Config(
        data_dir=args.data,
        secret=args.secret,
        webhook_secret=args.webhook_secret,
        acquirers=acquirers or dict(DEFAULT_ACQUIRERS),
        host=args.host,
        port=args.port,
        public_url=(args.public_url or f"http://{args.host}:{args.port}").rstrip("/"),
        hook_url=args.hook_url,
        cors_origins=tuple(args.cors_origin),
        timeout_delay=args.timeout_delay,
        dispute_decision_days=args.dispute_decision_days,
    )


def main(argv=None) -> int:
    """Run the sandbox until SIGTERM/SIGINT; return the exit status."""
    config = parse_args(argv)
    sandbox = Sandbox(config)
    public = Listener("public", config.host, config.port, create_public_app(sandbox),
                      request_handler=PlainLogHandler)
    acquirers = {
        name: Listener(name, config.host, port, create_acquirer_app(sandbox, name),
                       request_handler=OneRequestPerConnection)
        for name, port in config.acquirers.items()
    }
    sandbox.listeners = acquirers
    listeners = [public, *acquirers.values()]

    stop = threading.Event()

    def request_stop(signum, frame):
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    for listener in listeners:
        try:
            listener.start()
        except OSError as exc:
            log.error("%s", exc)
            for started in listeners:
                started.stop()
            return 1
    sandbox.start()
    log.info("public %s, acquirers %s", config.public_url,
             ", ".join(f"{name}=:{port}" for name, port in config.acquirers.items()))
    print("sandbox_psp ready", flush=True)

    # Wake periodically so signal handlers run promptly even where a plain wait() would block them.
    while not stop.is_set():
        stop.wait(MAIN_LOOP_SECONDS)
    log.info("stopping")
    for listener in listeners:
        listener.stop()
    sandbox.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
