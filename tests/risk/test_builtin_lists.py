"""The built-in platform block lists and the default platform rules that block on them: an item on any of them
stops the payment (its rule named), a merchant's allow rule cannot let it through, and without the item the same
payment is allowed. (The known-fraud card and IP ranges: test_engine.py.)"""
import pytest

from app.risk import evaluate, lists, rules
from tests.risk.test_engine import GOOD_CARD, payment

CASES = [
    # (built-in list, item, the payment's email and IP, the card's changes, the default rule that blocks)
    ("rsl_platform_card_fingerprint", "fp_stolen", {}, {"fingerprint": "fp_stolen"}, "rule_platform_card_fingerprint"),
    ("rsl_platform_card_bin", "400011", {}, {"bin": "400011"}, "rule_platform_card_bin"),
    ("rsl_platform_email", "Fraudster@Example.com", {"email": "fraudster@example.com"}, {}, "rule_platform_email"),
    ("rsl_platform_email_domain", "mailinator.com", {"email": "x@mailinator.com"}, {}, "rule_platform_email_domain"),
    ("rsl_platform_ip_address", "198.51.100.23", {"ip": "198.51.100.23"}, {}, "rule_platform_ip_address"),
    ("rsl_platform_country", "GB", {"ip": "81.2.69.160"}, {}, "rule_platform_country"),
    ("rsl_platform_country", "BR", {}, {"country": "BR"}, "rule_platform_country"),
]


@pytest.mark.parametrize("list_id, item, payment_values, card_values, rule_id", CASES)
def test_an_item_on_a_built_in_block_list_blocks_whatever_the_merchant_allows(db_session, scope, redis, list_id,
                                                                              item, payment_values, card_values,
                                                                              rule_id):
    card = {**GOOD_CARD, **card_values}
    rules.create_rule(db_session, scope, action="allow", predicate=":amount: > 0")
    assert evaluate.assess(db_session, payment(db_session, scope, **payment_values), redis=redis,
                           card=card).outcome == "allow"
    lists.add_item(db_session, None, list_id, item)
    blocked = evaluate.assess(db_session, payment(db_session, scope, **payment_values), redis=redis, card=card)
    assert blocked.outcome == "block" and (blocked.rule.owner, blocked.rule.id) == ("platform", rule_id)
    db_session.rollback()
