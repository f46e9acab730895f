"""Two settlement reports of one PSP imported at once (the scheduled fetch of one day and an operator's upload of
another): the second must see the first's lines, so that a line both carry is a duplicate and posts once."""
import datetime as dt
import threading
import time

from flask import current_app
from sqlalchemy import create_engine, select, text
from sqlalchemy.orm import Session

from app.ledger import accounts
from app.payments.deps import deps_for
from app.reconciliation import service
from app.reconciliation.models import ReportLine
from tests.disputes.helpers import verify_ledger
from tests.reconciliation.helpers import FakeSandbox, balance

# Only bounds a hang (the second import waits for the first's commit, which the test gives it).
JOIN_TIMEOUT = 120


def _import(session, day, content):
    return service.reconcile_settlement(session, psp="sandbox", livemode=False, report_date=day, content=content,
                                        hmac_key=deps_for(current_app).ledger_hmac_key)


def _waiting_pids(session) -> set[int]:
    return set(session.execute(text("SELECT pid FROM pg_locks WHERE NOT granted")).scalars())


def test_a_line_reported_on_two_days_imported_at_once_posts_once(app, db_session, shop):
    sandbox = FakeSandbox(dt.date(2061, 3, 1))
    scope = shop["scope"]
    payment = sandbox.capture(db_session, scope, 5000)
    content = sandbox.report()  # the PSP sends the same line again in the next day's report
    later = sandbox.day + dt.timedelta(days=1)
    engine = create_engine(app.config["SQLALCHEMY_DATABASE_URI"], pool_size=3, max_overflow=0)
    outcome: dict = {}
    try:
        with Session(engine) as first, Session(engine) as second:
            second_pid = second.execute(text("SELECT pg_backend_pid()")).scalar()
            _import(first, sandbox.day, content)  # the first import, not committed yet

            def run_second():
                try:
                    with app.app_context():
                        outcome["result"] = _import(second, later, content)
                        second.commit()
                except BaseException as exc:  # noqa: BLE001 - asserted below
                    outcome["error"] = exc

            thread = threading.Thread(target=run_second, name="second-import")
            thread.start()
            # Until the second import either finished or waits for a lock the first one holds.
            with Session(engine) as watcher:
                while thread.is_alive() and second_pid not in _waiting_pids(watcher):
                    watcher.rollback()
                    time.sleep(0.01)
            first.commit()
            thread.join(JOIN_TIMEOUT)
            assert not thread.is_alive(), "the second import hung"
    finally:
        engine.dispose()
    assert "error" not in outcome, outcome.get("error")
    lines = db_session.scalars(select(ReportLine).where(ReportLine.reference == payment.psp_reference,
                                                        ReportLine.type == "charge")
                               .order_by(ReportLine.report_date)).all()
    assert [(line.report_date, line.status) for line in lines] == [(sandbox.day, "matched"), (later, "duplicate")]
    # Its receivable taken down once: the second day's copy waits in the platform's suspense.
    assert balance(db_session, scope, accounts.psp_receivable("sandbox", "USD")) == 0
    db_session.commit()
    verify_ledger(app)


def test_a_hand_match_and_an_import_of_the_payment_s_own_line_at_once_settle_it_once(app, db_session, shop):
    # An operator matches a suspense line by hand to a payment while the import of a report carrying the payment's
    # own line runs: whichever commits first, the other must see it (the resolution refuses a payment settled
    # already; the importer takes a line of a payment settled by hand for a duplicate).
    from app.reconciliation.models import PLATFORM_MERCHANT_ID, Break
    from app.reconciliation.resolution import ResolutionError, resolve_break
    from app.scoping import Scope
    from tests.reconciliation.helpers import reconcile

    sandbox = FakeSandbox(dt.date(2061, 5, 1))
    scope = shop["scope"]
    payment = sandbox.capture(db_session, scope, 3000)
    unknown = f"auth_other_{sandbox.day}"
    sandbox.faults += [{"action": "drop", "reference": payment.psp_reference},
                       {"action": "unknown", "date": sandbox.day.isoformat(), "reference": unknown, "amount": 3000}]
    reconcile(db_session, sandbox)
    platform = Scope(PLATFORM_MERCHANT_ID, False)
    [row] = db_session.scalars(platform.select(Break, Break.type == "missing_in_kassa", Break.reference == unknown))
    break_id = row.id
    db_session.commit()
    sandbox.faults = []
    content = sandbox.report()  # the next day's report carries the payment's own line
    later = sandbox.day + dt.timedelta(days=1)
    engine = create_engine(app.config["SQLALCHEMY_DATABASE_URI"], pool_size=3, max_overflow=0)
    outcome: dict = {}
    try:
        with Session(engine) as importer, Session(engine) as operator:
            operator_pid = operator.execute(text("SELECT pg_backend_pid()")).scalar()
            _import(importer, later, content)  # not committed yet

            def run_resolution():
                try:
                    with app.app_context():
                        resolve_break(operator, platform, break_id, resolution="matched_by_hand", note="looks like it",
                                      target=payment.id, hmac_key=deps_for(current_app).ledger_hmac_key,
                                      actor_user_id=None, actor_label="ops@kassa.test")
                        operator.commit()
                        outcome["resolved"] = True
                except ResolutionError as exc:
                    operator.rollback()
                    outcome["refused"] = exc.message
                except BaseException as exc:  # noqa: BLE001 - asserted below
                    outcome["error"] = exc

            thread = threading.Thread(target=run_resolution, name="resolution")
            thread.start()
            with Session(engine) as watcher:
                while thread.is_alive() and operator_pid not in _waiting_pids(watcher):
                    watcher.rollback()
                    time.sleep(0.01)
            importer.commit()
            thread.join(JOIN_TIMEOUT)
            assert not thread.is_alive(), "the resolution hung"
    finally:
        engine.dispose()
    assert "error" not in outcome, outcome.get("error")
    assert "settled already" in outcome.get("refused", "")
    assert balance(db_session, scope, accounts.psp_receivable("sandbox", "USD")) == 0
    assert balance(db_session, scope, accounts.psp_clearing("sandbox", "USD")) == 3000 - 117
    db_session.commit()
    verify_ledger(app)
