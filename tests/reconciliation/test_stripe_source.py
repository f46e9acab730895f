"""Stripe as a settlement source: each account's automatic payouts of a day and their balance transactions fetched
through the official library from a local stand-in for Stripe's API (tests/psp/fake_stripe.py, answering with
Stripe's own example objects), imported as the JSON document received; and, for accounts whose deposits are
confirmed by payout events, payout.paid / payout.failed standing in for the bank deposit, through /hooks/stripe."""
import contextlib
import datetime as dt
import hashlib
import hmac
import json
import time

import pytest
from sqlalchemy import func, select, text

from app.crypto import SecretBox
from app.jobs import reconciliation as jobs
from app.ledger.models import JournalTransaction
from app.payments.models import Payment
from app.psp.callbacks import PLATFORM
from app.psp.credentials import (
    DepositConfirmationError,
    current_credential,
    set_credentials,
    set_deposit_confirmation,
)
from app.psp.models import PspCallback
from app.psp.stripe_keys import check_platform_keys
from app.reconciliation import fetch, service, stripe_lines
from app.reconciliation.models import Break, FetchFailure, ReportFile, ReportLine
from app.scoping import Scope
from tests import factories
from tests.disputes.helpers import books, captured, verify_ledger
from tests.psp.fake_stripe import FakeStripe, stripe_fixture
from tests.reconciliation.helpers import PLATFORM as PLATFORM_BOOK

PLATFORM_WEBHOOK_SECRET = "whsec_recon_platform"


@pytest.fixture
def fake():
    server = FakeStripe()
    yield server
    server.close()


@pytest.fixture
def platform_stripe_at(app, fake, monkeypatch):
    """The platform's test-mode Stripe account, its API at the stand-in."""
    monkeypatch.setitem(app.config, "STRIPE_API_KEY_TEST", "sk_test_recon_platform")
    monkeypatch.setitem(app.config, "STRIPE_WEBHOOK_SECRET_TEST", PLATFORM_WEBHOOK_SECRET)
    monkeypatch.setitem(app.config, "STRIPE_API_BASE", fake.url)
    return fake


@pytest.fixture
def stripe_api(app, fake, monkeypatch):
    """Stripe's API at the stand-in for every account (the merchants' own keys included)."""
    with stripe_api_at(app, fake, monkeypatch):
        yield fake


@contextlib.contextmanager
def stripe_api_at(app, fake, monkeypatch):
    """Stripe's API at the stand-in for every account: a payout event's handler asks it for the payout
    (app/reconciliation/payout_events.py). The app's router is built afresh against it and closed before the
    stand-in stops."""
    monkeypatch.setitem(app.config, "STRIPE_API_BASE", fake.url)
    drop_router(app)
    try:
        yield fake
    finally:
        drop_router(app)


def drop_router(app) -> None:
    """Close the app's router (built again at its next use, with the configuration then)."""
    router = app.extensions.pop("psp_router", None)
    if router is not None:
        router.close()


def stripe_knows(fake, *payouts: dict) -> None:
    """The stand-in answers GET /v1/payouts/<id> with each payout (Stripe's shape and units); the last repeats."""
    fake.answer("GET", f"/v1/payouts/{payouts[0]['id']}", *((200, body) for body in payouts))


def stripe_payment(session, scope: Scope, amount: int, reference: str, credential: str, day: dt.date) -> Payment:
    """A payment captured on ``day`` as if through Stripe with ``credential`` (the scripted PSP books it)."""
    body = captured(session, scope, amount=amount)
    session.execute(text("UPDATE payments SET connector = 'stripe', psp_reference = :r, credential = :c, "
                         "captured_at = :t WHERE id = :id"),
                    {"r": reference, "c": credential, "id": body["id"],
                     "t": dt.datetime(day.year, day.month, day.day, 1, tzinfo=dt.UTC)})
    session.commit()
    return scope.get(session, Payment, body["id"])


def payout(payout_id: str, amount: int, **overrides) -> dict:
    """Stripe's example Payout, automatic, with our values."""
    body = stripe_fixture("payout")
    body.update({"id": payout_id, "amount": amount, "currency": "usd", "automatic": True, "status": "in_transit"})
    body.update(overrides)
    return body


def charge_bt(intent: str, amount: int, fee: int, payout_id: str) -> dict:
    """Stripe's example BalanceTransaction of a charge, its source expanded to the example Charge."""
    charge = stripe_fixture("charge")
    charge.update({"id": f"ch_{intent}", "payment_intent": intent, "amount": amount})
    bt = stripe_fixture("balance_transaction")
    bt.update({"id": f"txn_{intent}", "amount": amount, "fee": fee, "net": amount - fee, "source": charge,
               "currency": "usd"})
    return bt


def payout_bt(payout_id: str, amount: int) -> dict:
    bt = stripe_fixture("balance_transaction")
    bt.update({"id": f"txn_{payout_id}", "type": "payout", "reporting_category": "payout", "amount": -amount,
               "fee": 0, "net": -amount, "source": payout_id})
    return bt


def page(data: list, has_more: bool = False, url: str = "/v1/payouts") -> tuple:
    return (200, {"object": "list", "data": data, "has_more": has_more, "url": url})


def platform_account(session, app) -> fetch.StripeAccount:
    box = SecretBox(app.config["KASSA_ENCRYPTION_KEYS"])
    [account] = [a for a in fetch.stripe_accounts(session, app.config, box) if a.credential == "platform"
                 and not a.livemode]
    session.rollback()
    return account


def test_a_days_payouts_are_fetched_from_stripe_imported_as_received_and_settled(app, db_session, shop,
                                                                                    platform_stripe_at):
    fake = platform_stripe_at
    scope = shop["scope"]
    day = dt.date(2026, 3, 2)
    paid = stripe_payment(db_session, scope, 10000, "pi_recon_a", PLATFORM, day)
    manual = payout("po_recon_manual", 500, automatic=False)
    # Two pages of payouts (the second one a manual payout, which has no balance transactions of its own).
    fake.answer("GET", "/v1/payouts", page([payout("po_recon_a", 9680)], has_more=True), page([manual]))
    fake.answer("GET", "/v1/balance_transactions",
                page([charge_bt("pi_recon_a", 10000, 320, "po_recon_a"), payout_bt("po_recon_a", 9680)],
                     url="/v1/balance_transactions"))
    account = platform_account(db_session, app)
    assert (account.source, account.deposit_confirmation) == ("stripe", "bank_statement")

    result = jobs.run_stripe_day(account, day)
    assert result.created and result.statuses == {"matched": 1}
    listed, listed_again, transactions = fake.requests
    start = int(dt.datetime(2026, 3, 2, tzinfo=dt.UTC).timestamp())
    assert dict(listed.query)["created[gte]"] == str(start)
    assert dict(listed.query)["created[lt]"] == str(start + 86400)
    assert dict(listed_again.query)["starting_after"] == "po_recon_a"  # every page
    assert dict(transactions.query) == {"payout": "po_recon_a", "expand[0]": "data.source", "limit": "100"}
    assert listed.headers["Authorization"] == "Bearer sk_test_recon_platform"

    # Stored as the JSON document received, with its checksum.
    stored = db_session.scalars(select(ReportFile).where(ReportFile.id == result.file_id)).one()
    document = json.loads(stored.content)
    assert (stored.source, stored.kind, stored.report_date) == ("stripe", "settlement", day)
    assert stored.checksum == hashlib.sha256(stored.content).hexdigest()
    assert [p["id"] for p in document["payouts"]] == ["po_recon_a"]
    assert document["balance_transactions"]["po_recon_a"][0]["source"]["payment_intent"] == "pi_recon_a"
    line = db_session.scalars(select(ReportLine).where(ReportLine.file_id == stored.id)).one()
    assert (line.psp, line.reference, line.batch_id, line.object_id, line.gross, line.fee, line.net) == (
        "stripe", "pi_recon_a", "po_recon_a", paid.id, 10000, 320, 9680)
    db_session.commit()
    held = books(db_session, scope)
    # The fee 3.20 is borne by the merchant's default seller (it has no sellers of its own; app/payouts/fees.py).
    seller_payables = {code: amount for code, amount in held.accounts.items() if code.startswith("seller_payable:")}
    assert held.get("psp_clearing:stripe:USD") == 9680 and list(seller_payables.values()) == [10000 - 320]
    assert not held.get("psp_fees:USD")

    # The same answers again are the same bytes: nothing changes.
    fake.answer("GET", "/v1/payouts", page([payout("po_recon_a", 9680)], has_more=True), page([manual]))
    again = jobs.run_stripe_day(account, day)
    assert not again.created and again.file_id == result.file_id
    assert books(db_session, scope).get("psp_clearing:stripe:USD") == 9680
    verify_ledger(app)


def test_a_failing_stripe_fetch_stays_due_and_is_recorded(app, db_session, platform_stripe_at):
    fake = platform_stripe_at
    fake.answer("GET", "/v1/payouts", (500, {"error": {"type": "api_error", "message": "down"}}))
    done, failed = [], []
    today = dt.date(2026, 5, 20)
    jobs._fetch_stripe_days(today, done, failed)
    assert done == [] and f"stripe:test:{today - dt.timedelta(days=1)}" in failed
    rows = db_session.scalars(select(FetchFailure).where(FetchFailure.source == "stripe")).all()
    assert len(rows) == jobs.LOOKBACK_DAYS
    assert {row.last_error for row in rows} == {"stripe: Stripe answered HTTP 500"}
    assert all(not row.livemode and row.kind == "settlement" for row in rows)
    db_session.commit()
    # Nothing was imported: each day is asked again at the next sweep (its failure counted once more).
    jobs._fetch_stripe_days(today, [], [])
    assert db_session.scalar(select(func.max(FetchFailure.attempts)).where(FetchFailure.source == "stripe")) == 2
    db_session.commit()


# -- deposits confirmed by payout events --------------------------------------------------------------------------


def signed(event_type: str, obj: dict, event_id: str, secret: str) -> tuple[dict, bytes]:
    event = stripe_fixture("event")
    event.update({"id": event_id, "type": event_type, "created": int(time.time()), "livemode": False,
                  "data": {"object": obj}})
    body = json.dumps(event).encode()
    timestamp = int(time.time())
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return {"Stripe-Signature": f"t={timestamp},v1={digest}", "Content-Type": "application/json"}, body


def connected(app, session, scope: Scope, secret: str, **kwargs):
    box = SecretBox(app.config["KASSA_ENCRYPTION_KEYS"])
    row = set_credentials(session, scope, box, "stripe", secret_key=f"sk_test_{secret}",
                          webhook_secret=f"whsec_{secret}", **kwargs)
    session.commit()
    return row


def import_account_report(app, session, credential: str, day: dt.date, payouts: list[dict], transactions: dict):
    from app.payments.deps import deps_for

    content = stripe_lines.report_document(credential, False, (0, 1), payouts, transactions)
    result = service.reconcile_settlement(session, psp=stripe_lines.source_of(credential), livemode=False,
                                          report_date=day, content=content,
                                          hmac_key=deps_for(app).ledger_hmac_key)
    session.commit()
    return result


def deposits(session, batch: str) -> int:
    count = session.scalar(select(func.count()).select_from(JournalTransaction).where(
        JournalTransaction.kind == "deposit", JournalTransaction.reference == batch))
    session.commit()
    return count


def callback(session, event_id: str) -> PspCallback:
    session.rollback()
    row = session.scalars(select(PspCallback).where(PspCallback.callback_id == event_id)).one()
    session.commit()
    return row


def test_payout_paid_settles_a_connected_accounts_batch_once_and_payout_failed_opens_the_deposit_break(
        app, client, db_session, shop, stripe_api):
    scope = shop["scope"]
    day = dt.date(2026, 3, 10)
    credential = connected(app, db_session, scope, "recon_own")
    assert credential.deposit_confirmation == "payout_events"  # a merchant's own account: its own bank
    stripe_payment(db_session, scope, 5000, "pi_own_paid", credential.id, day)
    stripe_payment(db_session, scope, 2000, "pi_own_failed", credential.id, day)
    result = import_account_report(app, db_session, credential.id, day,
                                   [payout("po_own_paid", 4850), payout("po_own_failed", 1940)],
                                   {"po_own_paid": [charge_bt("pi_own_paid", 5000, 150, "po_own_paid")],
                                    "po_own_failed": [charge_bt("pi_own_failed", 2000, 60, "po_own_failed")]})
    assert result.statuses == {"matched": 2}
    assert books(db_session, scope).get("psp_clearing:stripe:USD") == 4850 + 1940
    hook = f"/hooks/stripe/{scope.merchant_id}"
    stripe_knows(stripe_api, payout("po_own_paid", 4850, status="paid"))
    stripe_knows(stripe_api, payout("po_own_failed", 1940, status="failed", failure_code="account_closed",
                                    failure_message="The bank account has been closed"))

    headers, body = signed("payout.paid", payout("po_own_paid", 4850, status="paid"), "evt_po_paid", "whsec_recon_own")
    assert client.post(hook, data=body, headers=headers).json == {"received": True, "duplicate": False}
    assert callback(db_session, "evt_po_paid").result == "applied"
    held = books(db_session, scope)
    assert held.get("cash:USD") == 4850 and held.get("psp_clearing:stripe:USD") == 1940
    # Replayed: the same event changes nothing.
    assert client.post(hook, data=body, headers=headers).json["duplicate"] is True
    assert books(db_session, scope).get("cash:USD") == 4850 and deposits(db_session, "po_own_paid") == 1
    # Stripe telling it again in another event: the batch's deposit is posted already, nothing moves twice.
    headers, body = signed("payout.paid", payout("po_own_paid", 4850, status="paid"), "evt_po_paid_again",
                           "whsec_recon_own")
    assert client.post(hook, data=body, headers=headers).json["duplicate"] is False
    assert callback(db_session, "evt_po_paid_again").result == "applied"
    assert books(db_session, scope).get("cash:USD") == 4850 and deposits(db_session, "po_own_paid") == 1

    headers, body = signed("payout.failed", payout("po_own_failed", 1940, status="failed",
                                                   failure_code="account_closed",
                                                   failure_message="The bank account has been closed"),
                           "evt_po_failed", "whsec_recon_own")
    assert client.post(hook, data=body, headers=headers).status_code == 200
    db_session.rollback()
    opened = db_session.scalars(PLATFORM_BOOK.select(Break, Break.batch_id == "po_own_failed")).one()
    assert (opened.type, opened.status, opened.kassa_amount, opened.psp_amount, opened.psp) == (
        "deposit_mismatch", "open", 1940, 0, "stripe")
    assert "account_closed" in opened.detail
    db_session.commit()
    held = books(db_session, scope)
    assert held.get("cash:USD") == 4850 and held.get("psp_clearing:stripe:USD") == 1940  # not paid: nothing moves
    verify_ledger(app)


def test_a_payout_event_signed_for_another_credential_is_refused(app, client, db_session, shop):
    scope = shop["scope"]
    day = dt.date(2026, 3, 12)
    own = connected(app, db_session, scope, "recon_victim")
    stripe_payment(db_session, scope, 3000, "pi_victim", own.id, day)
    import_account_report(app, db_session, own.id, day, [payout("po_victim", 2910)],
                          {"po_victim": [charge_bt("pi_victim", 3000, 90, "po_victim")]})
    other = factories.merchant(db_session, name="Other Shop")
    db_session.commit()
    connected(app, db_session, Scope(other.id, False), "recon_other")

    headers, body = signed("payout.paid", payout("po_victim", 2910, status="paid"), "evt_po_forged", "whsec_recon_other")
    assert client.post(f"/hooks/stripe/{other.id}", data=body, headers=headers).status_code == 200
    row = callback(db_session, "evt_po_forged")
    assert row.result == "rejected" and "another merchant" in row.last_error and row.event_id is None
    assert deposits(db_session, "po_victim") == 0
    assert books(db_session, scope).get("psp_clearing:stripe:USD") == 2910
    # The same merchant's next account (a new key: a new credential) does not speak for the old account's payouts.
    replaced = connected(app, db_session, scope, "recon_victim_new")
    assert replaced.id != own.id
    headers, body = signed("payout.paid", payout("po_victim", 2910, status="paid"), "evt_po_new_account",
                           "whsec_recon_victim_new")
    assert client.post(f"/hooks/stripe/{scope.merchant_id}", data=body, headers=headers).status_code == 200
    row = callback(db_session, "evt_po_new_account")
    assert row.result == "rejected" and own.id in row.last_error and replaced.id in row.last_error
    assert deposits(db_session, "po_victim") == 0
    # Nor does the platform's own secret vouch for it.
    headers, body = signed("payout.paid", payout("po_victim", 2910, status="paid"), "evt_po_platform",
                           PLATFORM_WEBHOOK_SECRET)
    app.config["STRIPE_WEBHOOK_SECRET_TEST"] = PLATFORM_WEBHOOK_SECRET
    try:
        assert client.post("/hooks/stripe", data=body, headers=headers).status_code == 200
    finally:
        del app.config["STRIPE_WEBHOOK_SECRET_TEST"]
    assert callback(db_session, "evt_po_platform").result == "rejected"
    assert deposits(db_session, "po_victim") == 0


def test_a_payout_before_its_report_waits_and_a_bank_statement_account_ignores_payout_events(app, client,
                                                                                             db_session, shop,
                                                                                             stripe_api):
    scope = shop["scope"]
    day = dt.date(2026, 3, 14)
    own = connected(app, db_session, scope, "recon_early")
    stripe_knows(stripe_api, payout("po_early", 3880, status="paid"))
    stripe_payment(db_session, scope, 4000, "pi_early", own.id, day)
    headers, body = signed("payout.paid", payout("po_early", 3880, status="paid"), "evt_po_early", "whsec_recon_early")
    assert client.post(f"/hooks/stripe/{scope.merchant_id}", data=body, headers=headers).status_code == 200
    row = callback(db_session, "evt_po_early")
    assert row.processed_at is None and "po_early" in row.last_error  # retried by the sweep once the report is in
    import_account_report(app, db_session, own.id, day, [payout("po_early", 3880)],
                          {"po_early": [charge_bt("pi_early", 4000, 120, "po_early")]})
    from app.psp.callbacks import process_callback

    assert process_callback(db_session, row.id) == "applied"
    db_session.commit()
    assert books(db_session, scope).get("cash:USD") == 3880

    # The same merchant declares its deposits are seen on the platform's bank statement: payout events move nothing.
    set_deposit_confirmation(db_session, scope, "stripe", "bank_statement")
    db_session.commit()
    stripe_payment(db_session, scope, 1000, "pi_statement", own.id, day)
    import_account_report(app, db_session, own.id, day + dt.timedelta(days=1), [payout("po_statement", 970)],
                          {"po_statement": [charge_bt("pi_statement", 1000, 30, "po_statement")]})
    headers, body = signed("payout.paid", payout("po_statement", 970, status="paid"), "evt_po_statement",
                           "whsec_recon_early")
    assert client.post(f"/hooks/stripe/{scope.merchant_id}", data=body, headers=headers).status_code == 200
    assert callback(db_session, "evt_po_statement").result == "applied"
    assert deposits(db_session, "po_statement") == 0
    verify_ledger(app)


def test_the_deposit_confirmation_is_validated_and_kept_when_the_key_is_replaced(app, db_session, shop):
    scope = shop["scope"]
    box = SecretBox(app.config["KASSA_ENCRYPTION_KEYS"])
    with pytest.raises(DepositConfirmationError) as refused:
        set_credentials(db_session, scope, box, "stripe", secret_key="sk_test_v1", deposit_confirmation="bank")
    assert refused.value.param == "deposit_confirmation"
    db_session.rollback()
    assert current_credential(db_session, scope, "stripe") is None  # nothing stored
    first = set_credentials(db_session, scope, box, "stripe", secret_key="sk_test_v1",
                            deposit_confirmation="bank_statement")
    replaced = set_credentials(db_session, scope, box, "stripe", secret_key="sk_test_v2")
    assert replaced.id != first.id and replaced.deposit_confirmation == "bank_statement"
    with pytest.raises(DepositConfirmationError):
        set_deposit_confirmation(db_session, scope, "stripe", "payout.paid")
    db_session.commit()
    with pytest.raises(RuntimeError, match="STRIPE_DEPOSIT_CONFIRMATION_LIVE"):
        check_platform_keys({"STRIPE_DEPOSIT_CONFIRMATION_LIVE": "webhooks"})

    runner = app.test_cli_runner()
    bad = runner.invoke(args=["psp-credentials", "deposit-confirmation", "--merchant", scope.merchant_id, "nope"])
    assert bad.exit_code != 0 and "must be one of" in bad.output
    good = runner.invoke(args=["psp-credentials", "deposit-confirmation", "--merchant", scope.merchant_id,
                               "payout_events"])
    assert good.exit_code == 0, good.output
    db_session.rollback()
    assert current_credential(db_session, scope, "stripe").deposit_confirmation == "payout_events"
    db_session.commit()


def test_a_corrected_report_of_a_connected_account_closes_the_breaks_of_the_lines_it_replaces(app, db_session, shop):
    scope = shop["scope"]
    day = dt.date(2026, 3, 14)
    credential = connected(app, db_session, scope, "recon_corrected")
    stripe_payment(db_session, scope, 5000, "pi_own_corrected", credential.id, day)
    first = import_account_report(app, db_session, credential.id, day, [payout("po_own_corrected", 4750)],
                                  {"po_own_corrected": [charge_bt("pi_own_corrected", 4900, 150, "po_own_corrected")]})
    assert first.statuses == {"mismatch": 1}
    [mismatch] = db_session.scalars(scope.select(Break, Break.reference == "pi_own_corrected")).all()
    assert (mismatch.type, mismatch.psp, mismatch.status) == ("amount_mismatch", "stripe", "open")
    db_session.commit()

    corrected = import_account_report(app, db_session, credential.id, day, [payout("po_own_corrected", 4850)],
                                      {"po_own_corrected": [charge_bt("pi_own_corrected", 5000, 150,
                                                                      "po_own_corrected")]})
    assert corrected.created and mismatch.id in corrected.breaks_closed
    db_session.rollback()
    assert db_session.get(Break, (scope.merchant_id, mismatch.id)).status == "closed"
    db_session.commit()
    verify_ledger(app)


def test_the_cli_fetches_and_reconciles_a_stripe_account_s_day(app, db_session, shop, platform_stripe_at):
    fake = platform_stripe_at
    scope = shop["scope"]
    day = dt.date(2026, 3, 22)
    paid = stripe_payment(db_session, scope, 6000, "pi_recon_cli", PLATFORM, day)
    fake.answer("GET", "/v1/payouts", page([payout("po_recon_cli", 5826)]))
    fake.answer("GET", "/v1/balance_transactions",
                page([charge_bt("pi_recon_cli", 6000, 174, "po_recon_cli"), payout_bt("po_recon_cli", 5826)],
                     url="/v1/balance_transactions"))
    runner = app.test_cli_runner()
    result = runner.invoke(args=["reconcile", "run", "--psp", "stripe", "--date", day.isoformat()])
    assert result.exit_code == 0, result.output
    body = json.loads(result.output)
    assert body["created"] and body["statuses"] == {"matched": 1}
    line = db_session.scalars(select(ReportLine).where(ReportLine.file_id == body["file"])).one()
    assert (line.object_id, line.batch_id) == (paid.id, "po_recon_cli")
    db_session.commit()
    # An account Kassa does not fetch is refused with its reason, nothing imported.
    unknown = runner.invoke(args=["reconcile", "run", "--psp", "stripe", "--date", day.isoformat(), "--live"])
    assert unknown.exit_code == 1 and "no Stripe account Kassa fetches in live mode" in unknown.output


def test_a_stripe_report_s_dispute_line_whose_notice_was_missed_creates_the_dispute(app, db_session, shop,
                                                                                    platform_stripe_at):
    """The scheduled fetch of a Stripe account asks Stripe for a dispute its report carries and Kassa never heard
    of, as a sandbox acquirer's import does: the dispute is created and a dispute_notice_missed break opened."""
    from app.disputes.models import Dispute

    fake = platform_stripe_at
    scope = shop["scope"]
    day = dt.date(2026, 3, 20)
    paid = stripe_payment(db_session, scope, 5000, "pi_recon_dsp", PLATFORM, day)
    db_session.commit()
    dispute = stripe_fixture("dispute")
    dispute.update({"id": "du_recon_missed", "payment_intent": "pi_recon_dsp", "charge": "ch_pi_recon_dsp",
                    "amount": 5000, "currency": "usd", "status": "needs_response"})
    dispute_bt = stripe_fixture("balance_transaction")
    dispute_bt.update({"id": "txn_du_recon_missed", "type": "adjustment", "reporting_category": "dispute",
                       "amount": -5000, "fee": 1500, "net": -6500, "source": "du_recon_missed", "currency": "usd"})
    dispute["balance_transactions"] = [dict(dispute_bt)]  # the funds taken, as Stripe's dispute lists them
    dispute_bt = dict(dispute_bt, source=dispute)
    fake.answer("GET", "/v1/payouts", page([payout("po_recon_dsp", 4850 - 6500)]))
    fake.answer("GET", "/v1/balance_transactions",
                page([charge_bt("pi_recon_dsp", 5000, 150, "po_recon_dsp"), dispute_bt],
                     url="/v1/balance_transactions"))
    fake.answer("GET", "/v1/disputes/du_recon_missed", (200, dispute))

    try:
        result = jobs.run_stripe_day(platform_account(db_session, app), day)
    finally:  # the app's router asked the stand-in: its connections closed before the stand-in stops
        router = app.extensions.pop("psp_router", None)
        if router is not None:
            router.close()
    assert result.created
    assert any(request.path == "/v1/disputes/du_recon_missed" for request in fake.requests)
    db_session.rollback()
    created = db_session.scalars(scope.select(Dispute, Dispute.psp_reference == "du_recon_missed")).one()
    assert created.payment_id == paid.id
    found = db_session.scalars(select(Break).where(Break.reference == "du_recon_missed")).all()
    kinds = {row.type for row in found}
    assert kinds == {"dispute_notice_missed"}
    db_session.commit()
    verify_ledger(app)
