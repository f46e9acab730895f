"""Demo data: the demo merchant's risk rules and value lists (test mode), a disposable-domains list, and a few
payments held for review (one the platform reviews), each authorized as a held payment is. Idempotent: nothing is
added once the demo merchant has rules.

The held payments are Kassa's records only (the sandbox never authorized them): approving one stages a capture the
sandbox refuses (it knows no such authorization); rejecting one voids. A real flow: a payment of exactly 123.45 EUR
in test mode (the demo's review rule), or the fraud card 4100 0000 0000 0019 (blocked by the platform's rules).
"""
from datetime import timedelta
from decimal import Decimal

from flask import current_app
from sqlalchemy.orm import Session

from app.events import record_event
from app.ids import new_id
from app.models_base import utcnow
from app.payments.deps import deps_for
from app.payments.models import Payment, PaymentAttempt, PaymentOrder
from app.payments.serializers import payment_object
from app.payments.service import default_seller
from app.risk import lists, reviews, rules
from app.risk.models import Assessment, RiskRule
from app.scoping import Scope

DEMO_RULES = (
    ("review", ":amount: = 123.45", "Demo: review exactly 123.45 (try it in test mode)"),
    ("review", ":email_domain: in @disposable_domains", "Disposable email domains"),
    ("request_3ds", ":amount: > 1000 and :is_new_card:", "New card, large amount: ask for 3-D Secure"),
    ("block", ":card_ip_country_mismatch: and :email_distinct_cards_1h: > 3", "Card testing by one shopper"),
    ("allow", ":email: in @trusted_customers", "Trusted customers"),
)
DEMO_LISTS = (
    ("disposable_domains", "Disposable email domains", "email_domain", ("mailinator.com", "guerrillamail.com",
                                                                       "10minutemail.com")),
    ("trusted_customers", "Trusted customers", "email", ("vip@example.com",)),
    ("blocked_ranges", "Blocked IP ranges", "ip_address", ("203.0.113.0/24",)),
)
# (amount, email, IP, owner, hours ago)
DEMO_HELD = (
    (12345, "maria@mailinator.com", "81.2.69.160", "merchant", 3),
    (89000, "tom@example.com", "175.45.176.3", "platform", 20),
    (4500, "lee@guerrillamail.com", "8.8.8.8", "merchant", 30),
)


def seed_demo_risk(session: Session, merchant, _web_url: str) -> list[str]:
    """SEED_STEPS entry: rules, lists and held payments for the demo merchant (test mode), once."""
    scope = Scope(merchant.id, False)
    if session.scalar(scope.select(RiskRule).with_only_columns(RiskRule.id).limit(1)) is not None:
        return []
    for alias, name, item_type, values in DEMO_LISTS:
        value_list = lists.create_value_list(session, scope, alias=alias, name=name, item_type=item_type)
        for value in values:
            lists.add_item(session, scope, value_list.id, value)
    for action, predicate, description in DEMO_RULES:
        rules.create_rule(session, scope, action=action, predicate=predicate, description=description)
    deps = deps_for(current_app._get_current_object())
    now = utcnow()
    # Oldest first: ids sort by creation, and the review queues list by id (oldest first).
    for amount, email, ip, owner, hours in sorted(DEMO_HELD, key=lambda held: -held[4]):
        _held_payment(session, scope, amount, email, ip, owner, now - timedelta(hours=hours), deps)
    session.flush()
    return ["Risk: rules and value lists in test mode, and payments held for review (GET /v1/reviews; the "
            "platform's under /admin/inbox)"]


def _held_payment(session, scope, amount, email, ip, owner, created, deps) -> None:
    payment = scope.new(Payment, id=new_id("pay"), amount=amount, currency="EUR", status="requires_capture",
                        capture_method="automatic", amount_capturable=amount, amount_received=0, amount_refunded=0,
                        customer_email=email, customer_ip=ip, description="Demo: held for review", metadata_={},
                        payment_method_token=f"tok_demo_{new_id('r').lower()[-12:]}", payment_method_vault="sandbox",
                        card_brand="visa", card_last4="4242", card_exp_month=12, card_exp_year=created.year + 3,
                        card_fingerprint="fp_demo_review", connector="sandbox",
                        psp_reference=f"auth_demo_{new_id('r').lower()[-12:]}", capture_count=0,
                        authorized_at=created, created_at=created, updated_at=created)
    session.add(payment)
    session.flush()
    seller = default_seller(session, scope)
    order = scope.new(PaymentOrder, id=new_id("po"), payment_id=payment.id, seller_id=seller.id, position=0,
                      amount=amount, fee=0, amount_captured=0, fee_captured=0, amount_refunded=0, fee_refunded=0)
    attempt = scope.new(PaymentAttempt, id=new_id("att"), payment_id=payment.id, operation="authorize",
                        status="succeeded", amount=amount, currency="EUR", vault="sandbox",
                        payment_method_token=payment.payment_method_token, connector="sandbox",
                        psp_reference=payment.psp_reference, idempotency_key=f"kassa-demo-{payment.id}", tries=1,
                        started_at=created, finished_at=created, created_at=created, updated_at=created)
    session.add_all([order, attempt])
    payment.latest_attempt_id = attempt.id
    score = 71 if owner == "platform" else 48
    level = "elevated" if score >= 65 else "normal"
    assessment = scope.new(Assessment, id=new_id("rska"), payment_id=payment.id, attempt_id=attempt.id,
                           stage="confirmation", signals={"amount": str(Decimal(amount).scaleb(-2)), "currency": "eur",
                                                          "email": email, "email_domain": email.split("@")[1],
                                                          "ip_address": ip, "risk_score": score, "risk_level": level},
                           contributions={"card_first_seen": 400}, score=score, level=level, weights_version="v1",
                           outcome="review", rule_owner=owner, rule_action="review",
                           rule_predicate=":amount: = 123.45" if owner == "merchant" else ":risk_level: = 'elevated'",
                           redis_degraded=False, created_at=created)
    session.add(assessment)
    payment.risk_score, payment.risk_level = score, level
    payment.risk_outcome = {"type": "manual_review", "network_status": "approved_by_network", "reason": "rule",
                            "risk_level": level, "risk_score": score,
                            "rule": {"id": None, "action": "review", "predicate": assessment.rule_predicate,
                                     "owner": owner},
                            "seller_message": "Demo: held for review.", "assessment": assessment.id,
                            "review_owner": owner}
    session.flush()
    record_event(session, scope, "payment.requires_capture", "payment", payment.id, payment_object(session, payment))
    review = reviews.open_review(session, payment, owner=owner, assessment_id=assessment.id, rule_id=None,
                                 expires_in=deps.authorization_expiry)
    review.created_at = created
