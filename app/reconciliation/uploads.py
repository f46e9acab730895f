"""An operator's upload of a settlement report or bank statement (the console's upload form): the same import as the
scheduled fetch (app/reconciliation/service.py: stored as received, the same bytes change nothing, other bytes are the
day's next version), with the operator's reason, audited. A file that does not parse is refused with the parser's
message and nothing is kept (the caller rolls back). No Flask; flushes, never commits."""
from dataclasses import dataclass
from datetime import date

from sqlalchemy.orm import Session

from app.accounts.audit import audit, operator_reason
from app.reconciliation import service
from app.reconciliation.models import FILE_KINDS
from app.reconciliation.parsing import ReportFormatError


@dataclass
class UploadRefused(Exception):
    """The upload cannot be imported; ``message`` says why and ``param`` names the form field."""

    message: str
    param: str = "file"

    def __str__(self) -> str:
        return self.message


def upload_file(session: Session, *, kind: str, psp: str | None, livemode: bool, report_date: date, content: bytes,
                filename: str | None, reason: str | None, hmac_key: bytes, actor_user_id: str | None,
                actor_label: str | None, grace_days: int = service.DEFAULT_GRACE_DAYS,
                audit_meta: dict | None = None,
                dispute_notices: service.DisputeNotices | None = None) -> service.RunResult:
    """Import an uploaded file as the fetch would; audited with the reason (ReasonRequired without one)."""
    reason = operator_reason(reason)
    if kind not in FILE_KINDS:
        raise UploadRefused(f"kind must be one of {', '.join(FILE_KINDS)}", "kind")
    if kind == "settlement" and not psp:
        raise UploadRefused("Choose the PSP whose settlement report this is.", "psp")
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
