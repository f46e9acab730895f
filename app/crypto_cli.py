"""`flask secrets ...`: operations on secrets at rest (app/crypto.py)."""
import click
from flask import current_app
from flask.cli import with_appcontext

from app.crypto import ENCRYPTED_COLUMNS, CryptoError, SecretBox, rotate_all


@click.group("secrets")
def secrets_group():
    """Secrets at rest (KASSA_ENCRYPTION_KEYS)."""


@secrets_group.command("rotate")
@click.option("--batch-size", default=200, show_default=True, help="Rows re-encrypted per transaction.")
@with_appcontext
def rotate_command(batch_size: int):
    """Re-encrypt every registered secret under the newest key (the first of KASSA_ENCRYPTION_KEYS).

    Rotate a key by putting a new one first in KASSA_ENCRYPTION_KEYS (keep the old ones), restarting, and
    running this; once it reports success the old keys can be removed. Safe to run again.
    """
    from app.extensions import db

    box = SecretBox(current_app.config["KASSA_ENCRYPTION_KEYS"])
    if not box.keys:
        raise click.ClickException("KASSA_ENCRYPTION_KEYS is not configured")
    if not ENCRYPTED_COLUMNS:
        click.echo("No encrypted columns are registered; nothing to rotate.")
        return
    try:
        counts = rotate_all(db.session, box, batch_size=batch_size, on_batch=db.session.commit)
    except CryptoError as exc:
        db.session.rollback()
        raise click.ClickException(f"rotation stopped: {exc}") from exc
    db.session.commit()
    for label, count in counts.items():
        click.echo(f"{label}: {count} re-encrypted")
    click.echo(f"All secrets are sealed with key {box.keys[0][0]!r}.")
