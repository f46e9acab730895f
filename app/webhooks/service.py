"""Webhooks service: endpoints and their secrets, fan-out, the delivery schedule and bulk resends (no Flask).

Functions take the session and a WebhookSettings (clock, SecretBox, schedule), flush when they need ids
and never commit: the view or the job owns the transaction. The HTTP side lives in app/webhooks/delivery.py;
app/jobs/webhooks.py strings the phases together, one short transaction each, never one held across a
network call:

    fan_out          event_fanout_pending -> webhook_deliveries (one transaction per batch; a disabled
                     endpoint's row is "missed", scheduled later only by send_missed_events)
    claim_due        pending rows due now -> leased to a token (FOR UPDATE SKIP LOCKED)
    prepare          renew the lease, build the signed-at-send-time requests
    (send)           HTTP, no transaction open
    record_results   attempt rows, the next retry or the final status, the endpoint's health
"""
import base64
import json
import logging
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, bindparam, delete, func, or_, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from app.events import MERCHANT_EVENT_TYPES, Event, PendingFanout, event_payload, is_internal_event, merchant_visible
from app.ids import new_id
from app.scoping import Scope
from app.webhooks.models import (
    ALL_EVENTS,
    RESPONSE_EXCERPT_MAX,
    AttemptTrigger,
    DeliveryStatus,
    DisabledReason,
    EndpointStatus,
    ResendStatus,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookResendJob,
    secret_aad,
)
from app.webhooks.settings import ROTATION_GRACE, ROTATION_GRACE_MAX, WebhookSettings
from app.webhooks.ssrf import BlockedAddress, check_host_literal, split_url

log = logging.getLogger(__name__)

SECRET_PREFIX = "whsec_"
# 32 random bytes: the HMAC-SHA256 key size, inside Standard Webhooks' recommended 24-64 bytes.
SECRET_BYTES = 32
URL_MAX = 2048
DESCRIPTION_MAX = 500
MAX_EVENT_TYPES = 100
# What an event type looks like ("payment.succeeded", "checkout.session.completed").
EVENT_TYPE_PATTERN = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
TEST_EVENT_TYPE = "webhook.test"
# Shown as choices in the dashboard (the test event goes to one endpoint on request, whatever it subscribes
# to); the API accepts any well-formed type that is not internal (features add types over time).
KNOWN_EVENT_TYPES = tuple(t for t in MERCHANT_EVENT_TYPES if t != TEST_EVENT_TYPE)
# Fan-out batch: one transaction inserts the deliveries of this many events; small enough to keep the
# transaction short, large enough that a burst of events costs few round trips.
FANOUT_BATCH = 500
# Bulk resend batch: rows re-queued per transaction (and per progress-bar step).
RESEND_BATCH = 200
# Roles told by mail when an endpoint is disabled: those who can fix it.
NOTIFY_ROLES = ("owner", "admin", "developer")
# How far back "send missed events" reaches (by the event's time), as Stripe lets a merchant resend the
# events of the last 30 days: older news is rarely still actionable, and the bound caps the burst a
# re-enabled endpoint receives after a long outage. Older missed rows stay, visible on the event's page.
MISSED_EVENTS_WINDOW = timedelta(days=30)


class WebhookError(Exception):
    """Base of the webhooks service's errors."""


class EndpointInvalid(WebhookError):
    """A parameter of an endpoint is not acceptable; ``param`` names it."""

    def __init__(self, param: str, message: str):
        super().__init__(message)
        self.param = param
        self.message = message


class NotFound(WebhookError):
    """No such endpoint, delivery or job in this scope."""


class NotResendable(WebhookError):
    """The delivery cannot be resent now (endpoint disabled or deleted, or it is being delivered)."""


# -- endpoints -------------------------------------------------------------------------------------------

def generate_secret() -> str:
    """A new signing secret in Standard Webhooks' format: whsec_ + base64 of random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def _seal(settings: WebhookSettings, endpoint_id: str, secret: str) -> str:
    # Associated data binds the ciphertext to its endpoint: a sealed secret copied to another row won't open.
    return settings.secret_box.encrypt(secret, associated_data=secret_aad(endpoint_id))


def _open(settings: WebhookSettings, endpoint_id: str, sealed: str) -> str:
    return settings.secret_box.decrypt(sealed, associated_data=secret_aad(endpoint_id))


def validate_url(url: str, *, livemode: bool, allow_private: bool) -> str:
    """The URL, stripped, if an endpoint may use it (HTTPS; HTTP only in test mode; no obvious internal host)."""
    url = (url or "").strip()
    if not url:
        raise EndpointInvalid("url", "Enter the URL of your endpoint.")
    if len(url) > URL_MAX:
        raise EndpointInvalid("url", f"The URL must be at most {URL_MAX} characters.")
    if any(ch.isspace() or ord(ch) < 32 for ch in url):
        raise EndpointInvalid("url", "The URL must not contain spaces or control characters.")
    try:
        scheme, _host, _port, _path = split_url(url)
    except ValueError as exc:
        raise EndpointInvalid("url", f"Invalid URL: {exc}.") from None
    if "#" in url:
        raise EndpointInvalid("url", "The URL must not contain a fragment (#...).")
    if scheme != "https" and livemode:
        raise EndpointInvalid("url", "Live-mode endpoints must use https://.")
    try:
        check_host_literal(url, allow_private)
    except BlockedAddress as exc:
        raise EndpointInvalid("url", f"{exc}.") from None
    return url


def validate_events(events: list[str] | None) -> list[str]:
    """Deduplicated event types, or ["*"]; EndpointInvalid when one is malformed."""
    if not events:
        raise EndpointInvalid("enabled_events", "Choose at least one event type, or * for all events.")
    if len(events) > MAX_EVENT_TYPES:
        raise EndpointInvalid("enabled_events", f"At most {MAX_EVENT_TYPES} event types.")
    result: list[str] = []
    for event_type in events:
        event_type = (event_type or "").strip()
        if event_type == ALL_EVENTS:
            return [ALL_EVENTS]
        if not EVENT_TYPE_PATTERN.match(event_type) or len(event_type) > 100:
            raise EndpointInvalid("enabled_events", f"{event_type!r} is not an event type (like payment.succeeded).")
        if is_internal_event(event_type):
            raise EndpointInvalid("enabled_events", f"{event_type!r} is internal to Kassa and never sent to "
                                                    "endpoints.")
        if event_type not in result:
            result.append(event_type)
    return result


def _description(value: str | None) -> str | None:
    value = (value or "").strip()
    if len(value) > DESCRIPTION_MAX:
        raise EndpointInvalid("description", f"The description must be at most {DESCRIPTION_MAX} characters.")
    return value or None


def create_endpoint(session: Session, scope: Scope, settings: WebhookSettings, *, url: str,
                    enabled_events: list[str], description: str | None = None) -> tuple[WebhookEndpoint, str]:
    """A new enabled endpoint and its secret in clear (the caller shows it once, or on request)."""
    endpoint_id = new_id("we")
    secret = generate_secret()
    now = settings.clock()
    endpoint = scope.new(
        WebhookEndpoint, id=endpoint_id,
        url=validate_url(url, livemode=scope.livemode, allow_private=settings.allow_private),
        enabled_events=validate_events(enabled_events), description=_description(description),
        status=EndpointStatus.ENABLED, secret_encrypted=_seal(settings, endpoint_id, secret),
        created_at=now, updated_at=now,
    )
    session.add(endpoint)
    session.flush()
    return endpoint, secret


def list_endpoints(session: Session, scope: Scope) -> list[WebhookEndpoint]:
    """The scope's endpoints (deleted ones excluded), oldest first."""
    return list(session.scalars(scope.select(WebhookEndpoint, WebhookEndpoint.deleted_at.is_(None))
                                .order_by(WebhookEndpoint.id)))


def get_endpoint(session: Session, scope: Scope, endpoint_id: str, *, for_update: bool = False) -> WebhookEndpoint:
    """One endpoint of the scope; NotFound for another merchant's or mode's, or a deleted one."""
    statement = scope.select(WebhookEndpoint, WebhookEndpoint.id == endpoint_id, WebhookEndpoint.deleted_at.is_(None))
    if for_update:
        statement = statement.with_for_update()
    endpoint = session.scalars(statement).one_or_none()
    if endpoint is None:
        raise NotFound(f"No such webhook endpoint: '{endpoint_id}'.")
    return endpoint


_UNSET = object()


def update_endpoint(session: Session, scope: Scope, settings: WebhookSettings, endpoint_id: str, *,
                    url: str | None = None, enabled_events: list[str] | None = None,
                    description=_UNSET, disabled: bool | None = None) -> WebhookEndpoint:
    """Change what is given; ``disabled`` switches the endpoint off (manual) or back on (clearing its failures)."""
    endpoint = get_endpoint(session, scope, endpoint_id, for_update=True)
    now = settings.clock()
    if url is not None:
        endpoint.url = validate_url(url, livemode=scope.livemode, allow_private=settings.allow_private)
    if enabled_events is not None:
        endpoint.enabled_events = validate_events(enabled_events)
    if description is not _UNSET:
        endpoint.description = _description(description)
    if disabled is True and endpoint.status == EndpointStatus.ENABLED:
        _disable(endpoint, DisabledReason.MANUAL, None, now)
    elif disabled is False and endpoint.status == EndpointStatus.DISABLED:
        endpoint.status = EndpointStatus.ENABLED
        endpoint.disabled_reason = endpoint.disabled_detail = endpoint.disabled_at = None
        endpoint.failing_since = None
    endpoint.updated_at = now
    session.flush()
    return endpoint


def _disable(endpoint: WebhookEndpoint, reason: DisabledReason, detail: str | None, now: datetime) -> None:
    endpoint.status = EndpointStatus.DISABLED
    endpoint.disabled_reason = reason
    endpoint.disabled_detail = (detail or "")[:500] or None
    endpoint.disabled_at = now


def delete_endpoint(session: Session, scope: Scope, settings: WebhookSettings, endpoint_id: str) -> WebhookEndpoint:
    """Stop sending to the endpoint and hide it; its attempt log stays. Pending deliveries fail when next due."""
    endpoint = get_endpoint(session, scope, endpoint_id, for_update=True)
    endpoint.deleted_at = endpoint.updated_at = settings.clock()
    session.flush()
    return endpoint


def reveal_secret(settings: WebhookSettings, endpoint: WebhookEndpoint) -> str:
    """The endpoint's current signing secret in clear (callers check the role and audit the reveal)."""
    return _open(settings, endpoint.id, endpoint.secret_encrypted)


def rotate_secret(session: Session, scope: Scope, settings: WebhookSettings, endpoint_id: str,
                  grace: timedelta = ROTATION_GRACE) -> tuple[WebhookEndpoint, str]:
    """A new secret signs from now on; the current one keeps signing too until ``grace`` has passed."""
    if grace < timedelta(0) or grace > ROTATION_GRACE_MAX:
        raise EndpointInvalid("grace", f"The grace period must be between 0 and {ROTATION_GRACE_MAX.days} days.")
    endpoint = get_endpoint(session, scope, endpoint_id, for_update=True)
    now = settings.clock()
    secret = generate_secret()
    if grace > timedelta(0):
        endpoint.previous_secret_encrypted = endpoint.secret_encrypted
        endpoint.previous_secret_expires_at = now + grace
    else:
        endpoint.previous_secret_encrypted = endpoint.previous_secret_expires_at = None
    endpoint.secret_encrypted = _seal(settings, endpoint.id, secret)
    endpoint.secret_rotated_at = endpoint.updated_at = now
    session.flush()
    return endpoint, secret


def signing_secrets(settings: WebhookSettings, endpoint: WebhookEndpoint, now: datetime) -> list[str]:
    """The secrets that sign a request sent now: the current one, plus the previous one during its grace."""
    result = [_open(settings, endpoint.id, endpoint.secret_encrypted)]
    if endpoint.previous_secret_encrypted and endpoint.previous_secret_expires_at \
            and endpoint.previous_secret_expires_at > now:
        result.append(_open(settings, endpoint.id, endpoint.previous_secret_encrypted))
    return result


# -- fan-out ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FanoutResult:
    """One fan-out batch: the events taken from the pending table and the deliveries written for them."""

    event_ids: list[str]
    delivery_ids: list[str]


def fan_out(session: Session, settings: WebhookSettings, *, batch: int = FANOUT_BATCH,
            claim_token: str | None = None) -> FanoutResult:
    """Turn pending events into delivery rows for their merchant's matching endpoints, in one transaction.

    The pending rows are claimed with FOR UPDATE SKIP LOCKED and deleted in the same transaction as the
    deliveries are written: an event whose transaction commits late simply shows up in a later batch (no
    ``id > last_seen`` cursor to skip it), concurrent fan-outs never take the same event, and a crash
    rolls both back. With ``claim_token`` the new deliveries are born leased to it, so the caller can
    send them at once instead of waiting for the due sweep. A disabled endpoint that subscribes to the
    event gets its row too, ``missed`` and unscheduled: what it did not get can be sent later
    (send_missed_events). The result lists the pending (to be sent) deliveries only.
    """
    event_ids = list(session.scalars(
        select(PendingFanout.event_id).order_by(PendingFanout.event_id).limit(batch)
        .with_for_update(skip_locked=True)))
    if not event_ids:
        return FanoutResult([], [])
    events = session.execute(
        select(Event.id, Event.merchant_id, Event.livemode, Event.type).where(Event.id.in_(event_ids))).all()
    books = {(e.merchant_id, e.livemode) for e in events}
    endpoints = session.execute(
        select(WebhookEndpoint.id, WebhookEndpoint.merchant_id, WebhookEndpoint.livemode,
               WebhookEndpoint.enabled_events, WebhookEndpoint.status)
        .where(tuple_(WebhookEndpoint.merchant_id, WebhookEndpoint.livemode).in_(books),
               WebhookEndpoint.deleted_at.is_(None))
    ).all()
    by_book: dict[tuple[str, bool], list] = {}
    for endpoint in endpoints:
        by_book.setdefault((endpoint.merchant_id, endpoint.livemode), []).append(endpoint)
    now = settings.clock()
    rows = []
    for event in events:
        if is_internal_event(event.type):
            continue  # not the merchant's: even an endpoint subscribed to "*" never gets it
        # Only the event's own merchant and mode: another book's endpoints never see it.
        for endpoint in by_book.get((event.merchant_id, event.livemode), ()):
            if not (ALL_EVENTS in endpoint.enabled_events or event.type in endpoint.enabled_events):
                continue
            owed = endpoint.status == EndpointStatus.ENABLED
            leased = owed and claim_token is not None
            rows.append({
                "id": new_id("whd"), "merchant_id": event.merchant_id, "livemode": event.livemode,
                "event_id": event.id, "endpoint_id": endpoint.id, "event_type": event.type,
                "status": DeliveryStatus.PENDING if owed else DeliveryStatus.MISSED, "attempt_count": 0,
                "next_attempt_at": now if owed else None, "next_trigger": AttemptTrigger.AUTOMATIC,
                "created_at": now, "lease_until": now + settings.lease if leased else None,
                "locked_by": claim_token if leased else None,
            })
    delivery_ids: list[str] = []
    if rows:
        # ON CONFLICT: an event fanned out twice (a row re-inserted by hand) still gets one delivery per endpoint.
        written = session.execute(
            insert(WebhookDelivery).on_conflict_do_nothing(constraint="uq_webhook_deliveries_event_endpoint")
            .returning(WebhookDelivery.id, WebhookDelivery.status), rows).all()
        delivery_ids = [row.id for row in written if row.status == DeliveryStatus.PENDING]
    session.execute(delete(PendingFanout).where(PendingFanout.event_id.in_(event_ids)))
    return FanoutResult(event_ids, delivery_ids)


# -- claiming and sending --------------------------------------------------------------------------------

def claim_due(session: Session, settings: WebhookSettings, token: str, *, limit: int,
              ids: list[str] | None = None) -> list[str]:
    """Lease up to ``limit`` pending deliveries (of ``ids``, if given) that are due and not leased (SKIP LOCKED)."""
    if limit <= 0:
        return []
    now = settings.clock()
    due = (select(WebhookDelivery.id)
           .where(WebhookDelivery.status == DeliveryStatus.PENDING, WebhookDelivery.next_attempt_at <= now,
                  or_(WebhookDelivery.lease_until.is_(None), WebhookDelivery.lease_until <= now),
                  *([WebhookDelivery.id.in_(ids)] if ids is not None else []))
           .order_by(WebhookDelivery.next_attempt_at).limit(limit)
           .with_for_update(skip_locked=True))
    return list(session.scalars(
        update(WebhookDelivery).where(WebhookDelivery.id.in_(due))
        .values(lease_until=now + settings.lease, locked_by=token)
        .returning(WebhookDelivery.id)
        .execution_options(synchronize_session=False)))


def due_backlog(session: Session, now: datetime) -> tuple[int, datetime | None]:
    """How many deliveries are due and not leased (what claim_due would take), and the oldest due time."""
    count, oldest = session.execute(
        select(func.count(), func.min(WebhookDelivery.next_attempt_at))
        .where(WebhookDelivery.status == DeliveryStatus.PENDING, WebhookDelivery.next_attempt_at <= now,
               or_(WebhookDelivery.lease_until.is_(None), WebhookDelivery.lease_until <= now))).one()
    return count, oldest


@dataclass(frozen=True)
class OutgoingWebhook:
    """One request to send: everything the HTTP side needs, nothing that needs the database."""

    delivery_id: str
    token: str
    merchant_id: str
    livemode: bool
    endpoint_id: str
    url: str
    event_id: str
    event_type: str
    body: str                 # the JSON text that is sent and signed
    secrets: tuple[str, ...]  # whsec_ secrets that sign it (two during a rotation's grace period)
    attempt_number: int
    trigger: str

    @property
    def webhook_id(self) -> str:
        """The webhook-id header: the event id, the same for every attempt and endpoint (dedupe on it)."""
        return self.event_id


def render_body(event: Event) -> str:
    """The request body for an event: its public JSON shape, compact."""
    return json.dumps(event_payload(event), separators=(",", ":"), sort_keys=True)


def prepare(session: Session, settings: WebhookSettings, delivery_ids: list[str], token: str) -> list[OutgoingWebhook]:
    """Renew the lease of the deliveries still held by ``token`` and build their requests.

    A row whose lease another worker has taken meanwhile is skipped (it is theirs now). A delivery whose
    endpoint was disabled or deleted since it was written fails here without an attempt.
    """
    if not delivery_ids:
        return []
    now = settings.clock()
    held = session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id.in_(sorted(delivery_ids)), WebhookDelivery.locked_by == token,
               WebhookDelivery.status == DeliveryStatus.PENDING)
        .values(lease_until=now + settings.lease)
        .returning(WebhookDelivery.id, WebhookDelivery.event_id, WebhookDelivery.endpoint_id,
                   WebhookDelivery.attempt_count, WebhookDelivery.next_trigger)
        .execution_options(synchronize_session=False)).all()
    if not held:
        return []
    events = {e.id: e for e in session.scalars(select(Event).where(Event.id.in_({h.event_id for h in held})))}
    endpoints = {e.id: e for e in session.scalars(
        select(WebhookEndpoint).where(WebhookEndpoint.id.in_({h.endpoint_id for h in held})))}
    outgoing, dead = [], []
    bodies: dict[str, str] = {}
    keys: dict[str, tuple[str, ...]] = {}
    for row in sorted(held, key=lambda r: r.id):
        endpoint, event = endpoints[row.endpoint_id], events[row.event_id]
        if endpoint.deleted_at is not None or endpoint.status != EndpointStatus.ENABLED:
            dead.append((row.id, "endpoint deleted" if endpoint.deleted_at else "endpoint disabled"))
            continue
        if event.id not in bodies:
            bodies[event.id] = render_body(event)
        if endpoint.id not in keys:
            keys[endpoint.id] = tuple(signing_secrets(settings, endpoint, now))
        outgoing.append(OutgoingWebhook(
            delivery_id=row.id, token=token, merchant_id=endpoint.merchant_id, livemode=endpoint.livemode,
            endpoint_id=endpoint.id, url=endpoint.url, event_id=event.id, event_type=event.type,
            body=bodies[event.id], secrets=keys[endpoint.id],
            attempt_number=row.attempt_count + 1, trigger=row.next_trigger,
        ))
    for delivery_id, reason in dead:
        session.execute(update(WebhookDelivery).where(WebhookDelivery.id == delivery_id).values(
            status=DeliveryStatus.FAILED, next_attempt_at=None, lease_until=None, locked_by=None,
            last_error=reason, completed_at=now).execution_options(synchronize_session=False))
    return outgoing


@dataclass(frozen=True)
class AttemptResult:
    """How one request went."""

    outgoing: OutgoingWebhook
    attempted_at: datetime
    status_code: int | None = None
    error: str | None = None
    latency_ms: int | None = None
    response_excerpt: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.error is None and self.status_code is not None and 200 <= self.status_code < 300

    @property
    def gone(self) -> bool:
        """410 Gone: the receiver says this endpoint no longer exists."""
        return self.error is None and self.status_code == 410

    def summary(self) -> str:
        return self.error or f"HTTP {self.status_code}"


def record_results(session: Session, settings: WebhookSettings, results: list[AttemptResult]) -> list[str]:
    """Log each attempt, then schedule the retry or settle the delivery, then update the endpoints' health.

    One INSERT for the batch's attempts and one executemany UPDATE (pipelined by psycopg) for its
    deliveries, rows in id order, then endpoints in id order: concurrent batches never deadlock. A row
    whose lease another worker took meanwhile is left alone (that worker owns its schedule now); its
    attempt stays in the log, because it happened (at least once). Returns the endpoints this disabled.
    """
    now = settings.clock()
    health: dict[str, list[AttemptResult]] = {}
    attempts, changes = [], []
    for result in sorted(results, key=lambda r: r.outgoing.delivery_id):
        out = result.outgoing
        error = (result.error or None) and result.error[:500]
        excerpt = result.response_excerpt
        if excerpt is not None:
            excerpt = excerpt.replace("\x00", "\ufffd")[:RESPONSE_EXCERPT_MAX]
        attempts.append({
            "id": new_id("wha"), "merchant_id": out.merchant_id, "livemode": out.livemode,
            "delivery_id": out.delivery_id, "endpoint_id": out.endpoint_id, "event_id": out.event_id,
            "event_type": out.event_type, "webhook_id": out.webhook_id, "attempt_number": out.attempt_number,
            "trigger": out.trigger, "url": out.url, "attempted_at": result.attempted_at,
            "succeeded": result.succeeded, "status_code": result.status_code, "error": error,
            "latency_ms": result.latency_ms, "response_excerpt": excerpt,
        })
        status, next_attempt_at, completed_at = DeliveryStatus.PENDING, None, None
        if result.succeeded:
            status, completed_at = DeliveryStatus.SUCCEEDED, now
        else:
            # Manual resends and test events get the one attempt asked for; automatic ones follow the schedule.
            delay = settings.next_delay(out.attempt_number) if out.trigger == AttemptTrigger.AUTOMATIC else None
            if result.gone or delay is None:
                status, completed_at = DeliveryStatus.FAILED, now
            else:
                next_attempt_at = now + delay
        changes.append({"b_id": out.delivery_id, "b_token": out.token, "b_status": status,
                        "b_next": next_attempt_at, "b_completed": completed_at, "b_at": result.attempted_at,
                        "b_code": result.status_code, "b_error": error})
        health.setdefault(out.endpoint_id, []).append(result)
    if attempts:
        session.execute(insert(WebhookAttempt), attempts)
        table = WebhookDelivery.__table__
        statement = (
            table.update()
            .where(table.c.id == bindparam("b_id"), table.c.locked_by == bindparam("b_token"),
                   table.c.status == DeliveryStatus.PENDING)
            .values(status=bindparam("b_status"), attempt_count=table.c.attempt_count + 1,
                    next_attempt_at=bindparam("b_next"), completed_at=bindparam("b_completed"),
                    last_attempt_at=bindparam("b_at"), last_status_code=bindparam("b_code"),
                    last_error=bindparam("b_error"), lease_until=None, locked_by=None,
                    next_trigger=AttemptTrigger.AUTOMATIC))
        updated = session.connection().execute(statement, changes).rowcount
        if 0 <= updated < len(changes):
            log.warning("webhook deliveries: %d of %d leases lost before their attempts were recorded",
                        len(changes) - updated, len(changes))
    disabled = []
    for endpoint_id in sorted(health):
        if _update_health(session, settings, endpoint_id, health[endpoint_id], now):
            disabled.append(endpoint_id)
    session.flush()
    return disabled


def _update_health(session: Session, settings: WebhookSettings, endpoint_id: str,
                   results: list[AttemptResult], now: datetime) -> bool:
    """Success clears the failure run; a 410, or failing for disable_after, disables. True when disabled."""
    gone = next((r for r in results if r.gone), None)
    if any(r.succeeded for r in results) and gone is None:
        session.execute(update(WebhookEndpoint)
                        .where(WebhookEndpoint.id == endpoint_id, WebhookEndpoint.failing_since.is_not(None))
                        .values(failing_since=None).execution_options(synchronize_session=False))
        return False
    first_failure = min(r.attempted_at for r in results)
    row = session.execute(
        update(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id)
        .values(failing_since=func.coalesce(WebhookEndpoint.failing_since, first_failure))
        .returning(WebhookEndpoint.failing_since, WebhookEndpoint.status, WebhookEndpoint.deleted_at)
        .execution_options(synchronize_session=False)).one()
    if row.status != EndpointStatus.ENABLED or row.deleted_at is not None:
        return False
    last = results[-1]
    if gone is not None:
        reason, detail = DisabledReason.GONE, "The endpoint answered 410 Gone."
    elif now - row.failing_since >= settings.disable_after:
        reason = DisabledReason.FAILING
        detail = (f"Every delivery attempt failed since {row.failing_since:%Y-%m-%d %H:%M} UTC; "
                  f"the last one: {last.summary()}.")
    else:
        return False
    session.execute(update(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id).values(
        status=EndpointStatus.DISABLED, disabled_reason=reason, disabled_detail=detail[:500], disabled_at=now,
        updated_at=now).execution_options(synchronize_session=False))
    endpoint = session.get(WebhookEndpoint, endpoint_id)
    if endpoint is not None:
        session.refresh(endpoint)
        notify_disabled(session, endpoint)
    log.warning("webhook endpoint %s disabled (%s): %s", endpoint_id, reason, detail)
    return True


def notify_disabled(session: Session, endpoint: WebhookEndpoint) -> None:
    """Tell the merchant's owners, admins and developers by mail (the mail outbox) why the endpoint stopped."""
    from app.accounts.models import Membership, User

    try:
        from app.accounts.mail import queue_mail
    except ImportError:  # pragma: no cover - without the accounts feature there is nobody to mail
        return
    recipients = session.scalars(
        select(User.email).join(Membership, Membership.user_id == User.id)
        .where(Membership.merchant_id == endpoint.merchant_id, Membership.role.in_(NOTIFY_ROLES))
        .order_by(User.email)).all()
    mode = "live" if endpoint.livemode else "test"
    reason = {
        DisabledReason.GONE: "it answered 410 Gone, which asks senders to stop",
        DisabledReason.FAILING: "every delivery to it failed for three days",
    }.get(endpoint.disabled_reason, "it was disabled")
    body = (
        f"Kassa stopped sending webhooks to your {mode}-mode endpoint\n\n    {endpoint.url}\n\n"
        f"because {reason}.\n\n{endpoint.disabled_detail or ''}\n\n"
        "Events that happen while it is disabled are not sent to it, but they are kept for it. When the "
        "endpoint works again, enable it in the dashboard (Developers > Webhooks), then use \"Send missed "
        f"events\" (those of the last {MISSED_EVENTS_WINDOW.days} days it did not get) and \"Resend failed "
        "deliveries\" (those that failed before it was disabled).\n"
    )
    for address in recipients:
        queue_mail(session, kind="webhook_endpoint_disabled", to=address,
                   subject=f"Webhook endpoint disabled: {endpoint.url[:200]}", body=body,
                   merchant_id=endpoint.merchant_id)


# -- resends and test events ------------------------------------------------------------------------------

def get_delivery(session: Session, scope: Scope, delivery_id: str) -> WebhookDelivery:
    """One delivery of the scope; NotFound otherwise."""
    delivery = scope.get(session, WebhookDelivery, delivery_id)
    if delivery is None:
        raise NotFound(f"No such webhook delivery: '{delivery_id}'.")
    return delivery


def resend_delivery(session: Session, scope: Scope, settings: WebhookSettings, delivery_id: str) -> WebhookDelivery:
    """Send the delivery again now: a finished one gets one manual attempt; a pending one is just brought forward."""
    delivery = scope.get(session, WebhookDelivery, delivery_id, for_update=True)
    if delivery is None:
        raise NotFound(f"No such webhook delivery: '{delivery_id}'.")
    endpoint = session.get(WebhookEndpoint, delivery.endpoint_id)
    if endpoint.deleted_at is not None:
        raise NotResendable("The endpoint was deleted.")
    if endpoint.status != EndpointStatus.ENABLED:
        raise NotResendable("The endpoint is disabled: enable it first.")
    now = settings.clock()
    if delivery.lease_until is not None and delivery.lease_until > now:
        raise NotResendable("This delivery is being sent right now.")
    if delivery.status != DeliveryStatus.PENDING:
        delivery.status = DeliveryStatus.PENDING
        delivery.next_trigger = AttemptTrigger.MANUAL
        delivery.completed_at = None
    delivery.next_attempt_at = now
    session.flush()
    return delivery


def send_test_event(session: Session, scope: Scope, settings: WebhookSettings, endpoint_id: str) -> WebhookDelivery:
    """A ``webhook.test`` event delivered to this one endpoint only (it is not fanned out to the others)."""
    endpoint = get_endpoint(session, scope, endpoint_id)
    if endpoint.status != EndpointStatus.ENABLED:
        raise NotResendable("The endpoint is disabled: enable it first.")
    now = settings.clock()
    event = scope.new(Event, id=new_id("evt"), type=TEST_EVENT_TYPE, object_type="webhook_endpoint",
                      object_id=endpoint.id, data={
                          "id": endpoint.id, "object": "webhook_endpoint", "url": endpoint.url,
                          "message": "A test event sent from the Kassa dashboard.",
                      }, request_id=None, created_at=now)
    session.add(event)
    session.flush()
    delivery = scope.new(WebhookDelivery, id=new_id("whd"), event_id=event.id, endpoint_id=endpoint.id,
                         event_type=event.type, status=DeliveryStatus.PENDING, attempt_count=0,
                         next_attempt_at=now, next_trigger=AttemptTrigger.TEST, created_at=now)
    session.add(delivery)
    session.flush()
    return delivery


def start_bulk_resend(session: Session, scope: Scope, settings: WebhookSettings, endpoint_id: str,
                      since: datetime, user_id: str | None = None) -> WebhookResendJob:
    """A job row that re-queues every failed delivery of the endpoint whose event is from ``since`` on."""
    endpoint = get_endpoint(session, scope, endpoint_id)
    if endpoint.status != EndpointStatus.ENABLED:
        raise NotResendable("The endpoint is disabled: enable it first.")
    total = session.scalar(select(func.count()).select_from(WebhookDelivery).where(*_failed_since(endpoint.id, since)))
    job = scope.new(WebhookResendJob, id=new_id("whr"), endpoint_id=endpoint.id, since=since,
                    status=ResendStatus.QUEUED if total else ResendStatus.COMPLETED, total=total, processed=0,
                    created_by_user_id=user_id, created_at=settings.clock(),
                    finished_at=None if total else settings.clock())
    session.add(job)
    session.flush()
    return job


def _failed_since(endpoint_id: str, since: datetime):
    return (WebhookDelivery.endpoint_id == endpoint_id, WebhookDelivery.status == DeliveryStatus.FAILED,
            WebhookDelivery.created_at >= since, merchant_visible(WebhookDelivery.event_type))


def claim_resend_job(session: Session, settings: WebhookSettings, job_id: str) -> WebhookResendJob | None:
    """Lease the job to the caller (None when it is finished or another runner holds it)."""
    now = settings.clock()
    job_row = session.scalars(
        select(WebhookResendJob).where(
            WebhookResendJob.id == job_id, WebhookResendJob.status != ResendStatus.COMPLETED,
            or_(WebhookResendJob.lease_until.is_(None), WebhookResendJob.lease_until <= now))
        .with_for_update(skip_locked=True)).one_or_none()
    if job_row is None:
        return None
    job_row.status = ResendStatus.RUNNING
    job_row.lease_until = now + settings.lease
    session.flush()
    return job_row


def resend_batch(session: Session, settings: WebhookSettings, job_id: str, *, batch: int = RESEND_BATCH) -> bool:
    """Re-queue the next batch of the job's failed deliveries; True when the job is complete."""
    job_row = session.get(WebhookResendJob, job_id, with_for_update=True)
    if job_row is None or job_row.status == ResendStatus.COMPLETED:
        return True
    now = settings.clock()
    criteria = list(_failed_since(job_row.endpoint_id, job_row.since))
    if job_row.cursor:
        criteria.append(WebhookDelivery.id > job_row.cursor)
    ids = list(session.scalars(select(WebhookDelivery.id).where(*criteria).order_by(WebhookDelivery.id)
                               .limit(batch).with_for_update(skip_locked=True)))
    if ids:
        session.execute(update(WebhookDelivery).where(WebhookDelivery.id.in_(ids)).values(
            status=DeliveryStatus.PENDING, next_attempt_at=now, next_trigger=AttemptTrigger.MANUAL,
            completed_at=None, lease_until=None, locked_by=None).execution_options(synchronize_session=False))
        job_row.cursor = ids[-1]
        job_row.processed = job_row.processed + len(ids)
    job_row.lease_until = now + settings.lease
    if len(ids) < batch:
        job_row.status = ResendStatus.COMPLETED
        job_row.finished_at = now
        job_row.total = max(job_row.total, job_row.processed)
        job_row.lease_until = None
    session.flush()
    return job_row.status == ResendStatus.COMPLETED


def stale_resend_jobs(session: Session, settings: WebhookSettings, *, queued_grace: timedelta) -> list[str]:
    """Unfinished jobs nobody is running (lost in Redis, or their worker died): to be enqueued again."""
    now = settings.clock()
    return list(session.scalars(select(WebhookResendJob.id).where(
        WebhookResendJob.status != ResendStatus.COMPLETED,
        or_(WebhookResendJob.lease_until <= now,
            and_(WebhookResendJob.lease_until.is_(None), WebhookResendJob.created_at <= now - queued_grace)))
        .order_by(WebhookResendJob.id).limit(100)))


def get_resend_job(session: Session, scope: Scope, job_id: str) -> WebhookResendJob:
    job_row = scope.get(session, WebhookResendJob, job_id)
    if job_row is None:
        raise NotFound(f"No such resend job: '{job_id}'.")
    return job_row


# -- missed events ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class MissedEvents:
    """An endpoint's missed events: how many (counted, or just scheduled) of those raised from ``since`` on."""

    count: int
    since: datetime


def _missed(scope: Scope, endpoint: WebhookEndpoint, since: datetime) -> tuple:
    """Criteria of the endpoint's missed deliveries of events from ``since`` on, of types it subscribes to now."""
    criteria = [
        WebhookDelivery.merchant_id == scope.merchant_id, WebhookDelivery.livemode == scope.livemode,
        WebhookDelivery.endpoint_id == endpoint.id, WebhookDelivery.status == DeliveryStatus.MISSED,
        Event.id == WebhookDelivery.event_id, Event.merchant_id == scope.merchant_id,
        Event.livemode == scope.livemode, Event.created_at >= since,
        merchant_visible(WebhookDelivery.event_type),  # rows fanned out before internal events were held back
    ]
    if ALL_EVENTS not in endpoint.enabled_events:
        criteria.append(WebhookDelivery.event_type.in_(endpoint.enabled_events))
    return tuple(criteria)


def count_missed_events(session: Session, scope: Scope, settings: WebhookSettings,
                        endpoint: WebhookEndpoint) -> MissedEvents:
    """How many events the endpoint missed while disabled that send_missed_events would send now."""
    since = settings.clock() - MISSED_EVENTS_WINDOW
    count = session.scalar(select(func.count()).select_from(WebhookDelivery).join(
        Event, Event.id == WebhookDelivery.event_id).where(*_missed(scope, endpoint, since)))
    return MissedEvents(count or 0, since)


def send_missed_events(session: Session, scope: Scope, settings: WebhookSettings,
                       endpoint_id: str) -> tuple[WebhookEndpoint, MissedEvents]:
    """Schedule, now, the events the endpoint missed while disabled in the last MISSED_EVENTS_WINDOW.

    Each missed row becomes an ordinary pending delivery (the due sweep sends it with the retry schedule,
    signed with its event's id as webhook-id), so a second call finds nothing left to schedule. The rows
    were written by fan-out for this endpoint's own merchant and mode only; the endpoint's current
    subscription filters them once more. Refused (NotResendable) while the endpoint is disabled.
    """
    endpoint = get_endpoint(session, scope, endpoint_id, for_update=True)  # concurrent calls take turns
    if endpoint.status != EndpointStatus.ENABLED:
        raise NotResendable("The endpoint is disabled: enable it first.")
    now = settings.clock()
    since = now - MISSED_EVENTS_WINDOW
    scheduled = session.execute(
        update(WebhookDelivery).where(*_missed(scope, endpoint, since))
        .values(status=DeliveryStatus.PENDING, next_attempt_at=now, next_trigger=AttemptTrigger.AUTOMATIC,
                lease_until=None, locked_by=None)
        .execution_options(synchronize_session=False)).rowcount
    return endpoint, MissedEvents(scheduled, since)


# -- reading (dashboard) ---------------------------------------------------------------------------------

def success_rates(session: Session, scope: Scope, since: datetime) -> dict[str, tuple[int, int]]:
    """endpoint id -> (succeeded attempts, all attempts) since the given time."""
    rows = session.execute(
        select(WebhookAttempt.endpoint_id, func.count().filter(WebhookAttempt.succeeded), func.count())
        .where(WebhookAttempt.merchant_id == scope.merchant_id, WebhookAttempt.livemode == scope.livemode,
               WebhookAttempt.attempted_at >= since)
        .group_by(WebhookAttempt.endpoint_id)).all()
    return {row[0]: (row[1], row[2]) for row in rows}


def endpoint_attempts(session: Session, scope: Scope, endpoint_id: str, *, limit: int = 50,
                      before: str | None = None) -> list[WebhookAttempt]:
    """The endpoint's attempts, newest first (keyset by id: ``before`` is the last id of the previous page)."""
    statement = scope.select(WebhookAttempt, WebhookAttempt.endpoint_id == endpoint_id)
    if before:
        statement = statement.where(WebhookAttempt.id < before)
    return list(session.scalars(statement.order_by(WebhookAttempt.id.desc()).limit(limit)))


def endpoint_delivery_counts(session: Session, scope: Scope, endpoint_id: str) -> dict[str, int]:
    """status -> number of deliveries of the endpoint."""
    rows = session.execute(select(WebhookDelivery.status, func.count())
                           .where(WebhookDelivery.merchant_id == scope.merchant_id,
                                  WebhookDelivery.livemode == scope.livemode,
                                  WebhookDelivery.endpoint_id == endpoint_id)
                           .group_by(WebhookDelivery.status)).all()
    return {status: count for status, count in rows}


def event_deliveries(session: Session, scope: Scope, event_id: str) -> list[tuple[WebhookDelivery, list[WebhookAttempt]]]:
    """Every delivery of the event with its attempts (oldest first)."""
    deliveries = list(session.scalars(scope.select(WebhookDelivery, WebhookDelivery.event_id == event_id)
                                      .order_by(WebhookDelivery.id)))
    attempts = list(session.scalars(
        scope.select(WebhookAttempt, WebhookAttempt.delivery_id.in_([d.id for d in deliveries]))
        .order_by(WebhookAttempt.id))) if deliveries else []
    by_delivery: dict[str, list[WebhookAttempt]] = {}
    for attempt in attempts:
        by_delivery.setdefault(attempt.delivery_id, []).append(attempt)
    return [(d, by_delivery.get(d.id, [])) for d in deliveries]


def recent_events(session: Session, scope: Scope, *, limit: int = 25) -> list[Event]:
    """The scope's latest events (the dashboard links them to their delivery detail)."""
    return list(session.scalars(scope.select(Event).order_by(Event.id.desc()).limit(limit)))
