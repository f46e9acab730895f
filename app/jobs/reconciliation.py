"""RQ entry points of reconciliation: the scheduled fetch of each sandbox acquirer's report, of each Stripe account's
payouts (the platform's per mode, each merchant's own credential) and of the bank statement, for every past day not imported yet (the database is the schedule: a day without a file is due, so a
failed fetch is simply asked again at the next sweep). Each failed fetch is recorded (app/reconciliation/failures.py):
failing for longer than RECONCILIATION_FETCH_RAISE_HOURS, it is raised in the operators' inbox and on the console,
until a file of that day is imported."""
import logging
from datetime import timedelta

from flask import current_app
from sqlalchemy import select

from app.extensions import db
from app.jobs import job
from app.jobs.transactions import commit_or_rollback
from app.ledger.integration import ledger_hmac_key
from app.models_base import utcnow
from app.reconciliation import failures, fetch, service
from app.reconciliation.models import ReportFile
from app.reconciliation.parsing import ReportFormatError

log = logging.getLogger(__name__)

# Days looked back for a report not imported yet: a sandbox that was down for a week is caught up.
LOOKBACK_DAYS = 7


def _imported(session, source: str, kind: str, day, livemode: bool = False) -> bool:
    return session.scalars(select(ReportFile.id).where(ReportFile.source == source, ReportFile.kind == kind,
                                                       ReportFile.livemode.is_(livemode), ReportFile.report_date == day)
                           .limit(1)).first() is not None


def dispute_notices() -> service.DisputeNotices:
    """How a run creates a dispute whose notice Kassa missed: the router's dispute lookup (found, surely absent or
    unknown; its timeouts and breaker) and the app's payments collaborators."""
    from app.payments.deps import deps_for
    from app.psp.router import router_for_app

    from app.psp.breaker import PLATFORM_CREDENTIAL
    from app.psp.models import PspCredential

    app = current_app._get_current_object()
    router = router_for_app(app)

    def lookup(connector: str, reference: str, livemode: bool, credential: str | None):
        merchant_id = None
        if credential and credential != PLATFORM_CREDENTIAL:  # a merchant's own Stripe account
            merchant_id = db.session.scalar(select(PspCredential.merchant_id).where(PspCredential.id == credential))
        return router.retrieve_dispute(connector, reference, livemode=livemode, merchant_id=merchant_id,
                                       credential=credential)

    return service.DisputeNotices(lookup=lookup, deps=deps_for(app), base_url=app.config.get("PUBLIC_BASE_URL") or "")


def _test_mode_only(livemode: bool, what: str) -> None:
    """What is fetched here comes from the sandbox, which is test mode only: imported as live, its lines would match
    nothing and the test money would land in the live platform book's suspense."""
    if livemode:
        raise fetch.FetchFailed(f"{what} is fetched from the sandbox, which serves test mode only: import a live "
                                "file with --file (or the console's upload)")


def run_day(psp: str, day, *, content: bytes | None = None, livemode: bool = False) -> service.RunResult:
    """Fetch (unless given) and reconcile one PSP's report of one day, in its own transaction."""
    config = current_app.config
    if content is None:
        _test_mode_only(livemode, f"{psp}'s settlement report")
        content = fetch.fetch_settlement(config, psp, day)
    with commit_or_rollback(db.session):
        return service.reconcile_settlement(db.session, psp=psp, livemode=livemode, report_date=day, content=content,
                                            hmac_key=ledger_hmac_key(),
                                            grace_days=int(config.get("RECONCILIATION_GRACE_DAYS", 0) or 0),
                                            dispute_notices=dispute_notices())


def run_statement(day, *, content: bytes | None = None, livemode: bool = False) -> service.RunResult:
    """Fetch (unless given) and import the bank statement of one day, in its own transaction."""
    if content is None:
        _test_mode_only(livemode, "the bank statement")
        content = fetch.fetch_statement(current_app.config, day)
    with commit_or_rollback(db.session):
        return service.reconcile_statement(db.session, livemode=livemode, report_date=day, content=content,
                                           hmac_key=ledger_hmac_key())


def _record_failure(source: str, kind: str, day, exc: Exception, livemode: bool = False) -> None:
    """Count one failed fetch of a day, in its own transaction (the import's was rolled back)."""
    db.session.rollback()
    hours = float(current_app.config.get("RECONCILIATION_FETCH_RAISE_HOURS", failures.DEFAULT_RAISE_HOURS))
    known = (fetch.FetchFailed, service.ReconciliationError, ReportFormatError)  # messages written for operators
    error = str(exc) if isinstance(exc, known) else exc.__class__.__name__
    try:
        with commit_or_rollback(db.session):
            failures.record_failure(db.session, source=source, kind=kind, livemode=livemode, report_date=day,
                                    error=error, now=utcnow(), raise_after=timedelta(hours=hours))
    except Exception:  # noqa: BLE001 - the failure stays due all the same; only its record is lost
        db.session.rollback()
        log.warning("reconciliation: could not record the failed fetch of %s %s of %s", source, kind, day,
                    exc_info=True)


@job
def fetch_due_reports() -> dict:
    """Each sandbox acquirer's report, then the bank statement, of every past day (test mode) not imported yet; a
    statement waits until the reports of the day before (whose batches it deposits) are in."""
    today = utcnow().date()
    done, failed, waiting = [], [], []
    psps = fetch.sandbox_connectors(current_app.config)
    for offset in range(LOOKBACK_DAYS, 0, -1):
        day = today - timedelta(days=offset)
        for psp in psps:
            if _imported(db.session, psp, "settlement", day):
                continue
            try:
                run_day(psp, day)
                done.append(f"{psp}:{day}")
            except Exception as exc:  # noqa: BLE001 - one day's trouble must not stop the others; it stays due
                _record_failure(psp, "settlement", day, exc)
                failed.append(f"{psp}:{day}")
                log.warning("reconciliation: %s report of %s not imported; asked again at the next sweep", psp, day,
                            exc_info=True)
        # A day's statement deposits the batches of the day before: imported before their reports, its deposits
        # would be deposit_without_batch breaks in suspense, never matched once the reports came. It waits for
        # them (the day before the look-back window is not fetched any more: nothing to wait for).
        before = day - timedelta(days=1)
        missing = [psp for psp in psps
                   if offset < LOOKBACK_DAYS and not _imported(db.session, psp, "settlement", before)]
        if missing and not _imported(db.session, service.BANK_SOURCE, "bank_statement", day):
            waiting.append(f"bank:{day}")
            log.warning("reconciliation: bank statement of %s waits for the %s report(s) of %s", day,
                        ", ".join(missing), before)
        elif not _imported(db.session, service.BANK_SOURCE, "bank_statement", day):
            try:
                run_statement(day)
                done.append(f"bank:{day}")
            except Exception as exc:  # noqa: BLE001 - as above
                _record_failure(service.BANK_SOURCE, "bank_statement", day, exc)
                failed.append(f"bank:{day}")
                log.warning("reconciliation: bank statement of %s not imported", day, exc_info=True)
        db.session.rollback()
    _fetch_stripe_days(today, done, failed)
    return {"imported": done, "failed": failed, "waiting": waiting}


def run_stripe_day(account: fetch.StripeAccount, day) -> service.RunResult:
    """Fetch and reconcile one Stripe account's report of one day (its payouts created that day), in its own
    transaction; a dispute line whose notice Kassa missed is asked of that account, as for any report."""
    config = current_app.config
    content = fetch.fetch_stripe_settlement(config, account, day)
    with commit_or_rollback(db.session):
        return service.reconcile_settlement(db.session, psp=account.source, livemode=account.livemode,
                                            report_date=day, content=content, hmac_key=ledger_hmac_key(),
                                            grace_days=int(config.get("RECONCILIATION_GRACE_DAYS", 0) or 0),
                                            dispute_notices=dispute_notices())


def _fetch_stripe_days(today, done: list, failed: list) -> None:
    """Each Stripe account's report (the platform's per mode, each merchant's own credential) of every past day not
    imported yet; a failed fetch stays due and, after RECONCILIATION_FETCH_RAISE_HOURS, is raised like any other."""
    from app.crypto import SecretBox

    box = SecretBox(current_app.config.get("KASSA_ENCRYPTION_KEYS", ""))
    accounts = fetch.stripe_accounts(db.session, current_app.config, box)
    db.session.rollback()
    for account in accounts:
        for offset in range(LOOKBACK_DAYS, 0, -1):
            day = today - timedelta(days=offset)
            if _imported(db.session, account.source, "settlement", day, account.livemode):
                continue
            label = f"{account.source}:{'live' if account.livemode else 'test'}:{day}"
            try:
                run_stripe_day(account, day)
                done.append(label)
            except Exception as exc:  # noqa: BLE001 - one account's trouble must not stop the others; it stays due
                _record_failure(account.source, "settlement", day, exc, livemode=account.livemode)
                failed.append(label)
                log.warning("reconciliation: Stripe report %s not imported; asked again at the next sweep", label,
                            exc_info=True)
        db.session.rollback()
