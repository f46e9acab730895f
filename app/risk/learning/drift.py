"""Weekly score drift: the population stability index of last week's live scores by the scorer in use (the
assessments it scored: ``weights_version``) against a reference.

PSI = sum over 10 score bins (0-9, 10-19, ..., 90-99) of (current - reference) * ln(current / reference), shares
floored at 0.0001. Reference: the scorer in use's test-set distribution when it is a learned model (stored at
training), else the four weeks before. Read: below 0.1 stable, 0.1 to 0.25 a moderate shift, above 0.25 a
significant one (retrain, or look at what changed in the traffic). One report per ISO week, for the week before.
"""
from __future__ import annotations

import math
from datetime import datetime, timedelta

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from app.ids import new_id
from app.models_base import utcnow
from app.risk.learning.scorer import active_version, is_learned
from app.risk.learning.tables import DriftReport, RiskModel

STABLE_BELOW = 0.1
SIGNIFICANT_ABOVE = 0.25
_FLOOR = 0.0001

# The scores of one scorer only: in a week when an approval or a rollback changed the scorer, the other scorer's
# scores are another distribution altogether, and mixing them in would read as drift.
_HISTOGRAM = text("""
SELECT least(score / 10, 9) AS bin, count(*) AS n FROM risk_assessments
 WHERE livemode AND stage = 'confirmation' AND created_at >= :since AND created_at < :until
   AND weights_version = :version
 GROUP BY 1
""")


def _shares(session: Session, since: datetime, until: datetime, version: str) -> tuple[list[float], int]:
    counts = [0] * 10
    for row in session.execute(_HISTOGRAM, {"since": since, "until": until, "version": version}):
        counts[int(row.bin)] = int(row.n)
    total = sum(counts)
    return ([count / total for count in counts] if total else counts), total


def psi(reference: list[float], current: list[float]) -> float:
    value = 0.0
    for ref, cur in zip(reference, current):
        ref, cur = max(ref, _FLOOR), max(cur, _FLOOR)
        value += (cur - ref) * math.log(cur / ref)
    return value


def level(psi_thousandths: int | None) -> str:
    if psi_thousandths is None:
        return "no data"
    if psi_thousandths < STABLE_BELOW * 1000:
        return "stable"
    return "moderate shift" if psi_thousandths <= SIGNIFICANT_ABOVE * 1000 else "significant shift"


def week_start(now: datetime) -> datetime:
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return day - timedelta(days=day.weekday())


def report_week(session: Session, *, now: datetime | None = None) -> DriftReport | None:
    """The report of the ISO week before ``now``'s, once (None when it exists already); flushes."""
    now = now or utcnow()
    until = week_start(now)
    since = until - timedelta(days=7)
    year, week, _ = since.isocalendar()
    label = f"{year}-W{week:02d}"
    if session.scalar(select(DriftReport.id).where(DriftReport.week == label)) is not None:
        return None
    version = active_version(session)
    current, total = _shares(session, since, until, version)
    baseline = session.scalar(select(RiskModel.baseline).where(RiskModel.version == version)) \
        if is_learned(version) else None
    if baseline:
        reference, reference_name = baseline, "model_test_set"
    else:
        reference, _ = _shares(session, since - timedelta(days=28), since, version)
        reference_name = "previous_4_weeks"
    value = round(psi(reference, current) * 1000) if total and any(reference) else None
    report = DriftReport(id=new_id("rsdr"), week=label, version=version, reference=reference_name,
                         psi_thousandths=value, assessments=total,
                         bins=[{"from": i * 10, "to": i * 10 + 9, "reference": round(reference[i], 4),
                                "current": round(current[i], 4)} for i in range(10)])
    session.add(report)
    session.flush()
    return report


def latest_reports(session: Session, limit: int = 8) -> list[DriftReport]:
    return list(session.scalars(select(DriftReport).order_by(DriftReport.week.desc()).limit(limit)))
