"""/v1/payouts, /v1/balance, /v1/balance_transactions and /v1/payout_schedules in-process: balance parts, a manual
payout (idempotent, at most available), cancel, the reconciliation CSV, filters, refusals that change nothing, and
one merchant never reaching another's payouts."""
import datetime as dt
import itertools

import pytest
from sqlalchemy import select

from app.accounts.audit import AuditEntry
from app.payouts import service
from app.payouts.models import Payout
from tests import factories
from tests.disputes.helpers import seller
from tests.payments.conftest import mint_key
from tests.payouts.test_payouts import _ready, key
from tests.reconciliation.helpers import FakeSandbox

_days = itertools.count()


@pytest.fixture
def sandbox():
    return FakeSandbox(dt.date(2034, 1, 5) + dt.timedelta(days=40 * next(_days)))


@pytest.fixture
def today(monkeypatch):
    """The sandbox clock's date as the API reads it (app/payouts/clock.py), set by each test."""
    value = {"date": dt.date(2034, 1, 5)}
    import app.api.payouts as api

    monkeypatch.setattr(api, "payout_today", lambda config, livemode: value["date"])
    monkeypatch.setattr("app.payouts.clock.payout_today", lambda config, livemode: value["date"])
    return value


def test_balance_payout_cancel_and_csv(app, client, db_session, shop, auth, sandbox, destinations, today):
    scope = shop["scope"]
    a, day2 = _ready(db_session, scope, sandbox)
    today["date"] = day2
    body = client.get("/v1/balance", headers=auth).json
    mine = [s for s in body["sellers"] if s["seller"] == a][0]
    assert (mine["amount"], mine["pending"], mine["available"], mine["in_transit"]) == (5820, 0, 5820, 0)
    assert body["merchant"][0]["available"] == -20 and body["platform_fees"][0]["amount"] == 300

    too_much = client.post("/v1/payouts", headers=auth, json={"seller": a, "amount": 5821, "currency": "USD"})
    assert too_much.status_code == 400 and too_much.json["error"]["code"] == "payout_refused"
    assert too_much.json["error"]["param"] == "amount"
    assert db_session.scalars(scope.select(Payout)).all() == []
    db_session.commit()

    headers = {**auth, "Idempotency-Key": "po-1"}
    first = client.post("/v1/payouts", headers=headers, json={"seller": a, "amount": 2000, "currency": "USD"})
    again = client.post("/v1/payouts", headers=headers, json={"seller": a, "amount": 2000, "currency": "USD"})
    assert first.status_code == 200 and again.json["id"] == first.json["id"]
    assert first.json["status"] == "pending" and first.json["type"] == "manual"
    mine = [s for s in client.get("/v1/balance", headers=auth).json["sellers"] if s["seller"] == a][0]
    assert (mine["available"], mine["in_transit"]) == (3820, 2000)

    listed = client.get(f"/v1/payouts?seller={a}&status=pending", headers=auth).json
    assert [p["id"] for p in listed["data"]] == [first.json["id"]]
    canceled = client.post(f"/v1/payouts/{first.json['id']}/cancel", headers=auth)
    assert canceled.json["status"] == "canceled"
    assert client.post(f"/v1/payouts/{first.json['id']}/cancel", headers=auth).json["status"] == "canceled"

    created = service.create_payout(db_session, scope, seller_id=a, currency="USD", hmac_key=key(), today=day2,
                                    business_key=service.period_key(a, "USD", day2), period=day2).payout
    db_session.commit()
    csv_body = client.get(f"/v1/payouts/{created.id}/reconciliation.csv", headers=auth)
    assert csv_body.status_code == 200 and csv_body.mimetype == "text/csv"
    lines = csv_body.get_data(as_text=True).splitlines()
    assert sum(int(line.split(",")[8]) for line in lines[1:]) == created.amount == 5820
    txns = client.get(f"/v1/balance_transactions?payout={created.id}", headers=auth).json["data"]
    assert sum(t["net"] for t in txns) == 5820
    charges = client.get(f"/v1/balance_transactions?seller={a}&type=charge", headers=auth).json["data"]
    assert [(t["amount"], t["fee"], t["net"], t["payout"]) for t in charges] == [(6000, 180, 5820, created.id)]
    every = client.get(f"/v1/balance_transactions?seller={a}", headers=auth).json["data"]
    assert {t["type"] for t in every} == {"charge", "payout", "payout_reversal"}


def test_schedule_api_and_bad_input(app, client, db_session, shop, auth):
    scope = shop["scope"]
    a = seller(db_session, scope, "A")
    bad = client.post(f"/v1/payout_schedules/{a}", headers=auth, json={"interval": "hourly"})
    assert bad.status_code == 400 and bad.json["error"]["param"] == "interval"
    assert client.get(f"/v1/payout_schedules/{a}", headers=auth).json["interval"] == "daily"
    ok = client.post(f"/v1/payout_schedules/{a}", headers=auth,
                     json={"interval": "weekly", "weekly_anchor": "friday", "minimum_amount": 1000})
    assert ok.status_code == 200 and (ok.json["interval"], ok.json["weekly_anchor"]) == ("weekly", "friday")
    merchant = client.post("/v1/payout_schedules/merchant", headers=auth, json={"fee_bearer": "seller"}).json
    assert merchant["fee_bearer"] == "seller"
    assert client.get("/v1/payout_schedules/sel_nope", headers=auth).status_code == 404
    # Each change is audited with the key that made it; the refused one left nothing.
    entries = db_session.scalars(select(AuditEntry).where(AuditEntry.merchant_id == scope.merchant_id,
                                                          AuditEntry.action == "payout_schedule.updated")
                                 .order_by(AuditEntry.created_at, AuditEntry.id)).all()
    assert [e.target for e in entries] == [a, "merchant"]
    assert entries[0].details["interval"] == "weekly" and entries[0].actor_label.startswith("api_key:")
    assert entries[1].details["fee_bearer"] == {"from": "platform", "to": "seller"}


def test_merchant_a_cannot_see_or_cancel_b_payouts(app, client, db_session, shop, auth, sandbox, destinations,
                                                   today):
    scope = shop["scope"]
    a, day2 = _ready(db_session, scope, sandbox)
    payout = service.create_payout(db_session, scope, seller_id=a, currency="USD", hmac_key=key(), today=day2,
                                   amount=100).payout
    db_session.commit()
    other = factories.merchant(db_session, name="Other")
    db_session.commit()
    other_auth = {"Authorization": f"Bearer {mint_key(db_session, other.id)}"}
    assert client.get(f"/v1/payouts/{payout.id}", headers=other_auth).status_code == 404
    assert client.post(f"/v1/payouts/{payout.id}/cancel", headers=other_auth).status_code == 404
    assert client.get(f"/v1/payouts/{payout.id}/reconciliation.csv", headers=other_auth).status_code == 404
    assert client.get("/v1/payouts", headers=other_auth).json["data"] == []
    assert client.get(f"/v1/balance_transactions?seller={a}", headers=other_auth).status_code == 404
    assert client.get(f"/v1/balance_transactions?payout={payout.id}", headers=other_auth).status_code == 404
    assert client.post("/v1/payouts", headers=other_auth,
                       json={"seller": a, "amount": 100, "currency": "USD"}).status_code == 404
    assert client.get(f"/v1/payouts/{payout.id}", headers=auth).json["status"] == "pending"
