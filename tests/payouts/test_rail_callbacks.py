"""The sandbox payout rail's callbacks over HTTP: the sandbox (a real subprocess) announces a transfer paid or failed
when its clock passes the transfer's day (and failed again when a paid one is returned), signed, to its hook URL;
the signed body it sent is posted as is to Kassa's /hooks/sandbox, which applies it once through the payouts service
(no status query in between). Replays change nothing; forged, unsigned and unknown-payout callbacks change nothing."""
import datetime as dt
import json

import pytest
from sqlalchemy import func, select

from app.ledger import accounts
from app.payouts import service
from app.psp.models import PspCallback
from tests.disputes.helpers import verify_ledger
from tests.payouts.conftest import Destination
from tests.payouts.test_payouts import _ready, key, parts, usd
from tests.payouts import test_rail
from tests.payouts.test_rail import DAY, step
from tests.reconciliation.helpers import balance
from sbx_helpers import WEBHOOK_SECRET

# The rail tests' fixtures, shared as they are: a fresh sandbox day per test, the sandbox's clock on it.
sandbox, rail = test_rail.sandbox, test_rail.rail


@pytest.fixture
def hook(app, monkeypatch, sandbox_process):
    """Kassa's /hooks/sandbox with the sandbox's webhook secret; the receiver forgets earlier callbacks."""
    monkeypatch.setitem(app.config, "SANDBOX_WEBHOOK_SECRET", WEBHOOK_SECRET)
    sandbox_process.receiver.clear()
    return app.test_client()


def delivered(sandbox_process, type_: str, payout_id: str):
    """The signed callback of this type about this payout, as the sandbox delivered it: (headers, parsed, raw)."""
    def about():
        return [e for e in sandbox_process.receiver.events(type_) if e[1]["data"]["id"] == payout_id]

    sandbox_process.receiver.wait_for(type_)
    from sbx_helpers import wait_until

    [callback] = wait_until(about)
    return callback


def forward(hook, callback, signature: str | None = "sandbox"):
    """Post the sandbox's callback to Kassa with its own signature (or another one, or none)."""
    headers, _parsed, raw = callback
    sent = {"Content-Type": "application/json"}
    if signature == "sandbox":
        sent["Sandbox-Signature"] = headers["Sandbox-Signature"]
    elif signature is not None:
        sent["Sandbox-Signature"] = signature
    return hook.post("/hooks/sandbox", data=raw, headers=sent)


def stored(db_session, callback_id: str) -> list[tuple[str | None, str | None]]:
    rows = db_session.execute(select(PspCallback.result, PspCallback.merchant_id)
                              .where(PspCallback.callback_id == callback_id)).all()
    db_session.commit()
    return [tuple(r) for r in rows]


def in_transit(db_session, scope, a, day2, rail, amount=None):
    payout = service.create_payout(db_session, scope, seller_id=a, currency="USD", hmac_key=key(), today=day2,
                                   amount=amount, business_key=None if amount else service.period_key(a, "USD", day2),
                                   period=None if amount else day2).payout
    db_session.commit()
    assert step(db_session, scope, payout.id, rail) == "in_transit"
    return payout


def status(db_session, scope, payout_id):
    row = service.get_payout(db_session, scope, payout_id)
    db_session.commit()
    return row.status, row.failure_code


def test_paid_callback_pays_once_and_a_return_reverses_once(app, db_session, shop, sandbox, destinations, rail,
                                                            sandbox_process, hook):
    scope = shop["scope"]
    a, day2 = _ready(db_session, scope, sandbox)
    payout = in_transit(db_session, scope, a, day2, rail)
    assert parts(usd(db_session, scope, a, day2)) == (0, 0, 5820)

    sandbox_process.admin("/_admin/clock", {"advance_seconds": 2 * DAY})  # the transfer's day: paid, announced
    paid = delivered(sandbox_process, "bank_transfer.paid", payout.id)
    assert paid[1]["data"]["status"] == "paid"
    answer = forward(hook, paid)
    assert answer.status_code == 200 and answer.get_json()["duplicate"] is False
    assert status(db_session, scope, payout.id) == ("paid", None)
    assert stored(db_session, paid[1]["id"]) == [("applied", scope.merchant_id)]
    assert balance(db_session, scope, accounts.cash("USD")) == 9680 - 5820
    assert balance(db_session, scope, accounts.payouts_in_transit("USD")) == 0
    assert parts(usd(db_session, scope, a, day2)) == (0, 0, 0)

    replay = forward(hook, paid)  # the sandbox retries: deduplicated by its id, nothing moves
    assert replay.status_code == 200 and replay.get_json()["duplicate"] is True
    assert status(db_session, scope, payout.id) == ("paid", None)
    assert balance(db_session, scope, accounts.cash("USD")) == 9680 - 5820

    # The receiving bank returns it: bank_transfer.failed, reversed once back to the seller's payable.
    sandbox_process.admin(f"/_admin/bank_transfers/{payout.id}/return", {"failure_code": "account_closed"})
    returned = delivered(sandbox_process, "bank_transfer.failed", payout.id)
    assert forward(hook, returned).status_code == 200
    assert status(db_session, scope, payout.id) == ("failed", "account_closed")
    assert forward(hook, returned).get_json()["duplicate"] is True
    assert balance(db_session, scope, accounts.seller_payable(a, "USD")) == 5820
    assert balance(db_session, scope, accounts.cash("USD")) == 9680
    assert balance(db_session, scope, accounts.payouts_in_transit("USD")) == 0
    assert parts(usd(db_session, scope, a, day2 + dt.timedelta(days=2))) == (0, 5820, 0)
    assert len(sandbox_process.receiver.events("bank_transfer.paid")) == 1
    verify_ledger(app)


def test_failed_callback_reverses_once(app, db_session, shop, sandbox, destinations, rail, sandbox_process,
                                       hook):
    scope = shop["scope"]
    a, day2 = _ready(db_session, scope, sandbox)
    destinations[a] = Destination(account_number="000111111113")
    payout = in_transit(db_session, scope, a, day2, rail, amount=5000)
    sandbox_process.admin("/_admin/clock", {"advance_seconds": 2 * DAY})
    failed = delivered(sandbox_process, "bank_transfer.failed", payout.id)
    assert forward(hook, failed).status_code == 200
    assert forward(hook, failed).get_json()["duplicate"] is True
    assert status(db_session, scope, payout.id) == ("failed", "account_closed")
    assert balance(db_session, scope, accounts.seller_payable(a, "USD")) == 5820
    assert balance(db_session, scope, accounts.payouts_in_transit("USD")) == 0
    assert parts(usd(db_session, scope, a, day2)) == (0, 5820, 0)
    assert sandbox_process.receiver.events("bank_transfer.paid") == []
    verify_ledger(app)


def test_forged_unsigned_and_unknown_payout_callbacks_change_nothing(app, db_session, shop, sandbox, destinations,
                                                                      rail, sandbox_process, hook):
    scope = shop["scope"]
    a, day2 = _ready(db_session, scope, sandbox)
    payout = in_transit(db_session, scope, a, day2, rail)
    sandbox_process.admin("/_admin/clock", {"advance_seconds": 2 * DAY})
    paid = delivered(sandbox_process, "bank_transfer.paid", payout.id)
    headers, parsed, raw = paid
    count_before = db_session.scalar(select(func.count()).select_from(PspCallback))
    db_session.commit()

    assert forward(hook, paid, signature=None).status_code == 400  # unsigned
    timestamp = headers["Sandbox-Signature"].split(",")[0]
    assert forward(hook, paid, signature=f"{timestamp},v1={'0' * 64}").status_code == 400  # forged
    # The signature does not cover another body: a real signature on a changed callback is refused.
    tampered = json.dumps({**parsed, "id": "cb_tampered"}).encode()
    assert forward(hook, (headers, parsed, tampered)).status_code == 400
    assert db_session.scalar(select(func.count()).select_from(PspCallback)) == count_before
    assert status(db_session, scope, payout.id) == ("in_transit", None)

    # Signed with the sandbox's secret but naming no payout: stored, matched to nobody, no effect.
    from tests.psp.test_hooks import sandbox_signature

    unknown = json.dumps({**parsed, "id": "cb_unknown_payout", "data": {**parsed["data"], "id": "po_nosuch"}}).encode()
    answer = hook.post("/hooks/sandbox", data=unknown, headers={
        "Content-Type": "application/json", "Sandbox-Signature": sandbox_signature(unknown, WEBHOOK_SECRET)})
    assert answer.status_code == 200
    assert stored(db_session, "cb_unknown_payout") == [("unmatched", None)]
    assert status(db_session, scope, payout.id) == ("in_transit", None)
    assert balance(db_session, scope, accounts.payouts_in_transit("USD")) == 5820

    # The real one still applies afterwards; the status query then finds nothing left to do.
    assert forward(hook, paid).status_code == 200
    assert status(db_session, scope, payout.id) == ("paid", None)
    assert step(db_session, scope, payout.id, rail) == "paid"
    assert balance(db_session, scope, accounts.cash("USD")) == 9680 - 5820
    verify_ledger(app)


def test_a_callback_never_touches_a_payout_of_the_other_mode(app, db_session, shop, sandbox, destinations, rail,
                                                             sandbox_process, hook):
    """The sandbox's secret speaks for test mode only: a payout of the id it names in live mode is refused."""
    from app.payouts.models import Payout
    from app.scoping import Scope

    scope = shop["scope"]
    a, day2 = _ready(db_session, scope, sandbox)
    payout = in_transit(db_session, scope, a, day2, rail)
    sandbox_process.admin("/_admin/clock", {"advance_seconds": 2 * DAY})
    paid = delivered(sandbox_process, "bank_transfer.paid", payout.id)
    # The same payout id in live mode (as if it were a live payout): the callback must not reach it.
    db_session.execute(Payout.__table__.update().where(Payout.id == payout.id).values(livemode=True))
    db_session.commit()
    assert forward(hook, paid).status_code == 200
    [(result, merchant)] = stored(db_session, paid[1]["id"])
    assert (result, merchant) == ("rejected", None)
    assert status(db_session, Scope(scope.merchant_id, True), payout.id) == ("in_transit", None)
    db_session.execute(Payout.__table__.update().where(Payout.id == payout.id).values(livemode=False))
    db_session.commit()
    assert balance(db_session, scope, accounts.payouts_in_transit("USD")) == 5820  # nothing was booked
