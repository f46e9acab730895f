"""Mail to owners when a dispute opens and 48 hours before its deadline while nothing was submitted (the sweep),
and the operators' view: disputes due within 72 hours without a response, across merchants (the admin page, the
console inbox's provider), each dispute's evidence and files for operators as downloads only."""
import io
import time
from datetime import timedelta

import pytest
from sqlalchemy import select

from app.accounts.mail import MailMessage
from app.accounts.sessions import start_session
from app.disputes.models import Dispute
from app.disputes.notifications import send_due_reminders
from app.jobs.disputes import sweep_disputes
from app.models_base import utcnow
from tests import factories
from tests.disputes.helpers import DAY, captured, deliver, dispute_data
from tests.disputes.test_api import PNG


def _mails(db_session, merchant_id: str, kind: str) -> list[MailMessage]:
    rows = db_session.scalars(select(MailMessage).where(MailMessage.merchant_id == merchant_id, MailMessage.kind == kind)
                              .order_by(MailMessage.created_at)).all()
    db_session.commit()
    return rows


def _open(db_session, shop, *, due_in: timedelta, status: str = "needs_response") -> Dispute:
    payment = captured(db_session, shop["scope"], amount=2500)
    now = int(time.time())
    due_by = now + int(due_in.total_seconds())
    deliver(db_session, payment, f"cb_{payment['id']}", "dispute.created",
            dispute_data(f"dp_{payment['id']}", status, 2500, created=due_by - 7 * DAY, due_by=due_by))
    dispute = db_session.scalars(shop["scope"].select(Dispute, Dispute.payment_id == payment["id"])).one()
    db_session.commit()
    return dispute


def test_owners_are_told_when_a_dispute_opens(db_session, shop):
    admin = factories.member(db_session, shop["merchant"], "admin")
    db_session.commit()
    dispute = _open(db_session, shop, due_in=timedelta(days=6))
    [mail] = _mails(db_session, shop["merchant"].id, "dispute_opened")
    assert mail.to_address == shop["owner"].email != admin.email
    assert "$25.00" in mail.subject and "respond by" in mail.subject
    assert f"/dashboard/{shop['merchant'].id}/test/disputes/{dispute.id}" in mail.body_text
    # A repeated notice mails nobody again.
    assert len(_mails(db_session, shop["merchant"].id, "dispute_opened")) == 1


def test_a_reminder_48_hours_before_the_deadline_once(db_session, shop):
    soon = _open(db_session, shop, due_in=timedelta(hours=47))
    later = _open(db_session, shop, due_in=timedelta(days=5))
    answered = _open(db_session, shop, due_in=timedelta(hours=30))
    row = shop["scope"].get(db_session, Dispute, answered.id)
    row.submitted_at, row.pending_action = utcnow(), "submit"
    db_session.commit()

    reminded = send_due_reminders(db_session, now=utcnow())
    db_session.commit()
    assert soon.id in reminded and later.id not in reminded and answered.id not in reminded
    [mail] = _mails(db_session, shop["merchant"].id, "dispute_reminder")
    assert mail.to_address == shop["owner"].email and "No evidence has been submitted" in mail.body_text
    assert send_due_reminders(db_session, now=utcnow()) == []  # once
    # Three days on, the other one's turn comes.
    assert later.id in send_due_reminders(db_session, now=utcnow() + timedelta(days=3, hours=1))
    db_session.rollback()


def test_the_sweep_runs_reminders(app, db_session, shop):
    due = _open(db_session, shop, due_in=timedelta(hours=20))
    result = sweep_disputes()
    assert result["reminders"] >= 1
    assert due.id in [m.body_text for m in _mails(db_session, shop["merchant"].id, "dispute_reminder")][0]


@pytest.fixture
def operator(client, db_session):
    admin = factories.user(db_session, is_platform_admin=True)  # with a second factor: a complete login passed it
    _row, token = start_session(db_session, admin, second_factor_passed=True)
    db_session.commit()
    with client.session_transaction() as cookie:
        cookie["sid"] = token
    return admin


def test_operators_see_disputes_due_within_72_hours_and_their_files(client, auth, db_session, shop, operator):
    urgent = _open(db_session, shop, due_in=timedelta(hours=30))
    calm = _open(db_session, shop, due_in=timedelta(days=6))
    stored = client.post("/v1/files", headers=auth, content_type="multipart/form-data",
                         data={"purpose": "dispute_evidence", "file": (io.BytesIO(PNG), "photo.png")}).json
    client.post(f"/v1/disputes/{calm.id}", headers=auth, json={"evidence": {"receipt": stored["id"]}})
    with client.session_transaction() as cookie:
        cookie["sid"] = start_session(db_session, operator, second_factor_passed=True)[1]
    db_session.commit()

    page = client.get("/admin/disputes").get_data(as_text=True)
    due_part = page.split('id="recent-heading"')[0]
    assert urgent.id in due_part and calm.id not in due_part and calm.id in page
    detail = client.get(f"/admin/disputes/{shop['merchant'].id}/{calm.id}").get_data(as_text=True)
    assert "photo.png" in detail
    download = client.get(f"/admin/disputes/{shop['merchant'].id}/{calm.id}/files/{stored['id']}")
    assert download.data == PNG and download.headers["Content-Disposition"].startswith("attachment")
    assert download.headers["X-Content-Type-Options"] == "nosniff"
    assert download.headers["Content-Security-Policy"] == "sandbox"
    # A file the dispute does not name is not served through it, nor a dispute under another merchant's id.
    assert client.get(f"/admin/disputes/{shop['merchant'].id}/{urgent.id}/files/{stored['id']}").status_code == 404
    assert client.get(f"/admin/disputes/mer_nobody/{calm.id}").status_code == 404
    psp_page = client.get("/admin/psp").get_data(as_text=True)
    assert f"/admin/disputes/{shop['merchant'].id}/{calm.id}" in psp_page


def test_merchants_do_not_reach_the_operators_pages(client, db_session, shop):
    _row, token = start_session(db_session, shop["owner"])
    db_session.commit()
    with client.session_transaction() as cookie:
        cookie["sid"] = token
    assert client.get("/admin/disputes").status_code == 404


def test_the_inbox_provider_lists_disputes_due_without_evidence(db_session, shop):
    from app import inbox  # the console's registry of inbox kinds

    urgent = _open(db_session, shop, due_in=timedelta(hours=10))
    items, counts = inbox.collect(db_session, inbox.InboxFilters(merchant_id=shop["merchant"].id), "dispute")
    assert [item.id for item in items] == [urgent.id] and counts["dispute"] == 1
    assert items[0].link == ("admin.dispute", {"merchant_id": shop["merchant"].id, "dispute_id": urgent.id})
