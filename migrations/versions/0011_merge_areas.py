"""Merge the areas' branches (auth, API keys, ledger, PSP, payments, webhooks, checkout, dashboard) into one head.

Revision ID: 0011_merge_areas
Revises: 0003_auth, 0004_api_keys, 0005_ledger, 0006_psp, 0008_webhooks, 0009_checkout, 0010_dashboard
(0007_payments is not a head: checkout and dashboard depend on it)
Create Date: 2026-11-20
"""

revision = "0011_merge_areas"
down_revision = (
    "0003_auth", "0004_api_keys", "0005_ledger", "0006_psp",
    "0008_webhooks", "0009_checkout", "0010_dashboard",
)
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
