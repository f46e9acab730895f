"""Alembic environment: migrations run as the owner role, never as the application role."""
import logging
from logging.config import fileConfig

from alembic import context
from flask import current_app
from sqlalchemy import create_engine, text

config = context.config
fileConfig(config.config_file_name, disable_existing_loggers=False)
logger = logging.getLogger("alembic.env")

target_metadata = current_app.extensions["migrate"].db.metadata
owner_url = current_app.config["DATABASE_OWNER_URL"]


def include_object(obj, name, type_, reflected, compare_to):
    """Alembic's own version table is not a model."""
    return not (type_ == "table" and name == "alembic_version")


def run_migrations_online() -> None:
    engine = create_engine(owner_url)
    with engine.connect() as connection:
        # Fail fast instead of queueing behind a long transaction while holding an ACCESS EXCLUSIVE lock
        # that would block every query on the table; a migration retried later is cheap.
        connection.execute(text("SET lock_timeout = '5s'"))
        connection.execute(text("SET statement_timeout = '300s'"))
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            compare_type=True,
            compare_server_default=False,
            include_object=include_object,
        )
        with context.begin_transaction():
            context.run_migrations()
        # The SETs above opened the transaction, so Alembic does not own it: commit explicitly.
        connection.commit()
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported; run against a database")
run_migrations_online()
