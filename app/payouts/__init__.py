"""Payouts (issue 22): balances, balance transactions, schedules, payouts and their rail. No Flask.

payouts-core owns balances.py, fees.py, models.py, service.py, state.py, rail.py, inbox.py; bank accounts
(bank_accounts.py, bank_account_models.py, sepa.py) are payouts-banks'.
"""
from app.payouts import inbox as _inbox  # noqa: E402,F401  (registers the operators' inbox kinds)
