"""Webhooks: signed, durable delivery of events to merchant endpoints (see app/webhooks/service.py)."""
