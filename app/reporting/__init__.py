"""Reporting behind the merchant dashboard (no Flask): rollups, list queries, CSV exports, the API request log."""
