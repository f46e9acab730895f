"""/admin/reconciliation: a day of one PSP (lines, matched, breaks by type, totals on each side, receivable and
clearing), the breaks queue (oldest first; filters by type, PSP, merchant, age; assign; resolve with a note), a
break's page, file history with versions and differences, CSV export of breaks (formula cells escaped).
Platform admins only (everyone else gets 404); every POST needs the console's re-authentication."""
import csv
import io
from datetime import date, timedelta

from flask import Response, abort, current_app, flash, redirect, render_template, request, url_for
from sqlalchemy import func, select

from werkzeug.exceptions import RequestEntityTooLarge

from app.admin import bp
from app.admin.forms import BreakAssignForm, BreakResolveForm, ReconciliationUploadForm
from app.accounts.audit import ReasonRequired
from app.admin.helpers import INVALID_FORM, meta, merchant_names, operator
from app.dashboard.context import platform_admin_required
from app.dashboard.forms import select_choices
from app.extensions import db
from app.jobs.reconciliation import dispute_notices
from app.ledger.integration import ledger_hmac_key
from app.ledger.models import LedgerAccount
from app.models_base import utcnow
from app.reconciliation import failures, fetch, uploads
from app.reconciliation import resolution as resolutions
from app.reconciliation.inbox import TITLES
from app.reconciliation.models import BREAK_STATUSES, BREAK_TYPES, Break, ReportFile, ReportLine
from app.reconciliation.queries import break_sources
from app.reconciliation.service import break_object
from app.reconciliation.stripe_lines import credential_of, psp_of
from app.reporting.exports import csv_safe
from app.scoping import Scope

QUEUE_SIZE = 200
LINES_SHOWN = 500
SOURCE_CHUNK = 500


def _day(value: str | None) -> date:
    try:
        return date.fromisoformat(value) if value else utcnow().date() - timedelta(days=1)
    except ValueError:
        return utcnow().date() - timedelta(days=1)


def _balances(psp: str, livemode: bool) -> dict[str, list]:
    """The PSP's receivable and clearing across books (what it has not reported; reported and not paid)."""
    rows = db.session.execute(
        select(LedgerAccount.account_type, LedgerAccount.currency, func.sum(LedgerAccount.balance))
        .where(LedgerAccount.livemode == livemode, LedgerAccount.subject == psp,
               LedgerAccount.account_type.in_(("psp_receivable", "psp_clearing", "suspense")))
        .group_by(LedgerAccount.account_type, LedgerAccount.currency)
        .order_by(LedgerAccount.account_type, LedgerAccount.currency)).all()
    out: dict[str, list] = {}
    for account_type, currency, total in rows:
        out.setdefault(account_type, []).append((int(total or 0), currency))
    return out


@bp.get("/reconciliation")
@platform_admin_required
def reconciliation():
    """One day of one PSP: its report versions, lines by status, breaks by type, totals on each side."""
    day = _day(request.args.get("date"))
    livemode = request.args.get("mode") == "live"
    psps = sorted(set(db.session.scalars(select(ReportFile.source).where(ReportFile.kind == "settlement").distinct()))
                  | {"sandbox"})
    psp = request.args.get("psp") if request.args.get("psp") in psps else psps[0]
    files = db.session.scalars(select(ReportFile).where(
        ReportFile.source == psp, ReportFile.livemode == livemode, ReportFile.report_date == day,
        ReportFile.kind == "settlement").order_by(ReportFile.version)).all()
    latest = files[-1] if files else None
    statuses, totals, lines = {}, [], []
    if latest:
        statuses = dict(db.session.execute(select(ReportLine.status, func.count()).where(
            ReportLine.file_id == latest.id).group_by(ReportLine.status)).all())
        totals = db.session.execute(select(
            ReportLine.currency, func.sum(ReportLine.gross), func.sum(ReportLine.fee), func.sum(ReportLine.net),
            func.sum(ReportLine.expected_amount)).where(ReportLine.file_id == latest.id)
            .group_by(ReportLine.currency)).all()
        lines = db.session.scalars(select(ReportLine).where(ReportLine.file_id == latest.id)
                                   .order_by(ReportLine.line_no).limit(LINES_SHOWN)).all()
    # A source names an account (``stripe:<credential>``); breaks and ledger accounts name its PSP (``stripe``):
    # the day's breaks of that PSP are counted for the account they come from (app/reconciliation/queries.py).
    day_breaks = db.session.scalars(select(Break).where(
        Break.psp == psp_of(psp), Break.livemode == livemode, Break.report_date == day)).all()
    sources = break_sources(db.session, day_breaks)
    by_type: dict[str, int] = {}
    for row in day_breaks:
        if sources[row.id] == psp:
            by_type[row.type] = by_type.get(row.type, 0) + 1
    statements = db.session.scalars(select(ReportFile).where(
        ReportFile.kind == "bank_statement", ReportFile.livemode == livemode, ReportFile.report_date == day)
        .order_by(ReportFile.version)).all()
    page = render_template("admin/reconciliation.html", day=day, psp=psp, psps=psps, livemode=livemode,
                           files=files, latest=latest, statuses=statuses, totals=totals, lines=lines,
                           by_type=by_type, titles=TITLES, statements=statements, break_psp=psp_of(psp),
                           balances=_balances(psp_of(psp), livemode),
                           names=merchant_names(line.merchant_id for line in lines),
                           failing=failures.raised(db.session, utcnow()),
                           retired=fetch.retired_pending(db.session))
    db.session.rollback()
    return page


def _queue_query(args):
    status = args.get("status") if args.get("status") in BREAK_STATUSES else "open"
    query = select(Break).where(Break.status == status)
    if args.get("type") in BREAK_TYPES:
        query = query.where(Break.type == args["type"])
    if args.get("psp"):
        query = query.where(Break.psp == args["psp"])
    if args.get("source"):  # an account's breaks are among its PSP's (the rows are then sorted out by _rows)
        query = query.where(Break.psp == psp_of(args["source"].strip()))
    if args.get("merchant"):
        query = query.where(Break.merchant_id == args["merchant"].strip())
    age = args.get("min_age_days") or ""
    if age.isascii() and age.isdigit() and len(age) <= 5:  # a few years at most: larger overflowed timedelta
        query = query.where(Break.opened_at <= utcnow() - timedelta(days=int(age)))
    return query.order_by(Break.opened_at, Break.id), status


def _rows(query, source: str | None, limit: int | None = None) -> list[Break]:
    """The queue's rows, those of one report source only if given (app/reconciliation/queries.py break_sources:
    a break keeps its PSP, not the account it came from), read a chunk at a time."""
    if not source:
        return db.session.scalars(query.limit(limit) if limit else query).all()
    found: list[Break] = []
    offset = 0
    while limit is None or len(found) < limit:
        chunk = db.session.scalars(query.offset(offset).limit(SOURCE_CHUNK)).all()
        if not chunk:
            break
        sources = break_sources(db.session, chunk)
        found += [row for row in chunk if sources[row.id] == source]
        offset += SOURCE_CHUNK
    return found[:limit] if limit else found


@bp.get("/reconciliation/breaks")
@platform_admin_required
def reconciliation_breaks():
    """The breaks queue, oldest first, with filters."""
    query, status = _queue_query(request.args)
    rows = _rows(query, (request.args.get("source") or "").strip() or None, QUEUE_SIZE)
    page = render_template("admin/reconciliation_breaks.html", breaks=rows, status=status, types=BREAK_TYPES,
                           statuses=BREAK_STATUSES, titles=TITLES, args=request.args, now=utcnow(),
                           names=merchant_names(b.merchant_id for b in rows))
    db.session.rollback()
    return page


@bp.get("/reconciliation/breaks.csv")
@platform_admin_required
def reconciliation_breaks_csv():
    """The queue as filtered, as CSV; cells a spreadsheet would run as formulas are escaped."""
    query, status = _queue_query(request.args)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    columns = ("id", "type", "status", "merchant", "livemode", "psp", "report_date", "reference", "batch", "currency",
               "kassa_amount", "psp_amount", "assigned_to", "opened_at", "resolution", "resolution_note")
    writer.writerow(columns)
    for row in _rows(query, (request.args.get("source") or "").strip() or None):
        body = break_object(row)
        writer.writerow([csv_safe(body[c]) for c in columns])
    db.session.rollback()
    return Response(out.getvalue(), mimetype="text/csv", headers={
        "Content-Disposition": f"attachment; filename=reconciliation-breaks-{status}.csv"})


def _break_or_404(merchant_id: str, break_id: str) -> Break:
    row = db.session.get(Break, (merchant_id, break_id))
    if row is None:
        abort(404)
    return row


def _break_page(merchant_id: str, break_id: str, forms: dict | None = None, status: int = 200):
    row = _break_or_404(merchant_id, break_id)
    keys = [(ref.get("file"), ref.get("line")) for ref in row.lines or [] if "line" in ref]
    lines = [db.session.get(ReportLine, key) for key in keys]
    forms = forms or {}
    forms.setdefault("resolve", BreakResolveForm(formdata=None, prefix="resolve"))
    forms.setdefault("assign", BreakAssignForm(formdata=None, prefix="assign", assignee=row.assigned_to))
    page = render_template("admin/reconciliation_break.html", brk=row, lines=[l for l in lines if l], forms=forms,
                           titles=TITLES, names=merchant_names([row.merchant_id]))
    db.session.rollback()
    return page, status


@bp.get("/reconciliation/breaks/<merchant_id>/<break_id>")
@platform_admin_required
def reconciliation_break(merchant_id: str, break_id: str):
    """One break: both sides, the lines behind it, assign and resolve."""
    return _break_page(merchant_id, break_id)


@bp.post("/reconciliation/breaks/<merchant_id>/<break_id>/resolve")
@platform_admin_required
def resolve_reconciliation_break(merchant_id: str, break_id: str):
    """Resolve with a kind and a note; adjustments are new ledger transactions; audited."""
    row = _break_or_404(merchant_id, break_id)
    form = BreakResolveForm(prefix="resolve")
    if not form.validate():
        return _break_page(merchant_id, break_id, {"resolve": form}, INVALID_FORM)
    user = operator()
    try:
        resolutions.resolve_break(db.session, Scope(row.merchant_id, row.livemode), row.id,
                                  resolution=form.resolution.data, note=form.note.data, target=form.target.data,
                                  hmac_key=ledger_hmac_key(), actor_user_id=user.id, actor_label=user.email)
    except resolutions.ResolutionError as error:
        db.session.rollback()
        target = form.target if error.param == "target" else form.note
        target.errors = [*target.errors, error.message]
        return _break_page(merchant_id, break_id, {"resolve": form}, INVALID_FORM)
    db.session.commit()
    flash("The break is resolved.", "success")
    return redirect(url_for("admin.reconciliation_break", merchant_id=merchant_id, break_id=break_id), code=303)


@bp.post("/reconciliation/breaks/<merchant_id>/<break_id>/assign")
@platform_admin_required
def assign_reconciliation_break(merchant_id: str, break_id: str):
    """Give the break to an operator (audited)."""
    row = _break_or_404(merchant_id, break_id)
    form = BreakAssignForm(prefix="assign")
    if not form.validate():
        return _break_page(merchant_id, break_id, {"assign": form}, INVALID_FORM)
    user = operator()
    resolutions.assign_break(db.session, Scope(row.merchant_id, row.livemode), row.id, form.assignee.data,
                             actor_user_id=user.id, actor_label=user.email)
    db.session.commit()
    flash("Assigned." if form.assignee.data else "Unassigned.", "success")
    return redirect(url_for("admin.reconciliation_break", merchant_id=merchant_id, break_id=break_id), code=303)


@bp.get("/reconciliation/files")
@platform_admin_required
def reconciliation_files():
    """Every file received, newest first, with its versions and what each changed."""
    rows = db.session.scalars(select(ReportFile).order_by(ReportFile.received_at.desc()).limit(QUEUE_SIZE)).all()
    page = render_template("admin/reconciliation_files.html", files=rows)
    db.session.rollback()
    return page


@bp.get("/reconciliation/files/<file_id>/content")
@platform_admin_required
def reconciliation_file_content(file_id: str):
    """The file exactly as received (a download: never rendered)."""
    row = db.session.get(ReportFile, file_id)
    if row is None:
        abort(404)
    # A Stripe account's report is the JSON document of its payouts (app/reconciliation/stripe_lines.py).
    extension = ("json" if credential_of(row.source) is not None else "csv") if row.kind == "settlement" else "xml"
    return Response(row.content, mimetype="application/octet-stream", headers={
        "Content-Disposition": f"attachment; filename={row.source}-{row.report_date}-v{row.version}.{extension}",
        "X-Content-Type-Options": "nosniff"})


def _upload_psps() -> list[str]:
    """The PSPs a settlement report may be uploaded for: the configured sandbox acquirers and every PSP a report
    came from before."""
    known = set(db.session.scalars(select(ReportFile.source).where(ReportFile.kind == "settlement").distinct()))
    return sorted(known | set(fetch.sandbox_connectors(current_app.config)) | {"sandbox"})


def _upload_form(formdata=True) -> ReconciliationUploadForm:
    form = ReconciliationUploadForm(prefix="upload") if formdata else ReconciliationUploadForm(formdata=None,
                                                                                               prefix="upload")
    form.psp.choices = select_choices([("", "—")] + [(name, name) for name in _upload_psps()])
    return form


def _upload_page(form: ReconciliationUploadForm, status: int = 200):
    page = render_template("admin/reconciliation_upload.html", form=form)
    db.session.rollback()
    return page, status


@bp.get("/reconciliation/upload")
@platform_admin_required
def reconciliation_upload():
    """The form to upload a settlement report or bank statement the fetch could not get."""
    form = _upload_form(formdata=False)
    if request.args.get("date"):
        form.report_date.data = _day(request.args.get("date"))
    if request.args.get("psp"):
        form.psp.data = request.args.get("psp")
    return _upload_page(form)


@bp.errorhandler(RequestEntityTooLarge)
def upload_too_large(error: RequestEntityTooLarge):
    """A file over RECONCILIATION_MAX_UPLOAD_BYTES: the upload form again with the limit, for an operator."""
    from flask_login import current_user

    if request.endpoint != "admin.upload_reconciliation_file" or not getattr(current_user, "is_platform_admin", False):
        return render_template("errors/generic.html", error=error), 413
    return _too_large(_upload_form(formdata=False))


def _too_large(form: ReconciliationUploadForm):
    limit = int(current_app.config["RECONCILIATION_MAX_UPLOAD_BYTES"])
    form.file.errors = [*form.file.errors, f"The file is larger than {limit // (1024 * 1024)} MB, the most an upload "
                        "takes (RECONCILIATION_MAX_UPLOAD_BYTES). Import it with `flask reconcile run --file` "
                        "instead, or raise the setting."]
    return _upload_page(form, 413)


@bp.post("/reconciliation/upload")
@platform_admin_required
def upload_reconciliation_file():
    """Import an uploaded file exactly as a fetched one (the same bytes change nothing); reason required, audited.
    A file that does not parse is refused: the form re-rendered with the message, nothing kept."""
    form = _upload_form()
    if not form.validate():
        return _upload_page(form, INVALID_FORM)
    upload = form.file.data
    # The body's limit leaves room for the form's other fields; the file itself has the exact one.
    content = upload.read(int(current_app.config["RECONCILIATION_MAX_UPLOAD_BYTES"]) + 1)
    if len(content) > int(current_app.config["RECONCILIATION_MAX_UPLOAD_BYTES"]):
        return _too_large(form)
    user = operator()
    livemode = form.mode.data == "live"
    try:
        result = uploads.upload_file(
            db.session, kind=form.kind.data, psp=form.psp.data or None, livemode=livemode,
            report_date=form.report_date.data, content=content, filename=(upload.filename or "")[:255] or None,
            reason=form.reason.data, hmac_key=ledger_hmac_key(), actor_user_id=user.id, actor_label=user.email,
            grace_days=int(current_app.config.get("RECONCILIATION_GRACE_DAYS", 0) or 0),
            audit_meta=meta().as_kwargs(), dispute_notices=dispute_notices(), config=current_app.config)
    except ReasonRequired as error:
        db.session.rollback()
        form.reason.errors = [*form.reason.errors, error.message]
        return _upload_page(form, INVALID_FORM)
    except uploads.UploadRefused as error:
        db.session.rollback()
        target = getattr(form, error.param, form.file)
        target.errors = [*target.errors, error.message]
        return _upload_page(form, INVALID_FORM)
    db.session.commit()
    if result.created:
        flash(f"Imported: {sum(result.statuses.values())} lines or entries, {len(result.breaks_opened)} breaks "
              "opened.", "success")
    else:
        flash("This file was imported before: nothing changed.", "success")
    psp = form.psp.data if form.kind.data == "settlement" else None
    return redirect(url_for("admin.reconciliation", date=form.report_date.data.isoformat(), psp=psp,
                            mode="live" if livemode else None), code=303)
