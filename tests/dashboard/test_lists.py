"""Payments and Refunds lists, request-level: filters and search return exactly the matching rows, keyset
pages stay stable while payments arrive, new ones are announced, and tenancy holds."""
import re
from datetime import datetime, timezone
from urllib.parse import urlencode

import pytest

from app.ids import new_id
from app.payments.models import Refund
from app.payments.service import create_seller
from tests.dashboard.conftest import T, login_as, stored_payment

_ROW = re.compile(r'data-payment-id="([^"]+)"')
_REFUND_ROW = re.compile(r'data-refund-id="([^"]+)"')
_NEXT = re.compile(r'rel="next" href="([^"]+)"')


def listed(client, url: str, pattern=_ROW, headers=None) -> list[str]:
    """Every id the list shows for a URL, following the "Older" links to the last page."""
    ids = []
    while url:
        response = client.get(url, headers=headers)
        assert response.status_code == 200, url
        html = response.get_data(as_text=True)
        ids += pattern.findall(html)
        found = _NEXT.search(html)
        url = found.group(1).replace("&amp;", "&") if found else None
    return ids


@pytest.fixture
def catalogue(db_session, shop):
    """40 varied payments of one merchant (plus noise in another merchant and in live mode)."""
    s = shop()
    other = shop(name="Other Shop")
    seller = create_seller(db_session, s.scope, name="Second seller")
    db_session.commit()
    brands = ["visa", "mastercard", "amex", None]
    statuses = ["succeeded", "succeeded", "requires_capture", "canceled", "requires_payment_method"]
    currencies = ["USD", "EUR", "JPY"]
    rows = []
    for i in range(40):
        status = statuses[i % 5]
        brand = brands[i % 4]
        values = dict(
            amount=(i + 1) * 250 if currencies[i % 3] != "JPY" else (i + 1) * 3,
            currency=currencies[i % 3], status=status,
            customer_email=f"Buyer{i % 7}@Example.com" if i % 6 else None,
            card_brand=brand, card_last4=f"{4242 + i % 3:04d}" if brand else None,
            psp_reference=f"auth_ref_{i}" if status != "requires_payment_method" else None,
            amount_refunded=1 if status == "succeeded" and i % 10 == 0 else 0,
        )
        payment = stored_payment(db_session, s.scope, created_at=T(i * 90),
                                 seller_id=seller.id if i % 4 == 1 else None, **values)
        rows.append(payment)
    for i in range(3):
        stored_payment(db_session, other.scope, created_at=T(i), customer_email="buyer1@example.com",
                       card_last4="4242", card_brand="visa")
        stored_payment(db_session, s.scope.__class__(s.merchant.id, True), created_at=T(i),
                       customer_email="buyer1@example.com")
    db_session.commit()
    return s, rows, seller


def _newest_first(rows):
    return [p.id for p in sorted(rows, key=lambda p: (p.created_at, p.id), reverse=True)]


CASES = {
    "status": ({"status": "requires_capture"}, lambda p: p.status == "requires_capture"),
    "refunded": ({"status": "refunded"}, lambda p: p.status == "succeeded" and p.amount_refunded > 0),
    "currency": ({"currency": "eur"}, lambda p: p.currency == "EUR"),
    "amount range in EUR": ({"currency": "EUR", "amount_min": "10", "amount_max": "50.00"},
                            lambda p: p.currency == "EUR" and 1000 <= p.amount <= 5000),
    "amount range, any currency": ({"amount_min": "60"},
                                   lambda p: p.amount >= (60 if p.currency == "JPY" else 6000)),
    "email, any case": ({"email": "buyer3@example.COM"}, lambda p: (p.customer_email or "").lower() == "buyer3@example.com"),
    "card last 4": ({"last4": "4243"}, lambda p: p.card_last4 == "4243"),
    "card brand": ({"brand": "amex"}, lambda p: p.card_brand == "amex"),
    "last 4 and brand": ({"last4": "4242", "brand": "visa"}, lambda p: p.card_last4 == "4242" and p.card_brand == "visa"),
    "date range (UTC merchant)": ({"date_from": "2026-03-02", "date_to": "2026-03-02"},
                                  lambda p: p.created_at.date() == datetime(2026, 3, 2).date()),
    # "Succeeded" means as listed: refunded payments (fully or partly) are under their own filter.
    "succeeded": ({"status": "succeeded"}, lambda p: p.status == "succeeded" and p.amount_refunded == 0),
    "status and date": ({"status": "succeeded", "date_from": "2026-03-02"},
                        lambda p: p.status == "succeeded" and p.amount_refunded == 0
                        and p.created_at >= datetime(2026, 3, 2, tzinfo=timezone.utc)),
    "succeeded or refunded": ({"status": ["succeeded", "refunded"]}, lambda p: p.status == "succeeded"),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_filters_return_exactly_the_matching_payments(client, db_session, catalogue, case):
    s, rows, _seller = catalogue
    login_as(client, db_session, s.users["analyst"])
    args, predicate = CASES[case]
    expected = _newest_first([p for p in rows if predicate(p)])
    assert expected, "the case must match something"
    assert listed(client, s.url(f"payments?limit=10&{urlencode(args, doseq=True)}")) == expected


def test_amount_filters_read_the_persons_locale(client, db_session, catalogue):
    s, rows, _seller = catalogue
    login_as(client, db_session, s.users["analyst"])
    german = {"Accept-Language": "de-DE"}
    expected = _newest_first([p for p in rows if p.currency == "EUR" and 1050 <= p.amount <= 5000])
    query = urlencode({"currency": "EUR", "amount_min": "10,50", "amount_max": "50,00", "limit": 100})
    assert listed(client, s.url(f"payments?{query}"), headers=german) == expected
    page = client.get(s.url(f"payments?{urlencode({'amount_min': '1,000', 'currency': 'EUR'})}"), headers=german)
    assert "Enter an amount like 12,50 (in EUR)." in page.get_data(as_text=True)


def test_seller_filter(client, db_session, catalogue):
    s, rows, seller = catalogue
    login_as(client, db_session, s.users["owner"])
    expected = _newest_first([p for i, p in enumerate(rows) if i % 4 == 1])
    assert listed(client, s.url(f"payments?seller={seller.id}")) == expected


def test_search_by_payment_id_psp_reference_email_and_start_of_email(client, db_session, catalogue):
    s, rows, _seller = catalogue
    login_as(client, db_session, s.users["owner"])
    target = rows[17]
    assert listed(client, s.url(f"payments?q={target.id}")) == [target.id]
    assert listed(client, s.url(f"payments?q={target.psp_reference}")) == [target.id]
    by_email = _newest_first([p for p in rows if (p.customer_email or "").lower() == "buyer5@example.com"])
    assert listed(client, s.url("payments?q=BUYER5@example.com")) == by_email
    # The start of an address finds every address that begins with it; the middle of one finds nothing.
    partial = _newest_first([p for p in rows if (p.customer_email or "").lower().startswith("buyer")])
    assert listed(client, s.url("payments?q=Buyer")) == partial
    assert listed(client, s.url("payments?q=yer5@")) == []
    # A search never reaches into another merchant's or the other mode's payments.
    assert set(listed(client, s.url("payments?q=buyer1@example.com"))) <= {p.id for p in rows}


def test_search_by_refund_id_finds_its_payment(client, db_session, catalogue):
    s, rows, _seller = catalogue
    payment = rows[0]
    refund = s.scope.new(Refund, id=new_id("re"), payment_id=payment.id, amount=100, currency=payment.currency,
                         status="succeeded", allocations=[], idempotency_key=new_id("k"), tries=1)
    db_session.add(refund)
    db_session.commit()
    login_as(client, db_session, s.users["owner"])
    assert listed(client, s.url(f"payments?q={refund.id}")) == [payment.id]


def test_dates_are_the_merchants_local_dates(client, db_session, shop):
    s = shop(timezone_name="Asia/Kolkata")  # UTC+05:30
    late_utc = stored_payment(db_session, s.scope, created_at=datetime(2026, 3, 1, 19, 0, tzinfo=timezone.utc))
    early_utc = stored_payment(db_session, s.scope, created_at=datetime(2026, 3, 1, 18, 0, tzinfo=timezone.utc))
    db_session.commit()
    login_as(client, db_session, s.users["owner"])
    # 19:00 UTC is 00:30 on March 2 in Kolkata; 18:00 UTC is still March 1 there (23:30).
    assert listed(client, s.url("payments?date_from=2026-03-02&date_to=2026-03-02")) == [late_utc.id]
    assert listed(client, s.url("payments?date_to=2026-03-01")) == [early_utc.id]


def test_invalid_filters_are_explained_not_fatal(client, db_session, catalogue):
    s, rows, _seller = catalogue
    login_as(client, db_session, s.users["owner"])
    response = client.get(s.url("payments?last4=42&amount_min=abc&date_from=yesterday&currency=XXX"))
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "Enter the last 4 digits of the card." in html
    assert "Enter an amount like 12.50." in html
    assert "Use a date like 2026-01-31." in html
    assert "XXX is not a currency Kassa supports." in html
    assert len(_ROW.findall(html)) == 25  # the other filters were dropped, the list still shows


def test_text_postgresql_cannot_store_is_a_client_error_on_every_dashboard_page(app, client, db_session, shop):
    """A NUL (``%00``) in a path id, a filter or the search box is refused (404 for a path id, else 400),
    never a query that fails with a 500 (PostgreSQL text cannot hold it)."""
    s = shop()
    login_as(client, db_session, s.users["owner"])
    for rule in app.url_map.iter_rules():
        if not rule.endpoint.startswith("dashboard.") or "GET" not in rule.methods:
            continue
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", lambda m: {"merchant_id": s.merchant.id, "mode": "test"}
                      .get(m.group(1), "x_%00"), rule.rule)
        if "%00" in path:
            assert client.get(path).status_code == 404, path
    assert client.get("/dashboard/%00/test/").status_code == 404
    for page in ("payments", "refunds", "developers/logs"):
        for query in ("q=%00", "email=%00", "%00=1"):
            assert client.get(s.url(f"{page}?{query}")).status_code == 400, (page, query)


def test_pagination_is_stable_while_new_payments_arrive(client, db_session, shop):
    s = shop()
    originals = [stored_payment(db_session, s.scope, created_at=T(i)) for i in range(30)]
    db_session.commit()
    login_as(client, db_session, s.users["owner"])
    first = client.get(s.url("payments?limit=10")).get_data(as_text=True)
    seen = _ROW.findall(first)
    # Payments arrive while the person reads page one; some even share the newest timestamp.
    newcomers = [stored_payment(db_session, s.scope, created_at=T(100 + i)) for i in range(5)]
    newcomers.append(stored_payment(db_session, s.scope, created_at=originals[-1].created_at))
    db_session.commit()
    next_url = _NEXT.search(first).group(1).replace("&amp;", "&")
    seen += listed(client, next_url)
    assert seen == _newest_first(originals)
    # The poll of page one announces exactly the newcomers that sort above its top row.
    newer = [p for p in newcomers if (p.created_at, p.id) > (originals[-1].created_at, seen[0])]
    poll = client.get(s.url(f"payments/updates?since={seen[0]}")).get_data(as_text=True)
    assert f"{len(newer)} new payments" in poll
    # "Newer" from page two leads back to exactly page one as it was.
    second = client.get(next_url).get_data(as_text=True)
    prev_url = re.search(r'rel="prev" href="([^"]+)"', second).group(1).replace("&amp;", "&")
    assert _ROW.findall(client.get(prev_url).get_data(as_text=True)) == seen[:10]


def test_poll_counts_only_matching_payments_and_is_quiet_without_news(client, db_session, shop):
    s = shop()
    top = stored_payment(db_session, s.scope, created_at=T(0), status="succeeded")
    db_session.commit()
    login_as(client, db_session, s.users["owner"])
    assert client.get(s.url(f"payments/updates?since={top.id}&status=succeeded")).get_data(as_text=True).strip() == ""
    stored_payment(db_session, s.scope, created_at=T(5), status="canceled")
    stored_payment(db_session, s.scope, created_at=T(6), status="succeeded")
    db_session.commit()
    text = client.get(s.url(f"payments/updates?since={top.id}&status=succeeded")).get_data(as_text=True)
    assert "1 new payment —" in text and "status=succeeded" in text


def test_refunds_list_filters(client, db_session, shop):
    s = shop()
    payment = stored_payment(db_session, s.scope)
    refunds = []
    for i, (status, amount, currency) in enumerate([("succeeded", 100, "USD"), ("failed", 200, "USD"),
                                                    ("pending", 300, "EUR"), ("succeeded", 5000, "USD")]):
        refund = s.scope.new(Refund, id=new_id("re"), payment_id=payment.id, amount=amount, currency=currency,
                             status=status, allocations=[], idempotency_key=new_id("k"), tries=0,
                             created_at=T(i), updated_at=T(i))
        db_session.add(refund)
        refunds.append(refund)
    db_session.commit()
    login_as(client, db_session, s.users["analyst"])
    ids = lambda rows: [r.id for r in sorted(rows, key=lambda r: (r.created_at, r.id), reverse=True)]  # noqa: E731
    assert listed(client, s.url("refunds?status=succeeded"), _REFUND_ROW) == ids([refunds[0], refunds[3]])
    assert listed(client, s.url("refunds?currency=EUR"), _REFUND_ROW) == ids([refunds[2]])
    assert listed(client, s.url("refunds?amount_min=1.50&amount_max=3"), _REFUND_ROW) == ids(refunds[1:3])
    assert listed(client, s.url(f"refunds?q={refunds[1].id}"), _REFUND_ROW) == [refunds[1].id]
    assert listed(client, s.url(f"refunds?q={payment.id}"), _REFUND_ROW) == ids(refunds)


def test_merchant_a_cannot_open_merchant_b_payment_by_url(client, db_session, shop):
    a, b = shop(name="A"), shop(name="B")
    theirs = stored_payment(db_session, b.scope)
    live = stored_payment(db_session, a.scope.__class__(a.merchant.id, True))
    db_session.commit()
    login_as(client, db_session, a.users["owner"])
    # Another merchant's payment under my merchant's URL: not found, like a payment that does not exist.
    assert client.get(a.url(f"payments/{theirs.id}")).status_code == 404
    assert client.get(a.url(f"payments/{theirs.id}/refund")).status_code == 404
    assert client.get(a.url(f"payments/{new_id('pay')}")).status_code == 404
    assert client.get(a.url("payments/pay_%00x")).status_code == 404  # not an id: no database error
    # Their merchant's URL: I am not a member, so the whole merchant does not exist for me.
    assert client.get(b.url(f"payments/{theirs.id}")).status_code == 404
    assert client.get(b.url("payments")).status_code == 404
    # My own live payment is not reachable from test mode.
    assert client.get(a.url(f"payments/{live.id}")).status_code == 404
    assert client.get(a.url(f"payments/{live.id}", mode="live")).status_code == 200


def test_empty_states(client, db_session, shop):
    s = shop()
    login_as(client, db_session, s.users["developer"])
    assert "No test payments yet" in client.get(s.url("payments")).get_data(as_text=True)
    assert "No refunds yet" in client.get(s.url("refunds")).get_data(as_text=True)
    assert "No API requests yet" in client.get(s.url("developers/logs")).get_data(as_text=True)
    home = client.get(s.url()).get_data(as_text=True)
    assert "Get started" in home
    stored_payment(db_session, s.scope)
    db_session.commit()
    assert "No payments match" in client.get(s.url("payments?status=canceled")).get_data(as_text=True)

