"""Dashboard > Balances and account statements (owner, admin, analyst), and /admin/ledger."""
import re

import pytest
from flask import g

from app.accounts.sessions import start_session
from app.ledger.queries import account_by_code
from app.scoping import Scope
from tests import factories
from tests.ledger.conftest import capture_legs, cr, dr, post


def login_as(client, session, user) -> None:
    """A real server-side session for the user, as the login view makes (no argon2, no rate limit)."""
    _row, token = start_session(session, user, second_factor_passed=True)
    session.commit()
    with client.session_transaction() as cookie:
        cookie.clear()
        cookie["sid"] = token
    # pytest-flask keeps one app context (and so one `g`) for the whole test, and Flask-Login caches the
    # user in g: forget it, so that the next request loads the user of the new cookie.
    g.pop("_login_user", None)


@pytest.fixture
def shop(db_session, hmac_key):
    """A merchant with one member per role and a few postings in its test book."""
    merchant = factories.merchant(db_session, name="Ledger Shop")
    users = {role: factories.member(db_session, merchant, role) for role in ("owner", "admin", "developer", "analyst")}
    db_session.commit()
    book = Scope(merchant.id, False)
    post(db_session, book, "capture:pay_1", capture_legs(), hmac_key, kind="capture",
         description="Capture of pay_1", reference="pay_1")
    post(db_session, book, "capture:pay_2", capture_legs(currency="EUR"), hmac_key, kind="capture")
    post(db_session, book, "refund:re_1", [dr("seller_payable:A:USD", 2910), dr("merchant_revenue:USD", 90),
                                           cr("psp_receivable:sandbox:USD", 3000)], hmac_key, kind="refund")
    return merchant, users, book


def page(merchant_id: str, path: str, mode: str = "test") -> str:
    return f"/dashboard/{merchant_id}/{mode}/{path}"


@pytest.mark.parametrize("role, status", [("owner", 200), ("admin", 200), ("analyst", 200), ("developer", 403)])
def test_balances_are_for_owners_admins_and_analysts(client, db_session, shop, role, status):
    merchant, users, _book = shop
    login_as(client, db_session, users[role])
    assert client.get(page(merchant.id, "balances")).status_code == status


def test_balances_list_sellers_by_currency_and_the_books_accounts(client, db_session, shop):
    merchant, users, _book = shop
    login_as(client, db_session, users["analyst"])
    html = client.get(page(merchant.id, "balances")).get_data(as_text=True)
    sellers = html.split('id="seller-balances"')[1].split("</table>")[0]
    row = r'<th scope="row">(\w+)</th>\s*<td>(\w+)</td>\s*<td class="amount"><a href="[^"]+">([^<]+)<'
    rows = re.findall(row, sellers)
    assert rows == [("A", "EUR", "€58.20"), ("A", "USD", "$29.10"), ("B", "EUR", "€38.80"), ("B", "USD", "$38.80")]
    accounts = html.split('id="book-accounts"')[1].split("</table>")[0]
    assert "merchant_revenue:USD" in accounts and "$2.10" in accounts and "seller_payable" not in accounts


def test_live_mode_is_another_book(client, db_session, shop):
    merchant, users, _book = shop
    login_as(client, db_session, users["owner"])
    html = client.get(page(merchant.id, "balances", "live")).get_data(as_text=True)
    assert "No seller balance yet" in html and 'id="seller-balances"' not in html


def test_a_non_member_gets_404(client, db_session, shop):
    merchant, _users, book = shop
    stranger = factories.member(db_session, factories.merchant(db_session, name="Elsewhere"), "owner")
    db_session.commit()
    login_as(client, db_session, stranger)
    account = account_by_code(db_session, book, "seller_payable:A:USD")
    assert client.get(page(merchant.id, "balances")).status_code == 404
    assert client.get(page(merchant.id, f"ledger/accounts/{account.id}")).status_code == 404


def test_a_statement_shows_running_balances_and_the_transactions_legs(client, db_session, shop):
    merchant, users, book = shop
    login_as(client, db_session, users["admin"])
    account = account_by_code(db_session, book, "seller_payable:A:USD")
    html = client.get(page(merchant.id, f"ledger/accounts/{account.id}")).get_data(as_text=True)
    assert '<strong id="account-balance">$29.10</strong>' in html
    table = html.split('id="statement"')[1]
    amounts = re.findall(r'<td class="amount">([^<]*)</td>', table)
    # Opening balance, then per line: debit, credit, balance.
    assert amounts == ["$0.00", "", "$58.20", "$58.20", "$29.10", "", "$29.10"]
    assert "capture:pay_1" in table and "Capture of pay_1" in table and "reference pay_1" in table
    assert "Credit $100.00" not in table and "Debit $100.00" in table  # the capture's receivable leg
    assert "psp_receivable:sandbox:USD" in table


def test_a_statement_pages_and_filters_by_date(client, db_session, shop, hmac_key):
    merchant, users, book = shop
    for n in range(55):
        post(db_session, book, f"t:{n}", [dr("psp_receivable:sandbox:USD", 1), cr("seller_payable:C:USD", 1)], hmac_key)
    account = account_by_code(db_session, book, "seller_payable:C:USD")
    login_as(client, db_session, users["owner"])
    first = client.get(page(merchant.id, f"ledger/accounts/{account.id}")).get_data(as_text=True)
    assert first.count("data-entry-id=") == 50
    next_url = re.search(r'<a class="button" rel="next" href="([^"]+)"', first).group(1).replace("&amp;", "&")
    second = client.get(next_url).get_data(as_text=True)
    assert second.count("data-entry-id=") == 5 and 'rel="next"' not in second
    empty = client.get(page(merchant.id, f"ledger/accounts/{account.id}") + "?from=2001-01-01&to=2001-01-31")
    assert "No entries in this date range" in empty.get_data(as_text=True)
    bad = client.get(page(merchant.id, f"ledger/accounts/{account.id}") + "?from=yesterday").get_data(as_text=True)
    assert "Use a date like 2026-01-31." in bad and bad.count("data-entry-id=") == 50


def test_another_books_account_is_not_found(client, db_session, shop, hmac_key):
    merchant, users, book = shop
    other = factories.merchant(db_session, name="Other")
    db_session.commit()
    post(db_session, Scope(other.id, False), "capture:x", capture_legs(), hmac_key)
    foreign = account_by_code(db_session, Scope(other.id, False), "seller_payable:A:USD")
    own = account_by_code(db_session, book, "seller_payable:A:USD")
    login_as(client, db_session, users["owner"])
    assert client.get(page(merchant.id, f"ledger/accounts/{foreign.id}")).status_code == 404
    assert client.get(page(merchant.id, f"ledger/accounts/{own.id}", "live")).status_code == 404
    assert client.get(page(merchant.id, f"ledger/accounts/{own.id}")).status_code == 200


def test_admin_ledger_page_is_for_platform_admins(client, db_session, shop, app):
    _merchant, users, _book = shop
    login_as(client, db_session, users["owner"])
    assert client.get("/admin/ledger").status_code == 404
    admin = factories.user(db_session, is_platform_admin=True)
    db_session.commit()
    login_as(client, db_session, admin)
    html = client.get("/admin/ledger").get_data(as_text=True)
    assert "No verify result is stored" in html
    table = html.split('id="trial-balance"')[1].split("</table>")[0]
    assert "UNBALANCED" not in table and "EUR" in table and "USD" in table
    assert app.test_cli_runner().invoke(args=["ledger", "verify"]).exit_code == 0
    html = client.get("/admin/ledger").get_data(as_text=True)
    assert re.search(r'<p id="verify-status">\s*<strong>OK</strong>', html)


def test_admin_can_queue_a_verify(client, db_session, redis):
    from rq import Queue

    admin = factories.user(db_session, is_platform_admin=True)
    db_session.commit()
    login_as(client, db_session, admin)
    html = client.get("/admin/ledger").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)
    response = client.post("/admin/ledger/verify", data={"csrf_token": token})
    assert response.status_code == 303
    jobs = Queue("default", connection=redis).jobs
    assert [job.func_name for job in jobs] == ["app.ledger.jobs.verify_ledger"]
