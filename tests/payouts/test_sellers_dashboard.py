"""Dashboard > Sellers: list, create and edit sellers; bank accounts only after a recent re-authentication, masked
on every page, refused with the field's message; roles; merchant A cannot see B's sellers or accounts."""
import re

from sqlalchemy import select

from app.accounts.auth_models import UserSession
from app.accounts.mail import MailMessage
from app.payments.models import Seller
from app.payments.service import create_seller
from app.payouts.bank_account_models import BankAccount
from app.payouts.bank_accounts import Actor, set_bank_account
from tests.dashboard import conftest as dashboard_fixtures
from tests.dashboard.conftest import login_as

app, shop = dashboard_fixtures.app, dashboard_fixtures.shop  # the dashboard tests' fixtures

IBAN = "DE89370400440532013000"
_CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


def csrf(client, path: str) -> str:
    html = client.get(path).get_data(as_text=True)
    match = _CSRF.search(html)
    assert match, f"no csrf_token on {path}"
    return match.group(1)


def a_seller(db_session, s, name="Alice Pottery") -> Seller:
    seller = create_seller(db_session, s.scope, name=name)
    db_session.commit()
    return seller


def accounts(db_session, s) -> list[BankAccount]:
    db_session.rollback()
    return list(db_session.scalars(s.scope.select(BankAccount)))


def bank_form(**values) -> dict:
    data = {"holder_name": "Alice Potter", "currency": "EUR", "country": "DE", "iban": IBAN, "bic": "",
            "account_number": "", "routing_code": ""}
    data.update(values)
    return data


def test_owners_create_and_edit_sellers_and_analysts_only_read(client, db_session, shop):
    s = shop()
    login_as(client, db_session, s.users["owner"])
    page = s.url("sellers")
    listing = client.get(page).get_data(as_text=True)
    assert "Default seller" in listing and "New seller" in listing
    response = client.post(page, data={"csrf_token": csrf(client, page), "name": "Bob Bikes",
                                       "email": "bob@example.com"})
    assert response.status_code == 303
    seller = db_session.scalars(s.scope.select(Seller, Seller.name == "Bob Bikes")).one()
    detail = s.url(f"sellers/{seller.id}")
    assert response.headers["Location"].endswith(detail)
    bad = client.post(page, data={"csrf_token": csrf(client, page), "name": "", "email": "not an email"})
    assert bad.status_code == 422 and "Enter the seller" in bad.get_data(as_text=True)
    response = client.post(detail, data={"csrf_token": csrf(client, detail), "name": "Bob Bicycles", "email": ""})
    assert response.status_code == 303
    db_session.rollback()
    assert (db_session.get(Seller, seller.id).name, db_session.get(Seller, seller.id).email) == ("Bob Bicycles", None)

    login_as(client, db_session, s.users["analyst"])
    listing = client.get(page).get_data(as_text=True)
    assert "Bob Bicycles" in listing and "New seller" not in listing
    assert client.get(detail).status_code == 200
    assert client.post(page, data={"name": "Eve"}).status_code in (400, 403)
    assert client.get(s.url(f"sellers/{seller.id}/bank_account")).status_code == 403
    assert db_session.scalars(s.scope.select(Seller, Seller.name == "Eve")).first() is None


def test_a_cookie_form_without_its_csrf_token_changes_nothing(client, db_session, shop):
    s = shop()
    seller = a_seller(db_session, s)
    login_as(client, db_session, s.users["owner"])
    response = client.post(s.url(f"sellers/{seller.id}/bank_account"), data=bank_form())
    assert response.status_code == 400 and accounts(db_session, s) == []


def test_a_bank_account_change_is_refused_without_a_recent_reauthentication(client, db_session, shop, app):
    s = shop()
    seller = a_seller(db_session, s)
    login_as(client, db_session, s.users["owner"])
    form_page = s.url(f"sellers/{seller.id}/bank_account")
    token = csrf(client, form_page)
    app.config["REAUTH_WINDOW_SECONDS"] = 0.000001
    try:
        assert "/account/confirm" in client.get(form_page).headers["Location"]
        response = client.post(form_page, data={"csrf_token": token, **bank_form()})
    finally:
        app.config.pop("REAUTH_WINDOW_SECONDS")
    assert response.status_code == 303 and "/account/confirm" in response.headers["Location"]
    assert accounts(db_session, s) == []
    # Nothing typed was kept on the session row for after the confirmation: no account number rests there.
    kept = [row.pending_form for row in db_session.scalars(select(UserSession).where(
        UserSession.user_id == s.users["owner"].id))]
    assert IBAN not in str(kept)


def test_a_bank_account_is_validated_saved_masked_and_mailed(client, db_session, shop):
    s = shop()
    seller = a_seller(db_session, s)
    login_as(client, db_session, s.users["owner"])
    form_page = s.url(f"sellers/{seller.id}/bank_account")
    bad = client.post(form_page, data={"csrf_token": csrf(client, form_page),
                                       **bank_form(iban="DE89370400440532013001")})
    body = bad.get_data(as_text=True)
    assert bad.status_code == 422 and "check digits do not match" in body and 'id="iban-error"' in body
    assert accounts(db_session, s) == []
    response = client.post(form_page, data={"csrf_token": csrf(client, form_page), **bank_form(iban=f" {IBAN} ")})
    assert response.status_code == 303
    [row] = accounts(db_session, s)
    assert (row.seller_id, row.last4, row.cooling_until is not None) == (seller.id, "3000", True)
    mails = db_session.scalars(select(MailMessage).where(MailMessage.merchant_id == s.merchant.id,
                                                         MailMessage.kind == "bank_account_changed")).all()
    assert [m.to_address for m in mails] == [s.users["owner"].email]
    # Masked on every page that shows it, for every role.
    for role in ("owner", "analyst"):
        login_as(client, db_session, s.users[role])
        for path in ("sellers", f"sellers/{seller.id}"):
            html = client.get(s.url(path)).get_data(as_text=True)
            assert "•••• 3000" in html and "first payout after" in html
            assert IBAN not in html and "0532013000" not in html
    login_as(client, db_session, s.users["owner"])
    html = client.get(form_page).get_data(as_text=True)
    assert "•••• 3000" in html and IBAN not in html


def test_the_merchants_own_account_and_a_local_account(client, db_session, shop):
    s = shop()
    login_as(client, db_session, s.users["admin"])
    form_page = s.url("sellers/own/bank_account")
    response = client.post(form_page, data={"csrf_token": csrf(client, form_page), **bank_form(
        iban="", country="US", currency="USD", account_number="000123456789", routing_code="123456789")})
    assert response.status_code == 422 and "not a valid US routing number" in response.get_data(as_text=True)
    response = client.post(form_page, data={"csrf_token": csrf(client, form_page), **bank_form(
        iban="", country="US", currency="USD", account_number="000123456789", routing_code="011000015")})
    assert response.status_code == 303
    [row] = accounts(db_session, s)
    assert (row.seller_id, row.kind, row.last4) == (None, "local", "6789")
    html = client.get(s.url("sellers/own")).get_data(as_text=True)
    assert "•••• 6789" in html and "000123456789" not in html


def test_merchant_a_cannot_see_or_change_bs_sellers_or_bank_accounts(client, db_session, shop):
    a, b = shop("Shop A"), shop("Shop B")
    seller_b = a_seller(db_session, b, name="B Secret Seller")
    set_bank_account(db_session, b.scope, seller_id=seller_b.id, holder_name="B", country="DE", currency="EUR",
                     iban=IBAN, actor=Actor(None, None))
    db_session.commit()
    login_as(client, db_session, a.users["owner"])
    assert "B Secret Seller" not in client.get(a.url("sellers")).get_data(as_text=True)
    assert client.get(a.url(f"sellers/{seller_b.id}")).status_code == 404
    assert client.get(a.url(f"sellers/{seller_b.id}/bank_account")).status_code == 404
    token = csrf(client, a.url("sellers/own/bank_account"))
    response = client.post(a.url(f"sellers/{seller_b.id}/bank_account"),
                           data={"csrf_token": token, **bank_form(iban="FR1420041010050500013M02606", country="FR")})
    assert response.status_code == 404
    response = client.post(a.url(f"sellers/{seller_b.id}"), data={"csrf_token": token, "name": "Hijacked"})
    assert response.status_code == 404
    db_session.rollback()
    assert db_session.get(Seller, seller_b.id).name == "B Secret Seller"
    assert [r.last4 for r in accounts(db_session, b)] == ["3000"]
    # B's own book is not reachable through A's URL either.
    assert client.get(b.url("sellers")).status_code == 404


def test_owners_set_a_sellers_schedule_and_reserve_and_bad_values_stay_on_the_form(client, db_session, shop):
    from app.payouts.service import get_schedule

    s = shop()
    seller = a_seller(db_session, s)
    login_as(client, db_session, s.users["owner"])
    detail = s.url(f"sellers/{seller.id}")
    form = {"interval": "weekly", "weekly_anchor": "friday", "monthly_anchor": "1", "minimum_amount": "5000",
            "delay_days": "2", "reserve_percent_bp": "1000", "reserve_days": "30", "reserve_minimum": "0"}
    bad = client.post(f"{detail}/schedule", data={"csrf_token": csrf(client, detail), **form,
                                                  "reserve_percent_bp": "20000"})
    assert bad.status_code == 422 and "Enter 0 to 10000." in bad.get_data(as_text=True)
    assert get_schedule(db_session, s.scope, seller.id).interval == "daily"
    assert client.post(f"{detail}/schedule", data={"csrf_token": csrf(client, detail), **form}).status_code == 303
    db_session.rollback()
    schedule = get_schedule(db_session, s.scope, seller.id)
    assert (schedule.interval, schedule.weekly_anchor, schedule.minimum_amount, schedule.reserve_percent_bp) == \
        ("weekly", "friday", 5000, 1000)
    assert "weekly on Friday" in client.get(detail).get_data(as_text=True)
    login_as(client, db_session, s.users["developer"])
    assert client.post(f"{detail}/schedule", data=form).status_code in (400, 403)
