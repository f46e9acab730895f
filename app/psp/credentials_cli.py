"""`flask psp-credentials set|delete`: a merchant's own PSP account (Flask/click glue around app.psp.credentials).

The secret key is asked for at a hidden prompt when not given, so that it need not appear in the shell's
history or the process list; it is stored encrypted (KASSA_ENCRYPTION_KEYS) and never printed.
"""
import click
from flask import current_app
from flask.cli import with_appcontext
from sqlalchemy import select

from app.accounts.audit import audit
from app.accounts.models import Merchant
from app.crypto import SecretBox
from app.psp.credentials import (
    DEPOSIT_CONFIRMATIONS,
    DepositConfirmationError,
    delete_credentials,
    set_credentials,
    set_deposit_confirmation,
)
from app.psp.stripe_keys import KeyModeError
from app.scoping import Scope

PSPS = ("stripe",)


def _scope(merchant_id: str, live: bool) -> Scope:
    from app.extensions import db

    if db.session.scalars(select(Merchant.id).where(Merchant.id == merchant_id)).first() is None:
        raise click.ClickException(f"no merchant {merchant_id!r}")
    return Scope(merchant_id, livemode=live)


@click.group("psp-credentials")
def psp_credentials_group():
    """A merchant's own PSP account (else the platform's, from the configuration, is used)."""


@psp_credentials_group.command("set")
@click.option("--merchant", "merchant_id", required=True, help="Merchant id (mer_...).")
@click.option("--live", is_flag=True, help="Live-mode credentials (default: test mode).")
@click.option("--psp", type=click.Choice(PSPS), default="stripe", show_default=True)
@click.option("--secret-key", prompt=True, hide_input=True, help="Secret (or restricted) key; asked when omitted.")
@click.option("--publishable-key", default=None, help="Publishable key, for the checkout page's Stripe.js.")
@click.option("--webhook-secret", default=None, help="Signing secret of the account's webhook endpoint.")
@click.option("--deposit-confirmation", type=click.Choice(DEPOSIT_CONFIRMATIONS), default=None,
              help="How the account's payouts are confirmed as deposited (default for a new account: payout_events; "
                   "a replaced key keeps its account's).")
@with_appcontext
def set_command(merchant_id: str, live: bool, psp: str, secret_key: str, publishable_key: str | None,
                webhook_secret: str | None, deposit_confirmation: str | None):
    """Store (or replace) the merchant's credentials at a PSP for one mode. A new secret key retires the
    credential it replaces (kept for the payments made with it, which go on using it)."""
    from app.extensions import db

    scope = _scope(merchant_id, live)
    mode = "live" if live else "test"
    box = SecretBox(current_app.config.get("KASSA_ENCRYPTION_KEYS", ""))
    try:
        row = set_credentials(db.session, scope, box, psp, secret_key=secret_key, webhook_secret=webhook_secret,
                              publishable_key=publishable_key, deposit_confirmation=deposit_confirmation)
    except KeyModeError as error:
        db.session.rollback()
        raise click.BadParameter(error.message, param_hint=f"--{error.param.replace('_', '-')}") from None
    audit(db.session, "psp_credentials.set", merchant_id=scope.merchant_id, livemode=scope.livemode,
          actor_label="cli", target=row.id, details={"psp": psp, "publishable_key": publishable_key,
                                                     "deposit_confirmation": row.deposit_confirmation})
    db.session.commit()
    click.echo(f"{psp} credentials stored for {merchant_id} ({mode} mode)")


@psp_credentials_group.command("delete")
@click.option("--merchant", "merchant_id", required=True, help="Merchant id (mer_...).")
@click.option("--live", is_flag=True, help="Live-mode credentials (default: test mode).")
@click.option("--psp", type=click.Choice(PSPS), default="stripe", show_default=True)
@with_appcontext
def delete_command(merchant_id: str, live: bool, psp: str):
    """Stop using the merchant's credentials at a PSP for one mode (the platform's account is used for new
    payments). The credential is retired, not destroyed: payments made with it still go through it."""
    from app.extensions import db

    scope = _scope(merchant_id, live)
    if not delete_credentials(db.session, scope, psp):
        raise click.ClickException(f"{merchant_id} has no {psp} credentials in this mode")
    audit(db.session, "psp_credentials.deleted", merchant_id=scope.merchant_id, livemode=scope.livemode,
          actor_label="cli", details={"psp": psp})
    db.session.commit()
    click.echo(f"{psp} credentials deleted for {merchant_id}")


@psp_credentials_group.command("deposit-confirmation")
@click.option("--merchant", "merchant_id", required=True, help="Merchant id (mer_...).")
@click.option("--live", is_flag=True, help="Live-mode credentials (default: test mode).")
@click.option("--psp", type=click.Choice(PSPS), default="stripe", show_default=True)
@click.argument("confirmation")
@with_appcontext
def deposit_confirmation_command(merchant_id: str, live: bool, psp: str, confirmation: str):
    """Declare how the merchant's current account's payouts are confirmed as deposited: bank_statement (paid into
    the platform's bank account, matched on its statement) or payout_events (paid into the merchant's own bank:
    the PSP's payout.paid / payout.failed events stand in for the deposit)."""
    from app.extensions import db

    scope = _scope(merchant_id, live)
    try:
        row = set_deposit_confirmation(db.session, scope, psp, confirmation)
    except DepositConfirmationError as error:
        db.session.rollback()
        raise click.BadParameter(error.message, param_hint="CONFIRMATION") from None
    except LookupError:
        db.session.rollback()
        raise click.ClickException(f"{merchant_id} has no {psp} credentials in this mode") from None
    audit(db.session, "psp_credentials.deposit_confirmation_set", merchant_id=scope.merchant_id,
          livemode=scope.livemode, actor_label="cli", target=row.id,
          details={"psp": psp, "deposit_confirmation": confirmation})
    db.session.commit()
    click.echo(f"{psp} deposits of {merchant_id} ({'live' if live else 'test'} mode) are confirmed by {confirmation}")
