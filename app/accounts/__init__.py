"""Merchants, users, memberships and roles."""
