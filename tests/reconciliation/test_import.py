"""The importer's hot path (service._import_first_version): the file's bytes are COPY'd raw and checked in SQL, so a
bad line must still be refused in the parser's words, naming its line, and leave nothing behind."""
import datetime as dt
import itertools

import pytest
from sqlalchemy import func, select, text

from app.reconciliation.models import ReportFile, ReportLine
from app.reconciliation.parsing import ReportFormatError
from app.scoping import Scope
from tests.reconciliation.helpers import FakeSandbox, reconcile

_days = itertools.count()


@pytest.fixture
def sandbox():
    return FakeSandbox(dt.date(2041, 1, 1) + dt.timedelta(days=40 * next(_days)))


@pytest.mark.parametrize("bad_line, message", [
    (b"auth_x,charge,1000,59,900,USD,po_x", "line 3: net 900 is not gross 1000 - fee 59"),
    (b"auth_x,charge,1000,59,941,USD", "line 3: expected 7 columns"),
    (b"auth_x,charge,1000,59,941,USD,po_x,extra", "line 3: expected 7 columns"),
    (b"auth_x,chargeback,1000,59,941,USD,po_x", "line 3: unknown type 'chargeback'"),
    (b"auth_x,charge,10.00,59,941,USD,po_x", "line 3: gross must be an integer number of minor units"),
    (b"auth_x,charge,+1000,59,941,USD,po_x", "line 3: gross must be an integer number of minor units"),
    (b"auth_x,charge,01000,59,941,USD,po_x", "line 3: amounts must be integers of minor units in their plain form"),
    (b"auth_x,charge,1000,59,941,usd,po_x", "line 3: currency must be an ISO 4217 code"),
    (b"auth x,charge,1000,59,941,USD,po_x", "line 3: reference and batch_id must be plain identifiers"),
    (b"=cmd(),charge,1000,59,941,USD,po_x", "line 3: reference and batch_id must be plain identifiers"),
    (b"auth_x,charge,1000,59,941,USD,po x", "line 3: reference and batch_id must be plain identifiers"),
    (b"auth_x,charge,1000,59,941,USD,po_\xff", "line 3: the report is not UTF-8 text"),
])
def test_a_bad_line_refuses_the_file_naming_its_line(app, db_session, shop, sandbox, bad_line, message):
    sandbox.capture(db_session, shop["scope"], 1000)
    good = sandbox.report()
    assert good.count(b"\n") == 2  # the header and the capture's line: the bad one is line 3
    with pytest.raises(ReportFormatError, match=message.replace("+", r"\+").replace("(", r"\(")):
        reconcile(db_session, sandbox, content=good + bad_line + b"\n")
    db_session.rollback()
    assert db_session.scalar(select(func.count()).select_from(ReportFile).where(
        ReportFile.source == "sandbox", ReportFile.report_date == sandbox.day)) == 0


def test_a_header_that_is_not_the_settlement_header_is_refused(app, db_session, shop, sandbox):
    with pytest.raises(ReportFormatError, match="the header must be reference,type,gross,fee,net,currency,batch_id"):
        reconcile(db_session, sandbox, content=b"reference,type,gross\nauth_x,charge,1\n")
    db_session.rollback()


def test_crlf_lines_and_blank_lines_at_the_end_import_like_plain_ones(app, db_session, shop, sandbox):
    sandbox.capture(db_session, shop["scope"], 1000)
    sandbox.capture(db_session, shop["scope"], 2000)
    content = sandbox.report().replace(b"\n", b"\r\n") + b"\r\n\r\n"
    result = reconcile(db_session, sandbox, content=content)
    assert result.statuses == {"matched": 2} and not result.breaks_opened
    numbers = db_session.scalars(select(ReportLine.line_no).where(ReportLine.file_id == result.file_id)
                                 .order_by(ReportLine.line_no)).all()
    assert numbers == [1, 2]


def test_a_reference_booked_in_two_books_matches_one_line_once(app, db_session, shop, sandbox):
    # Two payments, each booked in its own book, carrying the same PSP reference (the second one's set by hand): the
    # line matches one of them and is written once, posted once.
    from tests import factories
    from tests.disputes.helpers import captured

    payment = sandbox.capture(db_session, shop["scope"], 1500)
    other = factories.merchant(db_session, name="Twin reference shop")
    db_session.commit()
    twin = captured(db_session, Scope(other.id, False), amount=1500)
    db_session.execute(text("UPDATE payments SET psp_reference = :r WHERE id = :id"),
                       {"r": payment.psp_reference, "id": twin["id"]})
    db_session.commit()

    result = reconcile(db_session, sandbox)
    assert result.statuses == {"matched": 1} and len(result.transactions) == 1
    lines = db_session.scalars(select(ReportLine).where(ReportLine.file_id == result.file_id)).all()
    assert [(line.merchant_id, line.object_id) for line in lines] in (
        [(shop["scope"].merchant_id, payment.id)], [(other.id, twin["id"])])
    assert lines[0].transaction_id == result.transactions[0]
    db_session.commit()
