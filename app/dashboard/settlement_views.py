"""Dashboard > Settlement: what settled for this book per day (gross, fees, refunds, disputes, net), from the PSPs'
reports as reconciliation matched them, and the same as CSV (formula cells escaped). Read through the page's Scope:
another merchant's lines are never in it."""
import csv
import io

from flask import Response, g, render_template

from app.accounts.permissions import Action
from app.dashboard import bp
from app.dashboard.context import merchant_view
from app.dashboard.reporting_helpers import Formatter
from app.extensions import db
from app.reconciliation.queries import daily_settlement
from app.reporting.exports import csv_safe

COLUMNS = ("date", "psp", "currency", "gross", "fees", "refunds", "disputes", "net", "lines")


@bp.route("/<merchant_id>/<mode>/settlement")
@merchant_view(Action.VIEW_LEDGER)
def settlement():
    """Daily settlement, newest first."""
    days = daily_settlement(db.session, g.scope)
    html = render_template("dashboard/settlement.html", days=days, money=Formatter.money)
    db.session.rollback()  # read-only
    return html


@bp.route("/<merchant_id>/<mode>/settlement.csv")
@merchant_view(Action.VIEW_LEDGER)
def settlement_csv():
    """The daily settlement as CSV, amounts in minor units."""
    days = daily_settlement(db.session, g.scope)
    db.session.rollback()
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    for d in days:
        writer.writerow([csv_safe(v) for v in (d.day.isoformat(), d.psp, d.currency, d.gross, d.fees, d.refunds,
                                              d.disputes, d.net, d.lines)])
    return Response(out.getvalue(), mimetype="text/csv", headers={
        "Content-Disposition": f"attachment; filename=settlement-{g.merchant.id}-{g.mode}.csv"})
