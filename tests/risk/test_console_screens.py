"""The console's risk screens: the platform's rules (backtest, the error's position, a reason for every change,
audited) and value lists, the review queue across merchants (filters, claim, approve and reject with a note,
bulk decisions behind a confirmation), the merchant page's review setting, the payment page's risk section."""
from sqlalchemy import select

from app.accounts.models import Merchant
from app.payments.models import Payment
from app.risk import rules
from app.risk.models import PlatformRiskRule, PlatformValueList, PlatformValueListItem, Review
from tests.admin.conftest import admin, app, audit_rows, csrf_of, login_as  # noqa: F401  (pytest fixtures)
from tests.dashboard.conftest import jobs, shop  # noqa: F401  (pytest fixtures)
from tests.risk.test_dashboard_screens import assessed_payment, held_for_review


def post(client, path: str, page: str, **data):
    return client.post(path, data={"csrf_token": csrf_of(client, page), **data})


def platform_rules(session) -> dict[str, PlatformRiskRule]:
    session.rollback()
    return {row.predicate: row for row in session.scalars(select(PlatformRiskRule))}


def review_of(session, payment: Payment) -> Review:
    session.rollback()
    return session.scalars(select(Review).where(Review.merchant_id == payment.merchant_id,
                                                Review.id == payment.review_id)).one()


def test_platform_rules_are_backtested_and_saved_with_a_reason(client, db_session, admin):
    login_as(client, db_session, admin)
    page = "/admin/risk/rules/new"
    text = ":email_domain: = 'fraud.test'"
    html = post(client, page, page, action="block", predicate=text, intent="backtest").get_data(as_text=True)
    assert 'id="backtest"' in html and "every merchant" in html
    refused = post(client, page, page, action="block", predicate=text, tested=text, intent="save", reason="")
    assert refused.status_code == 422 and "Give a reason" in refused.get_data(as_text=True)
    assert text not in platform_rules(db_session)
    bad = post(client, page, page, action="block", predicate=":amount: >", tested=":amount: >", intent="backtest")
    assert bad.status_code == 422 and 'id="predicate-position" data-line="1"' in bad.get_data(as_text=True)
    saved = post(client, page, page, action="block", predicate=text, tested=text, intent="save",
                 reason="Fraud ring seen at three merchants")
    assert saved.status_code == 303
    rule = platform_rules(db_session)[text]
    [entry] = audit_rows(db_session, "risk.platform_rule_created")
    assert entry.target == rule.id and entry.details["reason"] == "Fraud ring seen at three merchants"
    listing = client.get("/admin/risk/rules").get_data(as_text=True)
    assert f'data-rule="{rule.id}"' in listing

    # Disabling needs a reason too.
    ops = f"/admin/risk/rules/{rule.id}/op"
    assert post(client, ops, "/admin/risk/rules", op="disable", reason="").status_code == 422
    assert platform_rules(db_session)[text].enabled
    assert post(client, ops, "/admin/risk/rules", op="disable", reason="False positives").status_code == 303
    assert not platform_rules(db_session)[text].enabled
    assert audit_rows(db_session, "risk.platform_rule_disabled")[0].details["reason"] == "False positives"
    assert post(client, ops, "/admin/risk/rules", op="delete", reason="Gone").status_code == 303
    assert text not in platform_rules(db_session)


def test_platform_lists_take_items_with_a_reason(client, db_session, admin):
    login_as(client, db_session, admin)
    page = "/admin/risk/lists"
    assert post(client, page, page, alias="platform_bad_bins", name="Bad BINs", item_type="card_bin",
                reason="").status_code == 422
    assert post(client, page, page, alias="platform_bad_bins", name="Bad BINs", item_type="card_bin",
                reason="Issuer alert").status_code == 303
    db_session.rollback()
    value_list = db_session.scalars(select(PlatformValueList).where(
        PlatformValueList.alias == "platform_bad_bins")).one()
    list_page = f"/admin/risk/lists/{value_list.id}"
    assert post(client, f"{list_page}/items", list_page, value="411111", reason="Issuer alert").status_code == 303
    db_session.rollback()
    item = db_session.scalars(select(PlatformValueListItem).where(
        PlatformValueListItem.value_list_id == value_list.id)).one()
    assert item.value == "411111" and "411111" in client.get(list_page).get_data(as_text=True)
    assert post(client, f"{list_page}/items/{item.id}/delete", list_page, reason="").status_code == 422
    assert post(client, f"{list_page}/items/{item.id}/delete", list_page, reason="Lifted").status_code == 303
    db_session.rollback()
    assert db_session.get(PlatformValueListItem, item.id) is None
    assert [e.details["reason"] for e in audit_rows(db_session, "risk.platform_value_list_item_removed")] == ["Lifted"]


def test_the_queue_shows_open_reviews_across_merchants_oldest_first_with_filters(client, db_session, admin, shop,
                                                                                  jobs):
    first, second = shop("First Shop"), shop("Second Shop")
    older = held_for_review(db_session, first.scope, jobs)
    newer = held_for_review(db_session, second.scope, jobs, amount=70000)
    assert client.get("/admin/risk/reviews").status_code in (302, 401, 404)  # signed out
    login_as(client, db_session, first.users["owner"])
    assert client.get("/admin/risk/reviews").status_code == 404  # merchants' members are no platform admins
    login_as(client, db_session, admin)
    html = client.get("/admin/risk/reviews").get_data(as_text=True)
    assert html.index(older.review_id) < html.index(newer.review_id)
    assert "First Shop" in html and "Second Shop" in html and ":amount: &gt; 500" in html
    assert "Card: " in html and "Email: " in html
    filtered = client.get(f"/admin/risk/reviews?merchant={second.merchant.id}").get_data(as_text=True)
    assert newer.review_id in filtered and older.review_id not in filtered
    assert older.review_id not in client.get("/admin/risk/reviews?age=3d").get_data(as_text=True)
    rule_id = older.risk_outcome["rule"]["id"]
    by_rule = client.get(f"/admin/risk/reviews?rule={rule_id}").get_data(as_text=True)
    assert older.review_id in by_rule and newer.review_id not in by_rule


def test_the_queue_pages_oldest_first(client, db_session, admin, shop, jobs, monkeypatch):
    from app.admin import risk_views

    s = shop()
    held = [held_for_review(db_session, s.scope, jobs, amount=60000 + n).review_id for n in range(3)]
    monkeypatch.setattr(risk_views, "QUEUE_SIZE", 2)
    login_as(client, db_session, admin)
    first = client.get(f"/admin/risk/reviews?merchant={s.merchant.id}").get_data(as_text=True)
    assert held[0] in first and held[1] in first and held[2] not in first
    next_link = first.split('id="queue-next" href="', 1)[1].split('"', 1)[0].replace("&amp;", "&")
    assert f"merchant={s.merchant.id}" in next_link  # the filters stay
    second = client.get(next_link).get_data(as_text=True)
    assert held[2] in second and held[0] not in second and 'id="queue-next"' not in second


def test_an_operator_claims_approves_and_rejects_with_a_note(client, db_session, admin, shop, jobs):
    s = shop()
    approve = held_for_review(db_session, s.scope, jobs)
    reject = held_for_review(db_session, s.scope, jobs, amount=80000)
    login_as(client, db_session, admin)
    page = f"/admin/risk/reviews/{approve.review_id}"
    assert post(client, f"{page}/claim", page).status_code == 303
    assert review_of(db_session, approve).claimed_by == admin.id
    assert post(client, f"{page}/decide/approve", page, note="").status_code == 422
    assert review_of(db_session, approve).status == "open"
    assert post(client, f"{page}/decide/approve", page, note="Customer confirmed by phone").status_code == 303
    jobs.run()
    assert review_of(db_session, approve).closed_reason == "approved"
    assert db_session.get(Payment, approve.id).status == "succeeded"
    # Decided once: a second decision is refused and changes nothing.
    assert post(client, f"{page}/decide/reject", page, note="Changed my mind").status_code == 409
    page = f"/admin/risk/reviews/{reject.review_id}"
    assert post(client, f"{page}/decide/reject", page, note="Stolen card", as_fraud="y").status_code == 303
    jobs.run()
    assert review_of(db_session, reject).closed_reason == "refunded_as_fraud"
    assert db_session.get(Payment, reject.id).status == "canceled"
    assert "Stolen card" in client.get(page).get_data(as_text=True)


def test_bulk_decisions_go_through_a_confirmation(client, db_session, admin, shop, jobs):
    s = shop()
    held = [held_for_review(db_session, s.scope, jobs, amount=amount) for amount in (60000, 61000)]
    login_as(client, db_session, admin)
    token = csrf_of(client, "/admin/risk/reviews")
    data = {"csrf_token": token, "decision": "reject", "note": "Card testing burst",
            "review": [p.review_id for p in held]}
    confirm = client.post("/admin/risk/reviews/bulk", data=data)
    html = confirm.get_data(as_text=True)
    assert confirm.status_code == 200 and 'id="bulk-confirm"' in html and "Reject 2 reviews" in html
    assert all(review_of(db_session, p).status == "open" for p in held)
    done = client.post("/admin/risk/reviews/bulk", data={**data, "confirm": "yes"})
    assert done.status_code == 303
    jobs.run()
    assert [review_of(db_session, p).closed_reason for p in held] == ["refunded", "refunded"]
    assert all(db_session.get(Payment, p.id).status == "canceled" for p in held)


def test_the_merchant_page_keeps_review_with_the_platform(client, db_session, admin, shop, jobs):
    s = shop()
    login_as(client, db_session, admin)
    page = f"/admin/merchants/{s.merchant.id}"
    assert 'id="risk-reviews-setting"' in client.get(page).get_data(as_text=True)
    path = f"/admin/merchants/{s.merchant.id}/risk-reviews"
    post(client, path, page, by_platform="yes", reason="")
    db_session.rollback()
    assert not db_session.get(Merchant, s.merchant.id).risk_reviews_by_platform
    assert post(client, path, page, by_platform="yes", reason="Repeated fraud").status_code == 303
    db_session.rollback()
    assert db_session.get(Merchant, s.merchant.id).risk_reviews_by_platform
    [entry] = audit_rows(db_session, "risk.reviews_by_platform.on", s.merchant.id)
    assert entry.details["reason"] == "Repeated fraud"
    assert "the platform reviews them" in client.get(page).get_data(as_text=True)
    # Reviews opened from now on are the platform's: the merchant's team sees them, and cannot decide them.
    held = held_for_review(db_session, s.scope, jobs)
    assert review_of(db_session, held).owner == "platform"
    login_as(client, db_session, s.users["owner"])
    assert 'id="platform-reviews"' in client.get(s.url("radar/reviews")).get_data(as_text=True)
    assert 'id="decide"' not in client.get(s.url(f"radar/reviews/{held.review_id}")).get_data(as_text=True)


def test_the_payment_page_shows_the_risk_outcome_and_every_counter(client, db_session, admin, shop):
    s = shop()
    rule = rules.create_rule(db_session, s.scope, action="block", predicate=":email_payments_10m: > 5")
    payment = assessed_payment(db_session, s.scope, rule=rule)
    login_as(client, db_session, admin)
    html = client.get(f"/admin/payments/{payment.id}").get_data(as_text=True)
    assert 'id="risk-score">81<' in html and ":email_payments_10m: &gt; 5" in html
    row = html[html.index('data-signal="card_payments_10m"'):]
    row = row[:row.index("</tr>")]
    assert "<td>7</td>" in row  # operators may read the platform-wide counters


def test_console_risk_forms_carry_the_csrf_token(client, db_session, admin, shop, jobs):
    s = shop()
    held = held_for_review(db_session, s.scope, jobs)
    login_as(client, db_session, admin)
    for page in ("/admin/risk/rules/new", "/admin/risk/lists", "/admin/risk/reviews",
                 f"/admin/risk/reviews/{held.review_id}", f"/admin/merchants/{s.merchant.id}"):
        assert 'name="csrf_token"' in client.get(page).get_data(as_text=True), page
    response = client.post(f"/admin/risk/reviews/{held.review_id}/decide/approve", data={"note": "no token"})
    assert response.status_code == 400
    assert review_of(db_session, held).status == "open"
