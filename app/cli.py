"""Flask CLI commands: ``python3 kassa.py flask <command>`` (``flask --app wsgi <command>`` in Kassa's environment)."""
from flask import Flask


def register_commands(app: Flask) -> None:
    """Attach every CLI command group to the app."""
    from app.seed import seed_demo_command

    app.cli.add_command(seed_demo_command)
    from app.ledger.cli import ledger_cli; app.cli.add_command(ledger_cli)  # noqa: E702
    from app.accounts.api_keys_cli import api_key_group
    from app.accounts.second_factor_cli import second_factor_group
    from app.accounts.platform_admin_cli import platform_admin_group
    from app.crypto_cli import secrets_group
    from app.psp.credentials_cli import psp_credentials_group

    app.cli.add_command(api_key_group)
    app.cli.add_command(second_factor_group)
    app.cli.add_command(platform_admin_group)
    app.cli.add_command(secrets_group)
    app.cli.add_command(psp_credentials_group)
    from app.reporting.cli import reporting_cli; app.cli.add_command(reporting_cli)  # noqa: E702  (issue 8)
    from app.reconciliation.cli import reconcile_cli; app.cli.add_command(reconcile_cli)  # noqa: E702  (issue 21)
    from app.risk.learning.cli import risk_cli; app.cli.add_command(risk_cli)  # noqa: E702  (issue 23)
