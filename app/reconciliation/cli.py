"""``flask reconcile run|statement|breaks|resolve``: operators' scripts over the reconciliation service."""
import json
import sys
from datetime import date
from pathlib import Path

import click
from flask.cli import AppGroup
from sqlalchemy import select

from app.extensions import db
from app.jobs.transactions import commit_or_rollback
from app.ledger.integration import ledger_hmac_key
from app.reconciliation.fetch import FetchFailed
from app.reconciliation.models import BREAK_STATUSES, BREAK_TYPES, RESOLUTIONS, Break
from app.reconciliation.parsing import ReportFormatError
from app.reconciliation.resolution import ResolutionError, resolve_break
from app.reconciliation.service import break_object
from app.reconciliation.stripe_lines import credential_of
from app.scoping import Scope

reconcile_cli = AppGroup("reconcile", help="Import PSP settlement reports and bank statements; list and resolve breaks.")


def _day(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter("use YYYY-MM-DD") from None


@reconcile_cli.command("run")
@click.option("--psp", required=True, help="The report's source: a sandbox acquirer (sandbox, sandbox_b), stripe (the "
              "platform's account) or stripe:<credential id> (a merchant's).")
@click.option("--date", "day", required=True, help="The report's day, YYYY-MM-DD.")
@click.option("--file", "path", type=click.Path(exists=True, dir_okay=False), help="Import this file instead of fetching.")
@click.option("--live", is_flag=True, help="A live-mode report (default: test mode).")
def run_command(psp: str, day: str, path: str | None, live: bool) -> None:
    """Fetch (or read) one PSP's settlement report of one day and reconcile it; prints the outcome as JSON."""
    from app.jobs.reconciliation import run_day

    from flask import current_app

    from app.reconciliation.uploads import UploadRefused, check_mode

    try:
        check_mode(db.session, current_app.config, psp, live)
    except UploadRefused as exc:
        click.echo(f"not imported: {exc}", err=True)
        sys.exit(1)
    finally:
        db.session.rollback()
    content = Path(path).read_bytes() if path else None
    try:
        if content is None and credential_of(psp) is not None:
            result = _run_stripe_day(psp, _day(day), live)
        else:
            result = run_day(psp, _day(day), content=content, livemode=live)
    except (FetchFailed, ReportFormatError) as exc:
        click.echo(f"not imported: {exc}", err=True)
        sys.exit(1)
    click.echo(json.dumps(result.as_dict() | {"statuses": result.statuses}))


def _run_stripe_day(source: str, day: date, livemode: bool):
    """Fetch and reconcile one Stripe account's day (``stripe``: the platform's, ``stripe:<credential>``: a
    merchant's, retired ones included while their reports are incomplete), as the scheduled job does."""
    from flask import current_app

    from app.crypto import SecretBox
    from app.jobs.reconciliation import run_stripe_day
    from app.reconciliation import fetch

    box = SecretBox(current_app.config.get("KASSA_ENCRYPTION_KEYS", ""))
    accounts = [account for account in fetch.stripe_accounts(db.session, current_app.config, box)
                if account.source == source and account.livemode == livemode]
    db.session.rollback()
    if not accounts:
        raise FetchFailed(f"{source} is no Stripe account Kassa fetches in {'live' if livemode else 'test'} mode "
                          "(no key configured, or a retired credential whose reports are complete)")
    return run_stripe_day(accounts[0], day)


@reconcile_cli.command("statement")
@click.option("--date", "day", required=True, help="The statement's day, YYYY-MM-DD.")
@click.option("--file", "path", type=click.Path(exists=True, dir_okay=False), help="Import this camt.053 file.")
@click.option("--live", is_flag=True, help="Live mode (default: test mode).")
def statement_command(day: str, path: str | None, live: bool) -> None:
    """Fetch (or read) the bank statement of one day and match its deposits to their batches."""
    from app.jobs.reconciliation import run_statement

    content = Path(path).read_bytes() if path else None
    try:
        result = run_statement(_day(day), content=content, livemode=live)
    except (FetchFailed, ReportFormatError) as exc:
        click.echo(f"not imported: {exc}", err=True)
        sys.exit(1)
    click.echo(json.dumps(result.as_dict() | {"statuses": result.statuses}))


@reconcile_cli.command("breaks")
@click.option("--json", "as_json", is_flag=True, help="One JSON array (default: a line per break).")
@click.option("--status", type=click.Choice(BREAK_STATUSES), default="open", show_default=True)
@click.option("--type", "type_", type=click.Choice(BREAK_TYPES))
@click.option("--psp")
@click.option("--merchant")
def breaks_command(as_json: bool, status: str, type_: str | None, psp: str | None, merchant: str | None) -> None:
    """Breaks, oldest first (every book: this is the platform's view)."""
    query = select(Break).where(Break.status == status).order_by(Break.opened_at, Break.id)
    if type_:
        query = query.where(Break.type == type_)
    if psp:
        query = query.where(Break.psp == psp)
    if merchant:
        query = query.where(Break.merchant_id == merchant)
    rows = [break_object(row) for row in db.session.scalars(query)]
    db.session.rollback()
    if as_json:
        click.echo(json.dumps(rows))
        return
    for row in rows:
        click.echo(f"{row['id']} {row['type']} {row['merchant']} {row['psp']} {row['report_date']} "
                   f"kassa={row['kassa_amount']} psp={row['psp_amount']} {row['currency']} {row['reference'] or ''}")


@reconcile_cli.command("resolve")
@click.argument("break_id")
@click.option("--merchant", required=True, help="The break's book (mer_platform for the platform's).")
@click.option("--live", is_flag=True)
@click.option("--resolution", type=click.Choice(RESOLUTIONS), required=True)
@click.option("--note", required=True)
@click.option("--target", help="matched_by_hand: the object it matches.")
@click.option("--operator", required=True, help="Who resolves it (recorded in the audit log).")
def resolve_command(break_id: str, merchant: str, live: bool, resolution: str, note: str, target: str | None,
                    operator: str) -> None:
    """Resolve a break with a kind and a note (adjustments are new ledger transactions; audited)."""
    try:
        with commit_or_rollback(db.session):
            row = resolve_break(db.session, Scope(merchant, live), break_id, resolution=resolution, note=note,
                                target=target, hmac_key=ledger_hmac_key(), actor_user_id=None,
                                actor_label=f"cli:{operator}")
            body = break_object(row)
    except ResolutionError as exc:
        click.echo(exc.message, err=True)
        sys.exit(1)
    click.echo(json.dumps(body))
