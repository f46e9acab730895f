"""Resolving breaks: each kind posts its adjustment as a new transaction (or none), audited, and the ledger verifies;
the CLI (`flask reconcile run --file`, `breaks --json`, `resolve`) drives the same service."""
import datetime as dt
import itertools
import json

import pytest
from flask import current_app
from sqlalchemy import select

from app.accounts.audit import AuditEntry
from app.ledger import accounts
from app.ledger.models import JournalTransaction
from app.payments.deps import deps_for
from app.reconciliation import service
from app.reconciliation.models import Break
from app.reconciliation.resolution import ResolutionError, resolve_break
from app.scoping import Scope
from tests.disputes.helpers import verify_ledger
from tests.reconciliation.helpers import PLATFORM, FakeSandbox, balance, reconcile

_days = itertools.count()


@pytest.fixture
def sandbox():
    return FakeSandbox(dt.date(2033, 1, 1) + dt.timedelta(days=40 * next(_days)))


def resolve(session, scope, row, resolution, **extra):
    resolved = resolve_break(session, scope, row.id, resolution=resolution, note=extra.pop("note", "checked"),
                             hmac_key=deps_for(current_app).ledger_hmac_key, actor_user_id=None,
                             actor_label="ops@kassa.test", **extra)
    session.commit()
    return resolved


def one_break(session, scope, **criteria) -> Break:
    [row] = session.scalars(scope.select(Break, *[getattr(Break, k) == v for k, v in criteria.items()])).all()
    session.commit()
    return row


def test_accepting_an_amount_mismatch_moves_the_difference_to_fees(app, db_session, shop, sandbox):
    scope = shop["scope"]
    payment = sandbox.capture(db_session, scope, 5000)
    sandbox.faults.append({"action": "alter", "reference": payment.psp_reference, "amount": -40})
    reconcile(db_session, sandbox)
    row = one_break(db_session, scope, type="amount_mismatch")
    assert balance(db_session, scope, accounts.psp_receivable("sandbox", "USD")) == 40
    fees_before = balance(db_session, scope, accounts.psp_fees("USD"))

    resolved = resolve(db_session, scope, row, "accepted", note="PSP kept 0.40, accepted")
    assert (resolved.status, resolved.resolution, resolved.resolved_by) == ("resolved", "accepted", "ops@kassa.test")
    assert balance(db_session, scope, accounts.psp_receivable("sandbox", "USD")) == 0
    assert balance(db_session, scope, accounts.psp_fees("USD")) == fees_before + 40
    posted = db_session.get(JournalTransaction, resolved.resolution_transaction_id)
    assert posted.business_key == f"resolve:{row.id}" and posted.merchant_id == scope.merchant_id
    audit = db_session.scalars(select(AuditEntry).where(AuditEntry.target == row.id)).one()
    assert audit.action == "reconciliation.break_resolved" and audit.details["note"] == "PSP kept 0.40, accepted"
    db_session.commit()
    with pytest.raises(ResolutionError, match="resolved already"):
        resolve(db_session, scope, row, "written_off")
    db_session.rollback()
    verify_ledger(app)


def test_an_unknown_line_matched_by_hand_leaves_suspense_for_the_payment_s_book(app, db_session, shop, sandbox):
    scope = shop["scope"]
    # Kassa booked the payment, but the PSP reports it under another reference (the fault's unknown line).
    payment = sandbox.capture(db_session, scope, 3000)
    sandbox.faults += [{"action": "drop", "reference": payment.psp_reference},
                       {"action": "unknown", "date": sandbox.day.isoformat(), "reference": f"auth_other_{sandbox.day}",
                        "amount": 3000}]
    reconcile(db_session, sandbox)
    row = one_break(db_session, PLATFORM, type="missing_in_kassa", reference=f"auth_other_{sandbox.day}")
    assert balance(db_session, PLATFORM, accounts.suspense("sandbox", "USD")) >= 3000 - 117

    with pytest.raises(ResolutionError, match="Name the object"):
        resolve(db_session, PLATFORM, row, "matched_by_hand")
    db_session.rollback()
    suspense_before = balance(db_session, PLATFORM, accounts.suspense("sandbox", "USD"))
    resolve(db_session, PLATFORM, row, "matched_by_hand", target=payment.id, note="same charge, PSP's typo")
    assert balance(db_session, PLATFORM, accounts.suspense("sandbox", "USD")) == suspense_before - (3000 - 117)
    assert balance(db_session, scope, accounts.psp_receivable("sandbox", "USD")) == 0
    assert balance(db_session, scope, accounts.psp_clearing("sandbox", "USD")) == 3000 - 117
    keys = db_session.scalars(select(JournalTransaction.merchant_id).where(
        JournalTransaction.business_key == f"resolve:{row.id}")).all()
    assert sorted(keys) == sorted([PLATFORM.merchant_id, scope.merchant_id])
    from app.reconciliation.models import Match

    [match] = db_session.scalars(scope.select(Match)).all()
    assert (match.object_id, match.matched_by, match.line_no) == (payment.id, "operator", row.lines[0]["line"])
    db_session.commit()
    verify_ledger(app)


def test_a_hand_match_answers_the_payment_s_missing_at_psp_break_before_or_after_it_is_filed(app, db_session, shop,
                                                                                              sandbox):
    """A payment whose line came under another reference is reported, by that line: its "booked, not reported"
    break closes when the line is matched to it by hand, and none is filed for a payment matched by hand earlier."""
    scope = shop["scope"]
    filed = sandbox.capture(db_session, scope, 3000)
    unfiled = sandbox.capture(db_session, scope, 4000, day=sandbox.day + dt.timedelta(days=1))  # not due yet
    sandbox.faults += [{"action": "drop", "reference": filed.psp_reference}]
    for reference, amount in (("auth_typo_a", 3000), ("auth_typo_b", 4000)):
        sandbox.faults.append({"action": "unknown", "date": sandbox.day.isoformat(), "reference": reference,
                               "amount": amount})
    reconcile(db_session, sandbox)
    missing = db_session.scalars(scope.select(Break, Break.type == "missing_at_psp",
                                              Break.reference == filed.psp_reference)).one()
    for reference, payment in (("auth_typo_a", filed), ("auth_typo_b", unfiled)):
        line = db_session.scalars(PLATFORM.select(Break, Break.type == "missing_in_kassa",
                                                  Break.reference == reference)).one()
        resolve(db_session, PLATFORM, line, "matched_by_hand", target=payment.id, note="the PSP's typo")
    db_session.commit()
    db_session.refresh(missing)
    assert missing.status == "closed"
    # Days later, past the delay and grace: the hand-matched payment not yet due before is settled, nothing filed.
    later = sandbox.day + dt.timedelta(days=10)
    service.reconcile_settlement(db_session, psp="sandbox", livemode=False, report_date=later,
                                 content=sandbox.report(later), hmac_key=deps_for(current_app).ledger_hmac_key)
    db_session.commit()
    assert db_session.scalars(scope.select(Break, Break.type == "missing_at_psp",
                                           Break.reference == unfiled.psp_reference)).all() == []


def test_writing_off_a_duplicate_and_asking_the_psp(app, db_session, shop, sandbox):
    scope = shop["scope"]
    payment = sandbox.capture(db_session, scope, 2000)
    other = sandbox.capture(db_session, scope, 1000)
    sandbox.faults += [{"action": "duplicate", "reference": payment.psp_reference},
                       {"action": "alter", "reference": other.psp_reference, "fee": 30}]
    reconcile(db_session, sandbox)
    duplicate = one_break(db_session, PLATFORM, type="duplicate", reference=payment.psp_reference)
    before = balance(db_session, PLATFORM, accounts.suspense("sandbox", "USD"))
    resolve(db_session, PLATFORM, duplicate, "written_off", note="the PSP will net it")
    assert balance(db_session, PLATFORM, accounts.suspense("sandbox", "USD")) == before - (2000 - 88)
    fee = one_break(db_session, scope, type="fee_mismatch")
    asked = resolve(db_session, scope, fee, "psp_asked", note="ticket 123")
    assert asked.resolution == "psp_asked" and asked.resolution_transaction_id is None
    verify_ledger(app)


def test_the_cli_runs_a_day_from_a_file_and_lists_breaks_as_json(app, db_session, shop, sandbox, tmp_path):
    scope = shop["scope"]
    payment = sandbox.capture(db_session, scope, 4200)
    sandbox.faults.append({"action": "alter", "reference": payment.psp_reference, "amount": 7})
    path = tmp_path / "report.csv"
    path.write_bytes(sandbox.report())
    runner = app.test_cli_runner()
    result = runner.invoke(args=["reconcile", "run", "--psp", "sandbox", "--date", sandbox.day.isoformat(),
                                 "--file", str(path)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["statuses"] == {"mismatch": 1}
    again = runner.invoke(args=["reconcile", "run", "--psp", "sandbox", "--date", sandbox.day.isoformat(),
                                "--file", str(path)])
    assert json.loads(again.output)["created"] is False

    listed = runner.invoke(args=["reconcile", "breaks", "--json", "--merchant", scope.merchant_id])
    assert listed.exit_code == 0, listed.output
    [row] = json.loads(listed.output)
    assert (row["type"], row["kassa_amount"], row["psp_amount"], row["reference"]) == (
        "amount_mismatch", 4200, 4207, payment.psp_reference)
    resolved = runner.invoke(args=["reconcile", "resolve", row["id"], "--merchant", scope.merchant_id,
                                   "--resolution", "accepted", "--note", "ok", "--operator", "ops"])
    assert resolved.exit_code == 0, resolved.output
    assert json.loads(resolved.output)["status"] == "resolved"
    bad = tmp_path / "bad.csv"
    bad.write_text("reference,type\n")
    refused = runner.invoke(args=["reconcile", "run", "--psp", "sandbox", "--date", "2033-12-31", "--file", str(bad)])
    assert refused.exit_code == 1 and "header" in refused.output
    verify_ledger(app)


def test_a_line_cannot_be_matched_by_hand_to_a_payment_already_settled(app, db_session, shop, sandbox):
    """Review r3: matching a suspense line by hand to a payment whose own line already settled it took its
    receivable down twice (the merchant's clearing then held money the PSP never owed it)."""
    scope = shop["scope"]
    payment = sandbox.capture(db_session, scope, 3000)
    sandbox.faults += [{"action": "unknown", "date": sandbox.day.isoformat(), "reference": f"auth_extra_{sandbox.day}",
                        "amount": 3000}]
    reconcile(db_session, sandbox)
    assert balance(db_session, scope, accounts.psp_receivable("sandbox", "USD")) == 0
    row = one_break(db_session, PLATFORM, type="missing_in_kassa", reference=f"auth_extra_{sandbox.day}")
    with pytest.raises(ResolutionError, match="already"):
        resolve(db_session, PLATFORM, row, "matched_by_hand", target=payment.id, note="looks like it")
    db_session.rollback()
    assert balance(db_session, scope, accounts.psp_receivable("sandbox", "USD")) == 0
    assert balance(db_session, scope, accounts.psp_clearing("sandbox", "USD")) == 3000 - 117


@pytest.mark.parametrize("corrected", [False, True], ids=["next_day", "corrected_version"])
def test_a_payment_matched_by_hand_is_not_settled_again_by_its_own_line_reported_later(app, db_session, shop, sandbox,
                                                                                      corrected):
    """The converse of the test above: a suspense line matched by hand to a payment settled it (its receivable down,
    its clearing up); the payment's own line reported later (the next day's report, or a corrected version of the
    day) is a duplicate waiting in suspense, not a second settlement of the payment."""
    scope = shop["scope"]
    payment = sandbox.capture(db_session, scope, 3000)
    other = f"auth_other_{sandbox.day}"
    sandbox.faults += [{"action": "drop", "reference": payment.psp_reference},
                       {"action": "unknown", "date": sandbox.day.isoformat(), "reference": other, "amount": 3000}]
    reconcile(db_session, sandbox)
    row = one_break(db_session, PLATFORM, type="missing_in_kassa", reference=other)
    resolve(db_session, PLATFORM, row, "matched_by_hand", target=payment.id, note="same charge, PSP's typo")
    assert balance(db_session, scope, accounts.psp_receivable("sandbox", "USD")) == 0
    assert balance(db_session, scope, accounts.psp_clearing("sandbox", "USD")) == 3000 - 117

    sandbox.faults = [fault for fault in sandbox.faults if fault["action"] != "drop"]  # its own line now comes
    if corrected:
        result = reconcile(db_session, sandbox)
    else:
        result = reconcile(db_session, sandbox, day=sandbox.day + dt.timedelta(days=1),
                           content=sandbox.report(sandbox.day))
    from app.reconciliation.models import ReportLine

    [line] = db_session.scalars(select(ReportLine).where(ReportLine.file_id == result.file_id,
                                                         ReportLine.reference == payment.psp_reference)).all()
    assert line.status == "duplicate" and line.merchant_id is None
    assert balance(db_session, scope, accounts.psp_receivable("sandbox", "USD")) == 0
    assert balance(db_session, scope, accounts.psp_clearing("sandbox", "USD")) == 3000 - 117
    one_break(db_session, PLATFORM, type="duplicate", reference=payment.psp_reference)
    db_session.commit()
    verify_ledger(app)


def test_a_line_matched_by_hand_that_a_corrected_version_drops_is_reversed_in_the_payment_s_book(app, db_session,
                                                                                                 shop, sandbox):
    """A suspense line moved by hand to a payment's book, then dropped by the day's corrected version: its posting is
    reversed where the operator moved it (the payment's receivable back up, its clearing down), not once more in the
    platform's suspense; the payment is no longer settled, so its own line reported later matches it."""
    scope = shop["scope"]
    payment = sandbox.capture(db_session, scope, 3000)
    other = f"auth_other_{sandbox.day}"
    sandbox.faults += [{"action": "drop", "reference": payment.psp_reference},
                       {"action": "unknown", "date": sandbox.day.isoformat(), "reference": other, "amount": 3000}]
    suspense_before = balance(db_session, PLATFORM, accounts.suspense("sandbox", "USD"))
    clearing_before = balance(db_session, PLATFORM, accounts.psp_clearing("sandbox", "USD"))
    reconcile(db_session, sandbox)
    row = one_break(db_session, PLATFORM, type="missing_in_kassa", reference=other)
    resolve(db_session, PLATFORM, row, "matched_by_hand", target=payment.id, note="same charge, PSP's typo")
    assert balance(db_session, scope, accounts.psp_receivable("sandbox", "USD")) == 0

    sandbox.faults = [fault for fault in sandbox.faults if fault["action"] == "drop"]  # the PSP takes the line back
    reconcile(db_session, sandbox)
    assert balance(db_session, PLATFORM, accounts.suspense("sandbox", "USD")) == suspense_before
    assert balance(db_session, PLATFORM, accounts.psp_clearing("sandbox", "USD")) == clearing_before
    assert balance(db_session, scope, accounts.psp_receivable("sandbox", "USD")) == 3000
    assert balance(db_session, scope, accounts.psp_clearing("sandbox", "USD")) == 0
    assert balance(db_session, scope, accounts.psp_fees("USD")) == 0

    sandbox.faults = []  # a third version carries the payment's own line: it settles the payment
    result = reconcile(db_session, sandbox)
    assert result.statuses == {"matched": 1}
    assert balance(db_session, scope, accounts.psp_receivable("sandbox", "USD")) == 0
    assert balance(db_session, scope, accounts.psp_clearing("sandbox", "USD")) == 3000 - 117
    db_session.commit()
    verify_ledger(app)


def test_accepting_a_short_deposit_settles_the_batch_and_books_the_shortfall_to_fees(app, db_session, shop, sandbox):
    """A batch paid 0.25 short, accepted: the deposit leaves the platform's suspense, the merchant's clearing moves
    to cash (what arrived), the 0.25 the PSP kept goes to psp_fees (the platform bears PSP fees); never the whole
    deposit booked as a gain (review r3)."""
    scope = shop["scope"]
    sandbox.capture(db_session, scope, 10000)
    reconcile(db_session, sandbox)
    sandbox.faults.append({"action": "short", "batch_id": sandbox.batch(), "amount": 25})
    from tests.reconciliation.helpers import deposit

    suspense_before = balance(db_session, PLATFORM, accounts.suspense("sandbox", "USD"))
    deposit(db_session, sandbox, sandbox.day + dt.timedelta(days=1))
    row = one_break(db_session, PLATFORM, type="deposit_mismatch", batch_id=sandbox.batch())
    assert balance(db_session, PLATFORM, accounts.suspense("sandbox", "USD")) - suspense_before == 9655
    platform_fees = balance(db_session, PLATFORM, accounts.psp_fees("USD"))
    fees = balance(db_session, scope, accounts.psp_fees("USD"))

    resolved = resolve(db_session, PLATFORM, row, "accepted", note="PSP kept 0.25, accepted")
    assert resolved.status == "resolved" and resolved.resolution_transaction_id
    assert balance(db_session, PLATFORM, accounts.suspense("sandbox", "USD")) == suspense_before
    assert balance(db_session, PLATFORM, accounts.psp_fees("USD")) == platform_fees
    assert balance(db_session, scope, accounts.psp_clearing("sandbox", "USD")) == 0
    assert balance(db_session, scope, accounts.cash("USD")) == 9655
    assert balance(db_session, scope, accounts.psp_fees("USD")) == fees + 25
    books = db_session.scalars(select(JournalTransaction.merchant_id).where(
        JournalTransaction.business_key == f"resolve:{row.id}")).all()
    assert sorted(books) == sorted([PLATFORM.merchant_id, scope.merchant_id])
    db_session.commit()
    # The accepted deposit is the batch's: the same batch paid in again later waits in suspense as a duplicate.
    later = sandbox.day + dt.timedelta(days=2)
    again = service.reconcile_statement(
        db_session, livemode=False, report_date=later, hmac_key=deps_for(current_app).ledger_hmac_key,
        content=sandbox.statement(sandbox.day + dt.timedelta(days=1)).replace(
            (sandbox.day + dt.timedelta(days=1)).isoformat().encode(), later.isoformat().encode()))
    db_session.commit()
    assert again.statuses == {"mismatch": 1}
    assert balance(db_session, scope, accounts.cash("USD")) == 9655
    assert one_break(db_session, PLATFORM, type="duplicate", batch_id=sandbox.batch()).psp_amount == 9655
    verify_ledger(app)


def test_a_resolution_note_holding_a_card_number_is_refused_by_the_service(app, db_session, shop, sandbox):
    """Review r3: the console's form refused a card number in the note, but `flask reconcile resolve --note` (the
    same service) stored and audited it."""
    scope = shop["scope"]
    payment = sandbox.capture(db_session, scope, 5000)
    sandbox.faults.append({"action": "alter", "reference": payment.psp_reference, "amount": -40})
    reconcile(db_session, sandbox)
    row = one_break(db_session, scope, type="amount_mismatch")
    with pytest.raises(ResolutionError, match="card number"):
        resolve(db_session, scope, row, "psp_asked", note="shopper's card 4242 4242 4242 4242, ask the PSP")
    db_session.rollback()
    assert one_break(db_session, scope, id=row.id).status == "open"


def test_a_currency_mismatch_cannot_be_closed_while_its_money_sits_in_suspense(app, db_session, shop, sandbox):
    scope = shop["scope"]
    payment = sandbox.capture(db_session, scope, 5000)
    sandbox.faults.append({"action": "alter", "reference": payment.psp_reference, "currency": "EUR"})
    reconcile(db_session, sandbox)
    mismatch = one_break(db_session, scope, type="currency_mismatch")
    held = balance(db_session, PLATFORM, accounts.suspense("sandbox", "EUR"))
    assert held > 0
    for resolution, target in (("written_off", None), ("accepted", None), ("matched_by_hand", payment.id)):
        with pytest.raises(ResolutionError) as refused:
            resolve(db_session, scope, mismatch, resolution, target=target)
        db_session.rollback()
        assert refused.value.param == "resolution" and "FX" in refused.value.message
    assert one_break(db_session, scope, type="currency_mismatch").status == "open"
    asked = resolve(db_session, scope, mismatch, "psp_asked", note="asked for the USD report")
    assert asked.status == "resolved" and asked.resolution_transaction_id is None
    assert balance(db_session, PLATFORM, accounts.suspense("sandbox", "EUR")) == held
    verify_ledger(app)


def test_a_batch_paid_in_two_parts_posts_both_and_is_deposited_once(app, db_session, shop, sandbox):
    """Two bank entries of one batch on one statement, each half of it: each part's money reaches cash and suspense
    with its own break (the second never folds into the first's posting: a deposit lost); accepting the first
    settles the batch, and the second, accepted, is a surplus like a duplicate deposit's, never the batch's clearing
    moved to cash twice."""
    scope = shop["scope"]
    sandbox.capture(db_session, scope, 10000)
    reconcile(db_session, sandbox)
    total = balance(db_session, scope, accounts.psp_clearing("sandbox", "USD"))
    assert total > 0 and total % 2 == 0
    sandbox.faults.append({"action": "short", "batch_id": sandbox.batch(), "amount": total // 2})
    day = sandbox.day + dt.timedelta(days=1)
    xml = sandbox.statement(day).decode()
    start, end = xml.index("<Ntry>"), xml.index("</Ntry>") + len("</Ntry>")
    second = xml[start:end].replace("<NtryRef>1<", "<NtryRef>2<").replace(f"{day:%Y%m%d}00001", f"{day:%Y%m%d}00002")
    cash_before = balance(db_session, PLATFORM, accounts.cash("USD"))
    suspense_before = balance(db_session, PLATFORM, accounts.suspense("sandbox", "USD"))
    result = service.reconcile_statement(db_session, livemode=False, report_date=day, content=(
        xml[:end] + second + xml[end:]).encode(), hmac_key=deps_for(current_app).ledger_hmac_key)
    db_session.commit()
    assert result.statuses == {"mismatch": 2} and len(result.breaks_opened) == 2
    assert balance(db_session, PLATFORM, accounts.cash("USD")) - cash_before == total
    assert balance(db_session, PLATFORM, accounts.suspense("sandbox", "USD")) - suspense_before == total
    first, other = sorted(db_session.scalars(PLATFORM.select(Break, Break.type == "deposit_mismatch",
                                                             Break.batch_id == sandbox.batch())).all(),
                          key=lambda b: b.lines[0]["entry"])
    db_session.commit()

    resolve(db_session, PLATFORM, first, "accepted", note="first part")
    assert balance(db_session, scope, accounts.psp_clearing("sandbox", "USD")) == 0
    assert balance(db_session, scope, accounts.cash("USD")) == total // 2
    resolve(db_session, PLATFORM, other, "accepted", note="second part")
    assert balance(db_session, scope, accounts.psp_clearing("sandbox", "USD")) == 0
    assert balance(db_session, scope, accounts.cash("USD")) == total // 2
    assert balance(db_session, PLATFORM, accounts.suspense("sandbox", "USD")) == suspense_before
    verify_ledger(app)


def test_a_short_deposit_of_a_batch_of_several_books_splits_its_shortfall_by_largest_remainder(app, db_session,
                                                                                                sandbox):
    """Three merchants' equal shares of one batch, paid 1.00 short, accepted: 34 + 33 + 33 cents to each book's
    psp_fees, the extra cent to the first book by merchant id; every cent of the batch is in cash or fees."""
    from tests import factories
    from tests.reconciliation.helpers import deposit

    merchants = [factories.merchant(db_session, name=f"Split shop {n}") for n in range(3)]
    db_session.commit()
    scopes = sorted((Scope(merchant.id, False) for merchant in merchants), key=lambda scope: scope.merchant_id)
    for scope in scopes:
        sandbox.capture(db_session, scope, 10000)
    reconcile(db_session, sandbox)
    shares = [balance(db_session, scope, accounts.psp_clearing("sandbox", "USD")) for scope in scopes]
    assert shares == [9680, 9680, 9680]
    fees_before = [balance(db_session, scope, accounts.psp_fees("USD")) for scope in scopes]
    sandbox.faults.append({"action": "short", "batch_id": sandbox.batch(), "amount": 100})
    deposit(db_session, sandbox, sandbox.day + dt.timedelta(days=1))
    row = one_break(db_session, PLATFORM, type="deposit_mismatch", batch_id=sandbox.batch())
    assert (row.kassa_amount, row.psp_amount) == (29040, 28940)

    resolve(db_session, PLATFORM, row, "accepted", note="PSP kept 1.00 across the batch")
    losses = [balance(db_session, scope, accounts.psp_fees("USD")) - before
              for scope, before in zip(scopes, fees_before)]
    cash = [balance(db_session, scope, accounts.cash("USD")) for scope in scopes]
    assert losses == [34, 33, 33]
    assert cash == [9646, 9647, 9647] and sum(cash) == 28940
    assert [balance(db_session, scope, accounts.psp_clearing("sandbox", "USD")) for scope in scopes] == [0, 0, 0]
    verify_ledger(app)


def test_two_operators_resolving_one_break_at_once_the_second_is_refused(app, db_session, shop, sandbox):
    """The console reads the break before it resolves it (a 404 check); the second operator's resolution must see
    the first one's commit once it gets the row, not the break it read before, and change nothing."""
    import threading
    import time

    from sqlalchemy import text
    from sqlalchemy.orm import Session

    from app.extensions import db

    scope = shop["scope"]
    payment = sandbox.capture(db_session, scope, 5000)
    sandbox.faults.append({"action": "alter", "reference": payment.psp_reference, "amount": -40})
    reconcile(db_session, sandbox)
    row = one_break(db_session, scope, type="amount_mismatch")
    key = deps_for(current_app).ledger_hmac_key
    answers: list[str] = []

    def second_operator(session: Session) -> None:
        try:
            resolve_break(session, scope, row.id, resolution="psp_asked", note="asking the PSP", hmac_key=key,
                          actor_user_id=None, actor_label="second@kassa.test")
            session.commit()
            answers.append("resolved")
        except ResolutionError as refused:
            session.rollback()
            answers.append(refused.message)

    with app.app_context(), Session(db.engine) as first, Session(db.engine) as second:
        assert second.get(Break, (scope.merchant_id, row.id)).status == "open"  # what the console read
        resolve_break(first, scope, row.id, resolution="accepted", note="PSP kept 0.40", hmac_key=key,
                      actor_user_id=None, actor_label="first@kassa.test")
        thread = threading.Thread(target=second_operator, args=(second,))
        thread.start()
        deadline = time.monotonic() + 30
        with db.engine.connect() as conn:
            while thread.is_alive() and time.monotonic() < deadline and not conn.execute(text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock'")).scalar():
                conn.rollback()
                time.sleep(0.01)  # polling another session's state; not waiting for time to pass
        first.commit()
        thread.join(timeout=30)
    assert answers == ["This break is resolved already."]
    db_session.rollback()
    final = db_session.get(Break, (scope.merchant_id, row.id))
    assert (final.resolution, final.resolved_by) == ("accepted", "first@kassa.test")
    assert final.resolution_transaction_id is not None
    db_session.commit()
    verify_ledger(app)



def test_accepting_a_deposit_whose_batch_has_a_share_cash_cannot_give_is_refused_with_a_message(
        app, db_session, shop, sandbox):
    """Accepting a short deposit moves each book's share to cash; a negative share (a book's refund netted in the
    batch) that the book's cash cannot give is refused with a message, nothing posted, the break open, instead of
    an error page."""
    from tests import factories
    from tests.reconciliation.helpers import deposit
    from tests.reconciliation.test_reconcile import refund_only_batch

    scope = shop["scope"]
    refund_only_batch(db_session, scope, sandbox)
    other = Scope(factories.merchant(db_session, name="Other Shop").id, False)
    db_session.commit()
    sandbox.capture(db_session, other, 5000)
    sandbox.faults.append({"action": "short", "batch_id": sandbox.batch(), "amount": 25})
    reconcile(db_session, sandbox)
    deposit(db_session, sandbox, sandbox.day + dt.timedelta(days=1))
    row = one_break(db_session, PLATFORM, type="deposit_mismatch", batch_id=sandbox.batch())
    with pytest.raises(ResolutionError, match="cannot be posted"):
        resolve(db_session, PLATFORM, row, "accepted", note="PSP kept 0.25")
    db_session.rollback()
    assert db_session.get(Break, (row.merchant_id, row.id)).status == "open"
    assert db_session.scalars(select(JournalTransaction).where(
        JournalTransaction.business_key == f"resolve:{row.id}")).all() == []
    db_session.commit()
    verify_ledger(app)


def test_a_line_is_not_matched_by_hand_to_a_payment_of_another_amount(app, db_session, shop, sandbox):
    """Matching a line in suspense to a payment takes the line's gross out of the payment's receivable: to a
    payment that captured another amount (a mistyped id), it would leave that receivable wrong; refused, nothing
    posted."""
    scope = shop["scope"]
    payment = sandbox.capture(db_session, scope, 500)
    sandbox.faults += [{"action": "drop", "reference": payment.psp_reference},
                       {"action": "unknown", "date": sandbox.day.isoformat(), "reference": f"auth_big_{sandbox.day}",
                        "amount": 3000}]
    reconcile(db_session, sandbox)
    row = one_break(db_session, PLATFORM, type="missing_in_kassa", reference=f"auth_big_{sandbox.day}")
    with pytest.raises(ResolutionError, match="captured"):
        resolve(db_session, PLATFORM, row, "matched_by_hand", target=payment.id, note="same charge?")
    db_session.rollback()
    assert balance(db_session, scope, accounts.psp_receivable("sandbox", "USD")) == 500
    verify_ledger(app)
