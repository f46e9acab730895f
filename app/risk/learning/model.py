"""A learned model as data, and its scorer: no scikit-learn, no pickle, nothing executable on load.

A model is a JSON document (stored in ``risk_models.parameters``):

- ``{"kind": "logistic", "names": [...], "vocabulary": {...}, "intercept": float, "coefficients": [...]}``:
  log-odds = intercept + sum(coefficient * feature) (features as ``app.risk.learning.features`` computes them);
- ``{"kind": "gradient_boosting", "names", "vocabulary", "init": float, "learning_rate": float,
  "trees": [{"feature": [...], "threshold": [...], "left": [...], "right": [...], "value": [...]}]}``:
  log-odds = init + learning_rate * sum over trees of the leaf's value (a node goes left when
  ``feature <= threshold``; ``left`` is -1 at a leaf), as scikit-learn's HistGradientBoostingClassifier predicts.

The score is ``int(99 * probability)`` with the fixed weights' levels (``app.risk.scoring.level_of``).
Contributions (log-odds, in thousandths like the fixed weights') explain it: for logistic regression each
feature's coefficient times its value; for boosted trees each split's change of the node value along the
path, credited to the split's feature (Saabas's method). The ``TOP_CONTRIBUTIONS`` largest by magnitude are
kept on the assessment, with their sign.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from app.risk import scoring
from app.risk.learning import features as feature_code

TOP_CONTRIBUTIONS = 5
KINDS = ("logistic", "gradient_boosting")


class ModelFormatError(ValueError):
    """The stored parameters are not a model this code can score (checked on load, before any use)."""


def probability_to_score(probability: float) -> int:
    return max(0, min(99, int(99 * probability)))


def _sigmoid(z: float) -> float:
    z = max(-50.0, min(50.0, z))
    return 1.0 / (1.0 + math.exp(-z))


@dataclass(frozen=True)
class LearnedScorer:
    version: str
    parameters: dict[str, Any]

    def __post_init__(self):
        check(self.parameters)
        object.__setattr__(self, "encoder", feature_code.Encoder(self.parameters["vocabulary"]))

    @property
    def names(self) -> list[str]:
        return self.parameters["names"]

    def log_odds(self, values: list[float]) -> tuple[float, dict[str, float]]:
        p = self.parameters
        names = p["names"]
        if p["kind"] == "logistic":
            contributions = {}
            z = p["intercept"]
            for name, coefficient, value in zip(names, p["coefficients"], values):
                if value and coefficient:
                    contributions[name] = coefficient * value
                    z += coefficient * value
            return z, contributions
        rate = p["learning_rate"]
        z = p["init"]
        contributions: dict[str, float] = {}
        for tree in p["trees"]:
            node = 0
            left, right, feature, threshold, value = (tree["left"], tree["right"], tree["feature"],
                                                      tree["threshold"], tree["value"])
            z += rate * value[0]
            while left[node] != -1:
                child = left[node] if values[feature[node]] <= threshold[node] else right[node]
                delta = rate * (value[child] - value[node])
                name = names[feature[node]]
                if "=" in name and not values[feature[node]]:
                    # A category this payment does not have: credited to the category itself, never named by a
                    # value (another merchant's common email domain must not show on this payment's page).
                    name = name.split("=", 1)[0]
                contributions[name] = contributions.get(name, 0.0) + delta
                z += delta
                node = child
        return z, contributions

    def log_odds_matrix(self, x):
        """``log_odds`` of every row of a feature matrix at once (numpy; training's test-set evaluation).

        The same stored parameters, walked for all rows together: equal to ``log_odds`` up to the order of the
        floating-point additions."""
        import numpy as np

        p = self.parameters
        if p["kind"] == "logistic":
            return p["intercept"] + x @ np.asarray(p["coefficients"], dtype=np.float64)
        z = np.full(len(x), float(p["init"]))
        every = np.arange(len(x))
        for tree in p["trees"]:
            left, right = np.asarray(tree["left"]), np.asarray(tree["right"])
            feature, threshold = np.asarray(tree["feature"]), np.asarray(tree["threshold"], dtype=np.float64)
            node = np.zeros(len(x), dtype=np.int64)
            inner = left[node] != -1
            while inner.any():
                at = node[inner]
                goes_left = x[every[inner], feature[at]] <= threshold[at]
                node[inner] = np.where(goes_left, left[at], right[at])
                inner = left[node] != -1
            z += p["learning_rate"] * np.asarray(tree["value"], dtype=np.float64)[node]
        return z

    def probabilities(self, x) -> list[float]:
        import numpy as np

        z = np.clip(self.log_odds_matrix(x), -50.0, 50.0)
        return (1.0 / (1.0 + np.exp(-z))).tolist()

    def probability(self, signals: dict[str, Any]) -> float:
        values = self.encoder.vector(signals)
        return _sigmoid(self.log_odds(values)[0])

    def score(self, signals: dict[str, Any]) -> tuple[int, str, dict[str, int]]:
        """(score 0-99, level, the top contributions in thousandths of log-odds), as ``scoring.score``."""
        values = self.encoder.vector(signals)
        z, contributions = self.log_odds(values)
        value = probability_to_score(_sigmoid(z))
        top = sorted(((name, round(c * 1000)) for name, c in contributions.items() if round(c * 1000)),
                     key=lambda item: (-abs(item[1]), item[0]))[:TOP_CONTRIBUTIONS]
        return value, scoring.level_of(value), dict(top)


def _numbers(values: Any, what: str, integer: bool = False) -> None:
    kind = int if integer else (int, float)
    if not isinstance(values, list) or not all(isinstance(v, kind) and not isinstance(v, bool) for v in values):
        raise ModelFormatError(f"{what} must be a list of numbers.")


def check(parameters: Any) -> None:
    """Refuse anything but a well-formed model document (types, lengths, tree indices in range)."""
    if not isinstance(parameters, dict) or parameters.get("kind") not in KINDS:
        raise ModelFormatError("Unknown model kind.")
    names = parameters.get("names")
    vocabulary = parameters.get("vocabulary")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ModelFormatError("names must be a list of strings.")
    if not isinstance(vocabulary, dict) or not all(
            isinstance(v, list) and all(isinstance(x, str) for x in v) for v in vocabulary.values()):
        raise ModelFormatError("vocabulary must map signals to lists of strings.")
    if names != feature_code.feature_names(vocabulary):
        raise ModelFormatError("The model's features are not the ones this code computes.")
    if parameters["kind"] == "logistic":
        _numbers(parameters.get("coefficients"), "coefficients")
        _numbers([parameters.get("intercept")], "intercept")
        if len(parameters["coefficients"]) != len(names):
            raise ModelFormatError("One coefficient per feature.")
        return
    _numbers([parameters.get("init"), parameters.get("learning_rate")], "init and learning_rate")
    trees = parameters.get("trees")
    if not isinstance(trees, list) or not trees:
        raise ModelFormatError("trees must be a non-empty list.")
    for tree in trees:
        if not isinstance(tree, dict):
            raise ModelFormatError("A tree must be an object.")
        for key in ("feature", "left", "right"):
            _numbers(tree.get(key), key, integer=True)
        for key in ("threshold", "value"):
            _numbers(tree.get(key), key)
        size = len(tree["value"])
        if not size or any(len(tree[key]) != size for key in ("feature", "threshold", "left", "right")):
            raise ModelFormatError("A tree's arrays must have one entry per node.")
        for node in range(size):
            left, right = tree["left"][node], tree["right"][node]
            if left == -1:
                continue
            # Children come after their parent: every path ends, no loop is possible.
            if not (node < left < size and node < right < size and 0 <= tree["feature"][node] < len(names)):
                raise ModelFormatError("A tree's node points outside the tree.")
