"""Outside review of risk (issue 19): the backtest counts payments (not confirmations), platform list aliases
keep their prefix, and IP literals in rules are read as addresses."""
import pytest

from app.ids import new_id
from app.risk import lists, rules
from app.risk.errors import RiskInvalid
from app.risk.language import RuleError, compile_rule
from app.risk.models import Assessment
from tests.dashboard import conftest as dashboard
from tests.dashboard.conftest import stored_payment

# The dashboard tests' fixtures: its app, the inline jobs and a merchant with a member per role.
app, jobs, shop = dashboard.app, dashboard.jobs, dashboard.shop


def _assess(session, scope, payment, amount: str):
    session.add(scope.new(Assessment, id=new_id("rska"), payment_id=payment.id, stage="confirmation",
                          signals={"amount": amount, "currency": "eur"}, contributions={}, score=40,
                          level="normal", weights_version="v1", outcome="allow"))


def test_the_backtest_counts_a_payment_confirmed_twice_once(db_session, shop):
    s = shop()
    twice = stored_payment(db_session, s.scope, amount=90000, currency="EUR", status="requires_payment_method")
    once = stored_payment(db_session, s.scope, amount=1000, currency="EUR", status="requires_payment_method")
    _assess(db_session, s.scope, twice, "900.00")   # declined by the issuer ...
    _assess(db_session, s.scope, twice, "900.00")   # ... confirmed again with another card
    _assess(db_session, s.scope, once, "10.00")
    db_session.commit()
    result = rules.backtest(db_session, s.scope, ":amount: > 500")
    assert (result.matched, result.evaluated) == (1, 2)
    assert [sample["payment"] for sample in result.sample] == [twice.id]


def test_a_platform_list_alias_keeps_the_platform_prefix(db_session):
    with pytest.raises(RiskInvalid) as refused:
        lists.create_value_list(db_session, None, alias="blocked_emails", name="Blocked", item_type="email")
    assert refused.value.param == "alias"
    row = lists.create_value_list(db_session, None, alias="platform_audit_emails", name="Blocked", item_type="email")
    with pytest.raises(RiskInvalid):
        lists.update_value_list(db_session, None, row.id, alias="audit_emails")
    db_session.rollback()


@pytest.mark.parametrize("text", [":ip_address: = '2001:DB8:0:0::1'", ":ip_address: in ('10.0.0.1', '2001:db8::0:1')",
                                  ":ip_address: != '::ffff:10.0.0.9' and :ip_address: = '2001:0db8::1'"])
def test_an_ip_literal_is_read_as_an_address(text):
    rule = compile_rule(text)
    assert rule.evaluate({"ip_address": "2001:db8::1"}, lambda *a: False)


@pytest.mark.parametrize("text", [":ip_address: = 'banana'", ":ip_address: in ('10.0.0.1', '10.0.0.256')"])
def test_a_rule_with_an_ip_that_is_no_address_is_refused_with_its_position(text):
    with pytest.raises(RuleError) as refused:
        compile_rule(text)
    assert refused.value.column is not None and "IP address" in refused.value.message


def test_a_rule_moved_to_another_action_goes_last_there(db_session, shop):
    s = shop()
    first = rules.create_rule(db_session, s.scope, action="review", predicate=":amount: > 100")
    second = rules.create_rule(db_session, s.scope, action="review", predicate=":amount: > 200")
    moved = rules.create_rule(db_session, s.scope, action="block", predicate=":amount: > 300")
    assert moved.position == first.position  # both first of their action
    rules.update_rule(db_session, s.scope, moved.id, action="review")
    ordered = [row.id for row in rules.list_rules(db_session, s.scope) if row.action == "review"]
    assert ordered == [first.id, second.id, moved.id]
    assert len({row.position for row in rules.list_rules(db_session, s.scope)}) == 3
    db_session.rollback()


def test_an_item_added_twice_at_once_is_refused_not_a_server_error(db_session, shop, client):
    """Two adds of the same value race past the look-up: the second is told it exists (the unique key), not 500."""
    from sqlalchemy import event
    from sqlalchemy.orm import Session

    from app.risk.models import ValueListItem
    from tests.payments.conftest import mint_key

    s = shop()
    value_list = lists.create_value_list(db_session, s.scope, alias="racy", name="Racy", item_type="email")
    db_session.commit()
    other = Session(bind=db_session.get_bind())

    raced = []

    def meanwhile(session, context, instances):  # right before this request's insert of the item
        if raced or not any(isinstance(row, ValueListItem) for row in session.new):
            return
        raced.append(True)
        other.add(s.scope.new(ValueListItem, id=new_id("rsli"), value_list_id=value_list.id, value="a@b.example"))
        other.commit()

    event.listen(db_session(), "before_flush", meanwhile)
    try:
        answer = client.post("/v1/radar/value_list_items", headers={
            "Authorization": f"Bearer {mint_key(db_session, s.merchant.id)}"},
            data={"value_list": value_list.id, "value": "A@b.example"})
    finally:
        other.close()
        event.remove(db_session(), "before_flush", meanwhile)
    assert raced and answer.status_code == 400, answer.get_data(as_text=True)[:300]
    assert answer.json["error"]["code"] == "resource_already_exists"
    assert lists.item_count(db_session, s.scope, value_list.id) == 1


def test_a_platform_wide_counter_in_capitals_is_refused_where_it_is_written(db_session, shop):
    s = shop()
    with pytest.raises(RiskInvalid) as refused:
        rules.check_predicate(db_session, s.scope, ":amount: > 1 and\n  :CARD_PAYMENTS_10M: > 3")
    assert (refused.value.detail["line"], refused.value.detail["column"]) == (2, 3)


def test_a_list_created_twice_at_once_is_refused_not_a_server_error(db_session, shop, client):
    from sqlalchemy import event
    from sqlalchemy.orm import Session

    from app.risk.models import ValueList
    from tests.payments.conftest import mint_key

    s = shop()
    key = mint_key(db_session, s.merchant.id)
    other = Session(bind=db_session.get_bind())
    raced = []

    def meanwhile(session, context, instances):  # right before this request's insert of the list
        if raced or not any(isinstance(row, ValueList) for row in session.new):
            return
        raced.append(True)
        other.add(s.scope.new(ValueList, id=new_id("rsl"), alias="twice", name="Twice", item_type="email"))
        other.commit()

    event.listen(db_session(), "before_flush", meanwhile)
    try:
        answer = client.post("/v1/radar/value_lists", headers={"Authorization": f"Bearer {key}"},
                             data={"alias": "twice", "name": "Twice", "item_type": "email"})
    finally:
        other.close()
        event.remove(db_session(), "before_flush", meanwhile)
    assert raced and answer.status_code == 400, answer.get_data(as_text=True)[:300]
    assert answer.json["error"]["code"] == "resource_already_exists"


def test_an_ipv4_address_written_as_ipv6_is_the_ipv4_address(db_session, shop, client):
    """A merchant's server on a dual-stack socket sees '::ffff:81.2.69.160': the shopper's address is 81.2.69.160
    (its country known, its block-list items matching), in customer_ip and in value-list items alike."""
    from app.risk.evaluate import ip_country
    from tests.payments.conftest import mint_key

    s = shop()
    created = client.post("/v1/payments", headers={"Authorization": f"Bearer {mint_key(db_session, s.merchant.id)}"},
                          data={"amount": 1000, "currency": "EUR", "customer_ip": "::ffff:81.2.69.160"})
    assert created.status_code == 200 and created.json["customer_ip"] == "81.2.69.160"
    assert ip_country(created.json["customer_ip"]) == "GB"
    assert lists.normalize("ip_address", "::ffff:10.0.0.1") == "10.0.0.1"
    assert compile_rule(":ip_address: = '::ffff:10.0.0.1'").evaluate({"ip_address": "10.0.0.1"}, lambda *a: False)
    assert lists.normalize("ip_address", "::ffff:10.0.0.0/104") == "::ffff:a00:0/104"  # a range stays as written
