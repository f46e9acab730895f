"""The scorer in use: the active ``risk_weights`` version, either fixed weights (``app.risk.scoring``) or an
approved learned model (its row there names the model's version and carries no weights).

``score(session, weights, signals)`` is the one call the engine makes; a learned model's parameters are read
once per process and version (a stored model never changes: a new training is a new version).
"""
from __future__ import annotations

import threading
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.risk import scoring
from app.risk.learning.model import LearnedScorer
from app.risk.learning.tables import RiskModel

MODEL_PREFIX = "model-"
_cache: dict[str, LearnedScorer] = {}
_lock = threading.Lock()


def is_learned(version: str) -> bool:
    return version.startswith(MODEL_PREFIX)


def learned(session: Session, version: str) -> LearnedScorer:
    scorer = _cache.get(version)
    if scorer is None:
        parameters = session.scalar(select(RiskModel.parameters).where(RiskModel.version == version))
        if parameters is None:
            raise LookupError(f"No stored model {version}.")
        scorer = LearnedScorer(version, parameters)
        with _lock:
            _cache[version] = scorer
    return scorer


def score(session: Session, weights: scoring.Weights, signals: dict[str, Any]) -> tuple[int, str, dict[str, int]]:
    """(score, level, contributions) by the scorer whose version is ``weights.version``."""
    if is_learned(weights.version):
        return learned(session, weights.version).score(signals)
    return scoring.score(weights, signals)


def active_version(session: Session) -> str:
    return scoring.active_weights(session).version
