"""Stripe's payout events for accounts that confirm deposits by them: a payout.failed after payout.paid (the bank
returned the money) reverses the deposit once and opens a break; the deposit breaks these events file are resolved
like a bank deposit's (accepted with its adjustment, written off, matched by hand, PSP asked), the ledger verifying."""
import datetime as dt

from flask import current_app
from sqlalchemy import func, select

from app.ledger.models import JournalTransaction
from app.payments.deps import deps_for
from app.reconciliation.models import Break
from app.reconciliation.resolution import payout_event_break, resolve_break
from tests.disputes.helpers import books, verify_ledger
from tests.reconciliation.helpers import PLATFORM
import pytest

from tests.psp.fake_stripe import FakeStripe
from tests.reconciliation.test_stripe_source import (
    callback,
    charge_bt,
    connected,
    drop_router,
    import_account_report,
    payout,
    signed,
    stripe_api_at,
    stripe_knows,
    stripe_payment,
)

# The stand-in for Stripe's API the handler asks for each payout (tests/psp/fake_stripe.py), set by ``_stand_in``.
_stripe: list = []


@pytest.fixture(autouse=True)
def _stand_in(app, monkeypatch):
    server = FakeStripe()
    try:
        with stripe_api_at(app, server, monkeypatch):
            _stripe[:] = [server]
            yield server
    finally:
        _stripe.clear()
        server.close()


def _batch(app, db_session, scope, secret: str, day: dt.date, payout_id: str, amount: int, fee: int):
    credential = connected(app, db_session, scope, secret)
    stripe_payment(db_session, scope, amount, f"pi_{payout_id}", credential.id, day)
    import_account_report(app, db_session, credential.id, day, [payout(payout_id, amount - fee)],
                          {payout_id: [charge_bt(f"pi_{payout_id}", amount, fee, payout_id)]})
    return credential


def _post(client, scope, secret: str, event_type: str, body: dict, event_id: str, *, stripe: dict | None = None):
    """Deliver a signed event; Stripe's API has the payout as ``stripe`` says, else as the event says (true)."""
    stripe_knows(_stripe[0], stripe or body)
    headers, data = signed(event_type, body, event_id, f"whsec_{secret}")
    response = client.post(f"/hooks/stripe/{scope.merchant_id}", data=data, headers=headers)
    assert response.status_code == 200
    return response


def _breaks(session, payout_id: str) -> list[Break]:
    session.rollback()
    rows = session.scalars(PLATFORM.select(Break, Break.batch_id == payout_id).order_by(Break.opened_at)).all()
    session.commit()
    return rows


def _count(session, business_key_like: str) -> int:
    value = session.scalar(select(func.count()).select_from(JournalTransaction).where(
        JournalTransaction.business_key.like(business_key_like)))
    session.commit()
    return value


def _resolve(session, row: Break, resolution: str, **extra) -> Break:
    resolved = resolve_break(session, PLATFORM, row.id, resolution=resolution, note=extra.pop("note", "checked"),
                             hmac_key=deps_for(current_app).ledger_hmac_key, actor_user_id=None,
                             actor_label="ops@kassa.test", **extra)
    session.commit()
    return resolved


def test_a_payout_failed_after_it_was_paid_reverses_the_deposit_once_and_opens_a_break(app, client, db_session, shop):
    scope = shop["scope"]
    _batch(app, db_session, scope, "recon_returned", dt.date(2026, 4, 2), "po_returned", 5000, 150)
    _post(client, scope, "recon_returned", "payout.paid", payout("po_returned", 4850, status="paid"), "evt_ret_paid")
    assert books(db_session, scope).get("cash:USD") == 4850
    assert not books(db_session, scope).get("psp_clearing:stripe:USD")

    failed = payout("po_returned", 4850, status="failed", failure_code="account_closed")
    _post(client, scope, "recon_returned", "payout.failed", failed, "evt_ret_failed")
    assert callback(db_session, "evt_ret_failed").result == "applied"
    held = books(db_session, scope)
    assert not held.get("cash:USD") and held.get("psp_clearing:stripe:USD") == 4850  # back where Stripe holds it
    [opened] = _breaks(db_session, "po_returned")
    assert (opened.type, opened.status, opened.kassa_amount, opened.psp_amount) == ("deposit_mismatch", "open",
                                                                                    4850, 0)
    assert "after it was paid" in opened.detail and "account_closed" in opened.detail
    # The console's day page counts it for the merchant's own Stripe account (the report that carried the batch).
    from app.reconciliation.queries import break_sources

    credential = callback(db_session, "evt_ret_failed").verified_with
    assert break_sources(db_session, [opened]) == {opened.id: f"stripe:{credential}"}
    db_session.commit()
    assert _count(db_session, "deposit:po_returned:%:failed") == 1

    # Redelivered (the same event) and told again (another event id): nothing moves twice, no second break.
    _post(client, scope, "recon_returned", "payout.failed", failed, "evt_ret_failed")
    _post(client, scope, "recon_returned", "payout.failed", failed, "evt_ret_failed_again")
    assert callback(db_session, "evt_ret_failed_again").result == "applied"
    assert _count(db_session, "deposit:po_returned:%:failed") == 1
    assert len(_breaks(db_session, "po_returned")) == 1
    assert books(db_session, scope).get("psp_clearing:stripe:USD") == 4850
    # A payout.paid delivered late (Stripe does not promise the order) does not pay a failed payout again.
    _post(client, scope, "recon_returned", "payout.paid", payout("po_returned", 4850, status="paid"),
          "evt_ret_paid_late")
    assert not books(db_session, scope).get("cash:USD")
    verify_ledger(app)


def test_a_failed_payout_s_break_is_written_off_or_matched_by_hand(app, client, db_session, shop):
    scope = shop["scope"]
    _batch(app, db_session, scope, "recon_lost", dt.date(2026, 4, 4), "po_lost", 3000, 90)
    _post(client, scope, "recon_lost", "payout.failed", payout("po_lost", 2910, status="failed"), "evt_lost")
    [lost] = _breaks(db_session, "po_lost")
    assert payout_event_break(lost)
    fees_before = books(db_session, scope).get("psp_fees:USD") or 0

    written_off = _resolve(db_session, lost, "written_off", note="bank account closed, Stripe will not pay again")
    assert written_off.status == "resolved" and written_off.resolution_transaction_id
    held = books(db_session, scope)
    assert not held.get("psp_clearing:stripe:USD") and not held.get("cash:USD")
    assert (held.get("psp_fees:USD") or 0) - fees_before == 2910
    verify_ledger(app)

    # Another failed payout, paid by Stripe in a later payout: matched by hand to it, nothing posted.
    _batch(app, db_session, scope, "recon_repaid", dt.date(2026, 4, 5), "po_repaid", 2000, 60)
    _post(client, scope, "recon_repaid", "payout.failed", payout("po_repaid", 1940, status="failed"), "evt_repaid")
    [repaid] = _breaks(db_session, "po_repaid")
    matched = _resolve(db_session, repaid, "matched_by_hand", target="po_repaid_later")
    assert (matched.resolution, matched.object_id, matched.resolution_transaction_id) == (
        "matched_by_hand", "po_repaid_later", None)
    assert books(db_session, scope).get("psp_clearing:stripe:USD") == 1940
    verify_ledger(app)


def test_a_payout_paid_short_is_accepted_with_its_shortfall_to_fees_and_reversed_if_it_fails(app, client,
                                                                                           db_session, shop):
    scope = shop["scope"]
    _batch(app, db_session, scope, "recon_short", dt.date(2026, 4, 6), "po_short", 10000, 300)
    platform_before = books(db_session, PLATFORM)
    _post(client, scope, "recon_short", "payout.paid", payout("po_short", 9650, status="paid"), "evt_short")
    [short] = _breaks(db_session, "po_short")
    assert (short.kassa_amount, short.psp_amount) == (9700, 9650) and payout_event_break(short)
    assert books(db_session, PLATFORM).get("suspense:stripe:USD") - platform_before.get("suspense:stripe:USD") \
        == 9650

    accepted = _resolve(db_session, short, "accepted", note="Stripe kept 0.50, accepted")
    assert accepted.status == "resolved"
    held = books(db_session, scope)
    assert held.get("cash:USD") == 9650 and not held.get("psp_clearing:stripe:USD")
    platform_after = books(db_session, PLATFORM)
    for code in ("suspense:stripe:USD", "cash:USD"):
        assert platform_after.get(code) == platform_before.get(code)
    verify_ledger(app)

    # The bank returns it: the deposit and its accepted resolution are undone, the batch back in clearing.
    _post(client, scope, "recon_short", "payout.failed", payout("po_short", 9650, status="failed"),
          "evt_short_failed")
    held = books(db_session, scope)
    assert not held.get("cash:USD") and held.get("psp_clearing:stripe:USD") == 9700
    platform_after = books(db_session, PLATFORM)
    for code in ("suspense:stripe:USD", "cash:USD"):
        assert platform_after.get(code) == platform_before.get(code)
    failure = [row for row in _breaks(db_session, "po_short") if row.status == "open"]
    assert [row.dedupe_key for row in failure] == ["payout_failed:po_short"]
    verify_ledger(app)


def test_an_open_paid_mismatch_gives_way_to_the_payout_s_failure(app, client, db_session, shop):
    scope = shop["scope"]
    _batch(app, db_session, scope, "recon_over", dt.date(2026, 4, 8), "po_over", 4000, 120)
    _post(client, scope, "recon_over", "payout.paid", payout("po_over", 3900, status="paid"), "evt_over")
    _post(client, scope, "recon_over", "payout.failed", payout("po_over", 3900, status="failed"), "evt_over_failed")
    rows = {row.dedupe_key: row for row in _breaks(db_session, "po_over")}
    assert rows["deposit_mismatch:po_over:USD"].status == "closed"
    assert rows["payout_failed:po_over"].status == "open"
    assert books(db_session, scope).get("psp_clearing:stripe:USD") == 3880
    # PSP asked: resolved without a posting; the batch stays in clearing.
    asked = _resolve(db_session, rows["payout_failed:po_over"], "psp_asked", note="asked Stripe to pay it again")
    assert asked.resolution_transaction_id is None
    verify_ledger(app)


def test_a_payout_failed_whose_cash_was_spent_since_opens_its_break_without_reversing(app, client, db_session, shop):
    """Cash never goes negative: a book whose cash no longer holds the returned payout is not reversed; the break
    says so, and the event does not fail again and again."""
    from app.ledger import accounts
    from app.ledger.service import post_transaction
    from app.reconciliation.service import _currency, legs_from_changes

    scope = shop["scope"]
    _batch(app, db_session, scope, "recon_spent", dt.date(2026, 4, 10), "po_spent", 2000, 60)
    _post(client, scope, "recon_spent", "payout.paid", payout("po_spent", 1940, status="paid"), "evt_spent_paid")
    cash = books(db_session, scope).get("cash:USD")
    post_transaction(db_session, scope, "test:spend:po_spent", "test_spend",
                     legs_from_changes({accounts.cash("USD"): -cash, accounts.psp_fees("USD"): cash}, _currency),
                     hmac_key=deps_for(current_app).ledger_hmac_key)
    db_session.commit()

    _post(client, scope, "recon_spent", "payout.failed", payout("po_spent", 1940, status="failed"), "evt_spent")
    assert callback(db_session, "evt_spent").result == "applied"
    [opened] = _breaks(db_session, "po_spent")
    assert opened.status == "open" and "NOT reversed" in opened.detail and scope.merchant_id in opened.detail
    assert _count(db_session, "deposit:po_spent:%:failed") == 0
    assert not books(db_session, scope).get("psp_clearing:stripe:USD")
    verify_ledger(app)


def failure_bt(failed: str, amount: int) -> dict:
    """Stripe's balance transaction returning a failed payout's money to the balance (carried by the next payout)."""
    from tests.psp.fake_stripe import stripe_fixture

    bt = stripe_fixture("balance_transaction")
    bt.update({"id": f"txn_failure_{failed}", "type": "payout_failure", "reporting_category": "payout_reversal",
               "amount": amount, "fee": 0, "net": amount, "source": failed, "currency": "usd"})
    return bt


def test_a_failed_payout_paid_again_in_the_next_payout_reaches_cash_and_closes_its_break(app, client, db_session,
                                                                                         shop):
    scope = shop["scope"]
    day = dt.date(2026, 4, 12)
    credential = _batch(app, db_session, scope, "recon_again", day, "po_first", 3000, 90)
    _post(client, scope, "recon_again", "payout.paid", payout("po_first", 2910, status="paid"), "evt_first_paid")
    _post(client, scope, "recon_again", "payout.failed", payout("po_first", 2910, status="failed"), "evt_first_failed")
    [failure] = _breaks(db_session, "po_first")
    assert books(db_session, scope).get("psp_clearing:stripe:USD") == 2910

    # The next day's payout carries a new charge and the failed payout's money (a payout_failure: no line).
    stripe_payment(db_session, scope, 1000, "pi_next", credential.id, day + dt.timedelta(days=1))
    result = import_account_report(app, db_session, credential.id, day + dt.timedelta(days=1),
                                   [payout("po_next", 970 + 2910)],
                                   {"po_next": [charge_bt("pi_next", 1000, 30, "po_next"),
                                                failure_bt("po_first", 2910)]})
    assert result.statuses == {"matched": 1}
    _post(client, scope, "recon_again", "payout.paid", payout("po_next", 3880, status="paid"), "evt_next_paid")
    held = books(db_session, scope)
    assert held.get("cash:USD") == 3880 and not held.get("psp_clearing:stripe:USD")
    db_session.rollback()
    closed = db_session.get(Break, (failure.merchant_id, failure.id))
    assert (closed.status, closed.object_id) == ("closed", "po_next")
    db_session.commit()
    assert _breaks(db_session, "po_next") == []

    # Told again: nothing moves twice, no break.
    _post(client, scope, "recon_again", "payout.paid", payout("po_next", 3880, status="paid"), "evt_next_paid_again")
    assert books(db_session, scope).get("cash:USD") == 3880 and _breaks(db_session, "po_next") == []
    assert _count(db_session, "deposit:po_first:%:repaid:po_next") == 1
    verify_ledger(app)


def _wait_for_a_waiter_or(thread, engine) -> None:
    """Return once another session of this database waits on a lock, or the thread is done (it did not wait)."""
    import time

    from sqlalchemy import text

    deadline = time.monotonic() + 30
    with engine.connect() as conn:
        while time.monotonic() < deadline and thread.is_alive():
            if conn.execute(text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                 "AND wait_event_type = 'Lock'")).scalar():
                return
            conn.rollback()
            time.sleep(0.01)  # polling another session's state; not waiting for time to pass


def test_a_payout_s_failure_handled_while_its_paid_event_is_in_flight_still_reverses_the_deposit(
        app, db_session, shop):
    """Two sweep workers may take payout.paid and payout.failed of one payout at once (both waited for the report):
    the failure must see the deposit the paid event posts, never leave the returned money in cash."""
    import threading

    from sqlalchemy.orm import Session

    from app.extensions import db
    from app.reconciliation.payout_events import payout_failed, payout_paid

    scope = shop["scope"]
    credential = _batch(app, db_session, scope, "recon_race", dt.date(2026, 4, 14), "po_race", 2000, 60)
    db_session.commit()
    key = deps_for(current_app).ledger_hmac_key
    done: list[str] = []

    def failure() -> None:
        with app.app_context(), Session(db.engine) as session:
            payout_failed(session, credential=credential.id, livemode=False,
                          payout=payout("po_race", 1940, status="failed"), hmac_key=key)
            session.commit()
            done.append("failed")

    with Session(db.engine) as first:
        payout_paid(first, credential=credential.id, livemode=False, payout=payout("po_race", 1940, status="paid"),
                    hmac_key=key)
        thread = threading.Thread(target=failure)
        thread.start()
        _wait_for_a_waiter_or(thread, db.engine)
        first.commit()
    thread.join(timeout=30)
    assert done == ["failed"]
    held = books(db_session, scope)
    assert not held.get("cash:USD") and held.get("psp_clearing:stripe:USD") == 1940
    [opened] = _breaks(db_session, "po_race")
    assert opened.status == "open" and "after it was paid" in opened.detail
    verify_ledger(app)


def _refund_bt(reference: str, amount: int) -> dict:
    """Stripe's balance transaction of a refund (its source expanded), here one Kassa never booked."""
    from tests.psp.fake_stripe import stripe_fixture

    refund = stripe_fixture("refund")
    refund.update({"id": reference, "amount": amount})
    bt = stripe_fixture("balance_transaction")
    bt.update({"id": f"txn_{reference}", "type": "refund", "reporting_category": "refund", "amount": -amount,
               "fee": 0, "net": -amount, "source": refund, "currency": "usd"})
    return bt


def test_a_payout_carrying_a_line_in_suspense_that_took_money_is_deposited_for_the_merchant(
        app, client, db_session, shop):
    """An unknown refund in a connected account's payout waits in the platform's suspense, its share of the batch
    negative; the platform's cash cannot give it. payout.paid must still deposit the merchant's share (not fail and
    be retried for a day), leaving the platform's share in clearing with a break."""
    from tests.reconciliation.test_reconcile import spend_cash

    scope = shop["scope"]
    if books(db_session, PLATFORM).get("cash:USD"):
        spend_cash(db_session, PLATFORM)  # what other tests of the module left in the platform's cash is gone
    day = dt.date(2026, 4, 16)
    credential = connected(app, db_session, scope, "recon_negative")
    stripe_payment(db_session, scope, 10000, "pi_negative", credential.id, day)
    import_account_report(app, db_session, credential.id, day, [payout("po_negative", 9200)],
                          {"po_negative": [charge_bt("pi_negative", 10000, 300, "po_negative"),
                                           _refund_bt("re_recon_unknown", 500)]})
    _post(client, scope, "recon_negative", "payout.paid", payout("po_negative", 9200, status="paid"), "evt_negative")
    assert callback(db_session, "evt_negative").result == "applied"
    held = books(db_session, scope)
    assert held.get("cash:USD") == 9700 and not held.get("psp_clearing:stripe:USD")
    assert books(db_session, PLATFORM).get("psp_clearing:stripe:USD") == -500
    [unmoved] = [row for row in _breaks(db_session, "po_negative") if row.type == "deposit_mismatch"]
    assert unmoved.status == "open" and "-500" in unmoved.detail
    assert not payout_event_break(unmoved)
    # Told again: nothing moves twice, no second break.
    _post(client, scope, "recon_negative", "payout.paid", payout("po_negative", 9200, status="paid"),
          "evt_negative_again")
    assert books(db_session, scope).get("cash:USD") == 9700
    assert [row.id for row in _breaks(db_session, "po_negative") if row.type == "deposit_mismatch"] == [unmoved.id]
    # Accepted: nothing to post (the money is not in suspense); the ledger verifies.
    resolved = _resolve(db_session, unmoved, "accepted", note="moved by hand")
    assert resolved.resolution_transaction_id is None
    verify_ledger(app)


def test_a_payout_in_a_currency_stripe_writes_with_two_extra_decimals_is_read_in_kassa_s_units(
        app, client, db_session, shop):
    """Stripe writes ISK with two decimals that are always 00 (app/psp/wire.py); its report lines are read with
    that rule, and so must the payout's amount in payout.paid be, or every ISK payout is a deposit break."""
    from sqlalchemy import text

    from tests.disputes.helpers import captured

    scope = shop["scope"]
    day = dt.date(2026, 4, 18)
    credential = connected(app, db_session, scope, "recon_isk")
    body = captured(db_session, scope, amount=5000, currency="ISK")
    db_session.execute(text("UPDATE payments SET connector = 'stripe', psp_reference = 'pi_recon_isk', "
                            "credential = :c, captured_at = :t WHERE id = :id"),
                       {"c": credential.id, "id": body["id"], "t": dt.datetime(2026, 4, 18, 1, tzinfo=dt.UTC)})
    db_session.commit()
    bt = charge_bt("pi_recon_isk", 500000, 15000, "po_isk")  # 5,000 ISK, fee 150 ISK, in Stripe's units
    bt["currency"] = "isk"
    import_account_report(app, db_session, credential.id, day, [payout("po_isk", 485000, currency="isk")],
                          {"po_isk": [bt]})
    assert books(db_session, scope).get("psp_clearing:stripe:ISK") == 4850

    _post(client, scope, "recon_isk", "payout.paid", payout("po_isk", 485000, currency="isk", status="paid"),
          "evt_isk_paid")
    assert callback(db_session, "evt_isk_paid").result == "applied"
    held = books(db_session, scope)
    assert held.get("cash:ISK") == 4850 and not held.get("psp_clearing:stripe:ISK")
    assert _breaks(db_session, "po_isk") == []
    verify_ledger(app)


def test_a_failed_payout_whose_break_was_sent_to_stripe_is_recognised_when_stripe_pays_it_again(
        app, client, db_session, shop):
    """An operator resolves a failed payout's break "PSP asked" (nothing posted: the batch stays in clearing);
    when Stripe then pays it again in a later payout, that payout deposits the failed batch too, as it would for an
    open break, instead of being a deposit break with its money in suspense."""
    scope = shop["scope"]
    day = dt.date(2026, 4, 20)
    credential = _batch(app, db_session, scope, "recon_asked", day, "po_asked", 3000, 90)
    _post(client, scope, "recon_asked", "payout.failed", payout("po_asked", 2910, status="failed"), "evt_asked")
    [failure] = _breaks(db_session, "po_asked")
    _resolve(db_session, failure, "psp_asked", note="asked Stripe to pay it again")
    assert books(db_session, scope).get("psp_clearing:stripe:USD") == 2910

    stripe_payment(db_session, scope, 1000, "pi_asked_next", credential.id, day + dt.timedelta(days=1))
    import_account_report(app, db_session, credential.id, day + dt.timedelta(days=1),
                          [payout("po_asked_next", 970 + 2910)],
                          {"po_asked_next": [charge_bt("pi_asked_next", 1000, 30, "po_asked_next"),
                                             failure_bt("po_asked", 2910)]})
    _post(client, scope, "recon_asked", "payout.paid", payout("po_asked_next", 3880, status="paid"),
          "evt_asked_next")
    held = books(db_session, scope)
    assert held.get("cash:USD") == 3880 and not held.get("psp_clearing:stripe:USD")
    assert _breaks(db_session, "po_asked_next") == []
    db_session.rollback()
    assert db_session.get(Break, (failure.merchant_id, failure.id)).resolution == "psp_asked"
    db_session.commit()
    # Told again: nothing moves twice.
    _post(client, scope, "recon_asked", "payout.paid", payout("po_asked_next", 3880, status="paid"),
          "evt_asked_next_again")
    assert books(db_session, scope).get("cash:USD") == 3880 and _breaks(db_session, "po_asked_next") == []
    verify_ledger(app)


def test_a_failed_payout_whose_deposit_was_not_reversed_is_not_written_off_before_it_is_moved_back(
        app, client, db_session, shop):
    """A payout returned after its cash was spent keeps its deposit (the break says so): writing the failure off
    would take its share out of a psp_clearing the deposit already emptied (negative, the money counted twice).
    Refused until an operator has moved it back by hand; asking Stripe stays possible."""
    import pytest

    from app.ledger import accounts
    from app.ledger.service import post_transaction
    from app.reconciliation.resolution import ResolutionError
    from app.reconciliation.service import _currency, legs_from_changes

    scope = shop["scope"]
    _batch(app, db_session, scope, "recon_kept", dt.date(2026, 4, 22), "po_kept", 2000, 60)
    _post(client, scope, "recon_kept", "payout.paid", payout("po_kept", 1940, status="paid"), "evt_kept_paid")
    cash = books(db_session, scope).get("cash:USD")
    post_transaction(db_session, scope, "test:spend:po_kept", "test_spend",
                     legs_from_changes({accounts.cash("USD"): -cash, accounts.psp_fees("USD"): cash}, _currency),
                     hmac_key=deps_for(current_app).ledger_hmac_key)
    db_session.commit()
    _post(client, scope, "recon_kept", "payout.failed", payout("po_kept", 1940, status="failed"), "evt_kept")
    [opened] = _breaks(db_session, "po_kept")
    assert "NOT reversed" in opened.detail

    for resolution in ("written_off", "accepted"):
        with pytest.raises(ResolutionError, match="not reversed"):
            _resolve(db_session, opened, resolution, note="Stripe will not pay it again")
        db_session.rollback()
    assert not books(db_session, scope).get("psp_clearing:stripe:USD")
    asked = _resolve(db_session, opened, "psp_asked", note="asked Stripe")
    assert asked.status == "resolved"
    verify_ledger(app)


def _asked(stand_in, payout_id: str) -> list:
    """What the stand-in was asked about the payout: each request's Authorization (the key it was asked with)."""
    return [request.headers.get("Authorization") for request in stand_in.requests
            if request.method == "GET" and request.path == f"/v1/payouts/{payout_id}"]


def _dropped(session, payout_id: str) -> list:
    from app.accounts.audit import AuditEntry

    session.rollback()
    rows = session.scalars(select(AuditEntry).where(AuditEntry.action == "reconciliation.payout_event_dropped",
                                                    AuditEntry.target == payout_id)).all()
    session.commit()
    return rows


def test_a_payout_paid_signed_with_a_forged_amount_is_applied_as_stripe_has_the_payout(app, client, db_session,
                                                                                       shop, _stand_in):
    """A merchant holds its own account's webhook secret and signs a payout.paid of a million: Stripe, asked with the
    credential's own key, says 48.50; that is what is deposited, no mismatch break, nothing in the platform's
    suspense."""
    scope = shop["scope"]
    _batch(app, db_session, scope, "recon_forged", dt.date(2026, 4, 24), "po_forged", 5000, 150)
    platform_before = books(db_session, PLATFORM)
    _post(client, scope, "recon_forged", "payout.paid", payout("po_forged", 100_000_000, status="paid"),
          "evt_forged", stripe=payout("po_forged", 4850, status="paid"))
    assert callback(db_session, "evt_forged").result == "applied"
    assert _asked(_stand_in, "po_forged") == ["Bearer sk_test_recon_forged"]
    held = books(db_session, scope)
    assert held.get("cash:USD") == 4850 and not held.get("psp_clearing:stripe:USD")
    assert _breaks(db_session, "po_forged") == []
    platform_after = books(db_session, PLATFORM)
    for code in ("suspense:stripe:USD", "cash:USD"):
        assert platform_after.get(code) == platform_before.get(code)

    # A forged payout.failed of a payout Stripe has paid reverses nothing either.
    _post(client, scope, "recon_forged", "payout.failed", payout("po_forged", 4850, status="failed"),
          "evt_forged_failed", stripe=payout("po_forged", 4850, status="paid"))
    assert books(db_session, scope).get("cash:USD") == 4850 and _breaks(db_session, "po_forged") == []
    assert _count(db_session, "deposit:po_forged:%") == 1
    verify_ledger(app)


def test_a_payout_event_of_a_payout_stripe_does_not_have_or_has_not_paid_posts_nothing(app, client, db_session,
                                                                                       shop, _stand_in):
    """Surely absent at Stripe (its 404 resource_missing), or not paid yet (in transit): the event is dropped, logged
    and audited, nothing posted and no break; the callback is done (not retried)."""
    scope = shop["scope"]
    _batch(app, db_session, scope, "recon_ghost", dt.date(2026, 4, 26), "po_ghost", 3000, 90)
    platform_before = books(db_session, PLATFORM)
    headers, data = signed("payout.paid", payout("po_ghost", 2910, status="paid"), "evt_ghost", "whsec_recon_ghost")
    assert client.post(f"/hooks/stripe/{scope.merchant_id}", data=data, headers=headers).status_code == 200
    row = callback(db_session, "evt_ghost")
    assert row.result == "applied" and row.processed_at is not None and row.event_id is None
    assert len(_asked(_stand_in, "po_ghost")) == 1

    _post(client, scope, "recon_ghost", "payout.paid", payout("po_ghost", 2910, status="paid"), "evt_ghost_early",
          stripe=payout("po_ghost", 2910, status="in_transit"))
    assert callback(db_session, "evt_ghost_early").result == "applied"
    held = books(db_session, scope)
    assert not held.get("cash:USD") and held.get("psp_clearing:stripe:USD") == 2910
    assert _breaks(db_session, "po_ghost") == [] and _count(db_session, "deposit:po_ghost:%") == 0
    platform_after = books(db_session, PLATFORM)
    for code in ("suspense:stripe:USD", "cash:USD"):
        assert platform_after.get(code) == platform_before.get(code)
    dropped = _dropped(db_session, "po_ghost")
    assert sorted(entry.details["event"] for entry in dropped) == ["evt_ghost", "evt_ghost_early"]
    assert {entry.merchant_id for entry in dropped} == {scope.merchant_id}
    assert {entry.details["stripe_status"] for entry in dropped} == {None, "in_transit"}
    verify_ledger(app)


def test_a_payout_event_stripe_cannot_be_asked_about_posts_nothing_and_is_retried(app, client, db_session, shop,
                                                                                  _stand_in, monkeypatch):
    """Stripe unreachable (its API refuses connections): the callback fails and waits for the sweep, nothing posted;
    once Stripe answers, the retry applies Stripe's payout."""
    import socket

    from app.psp.callbacks import process_callback

    scope = shop["scope"]
    _batch(app, db_session, scope, "recon_down", dt.date(2026, 4, 28), "po_down", 2000, 60)
    with socket.socket() as probe:  # a port nobody listens on once closed
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    monkeypatch.setitem(app.config, "STRIPE_API_BASE", f"http://127.0.0.1:{closed}")
    monkeypatch.setitem(app.config, "PSP_MAX_TRIES", 1)
    drop_router(app)
    headers, data = signed("payout.paid", payout("po_down", 999_999, status="paid"), "evt_down", "whsec_recon_down")
    assert client.post(f"/hooks/stripe/{scope.merchant_id}", data=data, headers=headers).status_code == 200
    row = callback(db_session, "evt_down")
    assert row.processed_at is None and "po_down" in row.last_error and "Stripe could not tell" in row.last_error
    held = books(db_session, scope)
    assert not held.get("cash:USD") and held.get("psp_clearing:stripe:USD") == 1940
    assert _breaks(db_session, "po_down") == [] and _dropped(db_session, "po_down") == []

    # Stripe answers again: the sweep's retry deposits what Stripe paid, not what the event said.
    monkeypatch.setitem(app.config, "STRIPE_API_BASE", _stand_in.url)
    drop_router(app)
    stripe_knows(_stand_in, payout("po_down", 1940, status="paid"))
    assert process_callback(db_session, row.id) == "applied"
    db_session.commit()
    held = books(db_session, scope)
    assert held.get("cash:USD") == 1940 and not held.get("psp_clearing:stripe:USD")
    assert _breaks(db_session, "po_down") == []
    verify_ledger(app)
