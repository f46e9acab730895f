"""The learned model's inputs: one function of an assessment's signals, used at training and at scoring.

Training reads the signals stored on each payment's confirmation assessment (what the engine knew at
confirmation, before any outcome); scoring passes the signals the engine just gathered. Both go through
``Encoder.vector`` (an amount is read as a Decimal, from the Decimal at scoring or its stored string at
training), so a payment's features are the same at training and at scoring by construction. The score
itself (``risk_score``, ``risk_level``) and identifiers (card fingerprint, BIN, email, IP) are never features.

Numeric features (documented in the README, all 0 when the signal is missing):

- the fixed weights' features (``app.risk.scoring.features``: small integers, capped at 10);
- ``amount_log10``: log10(1 + amount in major units);
- every velocity counter (payments, declines, distinct cards per card, email, IP, 10 min/1 h/24 h), capped at 50,
  and ``card_amount_24h_log10``.

Categorical features are one-hot encoded with a vocabulary fixed at training and stored with the model:
for each of ``CATEGORICAL`` the values seen at least ``MIN_CATEGORY_COUNT`` times in the training set (the
``MAX_CATEGORIES`` most frequent), each a 0/1 column ``name=value``; a value outside the vocabulary sets
``name=other``, a missing one ``name=missing``.
"""
from __future__ import annotations

import math
from collections import Counter
from decimal import Decimal, InvalidOperation
from typing import Any, Iterable

from app.risk import scoring
from app.risk.language import SIGNALS

CATEGORICAL = ("card_brand", "card_funding", "currency", "card_country", "ip_country", "email_domain")
MIN_CATEGORY_COUNT = 20
MAX_CATEGORIES = 30
VELOCITY = tuple(sorted(name for name, spec in SIGNALS.items()
                        if spec.source == "Redis velocity counters" and name != "card_amount_24h"))
_VELOCITY_CAP = 50


def _decimal(value: Any) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None


def _category(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return str(value).lower()


def numeric(signals: dict[str, Any]) -> dict[str, float]:
    # ``scoring.features`` reads the amount as a Decimal or its string (the stored form): both give the same.
    values: dict[str, float] = {name: float(value) for name, value in scoring.features(signals).items()}
    amount = _decimal(signals.get("amount"))
    values["amount_log10"] = math.log10(1 + float(amount)) if amount is not None and amount > 0 else 0.0
    for name in VELOCITY:
        raw = signals.get(name)
        values[name] = float(max(0, min(int(raw), _VELOCITY_CAP))) if isinstance(raw, (int, float)) else 0.0
    card_amount = _decimal(signals.get("card_amount_24h"))
    values["card_amount_24h_log10"] = math.log10(1 + float(card_amount)) \
        if card_amount is not None and card_amount > 0 else 0.0
    return values


def fit_vocabulary(rows: Iterable[dict[str, Any]]) -> dict[str, list[str]]:
    """Each categorical signal's vocabulary from the training rows (see the module's docstring)."""
    counts = {name: Counter() for name in CATEGORICAL}
    for signals in rows:
        for name in CATEGORICAL:
            value = _category(signals.get(name))
            if value is not None:
                counts[name][value] += 1
    return {name: sorted(v for v, n in counter.most_common(MAX_CATEGORIES) if n >= MIN_CATEGORY_COUNT)
            for name, counter in counts.items()}


def feature_names(vocabulary: dict[str, list[str]]) -> list[str]:
    names = list(numeric({}).keys())
    for name in CATEGORICAL:
        names += [f"{name}={value}" for value in vocabulary.get(name, [])] + [f"{name}=other", f"{name}=missing"]
    return names


def _column(name: str, value: str | None, known: frozenset[str]) -> str:
    if value is None:
        return f"{name}=missing"
    return f"{name}={value}" if value in known else f"{name}=other"


def encode(signals: dict[str, Any], vocabulary: dict[str, list[str]]) -> dict[str, float]:
    """Feature name -> value (every name of ``feature_names(vocabulary)``)."""
    encoder = Encoder(vocabulary)
    return dict(zip(encoder.names, encoder.vector(signals)))


class Encoder:
    """The features of one vocabulary as a list in ``names`` order (built once per model, used per payment)."""

    def __init__(self, vocabulary: dict[str, list[str]]):
        self.vocabulary = vocabulary
        self.names = feature_names(vocabulary)
        self._index = {name: i for i, name in enumerate(self.names)}
        self._numeric = len(numeric({}))
        self._known = {name: frozenset(vocabulary.get(name, [])) for name in CATEGORICAL}

    def vector(self, signals: dict[str, Any]) -> list[float]:
        values = list(numeric(signals).values())
        values += [0.0] * (len(self.names) - self._numeric)
        for name in CATEGORICAL:
            values[self._index[_column(name, _category(signals.get(name)), self._known[name])]] = 1.0
        return values


def vector(signals: dict[str, Any], vocabulary: dict[str, list[str]], names: list[str]) -> list[float]:
    values = encode(signals, vocabulary)
    return [values[name] for name in names]
