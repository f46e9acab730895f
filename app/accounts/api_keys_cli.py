"""`flask api-key create` and the demo seed step for API keys (Flask/click glue around app.accounts.api_keys)."""
import click
from flask import current_app
from flask.cli import with_appcontext

from app.accounts.api_keys import KINDS, PUBLISHABLE, SECRET, ApiKey, AuditContext, create_key
from app.accounts.models import Merchant
from app.merchants import lifecycle
from app.scoping import Scope


def _hmac_key() -> bytes:
    value = current_app.config.get("API_KEY_HMAC_KEY") or ""
    if not value:
        raise click.ClickException("API_KEY_HMAC_KEY is not configured")
    return value.encode() if isinstance(value, str) else bytes(value)


def seed_api_keys(session, merchant: Merchant, web_url: str) -> list[str]:
    """Demo seed step: test-mode secret and publishable keys for the demo merchant, created once.

    The secret is printed only when it is created (it is never stored); on later runs the lines say how
    to get a new one.
    """
    scope = Scope(merchant.id, livemode=False)
    existing = session.scalars(scope.select(ApiKey, ApiKey.revoked_at.is_(None), ApiKey.expires_at.is_(None))).all()
    kinds = {row.kind for row in existing}
    ctx = AuditContext(actor_label="seed")
    lines = []
    if SECRET not in kinds:
        new = create_key(session, scope, SECRET, hmac_key=_hmac_key(), name="Demo secret key", ctx=ctx)
        lines.append(f"Demo test-mode secret API key (shown once, store it now): {new.plaintext}")
        lines.append(f"  try it: curl -u {new.plaintext}: {web_url}/v1/account")
    else:
        lines.append("Demo API keys exist; roll the secret key in the dashboard (Developers > API keys) or run "
                     f"`python3 kassa.py flask api-key create --merchant {merchant.id}` to see a new secret.")
    if PUBLISHABLE not in kinds:
        new = create_key(session, scope, PUBLISHABLE, hmac_key=_hmac_key(), name="Demo publishable key", ctx=ctx)
        lines.append(f"Demo test-mode publishable key: {new.plaintext}")
    return lines


@click.group("api-key")
def api_key_group():
    """Mint API keys from the command line."""


@api_key_group.command("create")
@click.option("--merchant", "merchant_id", required=True, help="Merchant id (mer_...).")
@click.option("--live", is_flag=True, help="A live-mode key (default: test mode).")
@click.option("--kind", type=click.Choice(KINDS), default=SECRET, show_default=True)
@click.option("--name", default="CLI key", show_default=True)
@with_appcontext
def create_command(merchant_id: str, live: bool, kind: str, name: str):
    """Create a key and print it once (it is stored only as a keyed hash)."""
    from app.extensions import db

    merchant = db.session.get(Merchant, merchant_id)
    if merchant is None:
        raise click.ClickException(f"no merchant {merchant_id!r}")
    if live and not lifecycle.may_create_live_keys(merchant):
        raise click.ClickException(f"live mode is not enabled for {merchant_id}: a platform operator enables it "
                                   "(/admin/merchants) once the merchant's go-live checklist is complete")
    new = create_key(db.session, Scope(merchant_id, livemode=live), kind, hmac_key=_hmac_key(), name=name,
                     ctx=AuditContext(actor_label="cli"))
    db.session.commit()
    click.echo(new.plaintext)
