"""JSON logs with a request id on every line, Prometheus metrics, and the health check."""
import contextvars
import hmac
import logging
import os
import re
import sys
import time
import uuid

from flask import Flask, Response, abort, g, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client import multiprocess
from prometheus_client.core import GaugeMetricFamily
from pythonjsonlogger.json import JsonFormatter
from sqlalchemy import text

from app import pan

# Jobs and requests both set this, so every log line names the request that caused it.
request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)

_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

REQUEST_DURATION = Histogram(
    "kassa_http_request_duration_seconds",
    "HTTP request duration by endpoint, method and status.",
    ["endpoint", "method", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1, 2.5, 5, 10),
)
REQUESTS_TOTAL = Counter(
    "kassa_http_requests_total", "HTTP requests by endpoint, method and status.", ["endpoint", "method", "status"]
)


class RequestIdFilter(logging.Filter):
    """Stamp each record with the current request id."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True


# What a LogRecord has of its own; anything else on it came in as ``extra=``.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class CardNumberFilter(logging.Filter):
    """The last line of defence: a card number that reached a log record anyway (in its message, its
    arguments, an ``extra`` field, an exception's or a stack's text) is redacted before a handler writes
    it. Kassa refuses card numbers where they come in (app/pan.py); this catches what a bug lets by."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if pan.find_card_number(message) is not None:
            record.msg, record.args = pan.redact(message), ()
        for name, value in list(vars(record).items()):
            if name not in _RECORD_ATTRIBUTES and isinstance(value, (str, dict, list, tuple)):
                setattr(record, name, pan.redact_value(value))
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text and pan.find_card_number(record.exc_text) is not None:
            # Formatters format exc_info afresh when it is set: keep only the redacted text.
            record.exc_text, record.exc_info = pan.redact(record.exc_text), None
        if record.stack_info:
            record.stack_info = pan.redact(record.stack_info)
        return True


def redact_card_numbers_in(logger: logging.Logger) -> None:
    """Add CardNumberFilter to each of ``logger``'s handlers (once)."""
    for handler in logger.handlers:
        if not any(isinstance(f, CardNumberFilter) for f in handler.filters):
            handler.addFilter(CardNumberFilter())


def configure_logging(level: str | None = None) -> None:
    """One JSON line per log record on stderr, with the request id; card numbers redacted in every line,
    gunicorn's access log included."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(
        "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s",
        rename_fields={"levelname": "level", "asctime": "time"},
    ))
    handler.addFilter(RequestIdFilter())
    handler.addFilter(CardNumberFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    # Gunicorn's own loggers do not propagate to the root; its access log carries each request's path
    # and query string.
    for name in ("gunicorn.access", "gunicorn.error"):
        redact_card_numbers_in(logging.getLogger(name))
    root.setLevel(level or os.environ.get("LOG_LEVEL", "INFO"))
    # httpx logs every request at INFO; PSP calls are recorded on their attempts (outcome, latency)
    # and webhook sends on their delivery attempts, so those lines only cost a JSON record each.
    logging.getLogger("httpx").setLevel(logging.WARNING)


class BacklogCollector:
    """Work that waits, read from the database at scrape time (the database is the schedule): per queue
    (``psp``: attempts and refunds owed to a PSP; ``webhooks``: deliveries), how many items are due and
    unclaimed, and how long the oldest has been due. With the in-flight gauges (kassa_psp_in_flight) and
    the workers' heartbeats this is the saturation signal."""

    def collect(self):
        from app.extensions import db
        from app.models_base import utcnow
        from app.payments.processing import due_backlog as psp_backlog
        from app.webhooks.service import due_backlog as webhook_backlog

        depth = GaugeMetricFamily("kassa_queue_depth", "Items due and not yet claimed, per queue.", labels=["queue"])
        oldest = GaugeMetricFamily("kassa_queue_oldest_due_seconds",
                                   "How long the oldest due, unclaimed item of each queue has waited (0: none).",
                                   labels=["queue"])
        now = utcnow()
        try:
            for queue, backlog in (("psp", psp_backlog), ("webhooks", webhook_backlog)):
                count, due_since = backlog(db.session, now)
                depth.add_metric([queue], count)
                oldest.add_metric([queue], max(0.0, (now - due_since).total_seconds()) if due_since else 0.0)
        except Exception:  # noqa: BLE001 - a scrape without the database still reports the processes' metrics
            logging.getLogger(__name__).warning("backlog metrics unavailable", exc_info=True)
            return
        finally:
            db.session.remove()
        yield depth
        yield oldest


def _metrics_registry() -> CollectorRegistry | None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    return None


def init_observability(app: Flask) -> None:
    """Request ids, access logging, metrics and /healthz, /metrics."""
    access_log = logging.getLogger("kassa.access")

    @app.before_request
    def _start_request():
        incoming = request.headers.get("X-Request-ID", "")
        # Kept on events, keys and log lines: a client's id only when it is safe, and never a card number.
        safe = _SAFE_REQUEST_ID.match(incoming) and pan.find_card_number(incoming) is None
        g.request_id = incoming if safe else f"req_{uuid.uuid4().hex}"
        g.request_started = time.perf_counter()
        request_id_var.set(g.request_id)

    @app.after_request
    def _finish_request(response: Response):
        request_id = g.get("request_id")
        if request_id:
            response.headers["X-Request-ID"] = request_id
        started = g.get("request_started")
        if started is not None:
            elapsed = time.perf_counter() - started
            endpoint = request.url_rule.rule if request.url_rule else "<unmatched>"
            labels = (endpoint, request.method, str(response.status_code))
            REQUEST_DURATION.labels(*labels).observe(elapsed)
            REQUESTS_TOTAL.labels(*labels).inc()
            if endpoint not in ("/healthz", "/metrics") and not request.path.startswith("/static/"):
                access_log.info("request", extra={
                    "method": request.method, "path": request.path, "status": response.status_code,
                    "duration_ms": round(elapsed * 1000, 2),
                })
        return response

    @app.get("/healthz")
    def healthz():
        """200 ``ok``; 200 ``degraded`` with Redis away (payments, reads and writes go on: load balancers must
        keep sending traffic); 503 ``down`` without PostgreSQL, which holds everything."""
        from app.extensions import db, redis_client

        checks = {}
        try:
            db.session.execute(text("SELECT 1"))
            checks["database"] = "ok"
        except Exception as exc:  # noqa: BLE001 - a health check reports any failure
            checks["database"] = f"error: {type(exc).__name__}"
        finally:
            db.session.remove()
        try:
            redis_client().ping()
            checks["redis"] = "ok"
        except Exception as exc:  # noqa: BLE001
            checks["redis"] = f"error: {type(exc).__name__}"
        if checks["database"] != "ok":
            return jsonify(status="down", checks=checks), 503
        return jsonify(status="ok" if checks["redis"] == "ok" else "degraded", checks=checks), 200

    @app.get("/metrics")
    def metrics():
        token = app.config.get("METRICS_TOKEN")
        supplied = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        # Not public: without a configured token the endpoint does not exist.
        if not token or not hmac.compare_digest(supplied.encode(), token.encode()):
            abort(404)
        registry = _metrics_registry()
        backlog = CollectorRegistry()
        backlog.register(BacklogCollector())
        payload = (generate_latest(registry) if registry else generate_latest()) + generate_latest(backlog)
        return Response(payload, mimetype=CONTENT_TYPE_LATEST)
