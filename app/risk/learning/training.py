"""Labels from live outcomes, training with scikit-learn, evaluation on a time-based split, the stored candidate.

Labels (live mode only: test mode is full of deliberate fraud cards, and its rows are never read here):

- fraudulent: a review rejected as fraud (closed ``refunded_as_fraud``), a refund with reason ``fraudulent``, or
  a dispute with reason ``fraudulent`` (Kassa has no early fraud warnings from PSPs yet; they join this list
  when a connector reports them);
- legitimate: a succeeded (captured) payment created before the dispute window (``RISK_DISPUTE_WINDOW_DAYS``,
  120) with none of those;
- anything else (recent, canceled, declined, never assessed) is not used.

Features are ``app.risk.learning.features`` of the signals stored on the payment's first confirmation
assessment: what the engine knew at confirmation, nothing later.

Training sorts the labelled payments by creation time, fits on the older ``1 - TEST_FRACTION`` and evaluates on
the newer rest: logistic regression (balanced class weights, standardized features folded back into the
coefficients) and histogram gradient boosting (balanced class weights); boosting is kept only if its ROC AUC on the test
set is higher. Metrics: ROC AUC, and precision and recall of ``score >= 65`` (``elevated``) and ``score >= 75``
(``highest``), for the candidate and for the scorer in use on the same test set.

Cold start: fewer than ``MIN_LABELS`` labelled payments, fewer than ``MIN_FRAUD`` fraudulent ones, or a training
or test part without both classes, and training refuses with a message (``ColdStart``).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Iterable

from sqlalchemy import text
from sqlalchemy.orm import Session

from app.risk import scoring
from app.risk.learning import features as feature_code
from app.risk.learning.model import LearnedScorer, probability_to_score
from app.risk.learning.scorer import MODEL_PREFIX, is_learned, learned
from app.risk.learning.tables import RiskModel

MIN_LABELS = 1000
MIN_FRAUD = 50
TEST_FRACTION = 0.2
DISPUTE_WINDOW_DAYS = 120
THRESHOLDS = {"elevated": scoring.ELEVATED_FROM, "highest": scoring.HIGHEST_FROM}


class ColdStart(Exception):
    """Too few labels to train (the message says how many there are and how many are needed)."""


@dataclass
class Labelled:
    at: datetime
    signals: dict[str, Any]
    fraudulent: bool
    payment_id: str | None = None


@dataclass
class Trained:
    model: RiskModel
    seconds: float


_LABELS = text("""
WITH first_assessment AS (
  SELECT DISTINCT ON (a.merchant_id, a.payment_id) a.merchant_id, a.payment_id, a.signals
    FROM risk_assessments a
   WHERE a.livemode AND a.stage = 'confirmation'
   ORDER BY a.merchant_id, a.payment_id, a.created_at, a.id
), labelled AS (
  SELECT p.id, p.created_at, f.signals,
         (EXISTS (SELECT 1 FROM risk_reviews r WHERE r.merchant_id = p.merchant_id AND r.livemode
                    AND r.payment_id = p.id AND r.closed_reason = 'refunded_as_fraud')
          OR EXISTS (SELECT 1 FROM refunds rf WHERE rf.merchant_id = p.merchant_id AND rf.livemode
                       AND rf.payment_id = p.id AND rf.reason = 'fraudulent')
          OR EXISTS (SELECT 1 FROM disputes d WHERE d.merchant_id = p.merchant_id AND d.livemode
                       AND d.payment_id = p.id AND d.reason = 'fraudulent')) AS fraudulent,
         p.status, p.created_at < :legit_before AS past_window
    FROM payments p
    JOIN first_assessment f ON f.merchant_id = p.merchant_id AND f.payment_id = p.id
   WHERE p.livemode
)
SELECT id, created_at, signals, fraudulent FROM labelled
 WHERE fraudulent OR (status = 'succeeded' AND past_window)
 ORDER BY created_at, id
""")


def labelled_payments(session: Session, *, now: datetime, window_days: int = DISPUTE_WINDOW_DAYS) -> list[Labelled]:
    """Every labelled live payment, oldest first (see the module's docstring)."""
    rows = session.execute(_LABELS, {"legit_before": now - timedelta(days=window_days)})
    return [Labelled(row.created_at, row.signals, bool(row.fraudulent), row.id) for row in rows]


def check_enough(rows: list[Labelled], *, min_labels: int = MIN_LABELS, min_fraud: int = MIN_FRAUD) -> None:
    fraud = sum(row.fraudulent for row in rows)
    if len(rows) < min_labels or fraud < min_fraud:
        raise ColdStart(f"Too few labels to train: {len(rows)} labelled live payments ({fraud} fraudulent); at least "
                        f"{min_labels} with {min_fraud} fraudulent are needed. Until then the fixed weights score.")


def _metrics(labels: list[bool], scores: list[int], probabilities: list[float]) -> dict[str, Any]:
    from sklearn.metrics import roc_auc_score

    out: dict[str, Any] = {"roc_auc": round(float(roc_auc_score(labels, probabilities)), 4)}
    total_fraud = sum(labels)
    for level, threshold in THRESHOLDS.items():
        flagged = [label for label, value in zip(labels, scores) if value >= threshold]
        caught = sum(flagged)
        out[level] = {"threshold": threshold, "flagged": len(flagged),
                      "precision": round(caught / len(flagged), 4) if flagged else None,
                      "recall": round(caught / total_fraud, 4) if total_fraud else None}
    return out


def _histogram(scores: list[int]) -> list[float]:
    counts = [0] * 10
    for value in scores:
        counts[min(value // 10, 9)] += 1
    return [count / len(scores) for count in counts] if scores else counts


def _balanced_weights(labels) -> list[float]:
    fraud = sum(labels)
    legit = len(labels) - fraud
    return [len(labels) / (2 * fraud) if label else len(labels) / (2 * legit) for label in labels]


def fit_logistic(x, y, names, vocabulary) -> dict[str, Any]:
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    mean = x.mean(axis=0)
    std = x.std(axis=0)
    std[std == 0] = 1.0
    model = LogisticRegression(class_weight="balanced", C=1.0, max_iter=500)
    model.fit((x - mean) / std, y)
    coefficients = model.coef_[0] / std
    intercept = float(model.intercept_[0] - np.sum(coefficients * mean))
    return {"kind": "logistic", "names": names, "vocabulary": vocabulary, "intercept": intercept,
            "coefficients": [float(c) for c in coefficients]}


def fit_boosting(x, y, names, vocabulary, *, trees: int = 100, leaves: int = 15) -> dict[str, Any]:
    """Histogram gradient boosting (scikit-learn's, fast on a million rows), exported as plain trees.

    The export reads the fitted model's trees (``_predictors``: each node's feature, threshold, children, leaf
    value) and its baseline; the tests compare the exported trees' probabilities with ``predict_proba``, so a
    scikit-learn release that changed them fails there, not in production. Internal nodes get the count-weighted
    mean of their children's values (what the explanation credits to each split's feature).
    """
    from sklearn.ensemble import HistGradientBoostingClassifier

    model = HistGradientBoostingClassifier(max_iter=trees, max_leaf_nodes=leaves, learning_rate=0.1,
                                           early_stopping=False, class_weight="balanced", random_state=0)
    model.fit(x, y)
    exported = []
    for (predictor,) in model._predictors:
        nodes = predictor.nodes
        size = len(nodes)
        leaf = [bool(node["is_leaf"]) for node in nodes]
        left = [-1 if leaf[i] else int(nodes[i]["left"]) for i in range(size)]
        right = [-1 if leaf[i] else int(nodes[i]["right"]) for i in range(size)]
        value = [float(node["value"]) for node in nodes]
        count = [int(node["count"]) for node in nodes]
        for i in reversed(range(size)):  # children come after their parent
            if not leaf[i]:
                total = count[left[i]] + count[right[i]]
                value[i] = (count[left[i]] * value[left[i]] + count[right[i]] * value[right[i]]) / total \
                    if total else 0.0
        exported.append({"feature": [0 if leaf[i] else int(nodes[i]["feature_idx"]) for i in range(size)],
                         "threshold": [0.0 if leaf[i] else float(nodes[i]["num_threshold"]) for i in range(size)],
                         "left": left, "right": right, "value": value})
    return {"kind": "gradient_boosting", "names": names, "vocabulary": vocabulary,
            "init": float(model._baseline_prediction.ravel()[0]), "learning_rate": 1.0, "trees": exported}


def _in_use_scores(session: Session, signals: list[dict[str, Any]]) -> tuple[str, list[int], list[float]]:
    weights = scoring.active_weights(session)
    scores, probabilities = [], []
    if is_learned(weights.version):
        current = learned(session, weights.version)
        for row in signals:
            probability = current.probability(row)
            probabilities.append(probability)
            scores.append(probability_to_score(probability))
    else:
        for row in signals:
            value, _level, contributions = scoring.score(weights, row)
            # The fixed weights' ranking: the unrounded log-odds (the 0-99 score ties many payments).
            probabilities.append(weights.intercept + sum(contributions.values()))
            scores.append(value)
    return weights.version, scores, probabilities


def next_version(session: Session) -> str:
    numbers = session.scalars(text("SELECT version FROM risk_models")).all()
    taken = [int(v[len(MODEL_PREFIX):]) for v in numbers if v.startswith(MODEL_PREFIX) and v[len(MODEL_PREFIX):].isdigit()]
    return f"{MODEL_PREFIX}{max(taken, default=0) + 1}"


def train(session: Session, rows: list[Labelled], *, actor: str | None = None, demo: bool = False,
          min_labels: int = MIN_LABELS, min_fraud: int = MIN_FRAUD, boosting: bool = True,
          log=lambda message: None) -> Trained:
    """Fit, evaluate and store a candidate (flushes, never commits); raises ColdStart with too few labels."""
    import numpy as np

    started = time.perf_counter()
    check_enough(rows, min_labels=min_labels, min_fraud=min_fraud)
    rows = sorted(rows, key=lambda row: row.at)
    cut = int(len(rows) * (1 - TEST_FRACTION))
    train_rows, test_rows = rows[:cut], rows[cut:]
    for part, name in ((train_rows, "training"), (test_rows, "test")):
        if len({row.fraudulent for row in part}) < 2:
            raise ColdStart(f"The {name} part (time-based split) has only one class: more labelled history is needed.")
    vocabulary = feature_code.fit_vocabulary(row.signals for row in train_rows)
    encoder = feature_code.Encoder(vocabulary)
    names = encoder.names
    x_train = np.array([encoder.vector(row.signals) for row in train_rows])
    y_train = np.array([row.fraudulent for row in train_rows])
    y_test = [row.fraudulent for row in test_rows]
    log(f"{len(train_rows)} training and {len(test_rows)} test payments, {len(names)} features")

    def evaluate(parameters):
        scorer = LearnedScorer("candidate", parameters)
        probabilities = [scorer.probability(row.signals) for row in test_rows]
        return probabilities, [probability_to_score(p) for p in probabilities]

    candidates = [fit_logistic(x_train, y_train, names, vocabulary)]
    if boosting:
        candidates.append(fit_boosting(x_train, y_train, names, vocabulary))
    evaluated = []
    for parameters in candidates:
        probabilities, scores = evaluate(parameters)
        evaluated.append((_metrics(y_test, scores, probabilities), parameters, scores))
        log(f"{parameters['kind']}: ROC AUC {evaluated[-1][0]['roc_auc']}")
    # Logistic regression unless boosting does better on the held-out data.
    best = max(evaluated, key=lambda item: (item[0]["roc_auc"], item[1]["kind"] == "logistic"))
    metrics, parameters, scores = best
    version_in_use, in_use_scores, in_use_rank = _in_use_scores(session, [row.signals for row in test_rows])
    in_use = _metrics(y_test, in_use_scores, in_use_rank)
    model = RiskModel(
        version=next_version(session), kind=parameters["kind"], parameters=parameters, demo=demo, trained_by=actor,
        baseline=_histogram(scores), status="candidate",
        metrics={"candidate": metrics, "in_use": in_use, "in_use_version": version_in_use,
                 "better": metrics["roc_auc"] > in_use["roc_auc"],
                 "alternatives": {p["kind"]: m["roc_auc"] for m, p, _ in evaluated},
                 "counts": {"labelled": len(rows), "fraudulent": sum(r.fraudulent for r in rows),
                            "train": len(train_rows), "test": len(test_rows), "test_fraudulent": sum(y_test)},
                 "train_until": train_rows[-1].at.isoformat(), "test_from": test_rows[0].at.isoformat(),
                 "test_until": test_rows[-1].at.isoformat(),
                 "seconds": round(time.perf_counter() - started, 2)})
    session.add(model)
    session.flush()
    return Trained(model, time.perf_counter() - started)


def demo_rows(count: int, *, seed: int = 7) -> list[Labelled]:
    from app.risk.learning.demo import generate

    return [Labelled(at, signals, fraudulent) for at, signals, fraudulent in generate(count, seed=seed)]


def as_rows(items: Iterable[tuple[datetime, dict[str, Any], bool]]) -> list[Labelled]:
    return [Labelled(at, signals, fraudulent) for at, signals, fraudulent in items]
