"""Helpers of the payouts tests: the app's ledger key, and a split payment captured both in Kassa and in the
sandbox's own records (tests/reconciliation/helpers.FakeSandbox), so that its settlement report and statement show it."""
import datetime as dt

from flask import current_app
from sqlalchemy import text

from app.payments.deps import deps_for
from app.payments.models import Payment
from tests.disputes.helpers import captured


def key():
    return deps_for(current_app).ledger_hmac_key


def split_capture(session, scope, sandbox, a, b, currency="USD") -> Payment:
    """100.00 split A 60.00 (fee 1.80) / B 40.00 (fee 1.20), captured in Kassa and the sandbox on its day."""
    body = captured(session, scope, [(a, 6000, 180), (b, 4000, 120)], currency=currency)
    payment = scope.get(session, Payment, body["id"])
    day = sandbox.day
    session.execute(text("UPDATE payments SET captured_at = :t WHERE id = :id"),
                    {"t": dt.datetime(day.year, day.month, day.day, 1, tzinfo=dt.UTC), "id": payment.id})
    session.commit()
    sandbox.conn.execute("INSERT OR IGNORE INTO tokens (id, brand, last4, exp_month, exp_year, fingerprint, outcome, "
                         "created) VALUES ('tok', 'visa', '4242', 12, 2040, 'fp', 'ok', 0)")
    sandbox.conn.execute(
        "INSERT INTO authorizations (id, acquirer, token, outcome, status, amount, currency, captured_amount, "
        "reference, card, created, captured_at) VALUES (?, 'sandbox', 'tok', 'ok', 'captured', 10000, ?, 10000, "
        "?, '{}', ?, ?)", (payment.psp_reference, currency, payment.id, sandbox.at(day), sandbox.at(day)))
    return payment
