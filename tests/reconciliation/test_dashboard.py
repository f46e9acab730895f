"""Dashboard > Settlement: a merchant sees what settled for its own book per day (gross, fees, refunds, disputes,
net) and exports it as CSV; another merchant's settlement and breaks never show."""
import csv
import datetime as dt
import io

import pytest

from app.reconciliation.models import Break
from app.scoping import Scope
from tests import factories
from tests.dashboard.conftest import login_as
from tests.reconciliation.helpers import FakeSandbox, reconcile

DAY = dt.date(2036, 5, 4)


def test_a_merchant_sees_its_own_daily_settlement_and_exports_it(app, client, db_session):
    mine = factories.merchant(db_session, name="Settled shop")
    theirs = factories.merchant(db_session, name="Other shop")
    owner = factories.member(db_session, mine, role="owner")
    other_owner = factories.member(db_session, theirs, role="owner")
    db_session.commit()
    sandbox = FakeSandbox(DAY)
    scope, other = Scope(mine.id, False), Scope(theirs.id, False)
    payment = sandbox.capture(db_session, scope, 10000)
    sandbox.refund(db_session, scope, payment, 2500)
    their_payment = sandbox.capture(db_session, other, 7000)
    sandbox.faults.append({"action": "alter", "reference": their_payment.psp_reference, "amount": -1})
    reconcile(db_session, sandbox)
    their_break = db_session.scalars(other.select(Break)).one()
    assert their_break.type == "amount_mismatch"
    db_session.commit()

    login_as(client, db_session, owner)
    page = client.get(f"/dashboard/{mine.id}/test/settlement")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert DAY.isoformat() in html and "$100.00" in html and "-$25.00" in html and "$71.80" in html
    assert "$70.00" not in html and "$69.99" not in html  # the other merchant's charge
    assert their_break.id not in html and their_payment.psp_reference not in html  # nor its break
    detail = client.get(f"/dashboard/{mine.id}/test/payments/{their_payment.id}")
    assert detail.status_code == 404
    exported = client.get(f"/dashboard/{mine.id}/test/settlement.csv")
    rows = list(csv.DictReader(io.StringIO(exported.get_data(as_text=True))))
    assert rows == [{"date": DAY.isoformat(), "psp": "sandbox", "currency": "USD", "gross": "10000", "fees": "320",
                     "refunds": "-2500", "disputes": "0", "net": "7180", "lines": "2"}]
    # Another merchant's page is not this owner's to open.
    assert client.get(f"/dashboard/{theirs.id}/test/settlement").status_code in (403, 404)

    login_as(client, db_session, other_owner)
    theirs_page = client.get(f"/dashboard/{theirs.id}/test/settlement.csv").get_data(as_text=True)
    assert "6999" in theirs_page and "10000" not in theirs_page


def test_the_payment_detail_shows_its_settlement_line_and_fee(app, client, db_session):
    shop = factories.merchant(db_session, name="Detail shop")
    owner = factories.member(db_session, shop, role="owner")
    db_session.commit()
    sandbox = FakeSandbox(DAY + dt.timedelta(days=40))
    payment = sandbox.capture(db_session, Scope(shop.id, False), 4000)
    reconcile(db_session, sandbox)
    login_as(client, db_session, owner)
    html = client.get(f"/dashboard/{shop.id}/test/payments/{payment.id}").get_data(as_text=True)
    assert 'id="settlement-heading"' in html and "$1.46" in html and sandbox.batch() in html


def test_the_settlement_csv_escapes_cells_a_spreadsheet_would_run(app, client, db_session):
    """A connector named like a formula (an operator's PSP_CONNECTORS key) is exported as text."""
    from app.reconciliation.models import BookDay, ReportFile, ReportLine

    shop = factories.merchant(db_session, name="Formula shop")
    owner = factories.member(db_session, shop, role="owner")
    db_session.commit()
    day = DAY + dt.timedelta(days=80)
    db_session.add(ReportFile(id="rfil_formula", source="=cmd|' /C calc'!A0", kind="settlement", livemode=False,
                              report_date=day, version=1, checksum="0" * 64, content=b""))
    db_session.flush()
    db_session.add(ReportLine(file_id="rfil_formula", line_no=1, psp="=cmd|' /C calc'!A0", livemode=False,
                              report_date=day, batch_id="b", reference="r", type="charge", gross=1000, fee=30,
                              net=970, currency="USD", status="matched", merchant_id=shop.id))
    # What the importer writes beside its lines, and what the settlement page and CSV read.
    db_session.add(BookDay(merchant_id=shop.id, livemode=False, file_id="rfil_formula", psp="=cmd|' /C calc'!A0",
                           currency="USD", report_date=day, gross=1000, fees=30, refunds=0, disputes=0, net=970,
                           lines=1))
    db_session.commit()
    login_as(client, db_session, owner)
    rows = list(csv.DictReader(io.StringIO(client.get(f"/dashboard/{shop.id}/test/settlement.csv")
                                           .get_data(as_text=True))))
    assert [row["psp"] for row in rows] == ["'=cmd|' /C calc'!A0"]


def test_the_settlement_columns_add_up_to_the_net_when_a_refund_carries_a_fee(app, db_session):
    """Net is gross less fees plus refunds and disputes: a refund line's fee (a PSP returning part of its fee, or
    charging one) is among the fees, or the day's columns do not add up to what was paid."""
    from app.reconciliation.queries import daily_settlement

    shop = factories.merchant(db_session, name="Rebated shop")
    db_session.commit()
    sandbox = FakeSandbox(DAY + dt.timedelta(days=80))
    scope = Scope(shop.id, False)
    payment = sandbox.capture(db_session, scope, 10000)
    refunded = sandbox.refund(db_session, scope, payment, 2500)
    report = sandbox.report().decode().replace(f"{refunded.psp_reference},refund,-2500,0,-2500,",
                                               f"{refunded.psp_reference},refund,-2500,-80,-2420,")
    assert "-2420" in report
    reconcile(db_session, sandbox, content=report.encode())
    [day] = daily_settlement(db_session, scope)
    db_session.commit()
    assert (day.gross, day.fees, day.refunds, day.net) == (10000, 320 - 80, -2500, 10000 - 320 - 2500 + 80)
    assert day.gross - day.fees + day.refunds + day.disputes == day.net


def test_the_settlement_page_limits_days_not_rows(app, db_session):
    """The page shows the last N days: a day settled in two currencies is one day with two rows, not two days."""
    from app.reconciliation.queries import daily_settlement

    shop = factories.merchant(db_session, name="Two currency shop")
    db_session.commit()
    sandbox = FakeSandbox(DAY + dt.timedelta(days=120))
    scope = Scope(shop.id, False)
    sandbox.capture(db_session, scope, 10000)
    sandbox.capture(db_session, scope, 8000, currency="EUR")
    reconcile(db_session, sandbox)
    rows = daily_settlement(db_session, scope, limit=1)
    db_session.commit()
    assert sorted((row.day, row.currency) for row in rows) == [(sandbox.day, "EUR"), (sandbox.day, "USD")]
