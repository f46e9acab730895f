"""Payments: models, the state machine, idempotent operations, the service and PSP outcome processing."""
from app.payments import callbacks as _callbacks  # noqa: E402,F401  (registers the authorization.updated handler)
from app.payments import inbox as _inbox  # noqa: E402,F401  (registers the inbox's "outcome unknown" kind)
