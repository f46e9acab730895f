"""Dashboard > Balances: sellers' balances by currency, the book's accounts, and an account's statement.

Read-only, for owners, admins and analysts (Action.VIEW_LEDGER). Everything is read through the page's
Scope (merchant and mode from the URL), so another book's account id is simply not found.
"""
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask import abort, g, render_template, request, url_for

from app.accounts.permissions import Action
from app.dashboard import bp
from app.dashboard.context import merchant_view
from app.dashboard.reporting_helpers import Formatter, sellers_by_id
from app.extensions import db
from app.ledger.models import LedgerAccount
from app.ledger.queries import STATEMENT_PAGE, all_seller_balances, book_accounts, statement, transaction_legs


def _zone() -> ZoneInfo:
    try:
        return ZoneInfo(g.merchant.timezone or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _day(name: str, errors: dict) -> date | None:
    value = request.args.get(name, "").strip()
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        errors[name] = "Use a date like 2026-01-31."
        return None


@bp.route("/<merchant_id>/<mode>/balances")
@merchant_view(Action.VIEW_LEDGER)
def balances():
    """What the book owes each seller, per currency, and every account of the book."""
    sellers = all_seller_balances(db.session, g.scope)
    accounts = [a for a in book_accounts(db.session, g.scope) if a.account_type != "seller_payable"]
    html = render_template("dashboard/ledger/balances.html", sellers=sellers, accounts=accounts,
                           names=sellers_by_id(row.seller_id for row in sellers), money=Formatter.money)
    db.session.rollback()  # read-only: end the transaction
    return html


@bp.route("/<merchant_id>/<mode>/ledger/accounts/<account_id>")
@merchant_view(Action.VIEW_LEDGER)
def ledger_account(account_id: str):
    """An account's statement over a date range (the merchant's local dates), oldest first, with running
    balances and the journal transaction behind every line."""
    account = g.scope.get(db.session, LedgerAccount, account_id)
    if account is None:
        abort(404)
    errors: dict[str, str] = {}
    first, last = _day("from", errors), _day("to", errors)
    if first and last and last < first:
        errors["to"] = "The end date is before the start date."
        last = None
    zone = _zone()
    start = datetime.combine(first, time.min, zone) if first else None
    end = datetime.combine(last + timedelta(days=1), time.min, zone) if last else None  # "to" is inclusive
    try:
        after = int(request.args["after"]) if request.args.get("after") else None
    except ValueError:
        after = None
    page = statement(db.session, g.scope, account.id, start=start, end=end, after_version=after,
                     limit=STATEMENT_PAGE)
    legs = transaction_legs(db.session, g.scope, {line.transaction_id for line in page.lines})
    names = sellers_by_id(leg.code.split(":")[1] for lines in legs.values() for leg in lines
                          if leg.code.startswith("seller_payable:"))
    next_url = None
    if page.next_after is not None:
        kept = {k: v for k, v in (("from", request.args.get("from")), ("to", request.args.get("to"))) if v}
        next_url = url_for("dashboard.ledger_account", merchant_id=g.merchant.id, mode=g.mode,
                           account_id=account.id, after=page.next_after, **kept)
    html = render_template(
        "dashboard/ledger/statement.html", account=account, page=page, legs=legs, errors=errors, next_url=next_url,
        first=request.args.get("from", ""), last=request.args.get("to", ""), zone=zone,
        seller=sellers_by_id([account.subject]).get(account.subject) if account.account_type == "seller_payable"
        else None, names=names, money=Formatter.money, filtered=bool(first or last))
    db.session.rollback()
    return html
