"""CSV export of a filtered list: built by the job, equal to the list, amounts twice, formulas escaped."""
import csv
import io
import re
from datetime import timedelta

from sqlalchemy import func, select, update

from app.jobs.exports import run_export, sweep_exports
from app.models_base import utcnow
from app.reporting.exports import csv_safe
from app.reporting.models import DashboardExport, DashboardExportChunk
from tests.dashboard.conftest import T, login_as, stored_payment
from tests.dashboard.test_lists import _REFUND_ROW, listed

_CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


def start_export(client, list_url: str, kind: str, **filters) -> str:
    """Press "Export CSV" on a list page (a plain form post) and return the export's id."""
    html = client.get(list_url).get_data(as_text=True)
    response = client.post(list_url.split("/payments")[0].split("/refunds")[0] + "/exports",
                           data={"csrf_token": _CSRF.search(html).group(1), "kind": kind, **filters})
    assert response.status_code == 303
    return response.headers["Location"].rsplit("/", 1)[1]


def download(client, url: str) -> list[dict]:
    response = client.get(url)
    assert response.status_code == 200
    assert response.headers["Content-Disposition"].startswith("attachment; filename=")
    return list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))


def test_export_of_a_filtered_view_equals_the_filtered_list(client, db_session, shop):
    s = shop()
    for i in range(23):
        stored_payment(db_session, s.scope, created_at=T(i * 30), amount=100 * (i + 1),
                       currency="USD" if i % 3 else "JPY", status="succeeded" if i % 4 else "canceled",
                       customer_email=f"c{i}@example.com")
    db_session.commit()
    login_as(client, db_session, s.users["analyst"])  # seeing everything includes exporting it
    filters = {"status": "succeeded", "currency": "USD", "amount_min": "3"}
    list_url = s.url("payments?" + "&".join(f"{k}={v}" for k, v in filters.items()))
    expected = listed(client, list_url + "&limit=10")
    assert len(expected) > 5

    export_id = start_export(client, list_url, "payments", **filters)
    page = client.get(s.url(f"exports/{export_id}")).get_data(as_text=True)
    assert "Preparing your CSV" in page and 'hx-trigger="every 1s"' in page
    assert run_export(db_session, export_id, chunk_rows=4) == "succeeded"  # several chunks
    assert db_session.scalar(select(func.count()).select_from(DashboardExportChunk)
                             .where(DashboardExportChunk.export_id == export_id)) > 1
    page = client.get(s.url(f"exports/{export_id}"), headers={"HX-Request": "true"}).get_data(as_text=True)
    assert "Your CSV is ready" in page and "every 1s" not in page

    rows = download(client, s.url(f"exports/{export_id}/download"))
    assert [row["id"] for row in rows] == expected
    first = rows[0]
    assert first["amount"] == "2300" and first["amount_formatted"] == "$23.00" and first["currency"] == "USD"
    assert first["status"] == "succeeded" and first["customer_email"] == "c22@example.com"


def test_refunds_export_equals_the_refunds_list(client, db_session, shop):
    from app.ids import new_id
    from app.payments.models import Refund

    s = shop()
    payment = stored_payment(db_session, s.scope, amount=100000)
    for i in range(6):
        db_session.add(s.scope.new(Refund, id=new_id("re"), payment_id=payment.id, amount=100 + i, currency="USD",
                                   status="succeeded" if i % 2 else "failed", allocations=[],
                                   idempotency_key=new_id("k"), tries=1, created_at=T(i), updated_at=T(i)))
    db_session.commit()
    login_as(client, db_session, s.users["owner"])
    expected = listed(client, s.url("refunds?status=succeeded"), _REFUND_ROW)
    export_id = start_export(client, s.url("refunds?status=succeeded"), "refunds", status="succeeded")
    run_export(db_session, export_id)
    rows = download(client, s.url(f"exports/{export_id}/download"))
    assert [row["id"] for row in rows] == expected
    assert rows[0]["amount_formatted"] == "$1.05" and rows[0]["payment"] == payment.id


def test_cells_a_spreadsheet_would_run_are_escaped(client, db_session, shop):
    s = shop()
    stored_payment(db_session, s.scope, description='=HYPERLINK("http://evil.example","click")',
                   customer_email="+cmd@example.com", metadata_={"note": "@SUM(A1)"})
    stored_payment(db_session, s.scope, description="-2+3", customer_email="\tTab@example.com")
    db_session.commit()
    login_as(client, db_session, s.users["owner"])
    export_id = start_export(client, s.url("payments"), "payments")
    run_export(db_session, export_id)
    rows = download(client, s.url(f"exports/{export_id}/download"))
    cells = [value for row in rows for value in row.values()]
    assert not [c for c in cells if c[:1] in ("=", "+", "-", "@", "\t", "\r")]
    by_description = {row["description"] for row in rows}
    assert by_description == {"'=HYPERLINK(\"http://evil.example\",\"click\")", "'-2+3"}
    assert {row["customer_email"] for row in rows} == {"'+cmd@example.com", "'\tTab@example.com"}
    assert csv_safe("\rx") == "'\rx" and csv_safe("ok") == "ok" and csv_safe(-5) == -5


def test_exports_are_private_to_the_merchant_and_expire(client, db_session, shop):
    a, b = shop(name="A"), shop(name="B")
    stored_payment(db_session, a.scope)
    db_session.commit()
    login_as(client, db_session, a.users["owner"])
    export_id = start_export(client, a.url("payments"), "payments")
    run_export(db_session, export_id)
    assert client.get(a.url(f"exports/{export_id}/download")).status_code == 200
    login_as(client, db_session, b.users["owner"])
    assert client.get(b.url(f"exports/{export_id}")).status_code == 404
    assert client.get(b.url(f"exports/{export_id}/download")).status_code == 404
    assert client.get(a.url(f"exports/{export_id}/download")).status_code == 404  # not a member of A

    login_as(client, db_session, a.users["owner"])
    db_session.execute(update(DashboardExport).where(DashboardExport.id == export_id)
                       .values(expires_at=utcnow() - timedelta(seconds=1)))
    db_session.commit()
    assert client.get(a.url(f"exports/{export_id}/download")).status_code == 410
    assert "This export expired" in client.get(a.url(f"exports/{export_id}")).get_data(as_text=True)
    assert sweep_exports()["deleted"] >= 1
    db_session.rollback()
    assert db_session.get(DashboardExport, export_id) is None
    assert db_session.scalar(select(func.count()).select_from(DashboardExportChunk)
                             .where(DashboardExportChunk.export_id == export_id)) == 0


def test_a_lost_export_job_is_run_again_by_the_sweep(client, db_session, shop):
    s = shop()
    stored_payment(db_session, s.scope)
    db_session.commit()
    login_as(client, db_session, s.users["owner"])
    export_id = start_export(client, s.url("payments"), "payments")
    # The enqueue was lost and the export sat queued past its lease.
    db_session.execute(update(DashboardExport).where(DashboardExport.id == export_id)
                       .values(created_at=utcnow() - timedelta(minutes=5)))
    db_session.commit()
    assert export_id in sweep_exports()["requeued"]
    assert run_export(db_session, export_id) == "succeeded"
    assert run_export(db_session, export_id) == "skipped"  # a duplicate run does nothing
