"""Disputes in the ledger: a split payment partly refunded, then disputed; won, lost, inquiries; shares by largest
remainder; repeated, late and out-of-order notices booked once; refunds of disputed money refused.

Every path ends with the books checked: `flask ledger verify` passes, sellers' balances show the dispute at once,
and captured - refunded - disputed + reinstated equals what the payment's orders hold in the ledger.
"""
import pytest

from app.disputes.booking import Share, withdrawal_shares
from app.disputes.models import Dispute
from app.events import Event
from app.jobs.psp import process_stored_callback
from app.ledger.queries import seller_balances
from app.payments import idempotency
from app.payments.errors import AmountTooLarge
from app.payments.models import Payment, PaymentOrder
from app.psp import callbacks as psp_callbacks
from app.psp.interfaces import CallbackEvent
from app.psp.models import PspCallback
from tests.disputes.helpers import (
    SANDBOX,
    books,
    captured,
    deliver,
    deps,
    dispute_data,
    held_by_orders,
    payment_object,
    refund,
    seller,
    verify_ledger,
)


@pytest.fixture
def split_payment(db_session, shop):
    """100.00 split A 60.00 (fee 1.80) / B 40.00 (fee 1.20), then 30.00 of A's part refunded."""
    scope = shop["scope"]
    a, b = seller(db_session, scope, "Seller A"), seller(db_session, scope, "Seller B")
    payment = captured(db_session, scope, [(a, 6000, 180), (b, 4000, 120)])
    refund(db_session, scope, payment["id"], 3000, sellers=[(a, 3000)])
    return {"payment": payment_object(db_session, scope, payment["id"]), "a": a, "b": b, "scope": scope}


def _dispute(db_session, scope, reference) -> Dispute:
    row = db_session.scalars(scope.select(Dispute, Dispute.psp_reference == reference)).one()
    db_session.commit()
    return row


def _equation_holds(db_session, scope, payment_id):
    """captured - refunded - disputed + reinstated == what the orders hold in the ledger."""
    payment = payment_object(db_session, scope, payment_id)
    disputes = db_session.scalars(scope.select(Dispute, Dispute.payment_id == payment_id)).all()
    disputed = sum(d.amount for d in disputes if d.funds_withdrawn_at)
    reinstated = sum(d.amount for d in disputes if d.funds_reinstated_at)
    db_session.commit()
    expected = payment["amount_received"] - payment["amount_refunded"] - disputed + reinstated
    assert held_by_orders(db_session, scope, payment_id) == expected


def test_shares_follow_what_each_seller_still_holds_by_largest_remainder():
    orders = [PaymentOrder(id="po_a", seller_id="A", amount=6000, fee=180, amount_captured=6000, fee_captured=180,
                           amount_refunded=3000, fee_refunded=90),
              PaymentOrder(id="po_b", seller_id="B", amount=4000, fee=120, amount_captured=4000, fee_captured=120,
                           amount_refunded=0, fee_refunded=0)]
    # All that is left: each seller gives up exactly what it holds, fee included.
    assert withdrawal_shares(orders, 7000, {}) == [Share("po_a", "A", 3000, 90), Share("po_b", "B", 4000, 120)]
    # Part of it: 5000 over 3000:4000 is 2142.86 / 2857.14; the larger remainder gets the odd cent.
    assert withdrawal_shares(orders, 5000, {}) == [Share("po_a", "A", 2143, 64), Share("po_b", "B", 2857, 86)]
    # What another dispute holds is not held any more.
    assert withdrawal_shares(orders, 1000, {"po_b": (4000, 120)}) == [Share("po_a", "A", 1000, 30)]


def test_a_won_dispute_on_a_partly_refunded_split_payment(app, db_session, split_payment):
    scope, payment, a, b = (split_payment[k] for k in ("scope", "payment", "a", "b"))
    before = books(db_session, scope)
    assert (before.get(f"seller_payable:{a}:USD"), before.get(f"seller_payable:{b}:USD"),
            before.get("merchant_revenue:USD")) == (2910, 3880, 210)

    assert deliver(db_session, payment, "cb_won_1", "dispute.created",
                   dispute_data("dp_won", "needs_response", 7000)) == "applied"
    opened = books(db_session, scope)
    assert (opened.get(f"seller_payable:{a}:USD"), opened.get(f"seller_payable:{b}:USD"),
            opened.get("merchant_revenue:USD"), opened.get("dispute_fees:USD"),
            opened.get("psp_receivable:sandbox:USD")) == (0, 0, 0, 1500, -1500)
    # The seller's balance shows it at once.
    assert seller_balances(db_session, scope, b)["USD"].amount == 0
    db_session.commit()
    dispute = _dispute(db_session, scope, "dp_won")
    assert dispute.allocations == [{"order": dispute.allocations[0]["order"], "seller": a, "amount": 3000, "fee": 90},
                                   {"order": dispute.allocations[1]["order"], "seller": b, "amount": 4000, "fee": 120}]
    verify_ledger(app)
    _equation_holds(db_session, scope, payment["id"])
    assert payment_object(db_session, scope, payment["id"])["disputed"] is True

    closed = dispute_data("dp_won", "won", 7000, reinstated=True)
    assert deliver(db_session, payment, "cb_won_2", "dispute.closed", closed, created=closed["created"] + 5) == "applied"
    won = books(db_session, scope)
    assert (won.get(f"seller_payable:{a}:USD"), won.get(f"seller_payable:{b}:USD"), won.get("merchant_revenue:USD"),
            won.get("dispute_fees:USD"), won.get("psp_receivable:sandbox:USD")) == (2910, 3880, 210, 1500, 5500)
    verify_ledger(app)
    _equation_holds(db_session, scope, payment["id"])
    events = db_session.scalars(scope.select(Event, Event.object_id == dispute.id).order_by(Event.id)).all()
    assert [e.type for e in events] == ["dispute.created", "dispute.funds_withdrawn", "dispute.closed",
                                        "dispute.funds_reinstated"]
    db_session.commit()


def test_a_lost_dispute_books_nothing_more(app, db_session, split_payment):
    scope, payment = split_payment["scope"], split_payment["payment"]
    deliver(db_session, payment, "cb_lost_1", "dispute.created", dispute_data("dp_lost", "needs_response", 7000))
    opened = books(db_session, scope)
    lost = dispute_data("dp_lost", "lost", 7000)
    deliver(db_session, payment, "cb_lost_2", "dispute.closed", lost, created=lost["created"] + 5)
    assert books(db_session, scope) == opened
    assert _dispute(db_session, scope, "dp_lost").status == "lost"
    verify_ledger(app)
    _equation_holds(db_session, scope, split_payment["payment"]["id"])


def test_a_fee_given_back_is_booked_back(app, db_session, split_payment):
    scope, payment = split_payment["scope"], split_payment["payment"]
    deliver(db_session, payment, "cb_fee_1", "dispute.created", dispute_data("dp_fee", "needs_response", 7000))
    won = dispute_data("dp_fee", "won", 7000, reinstated=True, fee_returned=1500)
    deliver(db_session, payment, "cb_fee_2", "dispute.closed", won, created=won["created"] + 5)
    assert books(db_session, scope).get("dispute_fees:USD") == 0
    verify_ledger(app)


def test_an_inquiry_books_nothing_and_may_still_be_refunded(app, db_session, shop):
    scope = shop["scope"]
    payment = captured(db_session, scope, amount=5000)
    before = books(db_session, scope)
    deliver(db_session, payment, "cb_inq_1", "dispute.created",
            dispute_data("dp_inq", "warning_needs_response", 5000, reason="general"))
    assert books(db_session, scope) == before
    dispute = _dispute(db_session, scope, "dp_inq")
    assert (dispute.status, dispute.is_charge_refundable, dispute.funds_withdrawn_at) == (
        "warning_needs_response", True, None)
    refund(db_session, scope, payment["id"], 5000)
    closed = dispute_data("dp_inq", "warning_closed", 5000, reason="general")
    deliver(db_session, payment, "cb_inq_2", "dispute.closed", closed, created=closed["created"] + 5)
    assert _dispute(db_session, scope, "dp_inq").status == "warning_closed"
    assert books(db_session, scope).get("psp_receivable:sandbox:USD") == 0
    verify_ledger(app)
    _equation_holds(db_session, scope, payment["id"])


def test_an_inquiry_that_becomes_a_dispute_withdraws_then(app, db_session, shop):
    scope = shop["scope"]
    payment = captured(db_session, scope, amount=4000)
    inquiry = dispute_data("dp_esc", "warning_needs_response", 4000)
    deliver(db_session, payment, "cb_esc_1", "dispute.created", inquiry)
    escalated = dispute_data("dp_esc", "needs_response", 4000)
    deliver(db_session, payment, "cb_esc_2", "dispute.updated", escalated, created=inquiry["created"] + 60)
    assert _dispute(db_session, scope, "dp_esc").status == "needs_response"
    # A merchant without sellers of its own: its default seller bears the dispute fee (app/payouts/fees.py).
    from app.payments.service import default_seller_id
    held = books(db_session, scope)
    assert held.get("dispute_fees:USD") == 0
    assert held.get(f"seller_payable:{default_seller_id(db_session, scope)}:USD") == -1500
    verify_ledger(app)
    # What the order holds: captured 40.00 less disputed 40.00, less the 15.00 fee its default seller bears.
    assert held_by_orders(db_session, scope, payment["id"]) == -1500


def test_repeated_late_and_out_of_order_notices_apply_once(app, db_session, split_payment):
    scope, payment = split_payment["scope"], split_payment["payment"]
    opened = dispute_data("dp_ooo", "needs_response", 7000)
    won = dispute_data("dp_ooo", "won", 7000, reinstated=True, created=opened["created"])
    # The decision arrives first (same second as the opening, as PSP clocks allow): both movements booked.
    deliver(db_session, payment, "cb_ooo_won", "dispute.closed", won, created=opened["created"] + 1)
    after_won = books(db_session, scope)
    assert after_won.get("dispute_fees:USD") == 1500 and after_won.get("merchant_revenue:USD") == 210
    dispute = _dispute(db_session, scope, "dp_ooo")
    assert dispute.status == "won"
    events = db_session.scalars(scope.select(Event, Event.object_id == dispute.id)).all()
    db_session.commit()
    # The late opening never reopens it, books nothing and writes no event.
    assert deliver(db_session, payment, "cb_ooo_created", "dispute.created", opened) == "applied"
    # The same callback again is stored once (deduplicated on its id) and not processed twice.
    assert deliver(db_session, payment, "cb_ooo_created", "dispute.created", opened) is None
    # A copy with a new callback id, and a late "updated" after the close, change nothing either.
    deliver(db_session, payment, "cb_ooo_copy", "dispute.created", opened)
    deliver(db_session, payment, "cb_ooo_late", "dispute.updated", dispute_data("dp_ooo", "under_review", 7000),
            created=opened["created"] + 600)
    assert books(db_session, scope) == after_won
    assert _dispute(db_session, scope, "dp_ooo").status == "won"
    assert len(db_session.scalars(scope.select(Event, Event.object_id == dispute.id)).all()) == len(events)
    db_session.commit()
    verify_ledger(app)
    _equation_holds(db_session, scope, payment["id"])


def test_an_older_notice_of_the_same_stage_changes_nothing(db_session, shop):
    scope = shop["scope"]
    payment = captured(db_session, scope, amount=3000)
    first = dispute_data("dp_old", "needs_response", 3000, reason="fraudulent")
    deliver(db_session, payment, "cb_old_2", "dispute.updated", {**first, "reason": "product_not_received"},
            created=first["created"] + 10)
    deliver(db_session, payment, "cb_old_1", "dispute.created", first)
    assert _dispute(db_session, scope, "dp_old").reason == "product_not_received"


def test_refunding_the_disputed_amount_is_refused(db_session, split_payment):
    scope, payment, a, b = (split_payment[k] for k in ("scope", "payment", "a", "b"))
    deliver(db_session, payment, "cb_ref_1", "dispute.created", dispute_data("dp_ref", "needs_response", 5000))
    with pytest.raises(AmountTooLarge) as refused:
        idempotency.execute(db_session, scope, "refund.create", {"payment": payment["id"], "amount": 3000},
                            key=None, deps=deps())
    assert refused.value.code == "charge_disputed" and "cannot be refunded" in refused.value.message
    db_session.rollback()
    # What the dispute did not take can still be refunded: 7000 left, 5000 disputed.
    assert refund(db_session, scope, payment["id"], 2000)["status"] == "pending"
    with pytest.raises(AmountTooLarge) as nothing_left:
        idempotency.execute(db_session, scope, "refund.create", {"payment": payment["id"]}, key=None, deps=deps())
    assert nothing_left.value.code == "charge_disputed"
    db_session.rollback()


def test_a_notice_for_a_payment_not_yet_booked_waits(db_session, shop):
    """The callback fails and is retried by the sweep rather than booking against nothing."""
    scope = shop["scope"]
    body = idempotency.execute(db_session, scope, "payment.create", {"amount": 1000, "currency": "USD"}, key=None,
                               deps=deps()).body
    scope.get(db_session, Payment, body["id"]).psp_reference = "auth_uncaptured"
    db_session.commit()
    event = CallbackEvent(id="cb_early", type="dispute.created", psp_reference="auth_uncaptured",
                          data=dispute_data("dp_early", "needs_response", 1000), created=1, connector="sandbox")
    row_id, _ = psp_callbacks.store_callback(db_session, SANDBOX, event)
    db_session.commit()
    assert process_stored_callback(db_session, row_id) is None
    stored = db_session.get(PspCallback, row_id)
    assert stored.processed_at is None and "not booked yet" in stored.last_error
    assert db_session.scalars(scope.select(Dispute)).all() == []
    db_session.commit()
