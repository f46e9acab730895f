"""An operator's upload of a settlement report or bank statement (the console's upload form): the same import as the
scheduled fetch (app/reconciliation/service.py: stored as received, the same bytes change nothing, other bytes are the
day's next version), with the operator's reason, audited. A file that does not parse is refused with the parser's
message and nothing is kept (the caller rolls back). No Flask; flushes, never commits."""
from dataclasses import dataclass
from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.accounts.audit import audit, operator_reason
from app.reconciliation import service
from app.reconciliation.models import FILE_KINDS
from app.reconciliation.parsing import ReportFormatError
from app.reconciliation.stripe_lines import PLATFORM_CREDENTIAL, PSP, credential_of


@dataclass
class UploadRefused(Exception):
    """The upload cannot be imported; ``message`` says why and ``param`` names the form field."""

    message: str
    param: str = "file"

    def __str__(self) -> str:
        return self.message


def source_modes(session: Session, config, source: str) -> tuple[bool, ...]:
    """The modes (livemode values) a settlement report of ``source`` can have: a test-only connector's (the sandbox
    acquirers: app/psp/registry.py ``test_only``) test mode only; a merchant's Stripe account (``stripe:<credential>``)
    its credential's one mode; the platform's Stripe account and other connectors both."""
    from app.psp.models import PspCredential
    from app.psp.registry import connector_specs

    credential = credential_of(source)
    if credential is not None and credential != PLATFORM_CREDENTIAL:
        # Across merchants on purpose: an operator's upload names the account by its source.
        mode = session.scalar(select(PspCredential.livemode).where(PspCredential.id == credential,
                                                                   PspCredential.psp == PSP))
        return () if mode is None else (mode,)
    if credential is not None:
        return (False, True)
    spec = connector_specs(config).get(source)
    if spec is not None:
        return (False,) if spec.test_only else (False, True)
    # A connector no longer configured: the sandbox's acquirers are test mode only, whatever their name.
    return (False,) if source.startswith("sandbox") else (False, True)


def check_mode(session: Session, config, source: str, livemode: bool) -> None:
    """UploadRefused (on the mode field) when a report of ``source`` cannot be of this mode."""
    modes = source_modes(session, config, source)
    if livemode in modes:
        return
    if not modes:
        raise UploadRefused(f"{source} names no Stripe account Kassa knows.", "psp")
    mode, other = ("live", "test") if livemode else ("test", "live")
    raise UploadRefused(f"{source} has no {mode} mode: its settlement reports are {other} mode only. Nothing was "
                        "imported.", "mode")


def upload_file(session: Session, *, kind: str, psp: str | None, livemode: bool, report_date: date, content: bytes,
                filename: str | None, reason: str | None, hmac_key: bytes, actor_user_id: str | None,
                actor_label: str | None, grace_days: int = service.DEFAULT_GRACE_DAYS,
                audit_meta: dict | None = None,
                dispute_notices: service.DisputeNotices | None = None, config=None) -> service.RunResult:
    """Import an uploaded file as the fetch would; audited with the reason (ReasonRequired without one). With the
    app's ``config``, a settlement report of a mode its PSP cannot have is refused (``check_mode``)."""
    reason = operator_reason(reason)
    if kind not in FILE_KINDS:
        raise UploadRefused(f"kind must be one of {', '.join(FILE_KINDS)}", "kind")
    if kind == "settlement" and not psp:
        raise UploadRefused("Choose the PSP whose settlement report this is.", "psp")
    if kind == "settlement" and config is not None:
        check_mode(session, config, psp, livemode)
    if not content:
        raise UploadRefused("The file is empty.")
    try:
        if kind == "settlement":
            result = service.reconcile_settlement(session, psp=psp, livemode=livemode, report_date=report_date,
                                                  content=content, hmac_key=hmac_key, grace_days=grace_days,
                                                  filename=filename, uploaded_by=actor_label,
                                                  dispute_notices=dispute_notices)
        else:
            result = service.reconcile_statement(session, livemode=livemode, report_date=report_date,
                                                 content=content, hmac_key=hmac_key, filename=filename,
                                                 uploaded_by=actor_label)
    except (ReportFormatError, service.ReconciliationError) as error:
        what = "settlement report (CSV)" if kind == "settlement" else "camt.053 bank statement"
        raise UploadRefused(f"Not a {what} Kassa can import: {error}") from None
    audit(session, "reconciliation.file_uploaded", livemode=livemode, actor_user_id=actor_user_id,
          actor_label=actor_label, target=result.file_id,
          details={"reason": reason, "kind": kind, "source": psp if kind == "settlement" else service.BANK_SOURCE,
                   "report_date": report_date.isoformat(), "filename": filename, "created": result.created},
          **(audit_meta or {}))
    session.flush()
    return result
