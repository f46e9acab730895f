"""The HTTP side of webhook delivery: sign at send time, POST to the checked address, time-box, excerpt.

No database here. ``send_all`` takes the prepared requests of a batch and returns one AttemptResult each;
requests run concurrently (asyncio + httpx), at most ``settings.max_concurrency`` at a time, each
bounded by ``settings.total_timeout`` from DNS lookup to the last byte read.

Per Standard Webhooks: ``webhook-id`` is the event id, ``webhook-timestamp`` the wall clock's Unix time
at sending (so that a retry three days later is not refused as stale), and ``webhook-signature`` holds a
``v1,<base64 HMAC-SHA256>`` for each current secret, space-separated (two during a rotation's grace).
"""
import asyncio
import concurrent.futures
import functools
import ssl
import time
from datetime import datetime

import httpx
from prometheus_client import Counter, Histogram
from standardwebhooks.webhooks import Webhook

from app.webhooks.models import RESPONSE_EXCERPT_MAX
from app.webhooks.service import AttemptResult, OutgoingWebhook
from app.webhooks.settings import WebhookSettings
from app.webhooks.ssrf import BlockedAddress, ResolutionFailed, Target, resolve_target

USER_AGENT = "Kassa-Webhooks/1.0 (+https://www.standardwebhooks.com/)"
# DNS lookups run on threads of their own pool, not the event loop's default executor: asyncio.run() waits
# for the default executor at exit, so one hung lookup (past the attempt's timeout) would hold the batch.
_DNS_POOL = concurrent.futures.ThreadPoolExecutor(max_workers=16, thread_name_prefix="webhook-dns")

WEBHOOK_ATTEMPTS = Counter("kassa_webhook_attempts_total", "Webhook delivery attempts by outcome.", ["outcome"])
WEBHOOK_LATENCY = Histogram("kassa_webhook_attempt_seconds", "Webhook attempt latency (to the response excerpt).",
                            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))


def sign(secrets: tuple[str, ...] | list[str], msg_id: str, timestamp: datetime, body: str) -> str:
    """The webhook-signature header value: one v1 signature per secret, space-separated."""
    return " ".join(Webhook(secret).sign(msg_id=msg_id, timestamp=timestamp, data=body) for secret in secrets)


def signed_headers(out: OutgoingWebhook, now: datetime) -> dict[str, str]:
    """Standard Webhooks headers for a request sent at ``now`` (the wall clock)."""
    return {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        # No compression: the excerpt is read raw, and a compressed "bomb" could not inflate in our memory.
        "accept-encoding": "identity",
        "webhook-id": out.webhook_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": sign(out.secrets, out.webhook_id, now, out.body),
    }


def _excerpt(raw: bytes) -> str:
    return raw[:RESPONSE_EXCERPT_MAX].decode("utf-8", errors="replace")[:RESPONSE_EXCERPT_MAX]


def _describe(exc: BaseException, settings: WebhookSettings) -> str:
    """A short, merchant-readable error for the attempt log."""
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
        return f"timed out after {settings.total_timeout:g} s"
    if isinstance(exc, httpx.ConnectTimeout):
        return f"connect timeout ({settings.connect_timeout:g} s)"
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out after {settings.total_timeout:g} s"
    if isinstance(exc, BlockedAddress):
        return f"blocked: {exc}"
    if isinstance(exc, ResolutionFailed):
        return f"DNS: {exc}"
    if isinstance(exc, httpx.ConnectError):
        cause: BaseException | None = exc
        while cause is not None:  # anyio wraps the OSError: "All connection attempts failed"
            if isinstance(cause, ConnectionRefusedError):
                return "connection refused"
            if isinstance(cause, ssl.SSLError):
                return f"TLS: {cause}"[:500]
            cause = cause.__cause__ or cause.__context__
        text = str(exc) or type(exc).__name__
        return f"connection failed: {text}"[:500]
    if isinstance(exc, httpx.RemoteProtocolError):
        return f"protocol error: {exc}"[:500]
    if isinstance(exc, httpx.HTTPError):
        return f"{type(exc).__name__}: {exc}"[:500]
    return f"error: {type(exc).__name__}"


@functools.cache
def _default_tls() -> ssl.SSLContext:
    """httpx's default TLS context (certifi's CAs), built once: loading the CAs costs milliseconds per client."""
    return httpx.create_ssl_context()


class _Clients:
    """httpx clients of one batch, one per (scheme, host name, port, address).

    Keyed by the name as well as the address: the URL names the address, so httpx would otherwise reuse a
    TLS connection made (and certificate-checked) for one host name for another name on the same address.
    """

    def __init__(self, settings: WebhookSettings):
        self.settings = settings
        self._clients: dict[tuple, httpx.AsyncClient] = {}

    def get(self, target: Target) -> httpx.AsyncClient:
        key = (target.scheme, target.host, target.port, target.ip)
        client = self._clients.get(key)
        if client is None:
            s = self.settings
            client = self._clients[key] = httpx.AsyncClient(
                timeout=httpx.Timeout(s.total_timeout, connect=s.connect_timeout),
                limits=httpx.Limits(max_connections=s.max_concurrency, max_keepalive_connections=s.max_concurrency),
                follow_redirects=False,   # a redirect could point anywhere, past the address check: a 3xx fails
                trust_env=False,          # no HTTP(S)_PROXY: a proxy would resolve the name itself, unchecked
                verify=_default_tls() if s.verify is True else s.verify,
            )
        return client

    async def close(self) -> None:
        for client in self._clients.values():
            await client.aclose()


async def _send_one(out: OutgoingWebhook, settings: WebhookSettings, clients: _Clients,
                    limit: asyncio.Semaphore) -> AttemptResult:
    async with limit:
        attempted_at = settings.clock()
        started = time.perf_counter()
        status_code = None
        excerpt = None
        try:
            async with asyncio.timeout(settings.total_timeout):
                # The one lookup of this attempt; the request below connects to the address it returned.
                target = await asyncio.get_running_loop().run_in_executor(
                    _DNS_POOL, functools.partial(resolve_target, out.url, allow_private=settings.allow_private,
                                                 resolver=settings.resolver))
                headers = signed_headers(out, settings.wall_clock())
                headers["host"] = target.host_header
                extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
                client = clients.get(target)
                async with client.stream("POST", target.connect_url, content=out.body.encode(), headers=headers,
                                         extensions=extensions) as response:
                    status_code = response.status_code
                    raw = b""
                    async for chunk in response.aiter_raw():
                        raw += chunk
                        if len(raw) >= RESPONSE_EXCERPT_MAX:
                            break  # the rest is not read: closing the stream drops the connection
                    excerpt = _excerpt(raw)
            latency = int((time.perf_counter() - started) * 1000)
            result = AttemptResult(out, attempted_at, status_code=status_code, latency_ms=latency,
                                   response_excerpt=excerpt)
        except Exception as exc:  # noqa: BLE001 - every failure is an attempt row, never an escaping error
            latency = int((time.perf_counter() - started) * 1000)
            result = AttemptResult(out, attempted_at, status_code=status_code, error=_describe(exc, settings),
                                   latency_ms=latency, response_excerpt=excerpt)
        outcome = "success" if result.succeeded else ("http_error" if result.error is None else "error")
        WEBHOOK_ATTEMPTS.labels(outcome).inc()
        WEBHOOK_LATENCY.observe(latency / 1000)
        return result


async def _send_all(outgoing: list[OutgoingWebhook], settings: WebhookSettings) -> list[AttemptResult]:
    clients = _Clients(settings)
    limit = asyncio.Semaphore(max(1, settings.max_concurrency))
    try:
        return list(await asyncio.gather(*(_send_one(out, settings, clients, limit) for out in outgoing)))
    finally:
        await clients.close()


def send_all(outgoing: list[OutgoingWebhook], settings: WebhookSettings) -> list[AttemptResult]:
    """Send a batch (concurrently) and return the results in the same order."""
    if not outgoing:
        return []
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(_send_all(outgoing, settings))
    # Called from inside an event loop (e.g. a test driving Playwright): run ours on a thread of its own.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, _send_all(outgoing, settings)).result()
