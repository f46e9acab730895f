"""Operators' decisions on learned models: approve (it scores from now on), reject, roll back one step.

Only an approved model scores: approval makes it the active ``risk_weights`` version (a row naming the model,
without weights), in the same transaction as the model's status, the activation's record and the audit entry.
A candidate whose ROC AUC on its test set is not above the scorer in use's on the same data (``metrics.better``)
is approved only with a note; so is a demo model, and a candidate evaluated against another scorer than the one
in use now. Rollback returns to the scorer that the approval of the one in use replaced (fixed weights or a model).
"""
from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.accounts.audit import audit
from app.ids import new_id
from app.models_base import utcnow
from app.risk.errors import RiskInvalid, RiskNotFound
from app.risk.learning.model import LearnedScorer, ModelFormatError
from app.risk.learning.scorer import active_version, is_learned
from app.risk.learning.tables import RiskModel, ScorerActivation
from app.risk.models import RiskWeights


def _who(actor: str | None) -> dict[str, str | None]:
    if actor and actor.startswith("usr_"):
        return {"actor_user_id": actor}
    return {"actor_label": actor}


def list_models(session: Session, limit: int = 50) -> list[RiskModel]:
    return list(session.scalars(select(RiskModel).order_by(RiskModel.created_at.desc()).limit(limit)))


def get_model(session: Session, version: Any, *, for_update: bool = False) -> RiskModel:
    statement = select(RiskModel).where(RiskModel.version == version)
    model = session.scalar(statement.with_for_update() if for_update else statement) \
        if isinstance(version, str) else None
    if model is None:
        raise RiskNotFound(f"No such model: '{version}'.", param="version")
    return model


def activations(session: Session, limit: int = 20) -> list[ScorerActivation]:
    return list(session.scalars(select(ScorerActivation).order_by(ScorerActivation.created_at.desc(),
                                                                  ScorerActivation.id.desc()).limit(limit)))


def needs_note(session: Session, model: RiskModel) -> str | None:
    """Why approving this candidate needs a note, or None."""
    if model.demo:
        return "it was trained on generated demo history"
    if not model.metrics.get("better"):
        return "it is not better than the scorer it was compared with on the same test set"
    if model.metrics.get("in_use_version") != active_version(session):
        return "it was compared with another scorer than the one in use now"
    return None


def _note(note: Any) -> str | None:
    if note is None:
        return None
    if not isinstance(note, str):
        raise RiskInvalid("The note must be text.", param="note")
    return note.strip()[:2000] or None


def _lock_scorer(session: Session) -> None:
    """Lock the weights table's rows before reading which scorer is in use: two approvals or rollbacks at once then
    run one after the other, and the second reads (and records as ``previous_version``) what the first activated,
    not the scorer both saw before (a later rollback would skip the first one's model)."""
    session.execute(select(RiskWeights.version).with_for_update())


def _check_loadable(version: str, parameters: Any) -> None:
    """Refuse to make a model the scorer unless this code scores it: every confirmation loads the scorer in use, and
    one this code refuses (a candidate trained before an upgrade changed the features, say) would fail them all."""
    try:
        LearnedScorer(version, parameters)
    except ModelFormatError as error:
        raise RiskInvalid(f"Model {version} cannot score with this version of Kassa ({error}): train a new one.",
                          param="version") from None


def _activate(session: Session, version: str, *, action: str, actor: str | None, note: str | None) -> None:
    _lock_scorer(session)
    previous = active_version(session)
    session.execute(update(RiskWeights).where(RiskWeights.active.is_(True)).values(active=False))
    session.flush()
    row = session.get(RiskWeights, version)
    if row is None:
        row = RiskWeights(version=version, intercept=0, weights={}, active=True,
                          description=f"Learned model {version} (risk_models)")
        session.add(row)
    else:
        row.active = True
    session.add(ScorerActivation(id=new_id("rsact"), version=version, previous_version=previous, action=action,
                                 actor=actor, note=note))
    session.flush()


def approve(session: Session, version: str, *, actor: str | None, note: Any = None, ip: str | None = None) -> RiskModel:
    _lock_scorer(session)  # first: what is in use is read (and checked against) under the lock
    model = get_model(session, version, for_update=True)
    note = _note(note)
    if model.status == "rejected":
        raise RiskInvalid("A rejected model cannot be approved; train a new one.", param="version")
    if active_version(session) == model.version:
        raise RiskInvalid("This model is in use already.", param="version")
    _check_loadable(model.version, model.parameters)
    why = needs_note(session, model)
    if why and not note:
        raise RiskInvalid(f"A note is required to approve this model: {why}.", param="note")
    model.status, model.decided_by, model.decided_at, model.decision_note = "approved", actor, utcnow(), note
    _activate(session, model.version, action="approve", actor=actor, note=note)
    audit(session, "risk.model.approved", **_who(actor), target=model.version, ip=ip,
          details={"note": note, "roc_auc": model.metrics["candidate"]["roc_auc"], "demo": model.demo})
    return model


def reject(session: Session, version: str, *, actor: str | None, note: Any = None, ip: str | None = None) -> RiskModel:
    model = get_model(session, version, for_update=True)
    if model.status != "candidate":
        raise RiskInvalid(f"Only a candidate can be rejected (this one is {model.status}).", param="version")
    model.status, model.decided_by, model.decided_at, model.decision_note = "rejected", actor, utcnow(), _note(note)
    audit(session, "risk.model.rejected", **_who(actor), target=model.version, ip=ip,
          details={"note": model.decision_note})
    session.flush()
    return model


def rollback(session: Session, *, actor: str | None, note: Any = None, ip: str | None = None) -> str:
    """Return to the scorer in use before the latest activation; returns its version."""
    _lock_scorer(session)
    current = active_version(session)
    # The approval that made the current scorer the one in use: rolling back returns to what it replaced, so
    # successive rollbacks walk back through the approvals (model-3 -> model-2 -> v1), never in a circle.
    latest = session.scalar(select(ScorerActivation).where(ScorerActivation.version == current,
                                                           ScorerActivation.action == "approve")
                            .order_by(ScorerActivation.created_at.desc(), ScorerActivation.id.desc()).limit(1))
    if latest is None or not latest.previous_version or latest.previous_version == "none":
        raise RiskInvalid("There is nothing to roll back to.")
    target = latest.previous_version
    if session.get(RiskWeights, target) is None:
        raise RiskInvalid(f"The previous scorer {target} no longer exists.")
    if is_learned(target):
        _check_loadable(target, get_model(session, target).parameters)
    note = _note(note)
    _activate(session, target, action="rollback", actor=actor, note=note)
    audit(session, "risk.model.rolled_back", **_who(actor), target=target, ip=ip,
          details={"from": current, "to": target, "note": note, "learned": is_learned(target)})
    return target


def request_training(session: Session, *, actor: str | None, note: str | None, ip: str | None = None) -> None:
    """Record (audit) an operator's request to train a candidate now; the caller enqueues
    ``app.jobs.risk.train_risk_model`` once this commits."""
    audit(session, "risk.model.training_requested", **_who(actor), target="risk_models", ip=ip,
          details={"note": _note(note)})
    session.flush()
