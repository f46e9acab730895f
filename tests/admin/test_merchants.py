"""Merchants in the console: the go-live checklist the merchant completes, live mode enabled behind it,
suspension (new payments refused with a clear 403 on every channel, refunds and reads kept) and
reinstatement; each action with a reason, audited on the merchant and mailed to its owners."""
from sqlalchemy import select

from app.accounts.mail import MailMessage
from app.accounts.models import Merchant
from app.merchants import lifecycle
from app.models_base import utcnow
from app.payments.models import Payment, Refund
from app.scoping import Scope
from app.webhooks.service import create_endpoint
from app.webhooks.settings import settings_for
from tests import factories
from tests.admin.conftest import act, audit_rows, csrf_of, login_as, mint_key
from tests.dashboard.conftest import paid

DETAILS = {"legal_name": "Corner Shop GmbH", "address_line1": "Hauptstrasse 1", "postal_code": "10115",
           "city": "Berlin", "country": "DE", "support_email": "help@corner.example",
           "support_url": "https://corner.example/help"}


def _merchant(session, merchant_id) -> Merchant:
    session.rollback()
    return session.get(Merchant, merchant_id)


def _mails(session, kind: str) -> list[MailMessage]:
    session.rollback()
    return list(session.scalars(select(MailMessage).where(MailMessage.kind == kind)))


def test_live_mode_waits_for_the_checklist_the_merchant_completes_in_the_dashboard(client, db_session, admin, shop):
    merchant, owner, _developer = shop
    login_as(client, db_session, admin)
    response = act(client, f"/admin/merchants/{merchant.id}/enable-live", "enable_live", reason="KYC done")
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert "Missing: Business details; Webhooks." in html
    assert not _merchant(db_session, merchant.id).live_enabled
    assert audit_rows(db_session, "merchant.live_enabled") == []

    # The owner completes the checklist in the dashboard.
    login_as(client, db_session, owner)
    page = f"/dashboard/{merchant.id}/test/settings/go-live"
    assert client.get(page).status_code == 200
    token = csrf_of(client, page)
    bad = client.post(page + "/details", data={**DETAILS, "support_email": "nope", "csrf_token": token})
    assert bad.status_code == 422 and "Enter a valid email address" in bad.get_data(as_text=True)
    assert client.post(page + "/details", data={**DETAILS, "csrf_token": token}).status_code == 303
    assert client.post(page + "/webhooks", data={"not_needed": "y", "csrf_token": token}).status_code == 303
    assert all(item.done for item in lifecycle.live_checklist(db_session, _merchant(db_session, merchant.id)))
    assert [e.details["legal_name"]["to"] for e in audit_rows(db_session, "merchant.business_details_updated",
                                                              merchant.id)] == ["Corner Shop GmbH"]

    login_as(client, db_session, admin)
    assert act(client, f"/admin/merchants/{merchant.id}/enable-live", "enable_live", reason="").status_code == 422
    assert not _merchant(db_session, merchant.id).live_enabled
    assert act(client, f"/admin/merchants/{merchant.id}/enable-live", "enable_live", reason="KYC done").status_code == 303
    assert _merchant(db_session, merchant.id).live_enabled
    [entry] = audit_rows(db_session, "merchant.live_enabled", merchant.id)
    assert (entry.actor_user_id, entry.details) == (admin.id, {"reason": "KYC done"})
    [mail] = _mails(db_session, "merchant_live_enabled")
    assert mail.to_address == owner.email and "KYC done" in mail.body_text

    # The owner sees it in the dashboard's audit log.
    login_as(client, db_session, owner)
    log = client.get(f"/dashboard/{merchant.id}/test/settings/audit-log").get_data(as_text=True)
    assert "merchant.live_enabled" in log


def test_a_live_webhook_endpoint_completes_the_webhooks_item(app, db_session, shop):
    merchant, _owner, _developer = shop
    item = lifecycle.webhooks_item(db_session, merchant)
    assert not item.done
    create_endpoint(db_session, Scope(merchant.id, False), settings_for(app), url="https://corner.example/hooks",
                    enabled_events=["*"])
    assert not lifecycle.webhooks_item(db_session, merchant).done  # a test-mode endpoint is not enough
    create_endpoint(db_session, Scope(merchant.id, True), settings_for(app), url="https://corner.example/hooks",
                    enabled_events=["*"])
    assert lifecycle.webhooks_item(db_session, merchant).done


def test_live_api_keys_are_handed_out_once_live_mode_is_enabled(client, db_session, shop):
    merchant, _owner, developer = shop
    login_as(client, db_session, developer)
    keys = f"/dashboard/{merchant.id}/live/developers/api-keys"
    assert "Live keys are available once a platform operator" in client.get(keys).get_data(as_text=True)
    token = csrf_of(client, keys)
    refused = client.post(keys + "/create", data={"csrf_token": token, "kind": "secret", "form_token": "t1"})
    assert refused.status_code == 303
    assert "Create secret key" not in client.get(keys).get_data(as_text=True)
    db_session.get(Merchant, merchant.id).live_enabled = True
    db_session.commit()
    page = client.get(keys).get_data(as_text=True)
    form_token = page.split('name="form_token" value="', 1)[1].split('"', 1)[0]
    created = client.post(keys + "/create", data={"csrf_token": token, "kind": "secret", "form_token": form_token})
    assert created.status_code == 201 and "sk_live_" in created.get_data(as_text=True)


def test_a_suspended_merchant_takes_no_new_payment_yet_refunds_and_reads(client, db_session, admin, shop, jobs):
    merchant, owner, _developer = shop
    scope = Scope(merchant.id, False)
    auth = mint_key(db_session, merchant.id)
    captured = paid(db_session, scope, jobs, amount=3000)
    unconfirmed = client.post("/v1/payments", json={"amount": 500, "currency": "usd"}, headers=auth).json["id"]

    login_as(client, db_session, admin)
    assert act(client, f"/admin/merchants/{merchant.id}/suspend", "suspend", reason="Chargeback spike").status_code == 303
    assert _merchant(db_session, merchant.id).suspension_reason == "Chargeback spike"

    before = db_session.scalar(select(Payment.id).where(Payment.merchant_id == merchant.id).order_by(Payment.id.desc()))
    for path, body in (("/v1/payments", {"amount": 700, "currency": "usd"}),
                       (f"/v1/payments/{unconfirmed}/confirm", {"payment_method": "tok_visa"}),
                       ("/v1/checkout/sessions", {"amount": 700, "currency": "usd",
                                                  "success_url": "https://corner.example/ok"})):
        refused = client.post(path, json=body, headers=auth)
        assert refused.status_code == 403, path
        assert refused.json["error"]["type"] == "permission_error"
        assert refused.json["error"]["code"] == "account_suspended"
        assert "suspended" in refused.json["error"]["message"]
    db_session.rollback()
    assert db_session.scalar(select(Payment.id).where(Payment.merchant_id == merchant.id)
                             .order_by(Payment.id.desc())) == before
    assert client.get(f"/v1/payments/{captured}", headers=auth).status_code == 200
    account = client.get("/v1/account", headers=auth).json  # an integration can see why before it tries
    assert account["suspended"] is True and account["charges_enabled"] is False

    refund = client.post("/v1/refunds", json={"payment": captured, "amount": 1000}, headers=auth)
    assert refund.status_code == 200, refund.json
    jobs.run()
    db_session.rollback()
    assert db_session.get(Refund, refund.json["id"]).status == "succeeded"

    # The dashboard says so, and the owners heard of it.
    login_as(client, db_session, owner)
    assert "This account is suspended" in client.get(f"/dashboard/{merchant.id}/test/").get_data(as_text=True)
    assert [m.to_address for m in _mails(db_session, "merchant_suspended")] == [owner.email]

    login_as(client, db_session, admin)
    again = act(client, f"/admin/merchants/{merchant.id}/suspend", "suspend", reason="again")
    assert again.status_code == 422 and "already suspended" in again.get_data(as_text=True)
    assert act(client, f"/admin/merchants/{merchant.id}/reinstate", "reinstate", reason="Resolved").status_code == 303
    assert client.post("/v1/payments", json={"amount": 700, "currency": "usd"}, headers=auth).status_code == 200
    assert [e.details["reason"] for e in audit_rows(db_session, "merchant.suspended", merchant.id)] == \
        ["Chargeback spike"]
    assert [e.details["reason"] for e in audit_rows(db_session, "merchant.reinstated", merchant.id)] == ["Resolved"]


def test_the_hosted_checkout_of_a_suspended_merchant_cannot_be_paid(client, db_session, shop, jobs):
    merchant, _owner, _developer = shop
    auth = mint_key(db_session, merchant.id)
    session = client.post("/v1/checkout/sessions", json={"amount": 900, "currency": "usd",
                                                         "success_url": "https://corner.example/ok"}, headers=auth)
    assert session.status_code == 200
    db_session.get(Merchant, merchant.id).suspended_at = utcnow()
    db_session.commit()
    refused = client.post(f"/c/{session.json['id']}/confirm", json={"token": "tok_visa", "card": {}})
    assert refused.status_code == 409
    assert "cannot be paid at the moment" in refused.json["error"]["message"]
    db_session.rollback()
    assert db_session.scalars(select(Payment).where(Payment.merchant_id == merchant.id)).all() == []


def test_merchants_are_found_by_name_id_member_email_and_filtered(client, db_session, admin, shop):
    merchant, owner, _developer = shop
    other = factories.merchant(db_session, name="Faraway Books", live_enabled=True)
    db_session.commit()
    login_as(client, db_session, admin)

    def listed(**query) -> set[str]:
        html = client.get("/admin/merchants", query_string=query).get_data(as_text=True)
        return {m for m in (merchant.id, other.id) if f'data-merchant-id="{m}"' in html}

    assert listed(q="corner") == {merchant.id}
    assert listed(q=other.id) == {other.id}
    assert listed(q=owner.email.upper()) == {merchant.id}
    assert listed(live="yes") == {other.id}
    assert listed(live="no", q="o") >= {merchant.id} and other.id not in listed(live="no")
    db_session.get(Merchant, merchant.id).suspended_at = utcnow()
    db_session.commit()
    assert merchant.id in listed(suspended="yes") and other.id not in listed(suspended="yes")
    assert listed(created_from="2000-01-01", created_to="2000-01-02") == set()
    # The platform's own book (reconciliation's suspense, migration 0022) is a merchants row but no merchant.
    assert db_session.get(Merchant, "mer_platform") is not None
    assert 'data-merchant-id="mer_platform"' not in client.get("/admin/merchants").get_data(as_text=True)
    page = client.get(f"/admin/merchants/{merchant.id}").get_data(as_text=True)
    assert owner.email in page and "Go-live checklist" in page


def test_an_operators_reason_holding_a_card_number_is_refused(client, db_session, admin, shop):
    merchant, _owner, _developer = shop
    login_as(client, db_session, admin)
    refused = act(client, f"/admin/merchants/{merchant.id}/suspend", "suspend", reason="Card 4242424242424242 abused")
    assert refused.status_code == 422 and "This looks like a card number" in refused.get_data(as_text=True)
    assert _merchant(db_session, merchant.id).suspended_at is None
    assert audit_rows(db_session, "merchant.suspended", merchant.id) == []
