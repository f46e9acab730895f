"""/admin/risk/models: learned risk models (issue 23). Each candidate's metrics beside the scorer in use's on the
same test set; approve (it scores from now on), reject, or roll back to the previous scorer in one click; the
weekly score drift reports. Every decision takes a reason (the console's rule), which is the model's decision
note: a candidate not better than the scorer in use therefore always has its note. Audited, CSRF-protected.
"""
from flask import flash, redirect, render_template, request, url_for

from app.accounts.audit import ReasonRequired, operator_reason
from app.admin import bp
from app.admin.helpers import INVALID_FORM, meta, operator
from app.dashboard.context import platform_admin_required
from app.dashboard.risk_forms import PlatformActionForm
from app.extensions import db
from app.jobs import enqueue_after_commit
from app.jobs.risk import TRAINING_JOB_TIMEOUT_SECONDS
from app.risk.errors import RiskInvalid, RiskNotFound
from app.risk.learning import drift, service
from app.risk.learning.scorer import active_version
from app.risk.learning.tables import RiskModel
from app.risk.models import RiskWeights

DECISIONS = ("approve", "reject")


def _page(status: int = 200, problem: str | None = None):
    in_use = active_version(db.session)
    in_use_model = db.session.get(RiskModel, in_use)
    in_use_weights = db.session.get(RiskWeights, in_use)
    page = render_template(
        "admin/risk_models.html", models=service.list_models(db.session), in_use=in_use, in_use_model=in_use_model,
        in_use_weights=in_use_weights, activations=service.activations(db.session),
        reports=drift.latest_reports(db.session), drift_level=drift.level, needs_note=lambda model: service.needs_note(db.session, model),
        form=PlatformActionForm(formdata=None), problem=problem)
    db.session.rollback()  # read-only
    return page, status


@bp.get("/risk/models")
@platform_admin_required
def risk_models():
    """Candidates and the scorer in use, with their metrics; rollback; drift."""
    return _page()


def _reason(form) -> str:
    if not form.validate():
        raise ReasonRequired("That did not work: reload the page and try again.")
    return operator_reason(form.reason.data)


@bp.post("/risk/models/<version>/decide")
@platform_admin_required
def risk_model_decide(version: str):
    form = PlatformActionForm()
    decision = request.form.get("decision")
    try:
        reason = _reason(form)
        if decision not in DECISIONS:
            raise RiskInvalid("Choose approve or reject.")
        kwargs = {"actor": operator().id, "note": reason, "ip": meta().ip}
        if decision == "approve":
            service.approve(db.session, version, **kwargs)
        else:
            service.reject(db.session, version, **kwargs)
    except ReasonRequired as error:
        db.session.rollback()
        return _page(INVALID_FORM, error.message)
    except RiskNotFound:
        db.session.rollback()
        return _page(404, f"No such model: {version}.")
    except RiskInvalid as error:
        db.session.rollback()
        return _page(INVALID_FORM, error.message)
    db.session.commit()
    flash(f"Model {version} is {'in use' if decision == 'approve' else 'rejected'}.", "success")
    return redirect(url_for("admin.risk_models"), code=303)


@bp.post("/risk/models/rollback")
@platform_admin_required
def risk_model_rollback():
    form = PlatformActionForm()
    try:
        reason = _reason(form)
        target = service.rollback(db.session, actor=operator().id, note=reason, ip=meta().ip)
    except ReasonRequired as error:
        db.session.rollback()
        return _page(INVALID_FORM, error.message)
    except RiskInvalid as error:
        db.session.rollback()
        return _page(INVALID_FORM, error.message)
    db.session.commit()
    flash(f"Rolled back: {target} scores again.", "success")
    return redirect(url_for("admin.risk_models"), code=303)


@bp.post("/risk/models/train")
@platform_admin_required
def risk_model_train():
    """Train a candidate now, in the background (app.jobs.risk.train_risk_model); it shows here when done."""
    form = PlatformActionForm()
    try:
        reason = _reason(form)
        service.request_training(db.session, actor=operator().id, note=reason, ip=meta().ip)
    except ReasonRequired as error:
        db.session.rollback()
        return _page(INVALID_FORM, error.message)
    enqueue_after_commit(db.session, "app.jobs.risk.train_risk_model", operator().id,
                         job_timeout=TRAINING_JOB_TIMEOUT_SECONDS)
    db.session.commit()
    flash("Training started: the candidate appears below when it is done (too few labels: nothing is stored, "
          "see the worker's log).", "success")
    return redirect(url_for("admin.risk_models"), code=303)
