"""Demo data: captured payments of the demo merchant (test mode) with disputes in several states, booked as
PSP notices would book them. Idempotent: nothing is added once the demo merchant has disputes.

They are Kassa's records only (the sandbox PSP never opened them): answering one shows how the dashboard
behaves, and the sandbox answers that it knows no such dispute. A real flow starts with the dispute card
4000 0000 0000 0259 (or 1976 for an inquiry) in test mode.
"""
from datetime import timedelta

from flask import current_app
from sqlalchemy.orm import Session

from app.disputes.models import Dispute
from app.disputes.service import Owner, apply_notice
from app.ids import new_id
from app.models_base import utcnow
from app.payments import booking
from app.payments.deps import deps_for
from app.payments.models import Payment, PaymentOrder
from app.payments.service import default_seller
from app.psp.interfaces import CallbackEvent
from app.scoping import Scope

DAY = 86400
# (amount, reason, the statuses its notices carry in order, evidence submitted, customer, days since it opened).
# Each is due seven days after it opened: the first within the operators' 72 hours (INBOX_WINDOW), so the console's
# inbox shows a dispute due soon; the inquiry later.
DEMO_DISPUTES = (
    (4900, "fraudulent", ["needs_response"], None, "nora@example.com", 5),
    (2300, "general", ["warning_needs_response"], None, "ivan@example.com", 2),
    (7500, "product_not_received", ["needs_response", "under_review"], "Tracking DHL JD0146 shows delivery.",
     "paula@example.com", 2),
    (3100, "duplicate", ["needs_response", "won"], "Two different orders: see the receipts.", "wen@example.com", 2),
    (1800, "subscription_canceled", ["needs_response", "lost"], None, "lars@example.com", 2),
)


def seed_demo_disputes(session: Session, merchant, web_url: str) -> list[str]:
    """SEED_STEPS entry: the demo merchant's disputes (test mode), once."""
    scope = Scope(merchant.id, False)
    # Its own disputes (the reconciliation demo creates one of its own, from a settlement line).
    if session.scalar(scope.select(Dispute, Dispute.psp_reference.like("dp_demo_%")).with_only_columns(Dispute.id)
                      .limit(1)) is not None:
        return []
    deps = deps_for(current_app._get_current_object())
    now = utcnow()
    for number, (amount, reason, statuses, evidence, email, days_open) in enumerate(DEMO_DISPUTES, start=1):
        payment = _captured_payment(session, scope, amount, email, now - timedelta(days=days_open + 1 + number), deps)
        opened = int((now - timedelta(days=days_open)).timestamp())
        reference = f"dp_demo_{payment.id.lower()}"
        for step, status in enumerate(statuses):
            data = {"id": reference, "amount": amount, "currency": "EUR", "reason": reason, "status": status,
                    "created": opened, "due_by": opened + 7 * DAY, "submission_count": 1 if evidence and step else 0,
                    "is_charge_refundable": status.startswith("warning_"),
                    "funds_withdrawn": not status.startswith("warning_"), "funds_reinstated": status == "won",
                    "fee": None if status.startswith("warning_") else {"amount": 1500, "currency": "EUR"}}
            apply_notice(session, "sandbox", CallbackEvent(
                id=f"demo_{reference}_{step}", type="dispute.updated" if step else "dispute.created",
                psp_reference=payment.psp_reference, data=data, created=opened + step * 3600, connector="sandbox"),
                Owner(scope, payment.id, "sandbox"), deps, base_url=web_url)
            if evidence and step == 0:
                dispute = session.scalars(scope.select(Dispute, Dispute.psp_reference == reference)).one()
                dispute.evidence = {"uncategorized_text": evidence, "customer_email_address": email}
                dispute.submitted_at = now - timedelta(days=1)
    session.flush()
    return [f"Demo disputes: {len(DEMO_DISPUTES)} in several states (Disputes, test mode)"]


def _captured_payment(session: Session, scope: Scope, amount: int, email: str, when, deps) -> Payment:
    """A card payment to the default seller, captured and booked as the payments worker books one."""
    payment = scope.new(
        Payment, id=new_id("pay"), amount=amount, currency="EUR", status="succeeded", capture_method="automatic",
        amount_capturable=0, amount_received=amount, amount_refunded=0, customer_email=email,
        description="Demo order", metadata_={}, payment_method_token=f"tok_demo_{new_id('x')[2:]}",
        payment_method_vault="sandbox", card_brand="visa", card_last4="0259", card_exp_month=12, card_exp_year=2030,
        connector="sandbox", psp_reference=f"auth_demo_{new_id('x')[2:].lower()}", capture_count=1,
        authorized_at=when, captured_at=when, created_at=when, updated_at=when)
    order = scope.new(PaymentOrder, id=new_id("po"), payment_id=payment.id,
                      seller_id=default_seller(session, scope).id, position=0, amount=amount, fee=0,
                      amount_captured=amount, fee_captured=0, amount_refunded=0, fee_refunded=0)
    session.add_all([payment, order])
    session.flush()
    booking.book_capture(session, payment, booking.capture_parts(payment, [order], amount), amount,
                         hmac_key=deps.ledger_hmac_key, capture_number=1)
    return payment
