"""Refund, capture and cancel from a payment's page, request-level, through the payments service.

The PSP is the scripted in-process one; the staged jobs run inline (tests/dashboard/conftest.py). The
same refund against the real sandbox PSP and worker is in test_e2e_live.py.
"""
import re
import threading

import pytest
from sqlalchemy import select

from app.accounts.audit import AuditEntry
from app.events import Event
from app.ledger.models import Entry, JournalTransaction, LedgerAccount
from app.payments.models import Payment, Refund
from app.payments.service import create_seller
from tests.dashboard.conftest import login_as, paid
from tests.payments.helpers import assert_ledger_balanced, ledger_balances

_CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
_TOKEN = re.compile(r'name="form_token"[^>]*value="([^"]+)"')


def csrf(html: str) -> str:
    return _CSRF.search(html).group(1)


def review(client, url: str, **fields) -> str:
    """Step 1: the form, posted to the review step; returns the review page."""
    token = csrf(client.get(url).get_data(as_text=True))
    response = client.post(url, data={"csrf_token": token, "step": "review", **fields})
    assert response.status_code == 200, response.get_data(as_text=True)[:2000]
    return response.get_data(as_text=True)


def confirm_fields(review_html: str, **fields) -> dict:
    return {"csrf_token": csrf(review_html), "step": "confirm", "form_token": _TOKEN.search(review_html).group(1),
            **fields}


def refunds_of(db_session, payment_id: str) -> list[Refund]:
    db_session.rollback()
    return list(db_session.scalars(select(Refund).where(Refund.payment_id == payment_id)))


def test_partial_refund_from_the_detail_page(client, db_session, shop, jobs):
    s = shop()
    seller_a = create_seller(db_session, s.scope, name="A")
    seller_b = create_seller(db_session, s.scope, name="B")
    db_session.commit()
    payment_id = paid(db_session, s.scope, jobs, amount=10000, currency="EUR", customer_email="ref@example.com",
                      split=[{"seller": seller_a.id, "amount": 6000, "fee": 180},
                             {"seller": seller_b.id, "amount": 4000, "fee": 120}])
    login_as(client, db_session, s.users["owner"])
    detail = client.get(s.url(f"payments/{payment_id}")).get_data(as_text=True)
    assert "Refund…" in detail and "€100.00" in detail
    url = s.url(f"payments/{payment_id}/refund")
    assert 'value="100.00"' in client.get(url).get_data(as_text=True)  # prefilled with what is refundable

    page = review(client, url, amount="30.00", reason="requested_by_customer")
    assert "Check and confirm" in page and "€30.00" in page and "Left to refund after this" in page
    assert refunds_of(db_session, payment_id) == []  # the review step moves nothing
    response = client.post(url, data=confirm_fields(page, amount="30.00", reason="requested_by_customer"))
    assert response.status_code == 303 and response.headers["Location"].endswith(f"/payments/{payment_id}")

    [refund] = refunds_of(db_session, payment_id)
    assert (refund.amount, refund.reason, refund.status) == (3000, "requested_by_customer", "pending")
    assert jobs.run() == 1  # the refund job, against the (scripted) PSP
    db_session.expire_all()
    refund = db_session.get(Refund, refund.id)
    assert refund.status == "succeeded"
    assert db_session.get(Payment, payment_id).amount_refunded == 3000

    # The ledger reversal: receivable down 30.00, pro rata out of both sellers' payables and the fee.
    txn = db_session.scalars(select(JournalTransaction).where(
        JournalTransaction.business_key == f"refund:{refund.id}")).one()
    legs = {(code, e.direction, e.amount) for e, code in db_session.execute(
        select(Entry, LedgerAccount.code).join(LedgerAccount, LedgerAccount.id == Entry.account_id)
        .where(Entry.transaction_id == txn.id))}
    assert legs == {
        ("psp_receivable:sandbox:EUR", "credit", 3000),
        (f"seller_payable:{seller_a.id}:EUR", "debit", 1800 - 54),
        (f"seller_payable:{seller_b.id}:EUR", "debit", 1200 - 36),
        ("merchant_revenue:EUR", "debit", 90),
    }
    assert_ledger_balanced(db_session, s.scope)
    assert ledger_balances(db_session, s.scope)["psp_receivable:sandbox:EUR"] == 7000
    assert [e.type for e in db_session.scalars(s.scope.select(Event, Event.object_id == refund.id)
                                               .order_by(Event.id))] == ["refund.created", "refund.succeeded"]
    [entry] = db_session.scalars(select(AuditEntry).where(AuditEntry.action == "payment.refund_created",
                                                          AuditEntry.merchant_id == s.merchant.id))
    assert entry.actor_user_id == s.users["owner"].id and entry.target == payment_id
    assert entry.details["amount"] == 3000 and entry.details["refund"] == refund.id

    detail = client.get(s.url(f"payments/{payment_id}")).get_data(as_text=True)
    assert refund.id in detail and f"refund:{refund.id}" in detail and "refund.succeeded" in detail
    assert "Partially refunded" in detail


def test_double_submitted_refund_creates_one_refund(client, db_session, shop, jobs):
    s = shop()
    payment_id = paid(db_session, s.scope, jobs, amount=5000)
    login_as(client, db_session, s.users["admin"])
    url = s.url(f"payments/{payment_id}/refund")
    fields = confirm_fields(review(client, url, amount="10.00"), amount="10.00")
    first = client.post(url, data=fields)
    second = client.post(url, data=fields)  # the second click of a double click, or a re-post on reload
    assert first.status_code == second.status_code == 303
    assert len(refunds_of(db_session, payment_id)) == 1
    followed = client.get(second.headers["Location"]).get_data(as_text=True)
    assert "already submitted" in followed
    audits = db_session.scalars(select(AuditEntry).where(AuditEntry.action == "payment.refund_created",
                                                         AuditEntry.merchant_id == s.merchant.id)).all()
    assert len(audits) == 1


def test_concurrent_double_submit_creates_one_refund(app, db_session, shop, jobs):
    """Two submissions of one confirm form racing each other (two threads, two clients)."""
    s = shop()
    payment_id = paid(db_session, s.scope, jobs, amount=5000)
    clients = [app.test_client(), app.test_client()]
    for client in clients:
        login_as(client, db_session, s.users["owner"])
    url = s.url(f"payments/{payment_id}/refund")
    page = review(clients[0], url, amount="7.00")
    token = _TOKEN.search(page).group(1)
    results = []
    barrier = threading.Barrier(2)

    def submit(client):
        with app.app_context():
            fields = {"csrf_token": csrf(client.get(url).get_data(as_text=True)), "step": "confirm",
                      "form_token": token, "amount": "7.00"}
            barrier.wait()
            results.append(client.post(url, data=fields).status_code)

    threads = [threading.Thread(target=submit, args=(c,)) for c in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [303, 303]
    assert [r.amount for r in refunds_of(db_session, payment_id)] == [700]


@pytest.mark.parametrize("role", ["analyst", "developer"])
def test_roles_without_move_money_see_no_buttons_and_are_refused(client, db_session, shop, jobs, role):
    s = shop()
    payment_id = paid(db_session, s.scope, jobs, amount=5000)
    uncaptured = paid(db_session, s.scope, jobs, amount=800, manual=True)
    login_as(client, db_session, s.users[role])
    for pid in (payment_id, uncaptured):
        detail = client.get(s.url(f"payments/{pid}"))
        assert detail.status_code == 200  # they see everything...
        html = detail.get_data(as_text=True)
        assert "Refund…" not in html and "Capture…" not in html and "Cancel payment…" not in html
    # ... and change nothing: every step of every action is refused, whatever the form says.
    token = csrf(client.get(s.url(f"payments/{payment_id}")).get_data(as_text=True))
    for pid, action in ((payment_id, "refund"), (uncaptured, "capture"), (uncaptured, "cancel")):
        url = s.url(f"payments/{pid}/{action}")
        assert client.get(url).status_code == 403
        for step in ("review", "confirm"):
            response = client.post(url, data={"csrf_token": token, "step": step, "amount": "1.00",
                                              "form_token": "x" * 32})
            assert response.status_code == 403
    assert refunds_of(db_session, payment_id) == []
    assert db_session.get(Payment, uncaptured).status == "requires_capture"


def test_refund_form_explains_bad_amounts(client, db_session, shop, jobs):
    s = shop()
    payment_id = paid(db_session, s.scope, jobs, amount=1000, currency="JPY")
    login_as(client, db_session, s.users["owner"])
    url = s.url(f"payments/{payment_id}/refund")
    token = csrf(client.get(url).get_data(as_text=True))
    too_much = client.post(url, data={"csrf_token": token, "step": "review", "amount": "1001"})
    assert too_much.status_code == 422
    assert "The most you can refund is ¥1,000." in too_much.get_data(as_text=True)
    fractional = client.post(url, data={"csrf_token": token, "step": "review", "amount": "10.5"})
    assert fractional.status_code == 422 and "JPY amounts have no decimals" in fractional.get_data(as_text=True)
    assert refunds_of(db_session, payment_id) == []


GERMAN = {"Accept-Language": "de-DE,de;q=0.9,en;q=0.5"}


def test_amounts_are_typed_in_the_persons_locale(client, db_session, shop, jobs):
    """"0,5" in a German browser refunds 0,50 € (it refunded 5.00 € when commas were dropped)."""
    s = shop()
    payment_id = paid(db_session, s.scope, jobs, amount=10000, currency="EUR")
    login_as(client, db_session, s.users["owner"])
    url = s.url(f"payments/{payment_id}/refund")
    form = client.get(url, headers=GERMAN).get_data(as_text=True)
    assert 'value="100,00"' in form  # prefilled as a German types it
    token = csrf(form)
    page = client.post(url, headers=GERMAN, data={"csrf_token": token, "step": "review", "amount": "0,5"})
    assert page.status_code == 200 and "0,50\xa0€" in page.get_data(as_text=True)
    response = client.post(url, headers=GERMAN, data=confirm_fields(page.get_data(as_text=True), amount="0,5"))
    assert response.status_code == 303
    assert [r.amount for r in refunds_of(db_session, payment_id)] == [50]


def test_an_ambiguous_amount_is_refused_never_guessed(client, db_session, shop, jobs):
    s = shop()
    payment_id = paid(db_session, s.scope, jobs, amount=500000, currency="EUR")
    login_as(client, db_session, s.users["owner"])
    url = s.url(f"payments/{payment_id}/refund")
    token = csrf(client.get(url, headers=GERMAN).get_data(as_text=True))
    response = client.post(url, headers=GERMAN, data={"csrf_token": token, "step": "review", "amount": "1,000"})
    text = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "ambiguous" in text and "1.000,00" in text and "1,00" in text
    english = client.post(url, data={"csrf_token": token, "step": "review", "amount": "1,000"})
    assert english.status_code == 200 and "€1,000.00" in english.get_data(as_text=True), re.findall("field-error[^<]*<", english.get_data(as_text=True))
    assert refunds_of(db_session, payment_id) == []


def test_partial_capture_then_nothing_more_to_capture(client, db_session, shop, jobs):
    s = shop()
    payment_id = paid(db_session, s.scope, jobs, amount=2500, manual=True)
    login_as(client, db_session, s.users["owner"])
    assert "Capture…" in client.get(s.url(f"payments/{payment_id}")).get_data(as_text=True)
    url = s.url(f"payments/{payment_id}/capture")
    page = review(client, url, amount="20.00")
    assert "Released to the customer" in page and "$5.00" in page
    assert client.post(url, data=confirm_fields(page, amount="20.00")).status_code == 303
    jobs.run()
    db_session.expire_all()
    payment = db_session.get(Payment, payment_id)
    assert (payment.status, payment.amount_received) == ("succeeded", 2000)
    assert db_session.scalars(select(AuditEntry).where(AuditEntry.action == "payment.captured",
                                                       AuditEntry.target == payment_id)).one()
    # Captured: the capture step is gone and a refund is offered instead.
    html = client.get(s.url(f"payments/{payment_id}")).get_data(as_text=True)
    assert "Capture…" not in html and "Refund…" in html
    assert client.get(url).status_code == 303


def test_cancel_an_uncaptured_payment(client, db_session, shop, jobs):
    s = shop()
    payment_id = paid(db_session, s.scope, jobs, amount=1200, manual=True)
    login_as(client, db_session, s.users["admin"])
    url = s.url(f"payments/{payment_id}/cancel")
    page = review(client, url, reason="abandoned")
    assert client.post(url, data=confirm_fields(page, reason="abandoned")).status_code == 303
    jobs.run()  # the void at the PSP
    db_session.expire_all()
    payment = db_session.get(Payment, payment_id)
    assert (payment.status, payment.cancellation_reason) == ("canceled", "abandoned")
    assert "Cancel payment…" not in client.get(s.url(f"payments/{payment_id}")).get_data(as_text=True)
