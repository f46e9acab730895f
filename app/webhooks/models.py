"""Webhooks: merchant endpoints, one delivery row per (event, endpoint), the attempt log, bulk resends.

The database is the schedule (ARCHITECTURE.md "Webhooks"): a delivery row holds what is owed and when
(``next_attempt_at``), and a worker that takes it holds a lease (``lease_until``/``locked_by``), so
that Redis and RQ only carry the work out. Every table is merchant-owned and read through a Scope.
"""
from datetime import datetime
from enum import StrEnum

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.crypto import register_encrypted_column
from app.models_base import Base, MerchantOwned, utcnow

ALL_EVENTS = "*"
# A response excerpt is for a person debugging their endpoint: 1 KiB shows an error message or the
# start of an HTML error page, and bounds what a hostile or chatty receiver can make us store.
RESPONSE_EXCERPT_MAX = 1024


class EndpointStatus(StrEnum):
    ENABLED = "enabled"
    DISABLED = "disabled"


class DisabledReason(StrEnum):
    """Why an endpoint is disabled (shown in the dashboard and the API)."""

    MANUAL = "manual"                      # someone disabled it (dashboard or API)
    GONE = "gone"                          # it answered 410 Gone: the receiver asked us to stop
    FAILING = "failing"                    # every attempt failed for WebhookSettings.disable_after (3 days)


class DeliveryStatus(StrEnum):
    PENDING = "pending"        # owed: next_attempt_at says when
    SUCCEEDED = "succeeded"    # a 2xx answer
    FAILED = "failed"          # retries exhausted, or the endpoint was disabled or deleted meanwhile
    # Not sent: the endpoint was disabled when the event was fanned out. Not scheduled; "send missed
    # events" makes it pending (app/webhooks/service.py, send_missed_events).
    MISSED = "missed"


class ResendStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"


class AttemptTrigger(StrEnum):
    AUTOMATIC = "automatic"    # fan-out or a scheduled retry
    MANUAL = "manual"          # "Resend" (one delivery, or a bulk resend)
    TEST = "test"              # "Send test event"


def _in(values) -> str:
    return ", ".join(f"'{v}'" for v in values)


class WebhookEndpoint(MerchantOwned, Base):
    """A URL of the merchant's that receives events of one mode, signed with its secret(s)."""

    __tablename__ = "webhook_endpoints"
    __table_args__ = (
        Index("ix_webhook_endpoints_scope", "merchant_id", "livemode", "id"),
        CheckConstraint(f"status IN ({_in(EndpointStatus)})", name="status"),
        CheckConstraint(f"disabled_reason IS NULL OR disabled_reason IN ({_in(DisabledReason)})",
                        name="disabled_reason"),
        CheckConstraint("status = 'disabled' OR disabled_reason IS NULL", name="reason_only_when_disabled"),
        CheckConstraint("jsonb_typeof(enabled_events) = 'array'", name="enabled_events_array"),
        # The operators' inbox: endpoints disabled or failing, across merchants (few rows: a partial index).
        Index("ix_webhook_endpoints_troubled", "failing_since",
              postgresql_where=text("deleted_at IS NULL AND (status = 'disabled' OR failing_since IS NOT NULL)")),
    )

    id: Mapped[str] = mapped_column(primary_key=True)
    url: Mapped[str] = mapped_column(String(2048))
    description: Mapped[str | None] = mapped_column(String(500))
    # A JSON list of event types, or ["*"] for every event.
    enabled_events: Mapped[list[str]] = mapped_column(JSONB, server_default=text("'[\"*\"]'::jsonb"))
    status: Mapped[str] = mapped_column(String(16), server_default=text("'enabled'"))
    disabled_reason: Mapped[str | None] = mapped_column(String(16))
    disabled_detail: Mapped[str | None] = mapped_column(String(500))  # e.g. the last error before disabling
    disabled_at: Mapped[datetime | None]
    # When the current run of failed attempts began (NULL after any success): disable_after is measured from it.
    failing_since: Mapped[datetime | None]
    # Signing secrets ("whsec_<base64>"), sealed with app.crypto.SecretBox (associated data: the endpoint id).
    secret_encrypted: Mapped[str] = mapped_column(String(400))
    previous_secret_encrypted: Mapped[str | None] = mapped_column(String(400))
    previous_secret_expires_at: Mapped[datetime | None]
    secret_rotated_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=text("now()"))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=text("now()"))
    # Deleted endpoints are kept (their attempt log stays readable) but hidden and never sent to.
    deleted_at: Mapped[datetime | None]

    def receives(self, event_type: str) -> bool:
        """Whether this endpoint subscribes to the event type."""
        return ALL_EVENTS in self.enabled_events or event_type in self.enabled_events


class WebhookDelivery(MerchantOwned, Base):
    """What one endpoint is owed of one event; retried until a 2xx or the schedule runs out.

    Fan-out writes one row for every endpoint of the event's book that subscribes to its type, a disabled
    one included (status ``missed``), so that what an endpoint did not get is a row, not an absence.
    """

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("event_id", "endpoint_id", name="uq_webhook_deliveries_event_endpoint"),
        # The due sweep: pending rows by time. Partial, so finished rows (the vast majority) cost nothing.
        Index("ix_webhook_deliveries_due", "next_attempt_at", postgresql_where=text("status = 'pending'")),
        Index("ix_webhook_deliveries_endpoint", "endpoint_id", "id"),
        # An endpoint's missed events (its page shows their count). Partial: the rows that were sent cost nothing.
        Index("ix_webhook_deliveries_missed", "merchant_id", "endpoint_id", "id",
              postgresql_where=text("status = 'missed'")),
        CheckConstraint(f"status IN ({_in(DeliveryStatus)})", name="status"),
        CheckConstraint("status <> 'pending' OR next_attempt_at IS NOT NULL", name="pending_is_scheduled"),
        CheckConstraint("attempt_count >= 0", name="attempt_count"),
    )

    id: Mapped[str] = mapped_column(primary_key=True)
    event_id: Mapped[str] = mapped_column(ForeignKey("events.id"), index=True)
    endpoint_id: Mapped[str] = mapped_column(ForeignKey("webhook_endpoints.id"))
    event_type: Mapped[str]  # copied from the event, so that logs and lists need no join
    status: Mapped[str] = mapped_column(String(16), server_default=text("'pending'"))
    attempt_count: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    next_attempt_at: Mapped[datetime | None]
    # The worker that holds the row (a random token per claim) and until when; an expired lease is free again.
    lease_until: Mapped[datetime | None]
    locked_by: Mapped[str | None] = mapped_column(String(64))
    # The trigger of the next attempt (a resend is "manual"), copied to its attempt row.
    next_trigger: Mapped[str] = mapped_column(String(16), server_default=text("'automatic'"))
    last_attempt_at: Mapped[datetime | None]
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(500))
    completed_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=text("now()"))


class WebhookAttempt(MerchantOwned, Base):
    """One HTTP try of a delivery, as it went (append-only)."""

    __tablename__ = "webhook_attempts"
    __table_args__ = (
        Index("ix_webhook_attempts_endpoint", "endpoint_id", "attempted_at"),
        Index("ix_webhook_attempts_delivery", "delivery_id", "attempted_at"),
        CheckConstraint(f"length(response_excerpt) <= {RESPONSE_EXCERPT_MAX}", name="excerpt_size"),
    )

    id: Mapped[str] = mapped_column(primary_key=True)
    delivery_id: Mapped[str] = mapped_column(ForeignKey("webhook_deliveries.id"))
    endpoint_id: Mapped[str] = mapped_column(ForeignKey("webhook_endpoints.id"))
    event_id: Mapped[str] = mapped_column(ForeignKey("events.id"))
    event_type: Mapped[str]
    webhook_id: Mapped[str]  # the webhook-id header sent (the event id)
    attempt_number: Mapped[int] = mapped_column(Integer)
    trigger: Mapped[str] = mapped_column(String(16))
    url: Mapped[str] = mapped_column(String(2048))
    attempted_at: Mapped[datetime]
    succeeded: Mapped[bool]
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(String(500))  # timeout, connection refused, blocked address...
    latency_ms: Mapped[int | None] = mapped_column(Integer)
    response_excerpt: Mapped[str | None] = mapped_column(Text)


class WebhookResendJob(MerchantOwned, Base):
    """A bulk "resend every failed delivery since ..." run in the background; its row is the progress bar."""

    __tablename__ = "webhook_resend_jobs"
    __table_args__ = (
        CheckConstraint(f"status IN ({_in(ResendStatus)})", name="status"),
        Index("ix_webhook_resend_jobs_open", "status", postgresql_where=text("status <> 'completed'")),
    )

    id: Mapped[str] = mapped_column(primary_key=True)
    endpoint_id: Mapped[str] = mapped_column(ForeignKey("webhook_endpoints.id"))
    since: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(16), server_default=text("'queued'"))
    total: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    processed: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    # Keyset cursor: deliveries up to this id are done, so a resumed job neither repeats nor loops.
    cursor: Mapped[str | None]
    lease_until: Mapped[datetime | None]
    created_by_user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=text("now()"))
    finished_at: Mapped[datetime | None]

    @property
    def percent(self) -> int:
        return 100 if not self.total else min(100, round(100 * self.processed / self.total))

    @property
    def done(self) -> bool:
        return self.status == ResendStatus.COMPLETED


def secret_aad(endpoint_id: str) -> str:
    """Associated data of an endpoint's sealed secrets: binds each ciphertext to its endpoint."""
    return f"webhook_endpoint:{endpoint_id}"


# `flask secrets rotate` re-seals these under the newest key (app/crypto.py).
register_encrypted_column(WebhookEndpoint, "secret_encrypted", associated_data=lambda row: secret_aad(row.id))
register_encrypted_column(WebhookEndpoint, "previous_secret_encrypted",
                          associated_data=lambda row: secret_aad(row.id))

__all__ = [
    "ALL_EVENTS",
    "RESPONSE_EXCERPT_MAX",
    "AttemptTrigger",
    "DeliveryStatus",
    "DisabledReason",
    "EndpointStatus",
    "ResendStatus",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookEndpoint",
    "WebhookResendJob",
]
