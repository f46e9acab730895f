"""Helpers of the reconciliation tests: a sandbox report and bank statement for Kassa's own payments.

The sandbox's own code writes them (sandbox_psp/settlement.py, faults included) from an in-memory copy of its
tables holding the authorizations and refunds Kassa booked, so that each test's file is what the sandbox PSP
would serve for those payments (tests/sandbox_psp/test_sandbox_reconciliation_faults.py checks the same code
over HTTP).
"""
import datetime as dt
import sqlite3

from flask import current_app
from sqlalchemy import select, text

from app.ledger.models import LedgerAccount
from app.payments.deps import deps_for
from app.payments.models import Payment, Refund
from app.reconciliation import service
from app.reconciliation.models import PLATFORM_MERCHANT_ID
from app.scoping import Scope
from app.psp.interfaces import Lookup, Outcome, PspResult
from app.psp.sandbox import dispute_data
from sandbox_psp import disputes, settlement, store
from tests.disputes.helpers import captured, refund


class FakeSandbox:
    """The sandbox's tables in memory, holding what a test captured and refunded, on a day of its own."""

    def __init__(self, day: dt.date):
        self.day = day
        self.conn = sqlite3.connect(":memory:")
        self.conn.row_factory = sqlite3.Row
        self.conn.executescript(store.SCHEMA)
        self.faults: list[dict] = []

    def at(self, day: dt.date, seconds: int = 3600) -> int:
        return int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp()) + seconds

    def capture(self, session, scope: Scope, amount: int, currency: str = "USD", day: dt.date | None = None) -> Payment:
        """A payment captured in Kassa (scripted PSP) and in the fake sandbox, on ``day`` (default: the test's)."""
        day = day or self.day
        body = captured(session, scope, amount=amount, currency=currency)
        payment = scope.get(session, Payment, body["id"])
        # The capture's day is the test's own: each test has days no other test of the module uses.
        session.execute(text("UPDATE payments SET captured_at = :t WHERE id = :id"),
                        {"t": dt.datetime(day.year, day.month, day.day, 1, tzinfo=dt.UTC), "id": payment.id})
        session.commit()
        self.conn.execute("INSERT OR IGNORE INTO tokens (id, brand, last4, exp_month, exp_year, fingerprint, outcome, "
                          "created) VALUES ('tok', 'visa', '4242', 12, 2040, 'fp', 'ok', 0)")
        self.conn.execute(
            "INSERT INTO authorizations (id, acquirer, token, outcome, status, amount, currency, captured_amount, "
            "reference, card, created, captured_at) VALUES (?, 'sandbox', 'tok', 'ok', 'captured', ?, ?, ?, ?, '{}', ?, ?)",
            (payment.psp_reference, amount, currency, amount, payment.id, self.at(day), self.at(day)))
        return payment

    def refund(self, session, scope: Scope, payment: Payment, amount: int) -> Refund:
        body = refund(session, scope, payment.id, amount)
        row = scope.get(session, Refund, body["id"])
        # Booked on the test's own day, like its capture.
        session.execute(text("UPDATE refunds SET finished_at = :t WHERE id = :id"),
                        {"t": dt.datetime(self.day.year, self.day.month, self.day.day, 2, tzinfo=dt.UTC), "id": row.id})
        session.commit()
        session.refresh(row)
        self.conn.execute(
            "INSERT INTO refunds (id, acquirer, authorization_id, amount, currency, status, created) "
            "VALUES (?, 'sandbox', ?, ?, ?, 'succeeded', ?)",
            (row.psp_reference, payment.psp_reference, amount, payment.currency, self.at(self.day, 7200)))
        return row

    def missed_dispute(self, payment: Payment, day: dt.date | None = None) -> dict:
        """The sandbox's ``missed_dispute`` fault: a chargeback on the payment whose notice is never sent."""
        return disputes.open_unannounced(self.conn, payment.psp_reference, self.at(day or self.day, 5400))

    def lookup_dispute(self, connector: str, reference: str, livemode: bool, credential: str | None = None) -> Lookup:
        """The PSP's answer to a dispute lookup, as the sandbox connector gives it (GET /v1/disputes/<id>)."""
        row = self.conn.execute("SELECT * FROM disputes WHERE id = ?", (reference,)).fetchone()
        if row is None:
            return Lookup.absent(connector, "No such dispute.")
        dispute = disputes.dispute_object(row)
        return Lookup.of(PspResult(outcome=Outcome.SUCCEEDED, connector=connector, psp_reference=reference,
                                   status=dispute["status"], raw=dispute_data(dispute)))

    def notices(self) -> service.DisputeNotices:
        from tests.disputes.helpers import deps

        return service.DisputeNotices(lookup=self.lookup_dispute, deps=deps())

    def report(self, day: dt.date | None = None) -> bytes:
        return settlement.settlement_csv(self.conn, "sandbox", day or self.day, self.faults).encode()

    def statement(self, day: dt.date) -> bytes:
        return settlement.bank_statement_xml(self.conn, ["sandbox"], day, {"sandbox": self.faults}).encode()

    def batch(self, day: dt.date | None = None, currency: str = "USD") -> str:
        return settlement.batch_id("sandbox", day or self.day, currency)


def reconcile(session, sandbox: FakeSandbox, day: dt.date | None = None, content: bytes | None = None,
              notices: bool = False):
    day = day or sandbox.day
    result = service.reconcile_settlement(session, psp="sandbox", livemode=False, report_date=day,
                                          content=content if content is not None else sandbox.report(day),
                                          hmac_key=deps_for(current_app).ledger_hmac_key,
                                          dispute_notices=sandbox.notices() if notices else None)
    session.commit()
    return result


def deposit(session, sandbox: FakeSandbox, day: dt.date):
    result = service.reconcile_statement(session, livemode=False, report_date=day, content=sandbox.statement(day),
                                         hmac_key=deps_for(current_app).ledger_hmac_key)
    session.commit()
    return result


def balance(session, scope: Scope, code: str) -> int:
    value = session.scalars(select(LedgerAccount.balance).where(
        LedgerAccount.merchant_id == scope.merchant_id, LedgerAccount.livemode == scope.livemode,
        LedgerAccount.code == code)).one_or_none()
    session.commit()
    return value or 0


PLATFORM = Scope(PLATFORM_MERCHANT_ID, False)
