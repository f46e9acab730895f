"""The engine: signals, score, rules in order, value lists, velocity; tenancy of rules and lists."""
import socket
from decimal import Decimal

import pytest

from app.ids import new_id
from app.payments.models import Payment
from app.risk import evaluate, lists, rules, scoring
from app.risk.errors import RiskInvalid, RiskNotFound
from app.risk.models import PlatformRiskRule, RiskRule
from app.risk.velocity import Velocity
from app.scoping import Scope
from tests import factories

FRAUD_CARD = {"brand": "visa", "funding": "credit", "country": "US", "bin": "410000",
              "fingerprint": "fp_fraud", "risk_hint": "fraudulent", "last4": "0019"}
GOOD_CARD = {"brand": "visa", "funding": "credit", "country": "US", "bin": "424242",
             "fingerprint": "fp_good", "risk_hint": None, "last4": "4242"}


def payment(session, scope, *, amount=1000, currency="EUR", email="shopper@example.com", ip="8.8.8.8"):
    row = scope.new(Payment, id=new_id("pay"), amount=amount, currency=currency, status="processing",
                    capture_method="automatic", customer_email=email, customer_ip=ip)
    session.add(row)
    session.flush()
    return row


def test_default_rules_block_the_fraud_card(db_session, scope, redis):
    decision = evaluate.assess(db_session, payment(db_session, scope), redis=redis, card=FRAUD_CARD)
    assert decision.outcome == "block"
    assert decision.rule.owner == "platform" and decision.rule.id == "rule_platform_fraud_hint"
    outcome = evaluate.outcome_object(decision.assessment, "blocked")
    assert outcome["type"] == "blocked" and outcome["rule"]["predicate"] == ":card_risk_hint: = 'fraudulent'"
    good = evaluate.assess(db_session, payment(db_session, scope), redis=redis, card=GOOD_CARD)
    assert good.outcome == "allow" and good.rule is None
    assert good.assessment.level == "normal" and 0 <= good.assessment.score < 65
    db_session.rollback()


def test_signals_and_contributions_are_stored(db_session, scope, redis):
    decision = evaluate.assess(db_session, payment(db_session, scope, amount=50050, ip="81.2.69.160"), redis=redis,
                               card=GOOD_CARD)
    signals = decision.assessment.signals
    assert signals["amount"] == "500.50" and signals["currency"] == "eur"
    assert signals["ip_country"] == "GB" and signals["card_country"] == "US"
    assert signals["card_ip_country_mismatch"] is True
    assert decision.assessment.contributions["card_country_mismatch"] == 1500
    assert decision.assessment.weights_version == "v1"
    assert signals["card_payments_10m"] >= 1 and decision.assessment.redis_degraded is False
    db_session.rollback()


def test_merchant_rules_follow_radar_order_and_cannot_override_platform_blocks(db_session, scope, redis):
    rules.create_rule(db_session, scope, action="allow", predicate=":card_brand: = 'visa'")
    # A merchant allow does not let the fraud card through: the platform's blocks run first.
    assert evaluate.assess(db_session, payment(db_session, scope), redis=redis, card=FRAUD_CARD).outcome == "block"
    # ... but it wins over the merchant's own block and review rules.
    rules.create_rule(db_session, scope, action="block", predicate=":amount: > 5")
    assert evaluate.assess(db_session, payment(db_session, scope), redis=redis, card=GOOD_CARD).outcome == "allow"
    rules.create_rule(db_session, scope, action="request_3ds", predicate=":amount: > 5")
    assert evaluate.assess(db_session, payment(db_session, scope), redis=redis,
                           card=GOOD_CARD).outcome == "request_3ds"
    db_session.rollback()


def test_review_rule_and_value_lists(db_session, scope, redis):
    domains = lists.create_value_list(db_session, scope, alias="disposable_domains", name="Disposable",
                                      item_type="email_domain")
    lists.add_item(db_session, scope, domains.id, "@Mailinator.com")
    rules.create_rule(db_session, scope, action="review", predicate=":email_domain: in @disposable_domains")
    held = evaluate.assess(db_session, payment(db_session, scope, email="x@mailinator.com"), redis=redis,
                           card=GOOD_CARD)
    assert held.outcome == "review" and held.rule.owner == "merchant"
    assert evaluate.assess(db_session, payment(db_session, scope), redis=redis, card=GOOD_CARD).outcome == "allow"
    db_session.rollback()


def test_ip_ranges_on_the_platform_block_list(db_session, scope, redis):
    lists.add_item(db_session, None, "rsl_platform_ip_address", "203.0.113.0/24")
    blocked = evaluate.assess(db_session, payment(db_session, scope, ip="203.0.113.9"), redis=redis, card=GOOD_CARD)
    assert blocked.outcome == "block" and blocked.rule.id == "rule_platform_ip_address"
    assert evaluate.assess(db_session, payment(db_session, scope, ip="203.0.114.9"), redis=redis,
                           card=GOOD_CARD).outcome == "allow"
    db_session.rollback()


def test_rules_that_escape_are_refused_on_save_and_never_run(db_session, scope, redis):
    for text in ("__import__('os').system('true')", ":amount:.__class__ > 1", ":amount: ** 99999 > 1",
                 "(" * 20 + ":is_new_card:" + ")" * 20):
        with pytest.raises(RiskInvalid) as caught:
            rules.create_rule(db_session, scope, action="block", predicate=text)
        assert caught.value.detail["column"] is not None
    # A row written around the service (raw insert) is skipped by the engine, never evaluated.
    db_session.add(scope.new(RiskRule, id="rule_raw", action="block", predicate="__import__('os')", position=1))
    db_session.add(PlatformRiskRule(id="rule_raw_platform", action="block", predicate=":amount: ** 2 > 1", position=1))
    db_session.flush()
    assert "rule_raw" not in [rule.id for rule in rules.load(db_session, scope)]
    assert evaluate.assess(db_session, payment(db_session, scope), redis=redis, card=GOOD_CARD).outcome == "allow"
    db_session.rollback()


def test_a_merchant_cannot_see_or_edit_another_merchants_rules_or_lists(db_session, scope, redis):
    other = Scope(factories.merchant(db_session, name="Other").id, False)
    rule = rules.create_rule(db_session, other, action="block", predicate=":amount: > 1")
    value_list = lists.create_value_list(db_session, other, alias="theirs", name="Theirs", item_type="email")
    item = lists.add_item(db_session, other, value_list.id, "a@b.c")
    assert rules.list_rules(db_session, scope) == []
    assert lists.list_value_lists(db_session, scope) == []
    for call in (lambda: rules.get_rule(db_session, scope, rule.id),
                 lambda: rules.update_rule(db_session, scope, rule.id, predicate=":amount: > 2"),
                 lambda: rules.delete_rule(db_session, scope, rule.id),
                 lambda: lists.add_item(db_session, scope, value_list.id, "x@y.z"),
                 lambda: lists.delete_item(db_session, scope, item.id),
                 lambda: lists.delete_value_list(db_session, scope, value_list.id)):
        with pytest.raises(RiskNotFound):
            call()
    # Their list's alias is not visible to our rules, and their block rule never runs on our payments.
    with pytest.raises(RiskInvalid):
        rules.create_rule(db_session, scope, action="block", predicate=":email: in @theirs")
    assert evaluate.assess(db_session, payment(db_session, scope), redis=redis, card=GOOD_CARD).outcome == "allow"
    # Live mode is another book.
    assert rules.list_rules(db_session, Scope(other.merchant_id, True)) == []
    db_session.rollback()


def test_a_merchant_rule_cannot_read_the_platform_wide_counters(db_session, scope, redis):
    """Card and IP counters span every merchant: a merchant rule on them would let its outcomes (and the
    backtest) tell the merchant how a card or address was used elsewhere. The platform's own rules may."""
    with pytest.raises(RiskInvalid) as refused:
        rules.create_rule(db_session, scope, action="block", predicate=":amount: > 5 and\n :card_payments_1h: > 3")
    assert refused.value.param == "predicate" and "across every merchant" in str(refused.value)
    assert (refused.value.detail["line"], refused.value.detail["column"]) == (2, 2)
    for text in (":ip_distinct_cards_24h: > 1", ":card_amount_24h: > 100", ":ip_declines_10m: > 0"):
        with pytest.raises(RiskInvalid):
            rules.create_rule(db_session, scope, action="review", predicate=text)
    assert rules.create_rule(db_session, scope, action="review", predicate=":email_distinct_cards_1h: > 3")
    assert rules.create_rule(db_session, None, action="review", predicate=":card_payments_1h: > 30")
    db_session.rollback()


def test_velocity_without_redis_proceeds_and_says_so(db_session, scope):
    decision = evaluate.assess(db_session, payment(db_session, scope), redis=None, card=GOOD_CARD)
    assert decision.assessment.redis_degraded is True
    assert "card_payments_10m" not in decision.assessment.signals
    db_session.rollback()


def test_velocity_windows_slide(redis):
    velocity = Velocity(redis)
    common = dict(merchant_id="mer_x", livemode=False, email="a@b.c", ip="198.51.100.1", currency="EUR", amount=500)
    now = 1_800_000_000.0
    velocity.record_and_read(payment_id="p1", fingerprint="fp_1", now=now - 7200, **common)
    velocity.record_and_read(payment_id="p2", fingerprint="fp_2", now=now - 1200, **common)
    seen = velocity.record_and_read(payment_id="p3", fingerprint="fp_1", now=now, **common)
    assert (seen["card_payments_10m"], seen["card_payments_1h"], seen["card_payments_24h"]) == (1, 1, 2)
    assert (seen["ip_payments_10m"], seen["ip_payments_1h"], seen["ip_payments_24h"]) == (1, 2, 3)
    assert seen["ip_distinct_cards_24h"] == 2 and seen["email_distinct_cards_1h"] == 2
    assert seen["card_amount_24h_minor"] == 1000
    velocity.record_decline(payment_id="p3", attempt_id="a", merchant_id="mer_x", livemode=False,
                            fingerprint="fp_1", email=None, ip=None, now=now)
    again = velocity.record_and_read(payment_id="p3", fingerprint="fp_1", record=False, now=now + 1, **common)
    assert again["card_declines_10m"] == 1 and again["card_payments_24h"] == 2
    # Live mode never shares test mode's counters; an email counter is per merchant.
    live = velocity.record_and_read(payment_id="p9", fingerprint="fp_1", now=now, **{**common, "livemode": True})
    assert live["card_payments_24h"] == 1
    other = velocity.record_and_read(payment_id="p8", fingerprint="fp_7", now=now, **{**common, "merchant_id": "mer_y"})
    assert other["email_payments_24h"] == 1 and other["ip_payments_24h"] == 4


def test_scoring_never_touches_the_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("network used")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    assert evaluate.ip_country("81.2.69.160") == "GB"
    weights = scoring.Weights("v1", -4000, {"card_country_mismatch": 1500})
    value, level, contributions = scoring.score(weights, {"card_ip_country_mismatch": True, "amount": Decimal(5)})
    assert contributions == {"card_country_mismatch": 1500} and level == "normal" and value > 1


def test_rules_reorder_enable_and_first_match_wins(db_session, scope, redis):
    first = rules.create_rule(db_session, scope, action="review", predicate=":amount: > 1")
    second = rules.create_rule(db_session, scope, action="review", predicate=":amount: > 2")
    decision = evaluate.assess(db_session, payment(db_session, scope), redis=redis, card=GOOD_CARD)
    assert decision.rule.id == first.id
    rules.reorder_rules(db_session, scope, "review", [second.id, first.id])
    assert evaluate.assess(db_session, payment(db_session, scope), redis=redis, card=GOOD_CARD).rule.id == second.id
    rules.set_rule_enabled(db_session, scope, second.id, False)
    assert evaluate.assess(db_session, payment(db_session, scope), redis=redis, card=GOOD_CARD).rule.id == first.id
    with pytest.raises(RiskInvalid):
        rules.reorder_rules(db_session, scope, "review", [first.id])
    with pytest.raises(RiskInvalid):
        rules.delete_rule(db_session, None, "rule_platform_fraud_hint")  # built-in: disable, not delete
    db_session.rollback()


def test_backtest_counts_matches_and_later_fraud(db_session, scope, redis):
    from app.disputes.models import Dispute

    big = payment(db_session, scope, amount=90000)
    small = payment(db_session, scope, amount=500)
    for row in (big, small):
        evaluate.assess(db_session, row, redis=redis, card=GOOD_CARD)
    db_session.add(scope.new(Dispute, id=new_id("dsp"), psp="sandbox", psp_reference=new_id("dp"), payment_id=big.id,
                             amount=90000, currency="EUR", reason="fraudulent", status="needs_response"))
    db_session.flush()
    result = rules.backtest(db_session, scope, ":amount: > 100")
    assert result.matched == 1 and result.evaluated == 2 and result.disputed_or_fraud_refunded == 1
    assert result.sample[0]["payment"] == big.id and result.sample[0]["disputed_or_fraud_refunded"] is True
    with pytest.raises(RiskInvalid):
        rules.backtest(db_session, scope, ":amount: ** 2")
    # Another merchant's backtest sees none of these payments.
    other = Scope(factories.merchant(db_session, name="Backtester").id, False)
    assert rules.backtest(db_session, other, ":amount: > 0").evaluated == 0
    db_session.rollback()


def test_the_cached_configuration_follows_every_change_even_around_the_services(db_session, scope, redis):
    """Compiled rules are cached per process and book, checked current by stamps the database's triggers
    replace: a rule or list changed by the services or by plain SQL is seen by the next evaluation."""
    from sqlalchemy import text

    assert evaluate.assess(db_session, payment(db_session, scope), redis=redis, card=GOOD_CARD).outcome == "allow"
    rule = rules.create_rule(db_session, scope, action="review", predicate=":amount: > 5")
    assert evaluate.assess(db_session, payment(db_session, scope), redis=redis, card=GOOD_CARD).outcome == "review"
    db_session.execute(text("UPDATE risk_rules SET enabled = false WHERE id = :id"), {"id": rule.id})
    assert evaluate.assess(db_session, payment(db_session, scope), redis=redis, card=GOOD_CARD).outcome == "allow"
    db_session.execute(text("UPDATE risk_rules SET enabled = true, action = 'block' WHERE id = :id"), {"id": rule.id})
    assert evaluate.assess(db_session, payment(db_session, scope), redis=redis, card=GOOD_CARD).outcome == "block"
    db_session.execute(text("DELETE FROM risk_rules WHERE id = :id"), {"id": rule.id})
    assert evaluate.assess(db_session, payment(db_session, scope), redis=redis, card=FRAUD_CARD).outcome == "block"
    # The platform's rules and lists too (one stamp for the platform).
    db_session.execute(text("UPDATE risk_platform_rules SET enabled = false WHERE id = 'rule_platform_fraud_hint'"))
    assert evaluate.assess(db_session, payment(db_session, scope), redis=redis, card=FRAUD_CARD).outcome == "allow"
    db_session.rollback()
    assert evaluate.assess(db_session, payment(db_session, scope), redis=redis, card=FRAUD_CARD).outcome == "block"
    db_session.rollback()


def test_a_warm_evaluation_is_one_redis_call_one_query_and_the_insert(db_session, scope, redis, monkeypatch):
    """The benchmark's round trips, counted: the velocity script, one statement (stamps, first-seen fact and
    every value-list lookup of both owners) and the assessment's INSERT."""
    from sqlalchemy import event

    merchant_list = lists.create_value_list(db_session, scope, alias="blocked_emails", name="Blocked",
                                            item_type="email")
    lists.add_item(db_session, scope, merchant_list.id, "thief@example.com")
    rules.create_rule(db_session, scope, action="block", predicate=":email: in @blocked_emails")
    rules.create_rule(db_session, scope, action="review", predicate=":ip_address: in @platform_ip_address_block_list")
    db_session.commit()
    evaluate.assess(db_session, payment(db_session, scope), redis=redis, card=GOOD_CARD)  # warms the cache
    statements, commands = [], []
    engine = db_session.get_bind()

    def count(conn, cursor, statement, *args):
        statements.append(statement)

    original = redis.execute_command
    monkeypatch.setattr(redis, "execute_command", lambda *a, **k: commands.append(a[0]) or original(*a, **k))
    event.listen(engine, "before_cursor_execute", count)
    try:
        thief = payment(db_session, scope, email="thief@example.com")
        statements.clear()
        decision = evaluate.assess(db_session, thief, redis=redis, card=GOOD_CARD)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert decision.outcome == "block" and decision.rule.predicate == ":email: in @blocked_emails"
    assert len(statements) == 2, statements
    assert statements[1].lstrip().upper().startswith("INSERT INTO RISK_ASSESSMENTS")
    assert commands == ["EVALSHA"]
    db_session.rollback()
