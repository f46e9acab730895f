"""Payouts: sellers' balances become money in their bank accounts (issue 22). Domain services, no Flask."""
