"""The Disputes pages in-process: the list with its status tabs and countdowns, a dispute's page, saving a
draft with files, submitting and accepting behind a confirmation, roles (owners and admins act, developers and
analysts read), downloads, Home's "needs attention", and another merchant's disputes out of reach."""
import io
import re
import time

import pytest

from app.accounts.sessions import start_session
from app.disputes.models import Dispute, File
from app.jobs.disputes import run_action
from tests import factories
from tests.disputes.helpers import DAY, captured, deliver, deps, dispute_data
from tests.disputes.test_api import PNG, ScriptedDisputes, pdf_bytes


def login(client, session, user) -> None:
    _row, token = start_session(session, user, second_factor_passed=True)
    session.commit()
    with client.session_transaction() as cookie:
        cookie.clear()
        cookie["sid"] = token


def csrf(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


@pytest.fixture
def board(client, db_session, shop):
    """The shop with a dispute due in about 6 days and an overdue one; the owner signed in."""
    scope = shop["scope"]
    due = captured(db_session, scope, amount=4200)
    deliver(db_session, due, f"cb_{due['id']}", "dispute.created",
            dispute_data(f"dp_{due['id']}", "needs_response", 4200, reason="product_not_received"))
    late = captured(db_session, scope, amount=1300)
    opened = int(time.time()) - 8 * DAY
    deliver(db_session, late, f"cb_{late['id']}", "dispute.created",
            dispute_data(f"dp_{late['id']}", "needs_response", 1300, created=opened, due_by=opened + 7 * DAY))
    ids = {d.payment_id: d.id for d in db_session.scalars(scope.select(Dispute))}
    db_session.commit()
    login(client, db_session, shop["owner"])
    base = f"/dashboard/{shop['merchant'].id}/test"
    return {"base": base, "due": ids[due["id"]], "late": ids[late["id"]], "payment": due["id"]}


def test_the_list_shows_deadlines_amounts_and_reasons(client, board):
    page = client.get(f"{board['base']}/disputes").get_data(as_text=True)
    assert "Needs response" in page and "$42.00" in page and "Product not received" in page
    assert re.search(r'class="countdown[^"]*">6 days left<', page)
    assert re.search(r'class="countdown countdown-overdue">Overdue<', page)
    won_tab = client.get(f"{board['base']}/disputes?status=won").get_data(as_text=True)
    assert board["due"] not in won_tab and "No dispute has this status" in won_tab
    home = client.get(f"{board['base']}/").get_data(as_text=True)
    assert re.search(r"2\s*</strong>\s*disputes", home) or "2 disputes" in home
    assert "waiting for your response" in home


def test_a_disputes_page_with_guidance_and_the_payment(client, board):
    page = client.get(f"{board['base']}/disputes/{board['due']}").get_data(as_text=True)
    assert "says they did not receive what they paid for" in page
    assert page.index("<legend>Shipping") < page.index("<legend>Customer")  # the reason's groups first
    assert "Submit evidence" not in page  # nothing saved yet: only "Accept" and "Save draft"
    assert "Accept dispute…" in page and board["payment"] in page
    payment_page = client.get(f"{board['base']}/payments/{board['payment']}").get_data(as_text=True)
    assert "Withdrawn by a dispute" in payment_page and f"disputes/{board['due']}" in payment_page


def test_save_submit_and_the_worker(client, db_session, shop, board):
    url = f"{board['base']}/disputes/{board['due']}"
    token = csrf(client.get(url).get_data(as_text=True))
    saved = client.post(f"{url}/evidence", content_type="multipart/form-data", data={
        "csrf_token": token, "shipping_carrier": "DHL", "shipping_tracking_number": "JD014600006281230987",
        "uncategorized_text": "winning_evidence", "upload_shipping_documentation": (io.BytesIO(pdf_bytes()), "pod.pdf")})
    assert saved.status_code == 303, saved.get_data(as_text=True)[:2000]
    dispute = shop["scope"].get(db_session, Dispute, board["due"])
    file_id = dispute.evidence["shipping_documentation"]
    assert dispute.evidence["shipping_carrier"] == "DHL" and dispute.submitted_at is None
    db_session.commit()
    download = client.get(f"{board['base']}/files/{file_id}")
    assert download.headers["Content-Disposition"] == f'attachment; filename="{file_id}.pdf"'
    assert download.headers["Content-Security-Policy"] == "sandbox"

    confirm = client.get(f"{url}/submit").get_data(as_text=True)
    assert "Submitting is final" in confirm and "pod.pdf" in confirm
    form_token = re.search(r'name="form_token" value="([^"]+)"', confirm).group(1)
    done = client.post(f"{url}/submit", data={"csrf_token": csrf(confirm), "form_token": form_token})
    assert done.status_code == 303
    again = client.post(f"{url}/submit", data={"csrf_token": csrf(confirm), "form_token": form_token})
    assert again.status_code == 303  # the same form twice: done once
    run_action(shop["scope"], board["due"], deps(), ScriptedDisputes())
    page = client.get(url).get_data(as_text=True)
    assert "Under review" in page and "can no longer change" in page and "Save draft" not in page


def test_a_refused_file_re_renders_the_form_with_its_message(client, board, db_session, shop):
    url = f"{board['base']}/disputes/{board['due']}"
    token = csrf(client.get(url).get_data(as_text=True))
    refused = client.post(f"{url}/evidence", content_type="multipart/form-data", data={
        "csrf_token": token, "customer_name": "Ann",
        "upload_receipt": (io.BytesIO(b"%PDF-1.4 not really"), "receipt.pdf")})
    body = refused.get_data(as_text=True)
    assert refused.status_code == 422 and "not a readable PDF" in body and 'value="Ann"' in body
    assert shop["scope"].get(db_session, Dispute, board["due"]).evidence == {}
    db_session.commit()
    upload = client.post(f"{url}/files", content_type="multipart/form-data", headers={"X-CSRFToken": token},
                         data={"file": (io.BytesIO(PNG), "photo.png")})
    assert upload.status_code == 200 and upload.json["type"] == "png"
    card = client.post(f"{url}/evidence", data={"csrf_token": token, "customer_name": "4242 4242 4242 4242"})
    assert card.status_code == 422 and "card number" in card.get_data(as_text=True)


def test_accept_behind_a_confirmation(client, db_session, shop, board):
    url = f"{board['base']}/disputes/{board['due']}"
    confirm = client.get(f"{url}/accept").get_data(as_text=True)
    assert "Accepting is final" in confirm
    form_token = re.search(r'name="form_token" value="([^"]+)"', confirm).group(1)
    assert client.post(f"{url}/accept", data={"csrf_token": csrf(confirm), "form_token": form_token}).status_code == 303
    assert shop["scope"].get(db_session, Dispute, board["due"]).pending_action == "close"
    db_session.commit()
    run_action(shop["scope"], board["due"], deps(), ScriptedDisputes())
    assert "Lost" in client.get(url).get_data(as_text=True)


@pytest.mark.parametrize("role", ["developer", "analyst"])
def test_developers_and_analysts_read_only(client, db_session, shop, board, role):
    member = factories.member(db_session, shop["merchant"], role)
    login(client, db_session, member)
    url = f"{board['base']}/disputes/{board['due']}"
    page = client.get(url)
    assert page.status_code == 200 and "Save draft" not in page.get_data(as_text=True)
    assert "Owners and admins answer disputes" in page.get_data(as_text=True)
    token = csrf(client.get(f"{board['base']}/disputes").get_data(as_text=True))
    assert client.post(f"{url}/evidence", data={"csrf_token": token, "customer_name": "x"}).status_code == 403
    assert client.get(f"{url}/submit").status_code == 403
    assert client.post(f"{url}/accept", data={"csrf_token": token}).status_code == 403


def test_another_merchants_disputes_and_files_are_404(client, db_session, shop, board):
    stored = db_session.scalars(shop["scope"].select(File)).first()
    other = factories.merchant(db_session, name="Elsewhere")
    owner = factories.member(db_session, other, "owner")
    login(client, db_session, owner)
    base = f"/dashboard/{other.id}/test"
    assert client.get(f"{base}/disputes/{board['due']}").status_code == 404
    assert board["due"] not in client.get(f"{base}/disputes?status=all").get_data(as_text=True)
    if stored is not None:
        assert client.get(f"{base}/files/{stored.id}").status_code == 404
    # And the merchant's own URL is closed to someone who is not its member.
    assert client.get(f"{board['base']}/disputes/{board['due']}").status_code == 404
