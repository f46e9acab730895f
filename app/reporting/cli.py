"""`flask reporting ...`: maintenance of the dashboard's rollups."""
import click
from flask.cli import with_appcontext

from app.extensions import db
from app.reporting import rollups
from app.scoping import Scope


@click.group("reporting")
def reporting_cli():
    """Dashboard reporting: rollups."""


@reporting_cli.command("rebuild-rollups")
@click.option("--merchant", "merchant_id", default=None, help="Only this merchant's books (default: all).")
@click.option("--live/--test", "livemode", default=False, help="With --merchant: which book.")
@with_appcontext
def rebuild_rollups_command(merchant_id: str | None, livemode: bool):
    """Recompute Home's rollups from the payments tables (run while that book takes no payments)."""
    rollups.rebuild(db.session, Scope(merchant_id, livemode) if merchant_id else None)
    db.session.commit()
    click.echo("Rollups rebuilt" + (f" for {merchant_id} ({'live' if livemode else 'test'})." if merchant_id else "."))


@reporting_cli.command("fold-rollups")
@with_appcontext
def fold_rollups_command():
    """Fold pending rollup deltas now (the scheduler does this every few seconds)."""
    total = 0
    while moved := rollups.fold_deltas(db.session):
        db.session.commit()
        total += moved
    db.session.commit()
    click.echo(f"Folded {total} deltas.")
