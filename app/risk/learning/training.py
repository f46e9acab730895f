"""Labels from live outcomes, training with scikit-learn, evaluation on a time-based split, the stored candidate.

Labels (live mode only: test mode is full of deliberate fraud cards, and its rows are never read here):

- fraudulent: a review rejected as fraud (closed ``refunded_as_fraud``), a refund with reason ``fraudulent``,
  a dispute with reason ``fraudulent``, or an early fraud warning a PSP reported (``early_fraud_warnings``,
  app/risk/fraud_warnings.py; actionable or not: the issuer said fraud either way);
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

import math
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Iterable

from sqlalchemy import text
from sqlalchemy.orm import Session

from app.models_base import lock_until_commit
from app.risk import scoring
from app.risk.learning import features as feature_code
from app.risk.learning.model import LearnedScorer, probability_to_score
from app.risk.learning.scorer import MODEL_PREFIX, is_learned, learned
from app.risk.learning.tables import RiskModel

MIN_LABELS = 1000
MIN_FRAUD = 50
TEST_FRACTION = 0.2
DISPUTE_WINDOW_DAYS = 120
LOAD_CHUNK = 50_000
# Gradient boosting is fitted on a stratified sample of the training part when it is larger: every fraudulent
# payment and a uniform random (seeded) share of the legitimate ones, up to BOOSTING_SAMPLE rows. With balanced
# class weights the sample's class ratio does not change what is fitted; the evaluation stays on the full test part.
BOOSTING_SAMPLE = 200_000
# Above this many rows boosting stops early: 10 % of its rows (stratified) held out, stop after 10 rounds
# without a better loss (scikit-learn's own "auto" threshold).
EARLY_STOPPING_FROM = 10_000
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
                       AND d.payment_id = p.id AND d.reason = 'fraudulent')
          OR EXISTS (SELECT 1 FROM early_fraud_warnings w WHERE w.merchant_id = p.merchant_id AND w.livemode
                       AND w.payment_id = p.id)) AS fraudulent,
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
    """Every labelled live payment, oldest first (see the module's docstring), all in memory at once.

    ``load_labels`` reads the same query chunk by chunk into compact arrays: what training uses."""
    rows = session.execute(_LABELS, {"legit_before": now - timedelta(days=window_days)})
    return [Labelled(row.created_at, row.signals, bool(row.fraudulent), row.id) for row in rows]


@dataclass
class Labels:
    """Labelled payments in compact form, oldest first: their times, labels (bool array) and feature columns."""
    at: list[datetime]
    fraudulent: Any
    columns: feature_code.Columns

    def __len__(self) -> int:
        return len(self.at)


def load_labels(session: Session, *, now: datetime, window_days: int = DISPUTE_WINDOW_DAYS,
                chunk: int = LOAD_CHUNK) -> Labels:
    """``labelled_payments``'s rows streamed through a server-side cursor, ``chunk`` at a time, into ``Labels``
    (the signals of one chunk at most are in memory as Python objects)."""
    import numpy as np

    statement = _LABELS.execution_options(stream_results=True, max_row_buffer=chunk)
    result = session.execute(statement, {"legit_before": now - timedelta(days=window_days)})
    at, fraudulent, columns = [], [], feature_code.Columns()
    for part in result.partitions(chunk):
        at += [row.created_at for row in part]
        fraudulent += [bool(row.fraudulent) for row in part]
        columns.add([row.signals for row in part])
    return Labels(at, np.array(fraudulent, dtype=bool), columns.finish())


def as_labels(rows: list[Labelled], chunk: int = LOAD_CHUNK) -> Labels:
    """``Labels`` of a list of labelled payments (sorted by time, stable)."""
    import numpy as np

    rows = sorted(rows, key=lambda row: row.at)
    return Labels([row.at for row in rows], np.array([row.fraudulent for row in rows], dtype=bool),
                  feature_code.columns((row.signals for row in rows), chunk))


def check_enough(labels: Labels, *, min_labels: int = MIN_LABELS, min_fraud: int = MIN_FRAUD) -> None:
    fraud = int(labels.fraudulent.sum())
    if len(labels) < min_labels or fraud < min_fraud:
        raise ColdStart(f"Too few labels to train: {len(labels)} labelled live payments ({fraud} fraudulent); at least "
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


def fit_logistic(x, y, names, vocabulary, *, in_place: bool = False) -> dict[str, Any]:
    """Logistic regression (lbfgs, at most 500 iterations) on standardized features, folded back into coefficients.

    ``in_place`` standardizes ``x`` itself (training's own matrix: no second copy of a million rows)."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    mean = x.mean(axis=0)
    std = x.std(axis=0)
    std[std == 0] = 1.0
    if in_place:
        x -= mean
        x /= std
        standardized = x
    else:
        standardized = (x - mean) / std
    model = LogisticRegression(class_weight="balanced", C=1.0, max_iter=500)
    model.fit(standardized, y)
    coefficients = model.coef_[0] / std
    intercept = float(model.intercept_[0] - np.sum(coefficients * mean))
    return {"kind": "logistic", "names": names, "vocabulary": vocabulary, "intercept": intercept,
            "coefficients": [float(c) for c in coefficients]}


def fit_boosting(x, y, names, vocabulary, *, trees: int = 100, leaves: int = 15,
                 early_stopping: bool = False) -> dict[str, Any]:
    """Histogram gradient boosting (scikit-learn's, fast on a million rows), exported as plain trees.

    The export reads the fitted model's trees (``_predictors``: each node's feature, threshold, children, leaf
    value) and its baseline; the tests compare the exported trees' probabilities with ``predict_proba``, so a
    scikit-learn release that changed them fails there, not in production. Internal nodes get the count-weighted
    mean of their children's values (what the explanation credits to each split's feature).
    """
    from sklearn.ensemble import HistGradientBoostingClassifier

    model = HistGradientBoostingClassifier(max_iter=trees, max_leaf_nodes=leaves, learning_rate=0.1,
                                           early_stopping=early_stopping, class_weight="balanced",
                                           random_state=0)
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


def fixed_scores(weights, fixed) -> tuple[list[int], list[float]]:
    """``scoring.score`` of every row of ``Columns.fixed`` (``scoring.features``, small integers, so the log-odds
    in thousandths are exact integer sums): (scores, unrounded log-odds)."""
    import numpy as np

    names = list(scoring.features({}).keys())
    w = np.array([weights.weights.get(name, 0) for name in names], dtype=np.int64)
    z = (weights.intercept + fixed.astype(np.int64) @ w).tolist()
    scores = [max(0, min(99, int(99 / (1 + math.exp(-max(-50.0, min(50.0, value / 1000))))))) for value in z]
    return scores, [float(value) for value in z]


def _in_use_scores(session: Session, labels: Labels, cut: int) -> tuple[str, list[int], list[float]]:
    weights = scoring.active_weights(session)
    if is_learned(weights.version):
        current = learned(session, weights.version)
        probabilities = current.probabilities(
            labels.columns.matrix(current.parameters["vocabulary"], slice(cut, None)))
        return weights.version, [probability_to_score(p) for p in probabilities], probabilities
    # The fixed weights' ranking: the unrounded log-odds (the 0-99 score ties many payments).
    scores, log_odds = fixed_scores(weights, labels.columns.fixed[cut:])
    return weights.version, scores, log_odds


def boosting_sample(y, *, limit: int = BOOSTING_SAMPLE, seed: int = 0):
    """Row indices (in time order) of the stratified sample boosting is fitted on: all rows up to ``limit``,
    else every fraudulent row and a seeded random share of the legitimate ones (see ``BOOSTING_SAMPLE``)."""
    import numpy as np

    if len(y) <= limit:
        return np.arange(len(y))
    fraud = np.flatnonzero(y)
    legit = np.flatnonzero(~y)
    keep = max(limit - len(fraud), 0)
    chosen = np.random.default_rng(seed).choice(legit, size=min(keep, len(legit)), replace=False)
    return np.sort(np.concatenate([fraud, chosen]))


def fit_and_evaluate(labels: Labels, *, boosting: bool = True, log=lambda message: None,
                     steps: dict | None = None) -> dict[str, Any]:
    """The time-based split, the vocabulary, both candidates fitted and each scored on the whole test part.

    ``steps`` (if given) receives each step's wall time in seconds (the benchmark's table)."""
    steps = {} if steps is None else steps
    mark = time.perf_counter()

    def step(name):
        nonlocal mark
        now = time.perf_counter()
        steps[name] = now - mark
        mark = now

    cut = int(len(labels) * (1 - TEST_FRACTION))
    y = labels.fraudulent
    y_train, y_test = y[:cut], y[cut:].tolist()
    for part, name in ((y_train, "training"), (y[cut:], "test")):
        if len(set(part.tolist())) < 2:
            raise ColdStart(f"The {name} part (time-based split) has only one class: more labelled history is needed.")
    vocabulary = labels.columns.vocabulary(cut)
    names = feature_code.feature_names(vocabulary)
    step("vocabulary")
    log(f"{cut} training and {len(labels) - cut} test payments, {len(names)} features")
    candidates = [fit_logistic(labels.columns.matrix(vocabulary, slice(0, cut)), y_train, names, vocabulary,
                               in_place=True)]
    step("logistic")
    log(f"logistic regression fitted in {steps['logistic']:.1f} s")
    if boosting:
        sample = boosting_sample(y_train)
        x_sample = labels.columns.matrix(vocabulary, sample)
        candidates.append(fit_boosting(x_sample, y_train[sample], names, vocabulary,
                                       early_stopping=len(sample) > EARLY_STOPPING_FROM))
        del x_sample
        step("gradient_boosting")
        log(f"gradient boosting fitted on {len(sample)} rows ({int(y_train[sample].sum())} fraudulent) in "
            f"{steps['gradient_boosting']:.1f} s, {len(candidates[-1]['trees'])} trees")
    x_test = labels.columns.matrix(vocabulary, slice(cut, None))
    evaluated = []
    for parameters in candidates:
        probabilities = LearnedScorer("candidate", parameters).probabilities(x_test)
        scores = [probability_to_score(p) for p in probabilities]
        evaluated.append((_metrics(y_test, scores, probabilities), parameters, scores))
        log(f"{parameters['kind']}: ROC AUC {evaluated[-1][0]['roc_auc']}")
    step("evaluation")
    return {"cut": cut, "vocabulary": vocabulary, "evaluated": evaluated, "y_test": y_test,
            "boosting_rows": len(sample) if boosting else 0}


def next_version(session: Session) -> str:
    """The next ``model-N``, reserved until the caller's transaction ends: two trainings finishing at once (two
    workers, the console's job beside ``flask risk train``) take turns here instead of both storing ``model-N`` and
    the second failing on the key after its minutes of fitting."""
    lock_until_commit(session, "risk_models.version")
    numbers = session.scalars(text("SELECT version FROM risk_models")).all()
    taken = [int(v[len(MODEL_PREFIX):]) for v in numbers if v.startswith(MODEL_PREFIX) and v[len(MODEL_PREFIX):].isdigit()]
    return f"{MODEL_PREFIX}{max(taken, default=0) + 1}"


def train(session: Session, rows: list[Labelled] | Labels, *, actor: str | None = None, demo: bool = False,
          min_labels: int = MIN_LABELS, min_fraud: int = MIN_FRAUD, boosting: bool = True,
          log=lambda message: None) -> Trained:
    """Fit, evaluate and store a candidate (flushes, never commits); raises ColdStart with too few labels.

    ``rows``: ``load_labels``'s compact arrays (``flask risk train``), or a list of labelled payments."""
    started = time.perf_counter()
    labels = rows if isinstance(rows, Labels) else as_labels(rows)
    check_enough(labels, min_labels=min_labels, min_fraud=min_fraud)
    fitted = fit_and_evaluate(labels, boosting=boosting, log=log)
    cut, evaluated, y_test = fitted["cut"], fitted["evaluated"], fitted["y_test"]
    # Logistic regression unless boosting does better on the held-out data.
    best = max(evaluated, key=lambda item: (item[0]["roc_auc"], item[1]["kind"] == "logistic"))
    metrics, parameters, scores = best
    version_in_use, in_use_scores, in_use_rank = _in_use_scores(session, labels, cut)
    in_use = _metrics(y_test, in_use_scores, in_use_rank)
    fraud = int(labels.fraudulent.sum())
    model = RiskModel(
        version=next_version(session), kind=parameters["kind"], parameters=parameters, demo=demo, trained_by=actor,
        baseline=_histogram(scores), status="candidate",
        metrics={"candidate": metrics, "in_use": in_use, "in_use_version": version_in_use,
                 "better": metrics["roc_auc"] > in_use["roc_auc"],
                 "alternatives": {p["kind"]: m["roc_auc"] for m, p, _ in evaluated},
                 "counts": {"labelled": len(labels), "fraudulent": fraud,
                            "train": cut, "test": len(labels) - cut, "test_fraudulent": sum(y_test),
                            "boosting_sample": fitted["boosting_rows"]},
                 "train_until": labels.at[cut - 1].isoformat(), "test_from": labels.at[cut].isoformat(),
                 "test_until": labels.at[-1].isoformat(),
                 "seconds": round(time.perf_counter() - started, 2)})
    session.add(model)
    session.flush()
    return Trained(model, time.perf_counter() - started)


def demo_rows(count: int, *, seed: int = 7) -> list[Labelled]:
    from app.risk.learning.demo import generate

    return [Labelled(at, signals, fraudulent) for at, signals, fraudulent in generate(count, seed=seed)]


def as_rows(items: Iterable[tuple[datetime, dict[str, Any], bool]]) -> list[Labelled]:
    return [Labelled(at, signals, fraudulent) for at, signals, fraudulent in items]
