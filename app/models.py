"""Imports every model module so that the metadata (and Alembic) sees all tables."""
from app.accounts.models import Membership, Merchant, User  # noqa: F401
from app.accounts.audit import AuditEntry  # noqa: F401
from app.events import Event, PendingFanout  # noqa: F401
