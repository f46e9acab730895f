"""The operators' inbox: every kind of this issue appears when its cause is created and leaves when the cause
is resolved (never by hiding it); claims, filters and the count in the navigation; the actions where each
kind is worked."""
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from app.inbox import InboxFilters, collect, total
from app.inbox.claims import InboxClaim
from app.jobs.payments import _run_attempt, _run_refund
from app.models_base import utcnow
from app.payments.models import Payment, PaymentAttempt, Refund
from app.payments.service import create_refund
from app.psp import callbacks
from app.psp.callbacks import CallbackScope
from app.psp.interfaces import CallbackEvent, Lookup, Outcome
from app.psp.models import Dispute, PspCallback
from app.scoping import Scope
from app.webhooks.models import WebhookEndpoint
from app.webhooks.service import create_endpoint, update_endpoint
from app.webhooks.settings import settings_for
from tests import factories
from tests.admin.conftest import act, audit_rows, csrf_of, failed_callback, login_as
from tests.dashboard.conftest import paid, stored_payment
from tests.payments.helpers import assert_ledger_balanced, authorized, event_types, result


def open_items(session, kind: str | None = None, merchant_id: str | None = None) -> set[str]:
    session.rollback()
    items, _counts = collect(session, InboxFilters(merchant_id=merchant_id), kind)
    return {item.id for item in items}


RATE_LIMITED = Lookup.unknown("sandbox", "rate_limited", "HTTP 429", retryable=True)


class Clock:
    """deps.now, moved by the test: the attention threshold, leases and backoff read it (no sleeping)."""

    def __init__(self):
        self.now = utcnow() - timedelta(hours=3)

    def __call__(self):
        return self.now


@pytest.fixture
def clock(jobs) -> Clock:
    """The payments' clock of this test, three hours back, so that marks made by it are in the past."""
    jobs.deps.now = Clock()
    return jobs.deps.now


def marked_authorization(session, scope, jobs, clock, **params) -> tuple[str, str]:
    """A payment whose authorization the PSP has left unknown for longer than the attention threshold:
    (payment id, attempt id). Before the threshold it is not in the inbox."""
    jobs.gateway.authorize_results.append(result(Outcome.UNKNOWN, error="read_timeout", message="read timeout"))
    payment_id = paid(session, scope, jobs, **params)
    session.rollback()
    attempt = session.scalars(select(PaymentAttempt).where(PaymentAttempt.payment_id == payment_id)).one()
    assert attempt.status == "unknown" and attempt.id not in open_items(session)  # not yet
    clock.now = attempt.started_at + jobs.deps.attention_after
    jobs.gateway.retrieve_results.append(RATE_LIMITED)  # the janitor's lookup cannot tell either
    _run_attempt(attempt.id, jobs.deps, jobs.gateway)
    return payment_id, attempt.id


def test_an_unknown_authorization_is_listed_once_marked_and_leaves_when_the_psp_answers(
        client, db_session, admin, shop, jobs, clock):
    merchant, _owner, _developer = shop
    scope = Scope(merchant.id, False)
    payment_id, attempt_id = marked_authorization(db_session, scope, jobs, clock, amount=2500)
    assert attempt_id in open_items(db_session, "payment_outcome", merchant.id)

    login_as(client, db_session, admin)
    page = client.get(f"/admin/payments/{payment_id}").get_data(as_text=True)
    assert f'data-undecided="{attempt_id}"' in page and "rate_limited" in page
    path = f"/admin/payments/{payment_id}/objects/{attempt_id}/ask-again"
    assert act(client, path, f"ask-{attempt_id}", reason="").status_code == 422
    assert act(client, path, f"ask-{attempt_id}", reason="Stripe status page shows an incident").status_code == 303
    assert [job for job, _args in jobs.staged] == ["app.jobs.payments.run_attempt"]
    jobs.gateway.retrieve_results.append(authorized("auth_found"))  # the PSP has it after all
    jobs.run()
    db_session.rollback()
    assert db_session.get(Payment, payment_id).status == "succeeded"
    assert attempt_id not in open_items(db_session)
    [entry] = audit_rows(db_session, "payment.psp_asked_again", merchant.id)
    assert entry.target == attempt_id and entry.details["reason"] == "Stripe status page shows an incident"


def test_an_outcome_recorded_after_checking_with_the_psp_goes_through_the_state_machine(
        client, db_session, admin, shop, jobs, clock):
    merchant, _owner, _developer = shop
    scope = Scope(merchant.id, False)
    payment_id, attempt_id = marked_authorization(db_session, scope, jobs, clock, amount=1800)
    login_as(client, db_session, admin)
    path = f"/admin/payments/{payment_id}/objects/{attempt_id}/record-outcome"
    prefix = f"record-{attempt_id}"
    # An authorization the PSP has needs its reference; nothing is applied without it.
    missing = act(client, path, prefix, reason="Checked the PSP dashboard", outcome="succeeded")
    assert missing.status_code == 422 and "reference" in missing.get_data(as_text=True)
    assert act(client, path, prefix, reason="The PSP has no such authorization", outcome="did_not_happen") \
        .status_code == 303
    db_session.rollback()
    payment = db_session.get(Payment, payment_id)
    assert payment.status == "requires_payment_method"
    attempt = db_session.get(PaymentAttempt, attempt_id)
    assert (attempt.status, attempt.attention_since) == ("failed", None)
    assert event_types(db_session, scope, payment_id)[-1] == "payment.failed"
    assert attempt_id not in open_items(db_session)
    [entry] = audit_rows(db_session, "payment.outcome_recorded", merchant.id)
    assert entry.details["outcome"] == "did_not_happen"
    # Recorded once: the row is no longer open.
    again = act(client, path, prefix, reason="twice", outcome="did_not_happen")
    assert again.status_code == 422 and "has its outcome already" in again.get_data(as_text=True)


def test_a_refund_left_pending_is_listed_and_a_recorded_success_books_it(client, db_session, admin, shop, jobs,
                                                                          clock):
    merchant, _owner, _developer = shop
    scope = Scope(merchant.id, False)
    payment_id = paid(db_session, scope, jobs, amount=5000)
    jobs.gateway.refund_results.append(result(Outcome.PENDING, psp_reference="rf_slow", status="pending"))
    refund = create_refund(db_session, scope, {"payment": payment_id, "amount": 2000}, jobs.deps)
    db_session.commit()
    jobs.run()
    assert refund.id not in open_items(db_session)
    clock.now += jobs.deps.attention_after + timedelta(minutes=1)
    jobs.gateway.refund_lookups.append(result(Outcome.PENDING, psp_reference="rf_slow", status="pending"))
    _run_refund(refund.id, jobs.deps, jobs.gateway)
    assert refund.id in open_items(db_session, "payment_outcome")

    login_as(client, db_session, admin)
    response = act(client, f"/admin/payments/{payment_id}/objects/{refund.id}/record-outcome", f"record-{refund.id}",
                   reason="Refund visible in the PSP dashboard", outcome="succeeded")
    assert response.status_code == 303
    db_session.rollback()
    assert db_session.get(Refund, refund.id).status == "succeeded"
    assert db_session.get(Payment, payment_id).amount_refunded == 2000
    assert_ledger_balanced(db_session, scope)
    assert refund.id not in open_items(db_session)


def test_a_failed_callback_is_listed_until_processed_again(client, db_session, admin):
    row_id = failed_callback(db_session, CallbackEvent(id="evt_fail_1", type="authorization.updated",
                                                        psp_reference="auth_nobody", data={}, livemode=False))
    assert row_id in open_items(db_session, "psp_callback")
    login_as(client, db_session, admin)
    assert "handler crashed" in client.get(f"/admin/callbacks/{row_id}").get_data(as_text=True)
    assert act(client, f"/admin/callbacks/{row_id}/reprocess", "reprocess", reason="Handler fixed").status_code == 303
    db_session.rollback()
    assert db_session.get(PspCallback, row_id).result == "unmatched"  # processed: it names nothing we know
    assert row_id not in open_items(db_session)
    assert [e.target for e in audit_rows(db_session, "psp_callback.reprocessed")] == [row_id]


def test_a_rejected_callback_is_never_reprocessed_only_dismissed_with_a_note(client, db_session, admin):
    attacker = factories.merchant(db_session, name="Attacker")
    victim = factories.merchant(db_session, name="Victim")
    stored_payment(db_session, Scope(victim.id, False), psp_reference="auth_victim")
    db_session.commit()
    scope = CallbackScope("sandbox", False, "cred_attacker", attacker.id)
    row_id, _new = callbacks.store_callback(db_session, scope, CallbackEvent(
        id="evt_forged", type="authorization.updated", psp_reference="auth_victim", data={}, livemode=False))
    assert callbacks.process_callback(db_session, row_id) == "rejected"
    db_session.commit()
    assert row_id in open_items(db_session, "psp_callback", attacker.id)

    login_as(client, db_session, admin)
    refused = act(client, f"/admin/callbacks/{row_id}/reprocess", "reprocess", reason="try")
    assert refused.status_code == 422 and "can only be dismissed" in refused.get_data(as_text=True)
    assert act(client, f"/admin/callbacks/{row_id}/dismiss", "dismiss", reason="").status_code == 422
    assert row_id in open_items(db_session)
    assert act(client, f"/admin/callbacks/{row_id}/dismiss", "dismiss", reason="Forged by a merchant; reported") \
        .status_code == 303
    db_session.rollback()
    row = db_session.get(PspCallback, row_id)
    assert (row.result, row.dismissal_note, row.dismissed_by_user_id) == \
        ("rejected", "Forged by a merchant; reported", admin.id)
    assert row_id not in open_items(db_session)


def test_a_webhook_endpoint_is_listed_while_disabled_or_failing_for_a_day(app, db_session, shop):
    merchant, _owner, _developer = shop
    scope, settings = Scope(merchant.id, False), settings_for(app)
    endpoint, _secret = create_endpoint(db_session, scope, settings, url="https://corner.example/hooks",
                                        enabled_events=["*"])
    endpoint.failing_since = utcnow() - timedelta(hours=3)
    db_session.commit()
    assert endpoint.id not in open_items(db_session)  # a few hours of retries are the schedule's business
    endpoint.failing_since = utcnow() - timedelta(days=1, minutes=5)
    db_session.commit()
    assert endpoint.id in open_items(db_session, "webhook_endpoint", merchant.id)

    endpoint = db_session.get(WebhookEndpoint, endpoint.id)
    endpoint.status, endpoint.disabled_reason, endpoint.disabled_at = "disabled", "failing", utcnow()
    db_session.commit()
    assert endpoint.id in open_items(db_session)
    update_endpoint(db_session, scope, settings, endpoint.id, disabled=False)  # the merchant fixed it
    db_session.commit()
    assert endpoint.id not in open_items(db_session)
    update_endpoint(db_session, scope, settings, endpoint.id, disabled=True)  # its own choice: nothing to do
    db_session.commit()
    assert endpoint.id not in open_items(db_session)


def _dispute_event(callback_id: str, status: str, created: int) -> CallbackEvent:
    return CallbackEvent(id=callback_id, type=f"dispute.{'created' if status == 'needs_response' else 'closed'}",
                         psp_reference="auth_disputed", created=created, livemode=False,
                         data={"id": "dp_1", "amount": 1500, "currency": "usd", "reason": "fraudulent",
                               "status": status})


def test_a_dispute_is_listed_until_the_psp_closes_it(db_session, shop):
    merchant, _owner, _developer = shop
    stored_payment(db_session, Scope(merchant.id, False), psp_reference="auth_disputed")
    db_session.commit()
    platform = CallbackScope("sandbox", False, callbacks.PLATFORM)
    opened, _new = callbacks.store_callback(db_session, platform, _dispute_event("evt_dp_1", "needs_response", 100))
    callbacks.process_callback(db_session, opened)
    db_session.commit()
    dispute = db_session.scalars(select(Dispute).where(Dispute.merchant_id == merchant.id)).one()
    items, _counts = collect(db_session, InboxFilters(), "dispute")
    [item] = [i for i in items if i.id == dispute.id]
    assert (item.amount, item.currency, item.link[0]) == (1500, "USD", "admin.payment")
    closed, _new = callbacks.store_callback(db_session, platform, _dispute_event("evt_dp_2", "won", 200))
    callbacks.process_callback(db_session, closed)
    db_session.commit()
    assert dispute.id not in open_items(db_session)


def test_claims_filters_and_the_count_in_the_navigation(client, db_session, admin, shop):
    merchant, _owner, _developer = shop
    other = factories.merchant(db_session, name="Other Shop")
    db_session.commit()
    mine = failed_callback(db_session, CallbackEvent(id="evt_c1", type="x.y", psp_reference=None, data={},
                                                      livemode=False),
                            CallbackScope("sandbox", False, "cred_m", merchant.id))
    theirs = failed_callback(db_session, CallbackEvent(id="evt_c2", type="x.y", psp_reference=None, data={},
                                                        livemode=False),
                              CallbackScope("sandbox", False, "cred_o", other.id))
    db_session.execute(update(PspCallback).where(PspCallback.id == theirs)
                       .values(received_at=utcnow() - timedelta(days=4)))
    db_session.commit()
    login_as(client, db_session, admin)

    def shown(**query) -> set[str]:
        html = client.get("/admin/inbox", query_string=query).get_data(as_text=True)
        return {row for row in (mine, theirs) if f'data-item="psp_callback:{row}"' in html}

    assert shown() == {mine, theirs}
    assert shown(merchant=merchant.id) == {mine}
    assert shown(age="3d") == {theirs}
    assert shown(kind="dispute") == set()
    count = total(db_session)
    assert f'id="inbox-count">{count}<' in client.get("/admin/inbox").get_data(as_text=True)

    token = csrf_of(client, "/admin/inbox")
    assert client.post(f"/admin/inbox/psp_callback/{mine}/claim",
                       data={"csrf_token": token, "next": "/admin/inbox?kind=psp_callback"}).status_code == 303
    db_session.rollback()
    assert db_session.get(InboxClaim, ("psp_callback", mine)).user_id == admin.id
    html = client.get("/admin/inbox").get_data(as_text=True)
    row = html.split(f'data-item="psp_callback:{mine}"', 1)[1].split("</tr>", 1)[0]
    assert admin.email in row and "Release" in row
    assert client.post(f"/admin/inbox/psp_callback/{mine}/release", data={"csrf_token": token}).status_code == 303
    db_session.rollback()
    assert db_session.get(InboxClaim, ("psp_callback", mine)) is None
    assert client.post("/admin/inbox/nonsense/x/claim", data={"csrf_token": token}).status_code == 404
    # An id longer than any item's (the claims' column) names no item: 404, not a database error.
    assert client.post(f"/admin/inbox/psp_callback/{'x' * 65}/claim", data={"csrf_token": token}).status_code == 404
