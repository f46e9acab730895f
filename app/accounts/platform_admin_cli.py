"""`flask platform-admin grant|revoke EMAIL`: who may use the operator console (/admin).

A production install has no demo admin (`seed-demo` is for development), and the console cannot make the
first one: the command line can. Flask/click glue around app.accounts.user_admin.set_platform_admin.
"""
import click
from flask.cli import with_appcontext

from app.accounts import user_admin
from app.accounts.passwords import MIN_PASSWORD_LENGTH
from app.accounts.service import AccountError, create_user, find_user_by_email
from app.dashboard.forms import EMAIL_SHAPE

ACTOR = "cli"


@click.group("platform-admin")
def platform_admin_group():
    """Platform admins: the people who use the operator console (/admin)."""


@platform_admin_group.command("grant")
@click.argument("email")
@click.option("--name", default=None, help="The person's name, for a new account.")
@with_appcontext
def grant_command(email: str, name: str | None):
    """Make EMAIL a platform admin; without an account yet, create it (asking for its password)."""
    from app.extensions import db

    if not EMAIL_SHAPE.match(email.strip()):
        raise click.ClickException(f"{email!r} is not an email address")
    user = find_user_by_email(db.session, email)
    if user is None:
        password = click.prompt(f"Password for the new account {email}", hide_input=True, confirmation_prompt=True)
        if len(password) < MIN_PASSWORD_LENGTH:
            raise click.ClickException(f"use at least {MIN_PASSWORD_LENGTH} characters")
        try:
            user = create_user(db.session, email=email, password=password, name=name)
        except AccountError as error:
            raise click.ClickException(error.message) from None
    changed = user_admin.set_platform_admin(db.session, user, True, actor_label=ACTOR)
    db.session.commit()
    click.echo(f"{user.email} {'is now' if changed else 'was already'} a platform admin ({user.id}).")


@platform_admin_group.command("revoke")
@click.argument("email")
@with_appcontext
def revoke_command(email: str):
    """Take the operator console away from EMAIL (the account stays)."""
    from app.extensions import db

    user = find_user_by_email(db.session, email)
    if user is None:
        raise click.ClickException(f"no user {email!r}")
    changed = user_admin.set_platform_admin(db.session, user, False, actor_label=ACTOR)
    db.session.commit()
    click.echo(f"{user.email} {'is no longer' if changed else 'was not'} a platform admin.")
