"""Payments across merchants: found by id, PSP reference, customer email, or card last 4 and amount; every
search and every payment page audited as a read of another tenant's data, on each merchant shown."""
from sqlalchemy import update

from app.payments.models import Payment, Refund
from app.scoping import Scope
from tests import factories
from tests.admin.conftest import audit_rows, login_as, mint_key
from tests.dashboard.conftest import paid, stored_payment


def found(client, **query) -> list[str]:
    html = client.get("/admin/payments", query_string=query).get_data(as_text=True)
    return [part.split('"', 1)[0] for part in html.split('data-payment-id="')[1:]]


def test_payments_of_every_merchant_by_id_reference_email_and_card(client, db_session, admin, shop, jobs):
    merchant, _owner, _developer = shop
    other = factories.merchant(db_session, name="Other Shop")
    db_session.commit()
    mine = paid(db_session, Scope(merchant.id, False), jobs, amount=1234, customer_email="ann@example.com")
    theirs = stored_payment(db_session, Scope(other.id, True), amount=1234, customer_email="Ann@Example.com",
                            card_last4="4242", card_brand="visa").id
    db_session.commit()
    attempt_reference = db_session.get(Payment, mine).psp_reference
    db_session.execute(update(Payment).where(Payment.id == mine).values(card_last4="4242"))
    db_session.commit()
    assert attempt_reference  # the authorization attempt's, which the search looks up by index
    login_as(client, db_session, admin)

    assert found(client, reference=mine) == [mine]
    assert found(client, reference=attempt_reference) == [mine]
    assert set(found(client, email="ANN@example.com")) == {mine, theirs}
    assert set(found(client, last4="4242", amount="12.34", currency="USD")) == {mine, theirs}
    assert found(client, last4="4242", amount="12.35", currency="USD") == []
    assert found(client, email="ann@example.com", last4="4242", amount="12.34", currency="EUR") == []

    by_admin = [e for e in audit_rows(db_session, "admin.payment_search") if e.actor_user_id == admin.id]
    # The other tenant sees each read of its data: the email and the card searches showed its payment.
    seen_by_other = [e for e in by_admin if e.merchant_id == other.id]
    assert [e.details["query"] for e in seen_by_other] == [
        {"email": "ANN@example.com"}, {"last4": "4242", "amount": "12.34", "currency": "USD"}]
    assert seen_by_other[0].details["merchants"] == sorted([merchant.id, other.id])
    assert len([e for e in by_admin if e.merchant_id == merchant.id]) == 4
    assert [e.merchant_id for e in by_admin if e.details["results"] == 0] == [None, None]


def test_a_half_given_card_search_is_refused_and_a_payment_page_is_an_audited_read(client, db_session, admin, shop):
    merchant, _owner, _developer = shop
    payment = stored_payment(db_session, Scope(merchant.id, False), customer_email="bo@example.com")
    db_session.commit()
    login_as(client, db_session, admin)
    refused = client.get("/admin/payments", query_string={"last4": "4242"})
    assert refused.status_code == 400 and "both its last 4 digits and the amount" in refused.get_data(as_text=True)
    assert client.get("/admin/payments", query_string={"last4": "42a2", "amount": "1"}).status_code == 400
    assert [e for e in audit_rows(db_session, "admin.payment_search") if e.actor_user_id == admin.id] == []

    page = client.get(f"/admin/payments/{payment.id}")
    assert page.status_code == 200 and "bo@example.com" in page.get_data(as_text=True)
    [entry] = audit_rows(db_session, "admin.payment_viewed", merchant.id)
    assert (entry.target, entry.actor_user_id) == (payment.id, admin.id)
    assert client.get("/admin/payments/pay_nope").status_code == 404


def test_a_card_number_is_neither_searched_for_nor_kept(client, db_session, admin):
    login_as(client, db_session, admin)
    refused = client.get("/admin/payments", query_string={"reference": "4242 4242 4242 4242"})
    html = refused.get_data(as_text=True)
    assert refused.status_code == 400 and "Kassa keeps no card numbers" in html and "4242 4242 4242 4242" not in html
    assert [e for e in audit_rows(db_session, "admin.payment_search") if e.actor_user_id == admin.id] == []


def test_a_payment_is_found_by_its_refund_or_attempt(client, db_session, admin, shop, jobs):
    """An operator often holds only what a shopper or the PSP quoted: a refund's id or PSP reference, an attempt."""
    merchant, _owner, _developer = shop
    mine = paid(db_session, Scope(merchant.id, False), jobs, amount=1500)
    login_as(client, db_session, admin)
    refund = client.post("/v1/refunds", json={"payment": mine, "amount": 500},
                         headers=mint_key(db_session, merchant.id))
    assert refund.status_code == 200, refund.json
    jobs.run()
    db_session.rollback()
    stored = db_session.get(Refund, refund.json["id"])
    assert stored.psp_reference  # the sandbox's id of the refund
    attempt = db_session.get(Payment, mine).latest_attempt_id
    assert found(client, reference=stored.id) == [mine]
    assert found(client, reference=stored.psp_reference) == [mine]
    assert found(client, reference=attempt) == [mine]
    assert found(client, reference="re_does_not_exist") == []
