"""The scheduled fetch: every past day (7 back) without a file is due, per sandbox acquirer and for the bank; a fetch
that fails stays due and is asked again at the next sweep, and an imported day is never fetched again."""
from datetime import timedelta

from sqlalchemy import func, select

from app.jobs import reconciliation as jobs
from app.models_base import utcnow
from app.reconciliation import fetch
from app.reconciliation.models import ReportFile

EMPTY = b"reference,type,gross,fee,net,currency,batch_id\n"
STATEMENT = (b'<?xml version="1.0"?><Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.02">'
             b"<BkToCstmrStmt><Stmt><Id>S</Id></Stmt></BkToCstmrStmt></Document>")


def test_past_days_are_fetched_once_and_failures_stay_due(app, db_session, monkeypatch):
    broken_day = utcnow().date() - timedelta(days=2)
    day_of_the_failure = broken_day
    asked = []

    def settlement(config, psp, day):
        asked.append((psp, day))
        if psp == "sandbox_b" and day == broken_day:
            raise fetch.FetchFailed("sandbox_b: ConnectTimeout")
        return EMPTY  # nothing settled: the same bytes every day, one file per day all the same

    def statement(config, day):
        raise fetch.FetchFailed("bank: HTTP 503")

    monkeypatch.setattr(fetch, "fetch_settlement", settlement)
    monkeypatch.setattr(fetch, "fetch_statement", statement)
    first = jobs.fetch_due_reports()
    assert len(first["imported"]) == 13 and f"sandbox_b:{broken_day}" in first["failed"]
    # The statement of the day after the failure waits for that report (the batches it deposits); the others fail.
    assert first["waiting"] == [f"bank:{broken_day + timedelta(days=1)}"]
    assert len([f for f in first["failed"] if f.startswith("bank:")]) == 6
    assert db_session.scalar(select(func.count()).select_from(ReportFile)) == 13
    db_session.commit()

    asked.clear()
    broken_day += timedelta(days=100)  # sandbox_b answers again
    monkeypatch.setattr(fetch, "fetch_statement", lambda config, day: STATEMENT)
    second = jobs.fetch_due_reports()
    assert f"sandbox_b:{day_of_the_failure}" in second["imported"] and not second["failed"]
    assert asked == [("sandbox_b", broken_day - timedelta(days=100))]  # imported days are not fetched again


def test_a_statement_waits_for_the_reports_of_the_batches_it_deposits(app, db_session, monkeypatch):
    """Review r3: the bank statement of a day deposits the batches of the day before; imported while one of those
    reports had failed, its deposit became a deposit_without_batch in suspense, never matched once the report came."""
    from app.reconciliation.models import Break

    # Days of its own (other tests imported the real past week): "today" is a year ahead for the job.
    today = utcnow() + timedelta(days=400)
    monkeypatch.setattr(jobs, "utcnow", lambda: today)
    late_day = today.date() - timedelta(days=3)
    down = {"sandbox": True}
    statements = []

    def settlement(config, psp, day):
        if psp == "sandbox" and day == late_day and down["sandbox"]:
            raise fetch.FetchFailed("sandbox: ConnectTimeout")
        return EMPTY

    def statement(config, day):
        statements.append(day)
        return STATEMENT

    monkeypatch.setattr(fetch, "fetch_settlement", settlement)
    monkeypatch.setattr(fetch, "fetch_statement", statement)
    first = jobs.fetch_due_reports()
    next_day = late_day + timedelta(days=1)
    assert f"bank:{next_day}" not in first["imported"] and next_day not in statements
    assert f"bank:{next_day}" in first["waiting"]
    db_session.commit()

    down["sandbox"] = False
    second = jobs.fetch_due_reports()
    assert f"sandbox:{late_day}" in second["imported"] and f"bank:{next_day}" in second["imported"]
    assert statements[-1] == next_day and not second["waiting"]
    assert db_session.scalar(select(func.count()).select_from(Break).where(Break.type == "deposit_without_batch",
                                                                          Break.report_date == next_day)) == 0


def test_a_fetch_failing_for_more_than_a_day_is_raised_until_a_fetch_succeeds(app, db_session, monkeypatch):
    from app.inbox import InboxFilters
    from app.reconciliation import failures, inbox
    from app.reconciliation.models import FetchFailure

    # Days of their own: "today" is two years ahead for the job.
    today = utcnow() + timedelta(days=800)
    broken_day = today.date() - timedelta(days=3)
    down = {"sandbox_b": True}

    def settlement(config, psp, day):
        if psp == "sandbox_b" and day == broken_day and down["sandbox_b"]:
            raise fetch.FetchFailed("sandbox_b: ConnectTimeout")
        return EMPTY

    monkeypatch.setattr(fetch, "fetch_settlement", settlement)
    monkeypatch.setattr(fetch, "fetch_statement", lambda config, day: STATEMENT)

    def item_ids(now):
        monkeypatch.setattr(inbox, "utcnow", lambda: now)
        page = inbox.failing_fetches(db_session, InboxFilters())
        db_session.commit()
        return [i.id for i in page.items]

    key = f"sandbox_b:settlement:test:{broken_day}"
    first_time = today - timedelta(hours=25)
    monkeypatch.setattr(jobs, "utcnow", lambda: first_time)
    assert f"sandbox_b:{broken_day}" in jobs.fetch_due_reports()["failed"]
    assert key not in item_ids(first_time + timedelta(hours=23))  # failing, but not for a day yet

    monkeypatch.setattr(jobs, "utcnow", lambda: today)
    assert f"sandbox_b:{broken_day}" in jobs.fetch_due_reports()["failed"]  # still failing a day later
    row = db_session.get(FetchFailure, ("sandbox_b", "settlement", False, broken_day))
    assert (row.attempts, row.first_failed_at, row.last_error) == (2, first_time, "sandbox_b: ConnectTimeout")
    db_session.commit()
    assert key in item_ids(today)
    # Narrowed to a merchant, it is not shown: it belongs to none.
    monkeypatch.setattr(inbox, "utcnow", lambda: today)
    assert inbox.failing_fetches(db_session, InboxFilters(merchant_id="mer_someone")).count == 0
    db_session.commit()

    down["sandbox_b"] = False
    assert f"sandbox_b:{broken_day}" in jobs.fetch_due_reports()["imported"]
    assert key not in item_ids(today)
    assert db_session.get(FetchFailure, ("sandbox_b", "settlement", False, broken_day)) is None
    assert all(r.report_date != broken_day or r.source != "sandbox_b" for r in failures.raised(db_session, today))
    db_session.commit()


def test_a_failing_statement_fetch_is_recorded_with_its_error(app, db_session, monkeypatch):
    from app.reconciliation.models import FetchFailure

    today = utcnow() + timedelta(days=1200)
    monkeypatch.setattr(jobs, "utcnow", lambda: today)
    monkeypatch.setattr(fetch, "fetch_settlement", lambda config, psp, day: EMPTY)

    def statement(config, day):
        raise fetch.FetchFailed("bank: HTTP 503")

    monkeypatch.setattr(fetch, "fetch_statement", statement)
    jobs.fetch_due_reports()
    day = today.date() - timedelta(days=1)
    row = db_session.get(FetchFailure, ("bank", "bank_statement", False, day))
    assert row.last_error == "bank: HTTP 503" and row.raise_at == today + timedelta(hours=24)
    db_session.commit()


def test_a_live_run_never_imports_what_the_test_mode_sandbox_serves(app, db_session, monkeypatch):
    monkeypatch.setattr(fetch, "fetch_settlement", lambda config, psp, day: EMPTY)
    monkeypatch.setattr(fetch, "fetch_statement", lambda config, day: STATEMENT)
    runner = app.test_cli_runner()
    day = (utcnow().date() - timedelta(days=3)).isoformat()
    for args in (["run", "--psp", "sandbox"], ["statement"]):
        result = runner.invoke(args=["reconcile", *args, "--date", day, "--live"])
        assert result.exit_code == 1 and "test mode only" in result.output, result.output
    assert db_session.scalar(select(func.count()).select_from(ReportFile).where(ReportFile.livemode.is_(True))) == 0
    db_session.commit()
