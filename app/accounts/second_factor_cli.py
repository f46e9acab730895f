"""`flask second-factor reset`: an operator removes a user's second factor from the command line (for when no
platform admin can sign in to the console, e.g. the only admin lost their phone). The console's button calls
the same app.accounts.second_factor.reset_second_factor."""
import click
from flask.cli import with_appcontext

from app.accounts.second_factor import SecondFactorError, reset_second_factor
from app.accounts.service import find_user_by_email


@click.group("second-factor")
def second_factor_group():
    """Users' second factors (two-step sign-in)."""


@second_factor_group.command("reset")
@click.option("--email", required=True, help="The user whose second factor is removed.")
@click.option("--reason", required=True, help="Why (kept in the audit log and told to the user).")
@with_appcontext
def reset_command(email: str, reason: str):
    """Remove the user's authenticator and recovery codes, end every session of theirs, and email them."""
    from app.extensions import db

    user = find_user_by_email(db.session, email)
    if user is None:
        raise click.ClickException(f"no user with the email {email}")
    try:
        ended = reset_second_factor(db.session, user, actor=None, reason=reason)
    except SecondFactorError as error:
        db.session.rollback()
        raise click.ClickException(error.message) from error
    db.session.commit()
    click.echo(f"The second factor of {user.email} was reset; {ended} session(s) ended; the user was emailed.")
