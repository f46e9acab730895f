"""The console's reconciliation pages: a day of a PSP, the breaks queue (filters, CSV with formula cells escaped),
a break resolved with a note (re-rendered with the message and nothing changed without one), assignment, file
history; the inbox's reconciliation kind; merchants' members get 404."""
import csv
import datetime as dt
import io
import re

from sqlalchemy import select
from werkzeug.datastructures import FileStorage
from werkzeug.test import encode_multipart

from app.models_base import utcnow
from app.payments.deps import deps_for
from app.reconciliation import failures, service
from app.ledger import accounts
from app.reconciliation.models import Break, ReportFile
from app.scoping import Scope
from tests.admin.conftest import audit_rows, csrf_of, login_as
from tests.reconciliation.helpers import FakeSandbox, balance, reconcile

DAY = dt.date(2035, 3, 1)


def _break(db_session, merchant) -> tuple[Break, FakeSandbox]:
    sandbox = FakeSandbox(DAY)
    scope = Scope(merchant.id, False)
    payment = sandbox.capture(db_session, scope, 5000)
    sandbox.faults.append({"action": "alter", "reference": payment.psp_reference, "amount": -100})
    reconcile(db_session, sandbox)
    row = db_session.scalars(scope.select(Break)).one()
    db_session.commit()
    return row, sandbox


def test_operators_work_a_break_from_queue_to_resolution(app, admin_client, db_session, shop, admin):
    merchant, owner, _developer = shop
    row, _sandbox = _break(db_session, merchant)

    day = admin_client.get(f"/admin/reconciliation?date={DAY.isoformat()}&psp=sandbox")
    assert day.status_code == 200
    html = day.get_data(as_text=True)
    assert "mismatch" in html and "Amount differs from the PSP&#39;s report" in html
    queue = admin_client.get("/admin/reconciliation/breaks?type=amount_mismatch")
    assert f'data-break-id="{row.id}"' in queue.get_data(as_text=True)
    assert row.id not in admin_client.get("/admin/reconciliation/breaks?type=duplicate").get_data(as_text=True)
    inbox = admin_client.get("/admin/inbox?kind=reconciliation_break").get_data(as_text=True)
    assert "Reconciliation: Amount differs" in inbox

    page = f"/admin/reconciliation/breaks/{merchant.id}/{row.id}"
    shown = admin_client.get(page)
    assert shown.status_code == 200, shown.get_data(as_text=True)[:3000]
    token = csrf_of(admin_client, page)
    refused = admin_client.post(f"{page}/resolve", data={"csrf_token": token, "resolve-resolution": "accepted",
                                                         "resolve-note": ""})
    assert refused.status_code == 422 and "Write a note" in refused.get_data(as_text=True)
    db_session.expire_all()
    assert db_session.get(Break, (merchant.id, row.id)).status == "open"

    assigned = admin_client.post(f"{page}/assign", data={"csrf_token": token, "assign-assignee": "opal@kassa.test"})
    assert assigned.status_code == 303
    done = admin_client.post(f"{page}/resolve", data={"csrf_token": token, "resolve-resolution": "accepted",
                                                      "resolve-note": "=HYPERLINK(\"http://x\") PSP kept 1.00"})
    assert done.status_code == 303
    db_session.expire_all()
    resolved = db_session.get(Break, (merchant.id, row.id))
    assert (resolved.status, resolved.assigned_to, resolved.resolved_by) == ("resolved", "opal@kassa.test", admin.email)
    assert resolved.resolution_transaction_id
    db_session.commit()
    [entry] = audit_rows(db_session, "reconciliation.break_resolved", merchant.id)
    assert entry.actor_user_id == admin.id and entry.details["resolution"] == "accepted"

    exported = admin_client.get("/admin/reconciliation/breaks.csv?status=resolved")
    assert exported.status_code == 200
    rows = list(csv.DictReader(io.StringIO(exported.get_data(as_text=True))))
    [mine] = [r for r in rows if r["id"] == row.id]
    assert mine["resolution_note"].startswith("'=HYPERLINK")  # a spreadsheet shows it, never runs it

    files = admin_client.get("/admin/reconciliation/files").get_data(as_text=True)
    assert DAY.isoformat() in files

    # A merchant's own members see none of it.
    login_as(admin_client, db_session, owner)
    assert admin_client.get(page).status_code == 404
    assert admin_client.get("/admin/reconciliation/breaks").status_code == 404


def test_the_breaks_queue_refuses_an_age_filter_too_large_without_an_error(admin_client):
    """Review r3: min_age_days=99999999999 overflowed timedelta (a 500 on the page and its CSV)."""
    for path in ("/admin/reconciliation/breaks", "/admin/reconciliation/breaks.csv"):
        assert admin_client.get(f"{path}?min_age_days=99999999999").status_code == 200
        assert admin_client.get(f"{path}?min_age_days=%D9%A3").status_code == 200  # an Arabic-Indic three


def test_a_fetch_failing_for_more_than_a_day_shows_on_the_console_and_in_the_inbox_until_imported(
        app, admin_client, db_session):
    day = dt.date(2035, 4, 2)
    now = utcnow()
    failures.record_failure(db_session, source="sandbox_b", kind="settlement", livemode=False, report_date=day,
                            error="sandbox_b: HTTP 503", now=now - dt.timedelta(hours=30),
                            raise_after=dt.timedelta(hours=24))
    later_day = dt.date(2035, 4, 3)  # failing for an hour only: not raised yet
    failures.record_failure(db_session, source="sandbox_b", kind="settlement", livemode=False, report_date=later_day,
                            error="sandbox_b: HTTP 503", now=now - dt.timedelta(hours=1),
                            raise_after=dt.timedelta(hours=24))
    db_session.commit()

    html = admin_client.get("/admin/reconciliation").get_data(as_text=True)
    assert f'data-fetch-failure="sandbox_b:settlement:{day.isoformat()}"' in html and "sandbox_b: HTTP 503" in html
    assert f"sandbox_b:settlement:{later_day.isoformat()}" not in html
    inbox = admin_client.get("/admin/inbox?kind=reconciliation_fetch").get_data(as_text=True)
    assert f"sandbox_b settlement report of {day.isoformat()} not fetched" in inbox
    assert f"report of {later_day.isoformat()} not fetched" not in inbox

    # The report of the day is imported at last (as the next successful fetch does).
    service.reconcile_settlement(db_session, psp="sandbox_b", livemode=False, report_date=day,
                                 content=FakeSandbox(day).report(), hmac_key=deps_for(app).ledger_hmac_key)
    db_session.commit()
    html = admin_client.get("/admin/reconciliation").get_data(as_text=True)
    assert f"sandbox_b:settlement:{day.isoformat()}" not in html
    inbox = admin_client.get("/admin/inbox?kind=reconciliation_fetch").get_data(as_text=True)
    assert f"report of {day.isoformat()} not fetched" not in inbox


def _upload(client, token, content: bytes, *, kind="settlement", psp="sandbox", day=None, reason="Fetch down; file "
            "sent by the PSP's support", filename="report.csv", mode="test"):
    return client.post("/admin/reconciliation/upload", content_type="multipart/form-data", data={
        "csrf_token": token, "upload-kind": kind, "upload-psp": psp, "upload-report_date": day.isoformat(),
        "upload-mode": mode, "upload-reason": reason, "upload-file": (io.BytesIO(content), filename)})


def test_an_operator_uploads_a_report_and_a_statement_through_the_same_import(app, admin_client, db_session, shop,
                                                                             admin):
    merchant, _owner, _developer = shop
    day = dt.date(2035, 5, 7)
    sandbox = FakeSandbox(day)
    scope = Scope(merchant.id, False)
    sandbox.capture(db_session, scope, 4000)
    token = csrf_of(admin_client, f"/admin/reconciliation/upload?date={day.isoformat()}&psp=sandbox")

    def files(kind):
        db_session.rollback()
        rows = db_session.scalars(select(ReportFile).where(ReportFile.report_date.in_([day, day + dt.timedelta(1)]),
                                                           ReportFile.kind == kind)).all()
        db_session.commit()
        return rows

    # Refused: a statement given as a settlement report, no reason, no CSRF token; nothing is kept.
    wrong = _upload(admin_client, token, sandbox.statement(day + dt.timedelta(days=1)), day=day, filename="s.xml")
    assert wrong.status_code == 422
    html = wrong.get_data(as_text=True)
    assert "Not a settlement report (CSV) Kassa can import" in html and "header must be" in html
    assert "Upload and import" in html  # the form, re-rendered
    assert _upload(admin_client, token, sandbox.report(), day=day, reason="  ").status_code == 422
    assert _upload(admin_client, "", sandbox.report(), day=day).status_code in (400, 422)
    assert files("settlement") == [] and audit_rows(db_session, "reconciliation.file_uploaded") == []

    done = _upload(admin_client, token, sandbox.report(), day=day)
    assert done.status_code == 303 and f"date={day.isoformat()}" in done.headers["Location"]
    [report] = files("settlement")
    assert (report.source, report.version, report.uploaded_by, report.content) == ("sandbox", 1, admin.email,
                                                                                    sandbox.report())
    assert balance(db_session, scope, accounts.psp_clearing("sandbox", "USD")) == 4000 - 146
    [entry] = audit_rows(db_session, "reconciliation.file_uploaded")
    assert (entry.actor_user_id, entry.target, entry.details["reason"], entry.details["created"]) == (
        admin.id, report.id, "Fetch down; file sent by the PSP's support", True)

    # The same bytes again change nothing (still audited: someone tried).
    again = _upload(admin_client, token, sandbox.report(), day=day)
    assert again.status_code == 303
    assert "nothing changed" in admin_client.get(again.headers["Location"]).get_data(as_text=True)
    assert [f.id for f in files("settlement")] == [report.id]
    assert balance(db_session, scope, accounts.psp_clearing("sandbox", "USD")) == 4000 - 146

    # A garbage statement is refused; the real one deposits the batch (three-way, as a fetched one).
    refused = _upload(admin_client, token, b"<not-camt/>", kind="bank_statement", psp="", day=day + dt.timedelta(1))
    assert refused.status_code == 422 and "camt.053 bank statement" in refused.get_data(as_text=True)
    paid = _upload(admin_client, token, sandbox.statement(day + dt.timedelta(days=1)), kind="bank_statement", psp="",
                   day=day + dt.timedelta(days=1), filename="statement.xml")
    assert paid.status_code == 303
    [statement] = files("bank_statement")
    assert statement.source == "bank" and statement.uploaded_by == admin.email
    assert balance(db_session, scope, accounts.psp_clearing("sandbox", "USD")) == 0
    assert balance(db_session, scope, accounts.cash("USD")) == 4000 - 146
    assert len(audit_rows(db_session, "reconciliation.file_uploaded")) == 3


def test_the_upload_takes_a_day_bigger_than_the_body_limit_and_refuses_one_over_its_own(app, admin_client, db_session,
                                                                                       shop, admin, monkeypatch):
    """A real day's report is bigger than MAX_CONTENT_LENGTH (1 MB): the upload route alone takes files up to
    RECONCILIATION_MAX_UPLOAD_BYTES, and refuses a bigger one with the limit on the form, keeping nothing."""
    merchant, _owner, _developer = shop
    day = dt.date(2035, 6, 11)
    sandbox = FakeSandbox(day)
    sandbox.capture(db_session, Scope(merchant.id, False), 3000)
    token = csrf_of(admin_client, f"/admin/reconciliation/upload?date={day.isoformat()}&psp=sandbox")
    monkeypatch.setitem(app.config, "RECONCILIATION_MAX_UPLOAD_BYTES", 3 * 1024 * 1024)
    # Blank lines are no lines: a valid report of 1.5 MB.
    big = sandbox.report() + b"\n" * (1536 * 1024)
    assert len(big) > app.config["MAX_CONTENT_LENGTH"]
    done = _upload_in_memory(admin_client, token, big, day)
    assert done.status_code == 303
    db_session.rollback()
    [report] = db_session.scalars(select(ReportFile).where(ReportFile.report_date == day)).all()
    assert (report.content, report.line_count) == (big, 1)
    db_session.commit()

    # Over the route's own limit: 413, the form with the limit, nothing kept.
    other_day = day + dt.timedelta(days=1)
    refused = _upload_in_memory(admin_client, token, sandbox.report(other_day) + b"\n" * (3 * 1024 * 1024 + 1),
                                other_day)
    assert refused.status_code == 413
    html = refused.get_data(as_text=True)
    assert "larger than 3 MB" in html and "RECONCILIATION_MAX_UPLOAD_BYTES" in html and "Upload and import" in html
    # A body far over it is refused before it is read (the same form and message).
    far = _upload_in_memory(admin_client, token, b"\n" * (3 * 1024 * 1024 + 200 * 1024), other_day)
    assert far.status_code == 413 and "larger than 3 MB" in far.get_data(as_text=True)
    db_session.rollback()
    assert db_session.scalars(select(ReportFile).where(ReportFile.report_date == other_day)).all() == []
    db_session.commit()

    # Every other console form keeps the 1 MB limit.
    boundary, payload = encode_multipart({"csrf_token": token, "assignee": "x" * (1100 * 1024)})
    elsewhere = admin_client.post(f"/admin/reconciliation/breaks/{merchant.id}/brk_x/assign", data=payload,
                                  content_type=f"multipart/form-data; boundary={boundary}")
    assert elsewhere.status_code == 413 and "RECONCILIATION_MAX_UPLOAD_BYTES" not in elsewhere.get_data(as_text=True)


def _upload_in_memory(client, token, content: bytes, day):
    """The upload form's body built in memory (the test client spools a big one to a file it never closes)."""
    boundary, payload = encode_multipart({
        "csrf_token": token, "upload-kind": "settlement", "upload-psp": "sandbox", "upload-report_date": day.isoformat(),
        "upload-mode": "test", "upload-reason": "The PSP's support sent the day's file",
        "upload-file": FileStorage(io.BytesIO(content), filename="report.csv")})
    return client.post("/admin/reconciliation/upload", data=payload,
                       content_type=f"multipart/form-data; boundary={boundary}")


def test_the_day_of_a_merchants_stripe_account_shows_its_breaks_and_balances(app, admin_client, db_session, shop):
    """A source names the account (stripe:<credential>), breaks and ledger accounts the PSP (stripe): the day's page
    of such a source counted none of its breaks and showed no balance, and its links filtered the queue to nothing."""
    merchant, _owner, _developer = shop
    day = dt.date(2035, 5, 7)
    source = "stripe:pcred_console_day"
    report, _ = service.store_file(db_session, source=source, kind="settlement", livemode=False, report_date=day,
                                   content=b'{"payouts": []}')
    service.open_break(db_session, Scope(merchant.id, False), type_="amount_mismatch", psp="stripe",
                       dedupe_key="amount_mismatch:stripe:pi_console_day:charge:+", report_date=day, currency="USD",
                       kassa_amount=5000, psp_amount=4900, reference="pi_console_day",
                       lines=[{"file": report.id, "line": 1}])
    # The platform's own Stripe account had two breaks that day: counted on its page, not on the merchant's.
    platform_report, _ = service.store_file(db_session, source="stripe", kind="settlement", livemode=False,
                                            report_date=day, content=b'{"payouts": [], "platform": true}')
    for n in (1, 2):
        service.open_break(db_session, Scope(merchant.id, False), type_="amount_mismatch", psp="stripe",
                           dedupe_key=f"amount_mismatch:stripe:pi_console_platform{n}:charge:+", report_date=day,
                           currency="USD", kassa_amount=5000, psp_amount=4900, reference=f"pi_console_platform{n}",
                           lines=[{"file": platform_report.id, "line": n}])
    db_session.commit()
    html = admin_client.get(f"/admin/reconciliation?date={day.isoformat()}&psp={source}").get_data(as_text=True)
    assert "Amount differs from the PSP&#39;s report</a>: 1" in html
    platform_html = admin_client.get(f"/admin/reconciliation?date={day.isoformat()}&psp=stripe").get_data(as_text=True)
    assert "Amount differs from the PSP&#39;s report</a>: 2" in platform_html
    [link] = re.findall(r'href="(/admin/reconciliation/breaks\?[^"]*)"', html)
    assert "psp=stripe" in link and "psp=stripe%3A" not in link
    # The link's queue holds that account's break only, not the platform account's (nor does its CSV).
    queue = admin_client.get(link.replace("&amp;", "&")).get_data(as_text=True)
    assert "pi_console_day" in queue and "pi_console_platform" not in queue
    exported = admin_client.get(link.replace("&amp;", "&").replace("/breaks?", "/breaks.csv?")).get_data(as_text=True)
    assert "pi_console_day" in exported and "pi_console_platform" not in exported


def test_the_console_lists_retired_stripe_accounts_still_fetched_with_what_is_missing(app, admin_client, db_session,
                                                                                      shop):
    from tests.reconciliation.test_stripe_source import connected, stripe_payment

    merchant, _owner, _developer = shop
    scope = Scope(merchant.id, False)
    old = connected(app, db_session, scope, "console_retired")
    stripe_payment(db_session, scope, 1200, "pi_console_retired", old.id, dt.date(2035, 7, 1))
    connected(app, db_session, scope, "console_current")
    html = admin_client.get("/admin/reconciliation").get_data(as_text=True)
    [row] = re.findall(rf'<tr data-retired-credential="{old.id}">(.*?)</tr>', html)
    assert f"stripe:{old.id}" in row and merchant.id in row and "<td>1</td><td>0</td>" in row


def test_the_upload_refuses_a_mode_the_psp_cannot_have(app, admin_client, db_session, shop, admin):
    """The sandbox acquirers are test mode only, a merchant's Stripe account has its credential's one mode: a report
    uploaded as another is refused on the mode field, nothing stored, nothing audited; the CLI refuses it too."""
    from tests.reconciliation.test_stripe_source import connected

    merchant, _owner, _developer = shop
    day = dt.date(2035, 8, 3)
    sandbox = FakeSandbox(day)
    sandbox.capture(db_session, Scope(merchant.id, False), 2000)
    token = csrf_of(admin_client, f"/admin/reconciliation/upload?date={day.isoformat()}&psp=sandbox")

    refused = _upload(admin_client, token, sandbox.report(), day=day, mode="live")
    assert refused.status_code == 422
    html = refused.get_data(as_text=True)
    assert "sandbox has no live mode" in html and "Upload and import" in html
    credential = connected(app, db_session, Scope(merchant.id, False), "upload_mode")
    # A source the form offers: one a report came from before.
    service.store_file(db_session, source=f"stripe:{credential.id}", kind="settlement", livemode=False,
                       report_date=day - dt.timedelta(days=1), content=b'{"payouts": []}')
    db_session.commit()
    stripe_refused = _upload(admin_client, token, b'{"object": "kassa.stripe_settlement"}', day=day, mode="live",
                             psp=f"stripe:{credential.id}")
    assert stripe_refused.status_code == 422 and "has no live mode" in stripe_refused.get_data(as_text=True)
    db_session.rollback()
    assert db_session.scalars(select(ReportFile).where(ReportFile.report_date == day)).all() == []
    db_session.commit()
    assert [row for row in audit_rows(db_session, "reconciliation.file_uploaded")
            if row.details["report_date"] == day.isoformat()] == []

    path = io.BytesIO(sandbox.report())
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".csv") as handle:
        handle.write(path.getvalue())
        handle.flush()
        cli = app.test_cli_runner().invoke(args=["reconcile", "run", "--psp", "sandbox", "--date", day.isoformat(),
                                                 "--file", handle.name, "--live"])
    assert cli.exit_code == 1 and "sandbox has no live mode" in cli.output
    db_session.rollback()
    assert db_session.scalars(select(ReportFile).where(ReportFile.report_date == day)).all() == []
    db_session.commit()

    # The mode it can have is taken.
    assert _upload(admin_client, token, sandbox.report(), day=day).status_code == 303


def test_a_file_holding_a_card_number_is_refused_and_nothing_of_it_stored(app, admin_client, db_session, shop, admin):
    """A card number inside a report (a reference, say, grouped or not) or a bank statement never enters Kassa: the
    upload is refused naming the line, not the number, and nothing is stored or audited; the fetch's path
    (service.reconcile_settlement, store_file) refuses it the same way."""
    merchant, _owner, _developer = shop
    day = dt.date(2035, 9, 14)
    sandbox = FakeSandbox(day)
    sandbox.capture(db_session, Scope(merchant.id, False), 2000)
    token = csrf_of(admin_client, f"/admin/reconciliation/upload?date={day.isoformat()}&psp=sandbox")
    lines = sandbox.report().decode().splitlines()
    for card in ("4242424242424242", "4242 4242 4242 4242"):
        leaked = "\n".join(lines + [lines[-1].replace(lines[-1].split(",")[0], card, 1)]) + "\n"
        refused = _upload(admin_client, token, leaked.encode(), day=day)
        assert refused.status_code == 422, refused.status_code
        html = refused.get_data(as_text=True)
        assert f"line {len(lines) + 1} contains what looks like a visa card number" in html.lower()
        assert "4242" not in html.replace('value="', "")
    statement = "<Document><Ustrd>card 5555-5555-5555-4444</Ustrd><IBAN>DE89370400440532013000</IBAN></Document>"
    refused = _upload(admin_client, token, statement.encode(), kind="bank_statement", day=day, filename="camt.xml")
    assert refused.status_code == 422 and "line 1 contains what looks like a mastercard card number" in \
        refused.get_data(as_text=True).lower()
    db_session.rollback()
    assert db_session.scalars(select(ReportFile).where(ReportFile.report_date == day)).all() == []
    assert [row for row in audit_rows(db_session, "reconciliation.file_uploaded")
            if row.details["report_date"] == day.isoformat()] == []
    # An IBAN or a long reference mixed with letters is no card number: the clean report imports.
    accepted = _upload(admin_client, token, sandbox.report(), day=day)
    assert accepted.status_code == 303, accepted.status_code
