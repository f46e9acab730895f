"""Webhooks: signed, durable delivery of events to merchant endpoints (see app/webhooks/service.py)."""
from app.webhooks import inbox as _inbox  # noqa: E402,F401  (registers the inbox's endpoint kind)
