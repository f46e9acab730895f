"""Reconciliation: PSP settlement reports and bank statements matched to the ledger, mismatches as breaks (no Flask)."""
