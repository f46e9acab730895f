"""Reconciliation: PSP settlement reports and bank statements matched to the ledger, mismatches as breaks (no Flask)."""

from app.reconciliation import inbox as _inbox  # noqa: E402,F401  (registers the operators' inbox kind)
from app.reconciliation import payout_events  # noqa: E402  (registers the payout.paid / payout.failed handlers)

__all__ = ["payout_events"]
