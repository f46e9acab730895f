"""The dashboard's risk screens: rules editor (backtest before saving, the error's position), value lists, the
payment's risk section and the list's risk filters, merchants' reviews; roles, CSRF, tenancy."""
import re
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from app.accounts.audit import AuditEntry
from app.ids import new_id
from app.models_base import utcnow
from app.payments.models import Payment
from app.reporting.exports import filters_for
from app.risk import lists, rules
from app.risk.models import Assessment, Review, RiskRule, ValueList, ValueListItem
from app.scoping import Scope
from tests.dashboard.conftest import app, jobs, login_as, paid, shop, stored_payment  # noqa: F401  (fixtures)

_CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


def csrf(client, path: str) -> str:
    html = client.get(path).get_data(as_text=True)
    match = _CSRF.search(html)
    assert match, f"no csrf_token on {path}"
    return match.group(1)


def post(client, path: str, form_page: str, **data):
    return client.post(path, data={"csrf_token": csrf(client, form_page), **data})


def merchant_rules(session, scope: Scope) -> list[RiskRule]:
    session.rollback()
    return list(session.scalars(scope.select(RiskRule).order_by(RiskRule.action, RiskRule.position)))


def held_for_review(session, scope: Scope, jobs, *, amount: int = 90000, **params) -> Payment:  # noqa: F811
    """A payment a merchant review rule held: authorized, not captured, its review open."""
    if not session.scalar(scope.select(RiskRule, RiskRule.action == "review").limit(1)):
        rules.create_rule(session, scope, action="review", predicate=":amount: > 500")
        session.commit()
    payment_id = paid(session, scope, jobs, amount=amount, currency="EUR", **params)
    session.rollback()
    payment = scope.get(session, Payment, payment_id)
    assert payment.status == "requires_capture" and payment.review_id, payment.status
    return payment


def review_of(session, payment: Payment) -> Review:
    session.rollback()
    return Scope(payment.merchant_id, payment.livemode).get(session, Review, payment.review_id)


def assessed_payment(session, scope: Scope, *, rule: RiskRule | None = None, **signals) -> Payment:
    """A payment and its stored assessment, with the velocity counters Redis counts (the test app's inline
    payments run without Redis counters, and assessments are append-only)."""
    payment = stored_payment(session, scope, amount=120000, currency="EUR", risk_score=81, risk_level="highest",
                             risk_outcome={"type": "blocked", "risk_level": "highest", "risk_score": 81,
                                           "seller_message": "Blocked by a rule."},
                             status="requires_payment_method")
    session.add(scope.new(Assessment, id=new_id("rska"), payment_id=payment.id, stage="confirmation",
                          signals={"amount": "1200.00", "currency": "eur", "card_payments_10m": 7,
                                   "email_payments_10m": 2, **signals},
                          contributions={"card_payments_10m": 1200, "amount": 300}, score=81, level="highest",
                          weights_version="v1", outcome="block", rule_id=rule.id if rule else None,
                          rule_owner="merchant" if rule else None, rule_action=rule.action if rule else None,
                          rule_predicate=rule.predicate if rule else None))
    session.commit()
    return payment


# -- Rules editor ---------------------------------------------------------------------------------------------

def test_a_rule_is_backtested_before_it_is_saved(client, db_session, shop):
    s = shop()
    login_as(client, db_session, s.users["owner"])
    new = s.url("radar/rules/new?action=review")
    page = client.get(new).get_data(as_text=True)
    assert 'name="csrf_token"' in page and 'selected value="review"' in page

    # "Save" of a text never backtested shows the backtest instead, and saves nothing.
    response = post(client, s.url("radar/rules/new"), new, action="review", predicate=":amount: > 500",
                    intent="save")
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and 'id="backtest"' in html and 'id="backtest-matched">0<' in html
    assert 'value=":amount: &gt; 500"' in html or 'value=":amount: > 500"' in html  # the tested text, kept
    assert merchant_rules(db_session, s.scope) == []

    response = post(client, s.url("radar/rules/new"), new, action="review", predicate=":amount: > 500",
                    tested=":amount: > 500", description="Large", intent="save")
    assert response.status_code == 303
    saved = merchant_rules(db_session, s.scope)
    assert [(r.action, r.predicate, r.description) for r in saved] == [("review", ":amount: > 500", "Large")]
    assert db_session.scalars(select(AuditEntry).where(AuditEntry.action == "risk.rule_created",
                                                       AuditEntry.merchant_id == s.merchant.id)).one()
    listing = client.get(s.url("radar/rules")).get_data(as_text=True)
    assert ":amount: &gt; 500" in listing and f'data-rule="{saved[0].id}"' in listing


def test_an_invalid_rule_is_refused_with_the_position_of_its_error(client, db_session, shop):
    s = shop()
    login_as(client, db_session, s.users["admin"])
    new = s.url("radar/rules/new")
    for intent in ("backtest", "save"):
        response = post(client, s.url("radar/rules/new"), new, action="block", predicate=":amount: > > 5",
                        tested=":amount: > > 5", intent=intent)
        html = response.get_data(as_text=True)
        assert response.status_code == 422
        assert 'id="predicate-position" data-line="1" data-column="12"' in html
        assert "line 1, column 12" in html and "<mark>           ^</mark>" in html
    response = post(client, s.url("radar/rules/new"), new, action="block", predicate=":nope: = 1", intent="save")
    assert response.status_code == 422 and "nope" in response.get_data(as_text=True)
    assert merchant_rules(db_session, s.scope) == []


def test_backtest_counts_the_last_30_days_of_the_merchants_own_payments(client, db_session, shop, jobs):
    s, other = shop(), shop("Other Shop")
    for amount in (2000, 70000):
        paid(db_session, s.scope, jobs, amount=amount, currency="EUR")
    paid(db_session, other.scope, jobs, amount=80000, currency="EUR")  # another merchant's: never counted
    login_as(client, db_session, s.users["owner"])
    new = s.url("radar/rules/new")
    html = post(client, new, new, action="block", predicate=":amount: > 500", intent="backtest").get_data(as_text=True)
    assert 'id="backtest-matched">1<' in html and "of 2 payments" in html
    sample = re.findall(r'href="/dashboard/[^"]+/payments/(pay_[A-Za-z0-9]+)"', html)
    assert len(sample) == 1
    assert db_session.get(Payment, sample[0]).merchant_id == s.merchant.id


def test_rules_are_enabled_disabled_reordered_and_deleted(client, db_session, shop):
    s = shop()
    first = rules.create_rule(db_session, s.scope, action="block", predicate=":amount: > 1000")
    second = rules.create_rule(db_session, s.scope, action="block", predicate=":amount: > 2000")
    db_session.commit()
    first_id, second_id = first.id, second.id
    login_as(client, db_session, s.users["owner"])
    page = s.url("radar/rules")

    def op(rule_id, name):
        return post(client, s.url(f"radar/rules/{rule_id}/op"), page, op=name)

    assert op(second_id, "up").status_code == 303
    assert [r.id for r in merchant_rules(db_session, s.scope)] == [second_id, first_id]
    assert op(first_id, "disable").status_code == 303
    assert not db_session.get(RiskRule, (s.merchant.id, first_id)).enabled
    assert op(first_id, "enable").status_code == 303
    assert db_session.get(RiskRule, (s.merchant.id, first_id)).enabled
    assert op(first_id, "delete").status_code == 303
    assert [r.id for r in merchant_rules(db_session, s.scope)] == [second_id]
    edit = s.url(f"radar/rules/{second_id}")
    response = post(client, edit, edit, action="review", predicate=":amount: > 3000", tested=":amount: > 3000",
                    intent="save")
    assert response.status_code == 303
    assert [(r.action, r.predicate) for r in merchant_rules(db_session, s.scope)] == [("review", ":amount: > 3000")]


def test_a_developer_or_analyst_reads_the_rules_but_cannot_change_them(client, db_session, shop):
    s = shop()
    rule = rules.create_rule(db_session, s.scope, action="block", predicate=":amount: > 1000")
    value_list = lists.create_value_list(db_session, s.scope, alias="vip", name="VIP", item_type="email")
    db_session.commit()
    rule_id, list_id = rule.id, value_list.id
    for role in ("developer", "analyst"):
        login_as(client, db_session, s.users[role])
        page = client.get(s.url("radar/rules")).get_data(as_text=True)
        assert ":amount: &gt; 1000" in page and "radar/rules/new" not in page and 'name="op"' not in page
        assert client.get(s.url("radar/rules/new")).status_code == 403
        assert client.get(s.url(f"radar/rules/{rule_id}")).status_code == 403
        token = csrf(client, s.url("radar/lists"))
        for path, data in ((f"radar/rules/{rule_id}/op", {"op": "delete"}), ("radar/rules/new", {
                "action": "allow", "predicate": ":amount: > 1", "tested": ":amount: > 1", "intent": "save"}),
                ("radar/lists", {"alias": "x", "name": "x", "item_type": "email"}),
                (f"radar/lists/{list_id}/items", {"value": "a@b.test"}), (f"radar/lists/{list_id}/delete", {})):
            assert client.post(s.url(path), data={"csrf_token": token, **data}).status_code == 403, path
    assert [r.id for r in merchant_rules(db_session, s.scope)] == [rule_id]
    assert db_session.scalars(select(ValueList).where(ValueList.merchant_id == s.merchant.id)).all()[0].alias == "vip"


def test_a_change_without_the_csrf_token_is_refused(client, db_session, shop):
    s = shop()
    rule = rules.create_rule(db_session, s.scope, action="block", predicate=":amount: > 1000")
    db_session.commit()
    login_as(client, db_session, s.users["owner"])
    for path, data in ((f"radar/rules/{rule.id}/op", {"op": "delete"}), ("radar/rules/new", {
            "action": "allow", "predicate": ":amount: > 1", "tested": ":amount: > 1", "intent": "save"}),
            ("radar/lists", {"alias": "x", "name": "x", "item_type": "email"})):
        assert client.post(s.url(path), data=data).status_code == 400
    assert len(merchant_rules(db_session, s.scope)) == 1
    assert not db_session.scalars(select(ValueList).where(ValueList.merchant_id == s.merchant.id)).all()


def test_changes_wait_for_a_recent_reauthentication(client, db_session, shop, app):
    s = shop()
    login_as(client, db_session, s.users["owner"])
    new = s.url("radar/rules/new")
    token = csrf(client, new)
    app.config["REAUTH_WINDOW_SECONDS"] = 0.000001
    try:
        response = client.post(new, data={"csrf_token": token, "action": "block", "predicate": ":amount: > 9",
                                          "tested": ":amount: > 9", "intent": "save"})
    finally:
        app.config.pop("REAUTH_WINDOW_SECONDS")
    assert response.status_code == 303 and "/account/confirm" in response.headers["Location"]
    assert merchant_rules(db_session, s.scope) == []
    # Back on the form after confirming, the rule typed is there again.
    assert ":amount: &gt; 9" in client.get(new).get_data(as_text=True)


# -- Value lists ----------------------------------------------------------------------------------------------

def test_value_lists_are_created_filled_and_emptied(client, db_session, shop):
    s = shop()
    login_as(client, db_session, s.users["owner"])
    page = s.url("radar/lists")
    response = post(client, page, page, alias="blocked_ips", name="Blocked IPs", item_type="ip_address")
    assert response.status_code == 303
    value_list = db_session.scalars(select(ValueList).where(ValueList.merchant_id == s.merchant.id)).one()
    list_page = s.url(f"radar/lists/{value_list.id}")
    assert post(client, s.url(f"radar/lists/{value_list.id}/items"), list_page, value="10.0.0.0/8").status_code == 303
    bad = post(client, s.url(f"radar/lists/{value_list.id}/items"), list_page, value="not an ip")
    assert bad.status_code == 422 and 'id="value-error"' in bad.get_data(as_text=True)
    items = db_session.scalars(select(ValueListItem).where(ValueListItem.merchant_id == s.merchant.id)).all()
    assert [i.value for i in items] == ["10.0.0.0/8"]
    assert "10.0.0.0/8" in client.get(list_page).get_data(as_text=True)
    # The same alias twice is refused with the message on the field.
    again = post(client, page, page, alias="blocked_ips", name="Again", item_type="ip_address")
    assert again.status_code == 422 and "exists already" in again.get_data(as_text=True)
    response = post(client, s.url(f"radar/lists/{value_list.id}/items/{items[0].id}/delete"), list_page)
    assert response.status_code == 303
    db_session.rollback()
    assert not db_session.scalars(select(ValueListItem).where(ValueListItem.merchant_id == s.merchant.id)).all()
    # A list a rule names cannot be deleted; once the rule is gone, it can.
    rule = rules.create_rule(db_session, s.scope, action="block", predicate=":ip_address: in @blocked_ips")
    db_session.commit()
    refused = post(client, s.url(f"radar/lists/{value_list.id}/delete"), list_page)
    assert refused.status_code == 422 and rule.id in refused.get_data(as_text=True)
    rules.delete_rule(db_session, s.scope, rule.id)
    db_session.commit()
    assert post(client, s.url(f"radar/lists/{value_list.id}/delete"), list_page).status_code == 303
    db_session.rollback()
    assert not db_session.scalars(select(ValueList).where(ValueList.merchant_id == s.merchant.id)).all()


# -- Tenancy --------------------------------------------------------------------------------------------------

def test_a_merchant_cannot_see_or_change_another_merchants_rules_lists_or_reviews(client, db_session, shop, jobs):
    a, b = shop("Shop A"), shop("Shop B")
    rule = rules.create_rule(db_session, a.scope, action="block", predicate=":amount: > 777")
    value_list = lists.create_value_list(db_session, a.scope, alias="a_only", name="A only", item_type="email")
    item = lists.add_item(db_session, a.scope, value_list.id, "secret@a.test")
    db_session.commit()
    review = held_for_review(db_session, a.scope, jobs, amount=60000)
    ids = dict(rule=rule.id, list=value_list.id, item=item.id, review=review.review_id, payment=review.id)
    login_as(client, db_session, b.users["owner"])
    # B's own pages never show A's rows ...
    for path in ("radar/rules", "radar/lists", "radar/reviews"):
        html = client.get(b.url(path)).get_data(as_text=True)
        assert not any(value in html for value in ids.values()) and "777" not in html
    # ... and A's ids under B's URLs are 404, reads and changes alike.
    for path in (f"radar/rules/{ids['rule']}", f"radar/lists/{ids['list']}", f"radar/reviews/{ids['review']}",
                 f"payments/{ids['payment']}"):
        assert client.get(b.url(path)).status_code == 404, path
    token = csrf(client, b.url("radar/lists"))
    for path, data in ((f"radar/rules/{ids['rule']}/op", {"op": "delete"}),
                       (f"radar/rules/{ids['rule']}", {"action": "allow", "predicate": ":amount: > 1",
                                                        "tested": ":amount: > 1", "intent": "save"}),
                       (f"radar/lists/{ids['list']}/items", {"value": "x@b.test"}),
                       (f"radar/lists/{ids['list']}/items/{ids['item']}/delete", {}),
                       (f"radar/lists/{ids['list']}/delete", {}),
                       (f"radar/reviews/{ids['review']}/approve", {"note": "mine now"})):
        assert client.post(b.url(path), data={"csrf_token": token, **data}).status_code == 404, path
    # A's URLs are 404 to B's owner too (not a member).
    assert client.get(a.url("radar/rules")).status_code == 404
    db_session.rollback()
    assert db_session.get(RiskRule, (a.merchant.id, ids["rule"])).predicate == ":amount: > 777"
    assert db_session.get(ValueListItem, (a.merchant.id, ids["item"])) is not None
    assert a.scope.get(db_session, Payment, ids["payment"]).status == "requires_capture"


# -- The payment's risk section and the list's filters --------------------------------------------------------

def test_payment_detail_shows_the_risk_outcome_without_other_merchants_counters(client, db_session, shop, jobs):
    s = shop()
    payment = held_for_review(db_session, s.scope, jobs)
    login_as(client, db_session, s.users["analyst"])
    html = client.get(s.url(f"payments/{payment.id}")).get_data(as_text=True)
    assert 'id="risk"' in html and "Held for review" in html
    assert f'id="risk-score">{payment.risk_score}<' in html
    assert "Matched your rule" in html and ":amount: &gt; 500" in html
    assert 'data-signal="amount"' in html and "900.00" in html
    assert payment.review_id in html and 'id="risk-review-status">Open<' in html

    rule = rules.create_rule(db_session, s.scope, action="block", predicate=":email_payments_10m: > 5",
                             description="Card testing")
    payment = assessed_payment(db_session, s.scope, rule=rule)
    html = client.get(s.url(f"payments/{payment.id}")).get_data(as_text=True)
    assert "Blocked" in html and 'id="risk-level">Highest<' in html and "Card testing" in html
    # Platform-wide counters (card and IP velocity) count other merchants' payments: their values stay hidden.
    row = re.search(r'<tr data-signal="card_payments_10m">.*?</tr>', html, re.S)
    assert row and "counted across merchants, not shown" in row.group(0) and "+1.200" in row.group(0)
    assert ">7<" not in row.group(0)
    own = re.search(r'<tr data-signal="email_payments_10m">.*?</tr>', html, re.S)  # per merchant: shown
    assert own and "<td>2</td>" in own.group(0)

    # Held because the vault could not be asked: the page says why, not "no rule matched".
    held = stored_payment(db_session, s.scope, amount=5000, currency="EUR", status="requires_capture",
                          risk_score=20, risk_level="normal")
    db_session.add(s.scope.new(Assessment, id=new_id("rska"), payment_id=held.id, stage="confirmation",
                               signals={"amount": "50.00"}, contributions={}, score=20, level="normal",
                               weights_version="v1", outcome="review", reason="card_facts_unavailable"))
    db_session.commit()
    html = client.get(s.url(f"payments/{held.id}")).get_data(as_text=True)
    assert 'data-reason="card_facts_unavailable"' in html and "No rule matched" not in html


def test_the_payments_list_filters_by_risk_level_and_outcome(client, db_session, shop, jobs):
    s = shop()
    held = held_for_review(db_session, s.scope, jobs)
    plain = paid(db_session, s.scope, jobs, amount=1000, currency="EUR")
    login_as(client, db_session, s.users["owner"])
    html = client.get(s.url("payments?risk_outcome=manual_review")).get_data(as_text=True)
    assert held.id in html and plain not in html and 'data-risk="review">In review<' in html
    html = client.get(s.url("payments?risk_outcome=authorized")).get_data(as_text=True)
    assert plain in html and held.id not in html
    level = held.risk_level
    html = client.get(s.url(f"payments?risk_level={level}")).get_data(as_text=True)
    assert held.id in html
    html = client.get(s.url("payments?risk_level=bogus")).get_data(as_text=True)  # ignored, not an error
    assert held.id in html and plain in html
    # An export of the list keeps the filters and applies them (app/reporting/exports.py).
    export = filters_for("payments", filters_for("payments", {"risk_outcome": "manual_review"}).to_args())
    assert export.to_args() == {"risk_outcome": "manual_review"}
    assert list(db_session.scalars(export.statement(s.scope, ZoneInfo("UTC")).with_only_columns(Payment.id))) \
        == [held.id]


# -- Merchants' reviews ---------------------------------------------------------------------------------------

def test_an_owner_approves_a_review_and_the_payment_is_captured(client, db_session, shop, jobs):
    s = shop()
    payment = held_for_review(db_session, s.scope, jobs)
    login_as(client, db_session, s.users["owner"])
    assert payment.review_id in client.get(s.url("radar/reviews")).get_data(as_text=True)
    page = s.url(f"radar/reviews/{payment.review_id}")
    assert 'id="decide"' in client.get(page).get_data(as_text=True)
    empty = post(client, s.url(f"radar/reviews/{payment.review_id}/approve"), page, note="")
    assert empty.status_code == 422
    response = post(client, s.url(f"radar/reviews/{payment.review_id}/approve"), page, note="Known customer")
    assert response.status_code == 303
    jobs.run()
    db_session.rollback()
    assert s.scope.get(db_session, Payment, payment.id).status == "succeeded"
    html = client.get(page).get_data(as_text=True)
    assert "Closed: Approved" in html and "Known customer" in html and 'id="decide"' not in html
    again = post(client, s.url(f"radar/reviews/{payment.review_id}/reject"), page, note="Too late")
    assert again.status_code == 409


def stored_review(session, scope: Scope, *, level: str, rule_id: str, predicate: str, age: timedelta,
                  status: str = "open") -> Review:
    """A review, its payment and its assessment written directly (the filters need varied rows, not flows)."""
    opened = utcnow() - age
    payment = stored_payment(session, scope, amount=90000, currency="EUR", status="requires_capture",
                             risk_level=level, risk_score=70, created_at=opened)
    assessment = scope.new(Assessment, id=new_id("rska"), payment_id=payment.id, stage="confirmation",
                           signals={}, contributions={}, score=70, level=level, weights_version="v1",
                           outcome="review", rule_id=rule_id, rule_owner="merchant", rule_action="review",
                           rule_predicate=predicate)
    review = scope.new(Review, id=new_id("prv"), payment_id=payment.id, assessment_id=assessment.id, status=status,
                       owner="merchant", rule_id=rule_id, notes=[], expires_at=opened + timedelta(days=6),
                       created_at=opened, closed_reason="approved" if status == "closed" else None)
    session.add_all([assessment, review])
    session.commit()
    return review


def test_the_reviews_page_filters_by_level_rule_age_and_status(client, db_session, shop):
    s = shop()
    fresh = stored_review(db_session, s.scope, level="elevated", rule_id="rule_big", predicate=":amount: > 500",
                          age=timedelta(minutes=5))
    old = stored_review(db_session, s.scope, level="highest", rule_id="rule_new_card", predicate=":is_new_card:",
                        age=timedelta(hours=30))
    closed = stored_review(db_session, s.scope, level="highest", rule_id="rule_big", predicate=":amount: > 500",
                           age=timedelta(hours=2), status="closed")
    other = shop("Other reviews shop")  # another merchant's review never shows, whatever the filter
    theirs = stored_review(db_session, other.scope, level="highest", rule_id="rule_big", predicate=":amount: > 500",
                           age=timedelta(hours=30))
    login_as(client, db_session, s.users["analyst"])

    def shown(**query) -> set[str]:
        args = "&".join(f"{name}={value}" for name, value in query.items())
        response = client.get(s.url("radar/reviews") + (f"?{args}" if args else ""))
        assert response.status_code == 200
        return set(re.findall(r'data-review="([^"]+)"', response.get_data(as_text=True)))

    assert shown() == {fresh.id, old.id}
    assert shown(level="highest") == {old.id}
    assert shown(rule="rule_big") == {fresh.id}
    assert shown(age="24h") == {old.id}
    assert shown(age="1h", level="elevated") == set()
    assert shown(status="closed") == {closed.id}
    assert shown(status="closed", rule="rule_new_card") == set()
    assert shown(status="closed", level="highest", rule="rule_big") == {closed.id}
    assert theirs.id not in shown(level="highest", rule="rule_big") | shown(status="closed")
    html = client.get(s.url("radar/reviews") + "?level=nonsense&age=99y").get_data(as_text=True)
    assert fresh.id in html and old.id in html  # unknown values are ignored, not a 500
    assert 'id="review-filters"' in html and '<option value="rule_new_card"' in html
    assert "No open reviews match these filters" in client.get(
        s.url("radar/reviews") + "?age=3d").get_data(as_text=True)


def test_analysts_do_not_decide_and_platform_kept_reviews_are_the_platforms(client, db_session, shop, jobs):
    s = shop()
    payment = held_for_review(db_session, s.scope, jobs)
    login_as(client, db_session, s.users["analyst"])
    page = s.url(f"radar/reviews/{payment.review_id}")
    assert 'id="decide"' not in client.get(page).get_data(as_text=True)
    assert post(client, s.url(f"radar/reviews/{payment.review_id}/reject"), page, note="no").status_code == 403

    kept = shop("Kept Shop")
    kept.merchant.risk_reviews_by_platform = True  # the console's setting (tests/risk/test_console_screens.py)
    db_session.commit()
    held = held_for_review(db_session, kept.scope, jobs)
    assert review_of(db_session, held).owner == "platform"
    login_as(client, db_session, kept.users["owner"])
    page = kept.url(f"radar/reviews/{held.review_id}")
    html = client.get(page).get_data(as_text=True)
    assert 'id="decide"' not in html and "operators decide this review" in html
    assert 'id="platform-reviews"' in client.get(kept.url("radar/reviews")).get_data(as_text=True)
    refused = post(client, kept.url(f"radar/reviews/{held.review_id}/approve"), page, note="mine")
    assert refused.status_code == 409
    db_session.rollback()
    assert kept.scope.get(db_session, Payment, held.id).status == "requires_capture"


@pytest.mark.parametrize("role", ["owner", "developer"])
def test_the_navigation_links_the_risk_pages_each_role_may_open(client, db_session, shop, role):
    s = shop()
    login_as(client, db_session, s.users[role])
    html = client.get(s.url("payments")).get_data(as_text=True)
    assert s.url("radar/rules") in html and s.url("radar/reviews") in html
