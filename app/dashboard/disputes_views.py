"""Disputes in the dashboard: the list (status tabs, a countdown to each deadline), a dispute's page (payment,
customer, timeline, the evidence form grouped as Stripe groups it with guidance for its reason code, file uploads,
save draft), and the two final steps, submit and accept, each behind a confirmation that says it is final.

Everyone in the merchant reads; owners and admins act (Action.RESPOND_TO_DISPUTES). Every read goes through
``g.scope``, so another merchant's dispute or file is a 404. Submitting and accepting run the disputes
service's idempotent operations (app/disputes/service.py) keyed by a one-time form token, like payment actions.
"""
import logging
import re
import secrets
from datetime import datetime

from flask import abort, current_app, flash, g, jsonify, redirect, request
from flask_login import current_user

from app.accounts.audit import audit
from app.accounts.permissions import Action
from app.api.files import download
from app.api.payments import payments_deps
from app.dashboard import bp
from app.dashboard.context import merchant_view
from app.dashboard.forms import CARD_NUMBER_MESSAGE
from app.dashboard.helpers import dash_url, request_meta
from app.dashboard.reporting_helpers import render, row_or_404
from app.disputes import evidence as evidence_rules
from app.disputes import files as dispute_files
from app.disputes.models import AWAITING_RESPONSE, CLOSED, INQUIRY_STATUSES, Dispute, File
from app.disputes.service import check_evidence, evidence_files
from app.events import Event
from app.extensions import db
from app.models_base import utcnow
from app.pan import find_card_number
from app.payments import idempotency
from app.payments.errors import IdempotencyInFlight, IdempotencyMismatch, PaymentError
from app.payments.models import Payment

log = logging.getLogger(__name__)

INVALID_FORM = 422
PAGE_SIZE = 50
_TOKEN = re.compile(r"^[A-Za-z0-9_\-]{16,64}$")
# Status tabs of the list: (name, label, statuses).
TABS = (
    ("needs_response", "Needs response", AWAITING_RESPONSE),
    ("under_review", "Under review", ("under_review", "warning_under_review")),
    ("won", "Won", ("won",)),
    ("lost", "Lost", ("lost",)),
    ("inquiries", "Inquiries", INQUIRY_STATUSES),
    ("all", "All", ()),
)
STATUS_LABELS = {
    "warning_needs_response": "Inquiry: needs response", "warning_under_review": "Inquiry under review",
    "warning_closed": "Inquiry closed", "needs_response": "Needs response", "under_review": "Under review",
    "won": "Won", "lost": "Lost", "prevented": "Prevented",
}


def countdown(dispute: Dispute, now: datetime) -> dict | None:
    """The time left to answer, as people read it ("3 days left", "Overdue"), while an answer is possible."""
    if dispute.status not in AWAITING_RESPONSE or dispute.evidence_due_by is None or dispute.pending_action \
            or dispute.submitted_at:
        return None
    left = dispute.evidence_due_by - now
    seconds = left.total_seconds()
    if seconds <= 0:
        return {"text": "Overdue", "overdue": True}
    days, hours = int(seconds // 86400), int(seconds // 3600)
    if days >= 1:
        return {"text": f"{days} day{'s' if days != 1 else ''} left", "overdue": False, "urgent": days < 2}
    return {"text": f"{max(hours, 1)} hour{'s' if hours != 1 else ''} left", "overdue": False, "urgent": True}


@bp.app_template_filter("dispute_status")
def dispute_status_label(status: str) -> str:
    return STATUS_LABELS.get(status, status.replace("_", " ").capitalize())


@bp.route("/<merchant_id>/<mode>/disputes")
@merchant_view(Action.VIEW)
def disputes():
    """The book's disputes, newest first, by status tab; keyset-paged by id."""
    tab = request.args.get("status", "needs_response")
    statuses = next((s for name, _label, s in TABS if name == tab), None)
    if statuses is None:
        tab, statuses = "all", ()
    statement = g.scope.select(Dispute)
    if statuses:
        statement = statement.where(Dispute.status.in_(statuses))
    before = request.args.get("before")
    if before:
        statement = statement.where(Dispute.id < before)
    rows = db.session.scalars(statement.order_by(Dispute.id.desc()).limit(PAGE_SIZE + 1)).all()
    payments = {p.id: p for p in db.session.scalars(g.scope.select(
        Payment, Payment.id.in_([d.payment_id for d in rows if d.payment_id])))} if rows else {}
    now = utcnow()
    return render("dashboard/disputes/list.html", tabs=TABS, tab=tab, rows=rows[:PAGE_SIZE], payments=payments,
                  countdowns={d.id: countdown(d, now) for d in rows},
                  older=rows[PAGE_SIZE - 1].id if len(rows) > PAGE_SIZE else None,
                  any_disputes=bool(rows) or db.session.scalar(
                      g.scope.select(Dispute).with_only_columns(Dispute.id).limit(1)) is not None)


def _context(dispute: Dispute, *, values: dict | None = None, errors: dict | None = None) -> dict:
    payment = g.scope.get(db.session, Payment, dispute.payment_id) if dispute.payment_id else None
    events = db.session.scalars(g.scope.select(Event, Event.object_id == dispute.id)
                                .order_by(Event.created_at, Event.id)).all()
    saved = dispute.evidence or {}
    files = evidence_files(db.session, g.scope, saved)
    guidance = evidence_rules.guidance(dispute.reason)
    # Groups that answer the reason come first, as the guidance lists them.
    order = {name: i for i, name in enumerate(guidance.groups)}
    groups = sorted(evidence_rules.GROUPS, key=lambda group: order.get(group.name, len(order)))
    text = sum(len(value) for name, value in saved.items() if name in evidence_rules.TEXT_FIELDS)
    return dict(
        dispute=dispute, payment=payment, events=events, groups=groups, guidance=guidance,
        recommended=set(guidance.groups), values=values if values is not None else dict(saved), errors=errors or {},
        files=files, countdown=countdown(dispute, utcnow()), text_used=text, limits=evidence_rules,
        may_answer=dispute.status in AWAITING_RESPONSE and not dispute.pending_action and not dispute.submitted_at,
        inquiry=dispute.status in INQUIRY_STATUSES, closed=dispute.status in CLOSED,
        file_max_mb=dispute_files.FILE_MAX_BYTES // 1024 // 1024,
    )


@bp.route("/<merchant_id>/<mode>/disputes/<dispute_id>")
@merchant_view(Action.VIEW)
def dispute_detail(dispute_id: str):
    """One dispute: its payment, customer, timeline and the evidence form."""
    return render("dashboard/disputes/detail.html", **_context(row_or_404(Dispute, dispute_id)))


@bp.post("/<merchant_id>/<mode>/disputes/<dispute_id>/evidence")
@merchant_view(Action.RESPOND_TO_DISPUTES)
def dispute_save(dispute_id: str):
    """Save the evidence as a draft: the text fields, and files chosen in the form (uploaded now)."""
    dispute = row_or_404(Dispute, dispute_id)
    values, errors = {}, {}
    for name, field in evidence_rules.FIELDS.items():
        if field.file:
            upload = request.files.get(f"upload_{name}")
            if upload is not None and upload.filename:
                stored, error = _store_upload(upload)
                if error:
                    errors[name] = error
                else:
                    values[name] = stored.id
                    continue
            values[name] = request.form.get(name, "").strip()
            continue
        value = request.form.get(name, "").strip()
        values[name] = value
        if value and field.card_number_check and find_card_number(value) is not None:
            errors[name] = CARD_NUMBER_MESSAGE
    if not errors:
        params = {"dispute": dispute.id, "evidence": values, "metadata": {}, "submit": False}
        try:
            result = idempotency.execute(db.session, g.scope, "dispute.update", params, key=None,
                                         deps=payments_deps(), method="POST", path=request.path,
                                         request_id=g.get("request_id"))
        except PaymentError as error:
            db.session.rollback()
            errors[_field_of(error.param)] = error.message
        else:
            if result.status < 400:
                _audit("dispute.evidence_saved", dispute, {"fields": sorted(k for k, v in values.items() if v)})
                flash("Evidence saved as a draft. Nothing is sent until you submit it.", "success")
                return redirect(dash_url("dashboard.dispute_detail", dispute_id=dispute.id) + "#evidence", code=303)
            # A refusal stored as the operation's answer (idempotency replays it) rather than raised.
            error = (result.body or {}).get("error") or {}
            errors[_field_of(error.get("param"))] = error.get("message") or "The evidence could not be saved."
    db.session.rollback()
    dispute = row_or_404(Dispute, dispute_id)
    return render("dashboard/disputes/detail.html", **_context(dispute, values=values, errors=errors)), INVALID_FORM


def _field_of(param: str | None) -> str:
    match = re.match(r"^evidence\[(\w+)\]$", param or "")
    return match.group(1) if match else "_form"


def _store_upload(upload):
    """(file, None) or (None, the reason people read) for one uploaded file."""
    try:
        stored = dispute_files.store(db.session, g.scope, upload.read(dispute_files.FILE_MAX_BYTES + 1),
                                     filename=upload.filename, directory=current_app.config.get("FILES_DIRECTORY"))
    except dispute_files.FileRefused as refused:
        return None, refused.message
    return stored, None


@bp.post("/<merchant_id>/<mode>/disputes/<dispute_id>/files")
@merchant_view(Action.RESPOND_TO_DISPUTES)
def dispute_upload(dispute_id: str):
    """One evidence file uploaded ahead of saving (the form's script shows its progress): JSON in and out."""
    dispute = row_or_404(Dispute, dispute_id)
    upload = request.files.get("file")
    if upload is None:
        return jsonify({"error": "Choose a file."}), 400
    stored, error = _store_upload(upload)
    if error:
        db.session.rollback()
        return jsonify({"error": error}), 400
    body = {"id": stored.id, "filename": stored.filename, "size": stored.size, "type": stored.type}
    db.session.commit()
    log.info("evidence file %s uploaded for dispute %s", body["id"], dispute.id)
    return jsonify(body)


@bp.route("/<merchant_id>/<mode>/disputes/<dispute_id>/<any(submit, accept):action>", methods=["GET", "POST"])
@merchant_view(Action.RESPOND_TO_DISPUTES)
def dispute_action(dispute_id: str, action: str):
    """The confirmation that submitting (or accepting) is final (GET), then doing it once (POST)."""
    dispute = row_or_404(Dispute, dispute_id)
    back = dash_url("dashboard.dispute_detail", dispute_id=dispute.id)
    context = _context(dispute)
    if not context["may_answer"]:
        db.session.commit()
        flash("This dispute cannot be answered any more.", "info")
        return redirect(back, code=303)
    if action == "submit" and not dispute.evidence:
        db.session.commit()
        flash("Save some evidence before submitting it.", "error")
        return redirect(back, code=303)
    if request.method == "GET":
        problem = None
        if action == "submit":
            try:
                check_evidence(db.session, g.scope, dispute.evidence)
            except PaymentError as error:
                problem = error.message
        return render("dashboard/disputes/confirm.html", action=action, problem=problem,
                      form_token=secrets.token_urlsafe(24), **context)
    token = request.form.get("form_token", "")
    if not _TOKEN.match(token):
        abort(400)
    operation, params = (("dispute.update", {"dispute": dispute.id, "evidence": {}, "metadata": {}, "submit": True})
                         if action == "submit" else ("dispute.close", {"dispute": dispute.id}))
    try:
        result = idempotency.execute(db.session, g.scope, operation, params, key=f"dashboard:{token}",
                                     deps=payments_deps(), method="POST", path=request.path,
                                     request_id=g.get("request_id"))
    except IdempotencyInFlight:
        db.session.rollback()
        flash("This was already sent and is being processed.", "info")
        return redirect(back, code=303)
    except (IdempotencyMismatch, PaymentError) as error:
        db.session.rollback()
        flash(error.message, "error")
        return redirect(back, code=303)
    if result.replayed:
        flash("This was already sent; nothing was done twice.", "info")
    else:
        _audit(f"dispute.{'evidence_submitted' if action == 'submit' else 'accepted'}", dispute,
               {"status": (result.body or {}).get("status")})
        error = (result.body or {}).get("last_action_error")
        if error:
            flash(f"The payment processor refused it: {error}", "error")
        elif action == "submit":
            flash("Evidence submitted. The card issuer decides; this page shows the outcome when it comes.", "success")
        else:
            flash("Dispute accepted. It closes as lost; the disputed amount stays with the customer.", "success")
    return redirect(back, code=303)


def _audit(action: str, dispute: Dispute, details: dict) -> None:
    try:
        audit(db.session, action, merchant_id=g.merchant.id, livemode=g.scope.livemode, actor_user_id=current_user.id,
              actor_label=current_user.email, target=dispute.id, details=details, **request_meta())
        db.session.commit()
    except Exception:  # noqa: BLE001 - the work is done; a lost audit row is logged loudly, not a 500
        db.session.rollback()
        log.exception("could not audit %s of dispute %s", action, dispute.id)


@bp.route("/<merchant_id>/<mode>/files/<file_id>")
@merchant_view(Action.VIEW)
def file_download(file_id: str):
    """An evidence file of the book, as a download only."""
    row = row_or_404(File, file_id)
    try:
        return download(row)
    except dispute_files.FileUnavailable:
        abort(500)



