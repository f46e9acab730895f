"""Flask CLI commands (``flask --app wsgi <command>``)."""
from flask import Flask


def register_commands(app: Flask) -> None:
    """Attach every CLI command group to the app."""
    from app.seed import seed_demo_command

    app.cli.add_command(seed_demo_command)
