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


# The daily settlement as it was read from the lines themselves before reconciliation_book_days (migration 0035).
_DAILY_FROM_LINES = text("""
SELECT report_date, psp, currency,
       coalesce(sum(gross) FILTER (WHERE type = 'charge'), 0)::bigint AS gross,
       coalesce(sum(fee) FILTER (WHERE type IN ('charge', 'fee')), 0)::bigint AS fees,
       coalesce(sum(gross) FILTER (WHERE type IN ('refund', 'refund_failure')), 0)::bigint AS refunds,
       coalesce(sum(gross) FILTER (WHERE type = 'dispute'), 0)::bigint AS disputes,
       sum(net)::bigint AS net, count(*) AS lines
  FROM reconciliation_lines
 WHERE merchant_id = :merchant_id AND livemode = false AND status IN ('matched', 'mismatch', 'unchanged')
   AND file_id NOT IN (SELECT supersedes_id FROM reconciliation_files WHERE supersedes_id IS NOT NULL)
 GROUP BY report_date, psp, currency
 ORDER BY report_date DESC, psp, currency
""")


def test_book_days_give_the_daily_settlement_the_lines_give_across_a_corrected_version(app, db_session, shop,
                                                                                      sandbox):
    from app.reconciliation.queries import daily_settlement
    from tests import factories

    scope = shop["scope"]
    other = factories.merchant(db_session, name="Other book shop")
    db_session.commit()
    other_scope = Scope(other.id, False)
    paid = [sandbox.capture(db_session, scope, amount) for amount in (1000, 2500, 4000)]
    sandbox.capture(db_session, other_scope, 7000)
    sandbox.refund(db_session, scope, paid[0], 300)
    first = sandbox.report()
    reconcile(db_session, sandbox, content=first)
    # A corrected version of the same day: one charge line gone, one amount changed (a mismatch), one line more.
    lines = first.decode().splitlines(keepends=True)
    dropped = next(i for i, line in enumerate(lines) if line.startswith(paid[1].psp_reference + ","))
    changed = next(i for i, line in enumerate(lines) if line.startswith(paid[2].psp_reference + ","))
    ref, kind, gross, fee, net, currency, batch = lines[changed].strip().split(",")
    lines[changed] = f"{ref},{kind},{int(gross) + 1},{fee},{int(net) + 1},{currency},{batch}\n"
    later = sandbox.capture(db_session, scope, 900)
    del lines[dropped]
    lines += [line for line in sandbox.report().decode().splitlines(keepends=True)
              if line.startswith(later.psp_reference + ",")]
    corrected = "".join(lines).encode()
    assert later.psp_reference.encode() in corrected
    result = reconcile(db_session, sandbox, content=corrected)
    assert result.created and set(result.statuses) >= {"unchanged", "mismatch"}
    for book in (scope, other_scope):
        expected = [tuple(row) for row in db_session.execute(_DAILY_FROM_LINES, {"merchant_id": book.merchant_id})]
        got = [(d.day, d.psp, d.currency, d.gross, d.fees, d.refunds, d.disputes, d.net, d.lines)
               for d in daily_settlement(db_session, book)]
        assert got == expected and got
    mine = daily_settlement(db_session, scope)[0]
    assert (mine.gross, mine.refunds, mine.lines) == (1000 + 4001 + 900, -300, 4)


def test_every_line_has_its_file_and_files_cannot_be_deleted(app, db_session, shop, sandbox, database):
    # reconciliation_lines has no foreign key to its file (migration 0035): the importer writes the lines in the
    # file's own transaction, and the application may neither delete a file nor change its id.
    import psycopg

    from tests.conftest import app_connect

    payment = sandbox.capture(db_session, shop["scope"], 1200)
    first = reconcile(db_session, sandbox)
    sandbox.capture(db_session, shop["scope"], 800)
    corrected = reconcile(db_session, sandbox)
    assert corrected.created and first.file_id != corrected.file_id
    orphans = db_session.scalar(text("SELECT count(*) FROM reconciliation_lines l WHERE NOT EXISTS "
                                     "(SELECT 1 FROM reconciliation_files f WHERE f.id = l.file_id)"))
    assert orphans == 0
    assert db_session.scalar(select(func.count()).select_from(ReportLine).where(
        ReportLine.file_id.in_((first.file_id, corrected.file_id)))) == 3
    db_session.commit()
    for statement in ("DELETE FROM reconciliation_files WHERE id = %s",
                      "UPDATE reconciliation_files SET id = id || 'x' WHERE id = %s"):
        with app_connect(database) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(statement, (first.file_id,))
    # A refused file leaves no line behind either (its transaction rolled back with the file).
    with pytest.raises(ReportFormatError):
        reconcile(db_session, sandbox, day=sandbox.day + dt.timedelta(days=1),
                  content=sandbox.report() + f"{payment.psp_reference},charge,1,2,3,USD,x\n".encode())
    db_session.rollback()
    assert db_session.scalar(text("SELECT count(*) FROM reconciliation_lines l WHERE NOT EXISTS "
                                  "(SELECT 1 FROM reconciliation_files f WHERE f.id = l.file_id)")) == 0


def test_book_days_equal_the_lines_through_faults_a_missed_dispute_two_corrections_and_a_hand_match(
        app, db_session, shop, sandbox):
    # Every kind of line a first version can hold (matched, mismatch, duplicate, unknown, a refund, a dispute whose
    # notice was missed, in two books), then two corrected versions and a line matched by hand: after each step
    # each book's daily settlement from reconciliation_book_days is what its lines give, and no book shows another's.
    from app.reconciliation.queries import daily_settlement
    from app.reconciliation.resolution import resolve_break
    from app.reconciliation.models import Break, PLATFORM_MERCHANT_ID
    from app.payments.deps import deps_for
    from flask import current_app
    from tests import factories
    from tests.disputes.helpers import verify_ledger

    scope = shop["scope"]
    other = factories.merchant(db_session, name="Book days other shop")
    db_session.commit()
    other_scope = Scope(other.id, False)
    refunded, disputed, altered = (sandbox.capture(db_session, scope, amount) for amount in (5000, 1200, 3300))
    theirs = sandbox.capture(db_session, other_scope, 7000)
    sandbox.refund(db_session, scope, refunded, 1000)
    sandbox.missed_dispute(disputed)
    day = sandbox.day.isoformat()
    sandbox.faults += [{"reference": altered.psp_reference, "date": day, "action": "alter", "amount": -100},
                       {"reference": theirs.psp_reference, "date": day, "action": "duplicate"},
                       {"action": "unknown", "date": day}]
    db_session.commit()

    def check():
        for book in (scope, other_scope):
            expected = [tuple(row) for row in db_session.execute(_DAILY_FROM_LINES,
                                                                 {"merchant_id": book.merchant_id})]
            got = [(d.day, d.psp, d.currency, d.gross, d.fees, d.refunds, d.disputes, d.net, d.lines)
                   for d in daily_settlement(db_session, book)]
            assert got == expected and got
        assert daily_settlement(db_session, other_scope)[0].gross == 7000
        db_session.commit()

    first = reconcile(db_session, sandbox, notices=True)
    assert {"matched", "mismatch", "duplicate", "unmatched"} <= set(first.statuses)
    check()
    sandbox.capture(db_session, scope, 900)  # a corrected version with one line more
    reconcile(db_session, sandbox, notices=True)
    check()
    sandbox.faults = [{"action": "unknown", "date": day}]  # and one with the faults gone but the unknown line
    reconcile(db_session, sandbox, notices=True)
    check()
    platform = Scope(PLATFORM_MERCHANT_ID, False)
    unknown = db_session.scalars(platform.select(Break, Break.type == "missing_in_kassa", Break.status == "open")).all()
    assert unknown
    lost = sandbox.capture(db_session, scope, 1000)  # booked, never reported: an operator matches the line to it
    resolve_break(db_session, platform, unknown[0].id, resolution="matched_by_hand", note="checked", target=lost.id,
                  hmac_key=deps_for(current_app).ledger_hmac_key, actor_user_id=None, actor_label="ops@kassa.test")
    db_session.commit()
    check()
    verify_ledger(app)
