"""Merchants' lifecycle on the platform: the go-live checklist, live mode, suspension (app/merchants/lifecycle.py)."""
