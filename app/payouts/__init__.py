"""Payouts (issue 22): sellers' balances become money in their bank accounts. Domain services, no Flask.

Balances, balance transactions, schedules, payouts and their rail (balances.py, fees.py, models.py, service.py,
state.py, rail.py, inbox.py, and callbacks.py: the sandbox rail's callbacks); bank accounts and SEPA exports
(bank_accounts.py, bank_account_models.py, sepa.py).
"""
from app.payouts import inbox as _inbox  # noqa: E402,F401  (registers the operators' inbox kinds)
from app.payouts import callbacks as _callbacks  # noqa: E402,F401  (registers the bank_transfer.* handlers)
