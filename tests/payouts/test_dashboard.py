"""The dashboard's Payouts page in-process: the list with filters, a payout's page with its balance transactions and
CSV, the manual payout behind a confirmation (paid once on a double submit, refused above available with the form
re-rendered), owners and admins only, another merchant's payout a 404."""
import datetime as dt
import itertools

import pytest

from app.payouts import service
from app.payouts.models import Payout
from tests import factories
from tests.disputes.test_dashboard import csrf, login
from tests.payouts.test_payouts import _ready, key
from tests.reconciliation.helpers import FakeSandbox

_days = itertools.count()


@pytest.fixture
def sandbox():
    return FakeSandbox(dt.date(2038, 1, 5) + dt.timedelta(days=40 * next(_days)))


@pytest.fixture
def today(monkeypatch):
    value = {"date": None}
    monkeypatch.setattr("app.dashboard.payouts_views.payout_today", lambda config, livemode: value["date"])
    return value


def test_list_detail_csv_and_manual_payout(app, client, db_session, shop, sandbox, destinations, today):
    scope = shop["scope"]
    a, day2 = _ready(db_session, scope, sandbox)
    today["date"] = day2
    scheduled = service.create_payout(db_session, scope, seller_id=a, currency="USD", hmac_key=key(), today=day2,
                                      business_key=service.period_key(a, "USD", day2), period=day2).payout
    service.cancel_payout(db_session, scope, scheduled.id, hmac_key=key())
    db_session.commit()
    login(client, db_session, shop["owner"])
    base = f"/dashboard/{shop['merchant'].id}/test"

    page = client.get(f"{base}/payouts?status=canceled").get_data(as_text=True)
    assert scheduled.id in page and "58.20" in page
    assert scheduled.id not in client.get(f"{base}/payouts?status=paid").get_data(as_text=True)
    detail = client.get(f"{base}/payouts/{scheduled.id}").get_data(as_text=True)
    assert "Balance transactions" in detail and "payout.created" in detail and "payout.canceled" in detail
    csv_body = client.get(f"{base}/payouts/{scheduled.id}/reconciliation.csv")
    assert csv_body.mimetype == "text/csv" and len(csv_body.get_data(as_text=True).splitlines()) == 2

    form = client.get(f"{base}/payouts/new").get_data(as_text=True)
    token = csrf(form)
    too_much = client.post(f"{base}/payouts/new", data={"csrf_token": token, "seller": a, "currency": "USD",
                                                         "amount": "abc"})
    assert too_much.status_code == 422 and "amount-error" in too_much.get_data(as_text=True)
    review = client.post(f"{base}/payouts/new", data={"csrf_token": token, "seller": a, "currency": "USD",
                                                       "amount": "20.00"})
    assert review.status_code == 200 and "Pay out now" in review.get_data(as_text=True)
    assert db_session.scalars(scope.select(Payout, Payout.kind == "manual")).all() == []
    db_session.commit()
    html = review.get_data(as_text=True)
    form_token = html.split('name="form_token" value="')[1].split('"')[0]
    data = {"csrf_token": token, "form_token": form_token, "seller": a, "currency": "USD", "amount": "20.00"}
    first = client.post(f"{base}/payouts/confirm", data=data)
    second = client.post(f"{base}/payouts/confirm", data=data)
    assert first.status_code == 303 and second.status_code == 303
    manual = db_session.scalars(scope.select(Payout, Payout.kind == "manual")).all()
    db_session.commit()
    assert [(p.amount, p.created_by) for p in manual] == [(2000, shop["owner"].email)]
    over = client.post(f"{base}/payouts/confirm", data={**data, "form_token": "x" * 32, "amount": "100.00"})
    assert over.status_code == 422 and "exceeds what is available" in over.get_data(as_text=True)
    # Without the CSRF token nothing is done.
    assert client.post(f"{base}/payouts/confirm", data={**data, "csrf_token": "", "form_token": "y" * 32}
                       ).status_code == 400


def test_roles_and_tenancy(app, client, db_session, shop, sandbox, destinations, today):
    scope = shop["scope"]
    a, day2 = _ready(db_session, scope, sandbox)
    payout = service.create_payout(db_session, scope, seller_id=a, currency="USD", hmac_key=key(), today=day2,
                                   amount=100).payout
    db_session.commit()
    analyst = factories.member(db_session, shop["merchant"], "analyst", email=f"an-{shop['merchant'].id}@example.com")
    other = factories.merchant(db_session, name="Other")
    other_owner = factories.member(db_session, other, "owner", email=f"own-{other.id}@example.com")
    db_session.commit()
    base = f"/dashboard/{shop['merchant'].id}/test"
    login(client, db_session, analyst)
    assert client.get(f"{base}/payouts").status_code == 200
    assert client.get(f"{base}/payouts/{payout.id}").status_code == 200
    assert client.get(f"{base}/payouts/new").status_code == 403
    login(client, db_session, other_owner)
    assert client.get(f"/dashboard/{other.id}/test/payouts/{payout.id}").status_code == 404
    assert client.get(f"/dashboard/{other.id}/test/payouts/{payout.id}/reconciliation.csv").status_code == 404
    assert client.get(f"{base}/payouts").status_code == 404
