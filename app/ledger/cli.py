"""``flask ledger verify`` and ``flask ledger trial-balance``."""
import sys

import click
from flask.cli import AppGroup

from app.extensions import db
from app.ledger.integration import ledger_hmac_key, run_verify, save_last_verify
from app.ledger.queries import journal_totals, trial_balance
from app.money import format_money
from app.scoping import Scope

ledger_cli = AppGroup("ledger", help="Check and report on the double-entry ledger.")


def _scope(merchant: str | None, mode: str | None) -> Scope | None:
    if merchant is None:
        if mode is not None:
            raise click.UsageError("--mode needs --merchant")
        return None
    return Scope(merchant, (mode or "test") == "live")


@ledger_cli.command("verify")
@click.option("--merchant", help="Only this merchant's book (default: every book).")
@click.option("--mode", type=click.Choice(["test", "live"]), help="With --merchant: the book's mode (test).")
def verify_command(merchant: str | None, mode: str | None) -> None:
    """Recompute every account's hash chain and balance and every transaction's seal; exit 1 on a discrepancy."""
    scope = _scope(merchant, mode)
    report = run_verify(db.session, ledger_hmac_key(), scope)
    if scope is None:
        save_last_verify(report)
    click.echo(f"checked {report.accounts} accounts, {report.entries} entries, "
               f"{report.transactions} transactions ({report.scope})")
    if report.unsealed_transactions:
        click.echo(f"unsealed (posted before migration 0015): {report.unsealed_transactions} transactions; their "
                   "kind, description and reference are not covered, their business key is")
    if report.ok:
        click.echo("ledger OK")
        return
    first = report.first
    click.echo(f"FIRST DISCREPANCY [{first.problem}]: {first.message}", err=True)
    if report.discrepancy_count > 1:
        click.echo(f"{report.discrepancy_count} discrepancies in all", err=True)
        for other in report.discrepancies[1:10]:
            click.echo(f"  [{other.problem}] {other.message}", err=True)
    sys.exit(1)


@ledger_cli.command("trial-balance")
@click.option("--merchant", help="Only this merchant's book (default: the whole platform, per mode).")
@click.option("--mode", type=click.Choice(["test", "live"]), help="With --merchant: the book's mode (test).")
def trial_balance_command(merchant: str | None, mode: str | None) -> None:
    """Print debit and credit balances per mode and currency; exit 1 if any pair differs."""
    scope = _scope(merchant, mode)
    balance = trial_balance(db.session, scope)
    totals = journal_totals(db.session, scope)
    db.session.rollback()
    if not balance.lines:
        click.echo("no ledger accounts yet")
        return
    click.echo(f"{'mode':<5} {'currency':<8} {'accounts':>8} {'debit balances':>22} {'credit balances':>22} "
               f"{'entries debit':>22} {'entries credit':>22}  status")
    for line in balance.lines:
        d, c = totals.get((line.livemode, line.currency), (0, 0))
        status = "OK" if line.balanced and d == c else "UNBALANCED"
        click.echo(f"{'live' if line.livemode else 'test':<5} {line.currency:<8} {line.accounts:>8} "
                   f"{format_money(line.debits, line.currency):>22} {format_money(line.credits, line.currency):>22} "
                   f"{format_money(d, line.currency):>22} {format_money(c, line.currency):>22}  {status}")
    if not balance.balanced or any(d != c for d, c in totals.values()):
        sys.exit(1)
