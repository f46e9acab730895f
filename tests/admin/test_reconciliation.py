"""The console's reconciliation pages: a day of a PSP, the breaks queue (filters, CSV with formula cells escaped),
a break resolved with a note (re-rendered with the message and nothing changed without one), assignment, file
history; the inbox's reconciliation kind; merchants' members get 404."""
import csv
import datetime as dt
import io

from sqlalchemy import select

from app.models_base import utcnow
from app.payments.deps import deps_for
from app.reconciliation import failures, service
from app.reconciliation.models import Break
from app.scoping import Scope
from tests import factories
from tests.admin.conftest import audit_rows, csrf_of, login_as
from tests.reconciliation.helpers import FakeSandbox, reconcile

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
