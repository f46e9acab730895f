"""Fixtures of the reconciliation tests: the disputes tests' in-process app (scripted PSP, the app's own ledger key)."""
from tests.disputes.conftest import app, auth, shop  # noqa: F401  (fixtures shared as they are)
