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


def _log_amount(value: Any) -> float:
    amount = _decimal(value)
    return math.log10(1 + float(amount)) if amount is not None and amount > 0 else 0.0


def _velocity(raw: Any) -> float:
    return float(max(0, min(int(raw), _VELOCITY_CAP))) if isinstance(raw, (int, float)) else 0.0


def numeric(signals: dict[str, Any]) -> dict[str, float]:
    # ``scoring.features`` reads the amount as a Decimal or its string (the stored form): both give the same.
    values: dict[str, float] = {name: float(value) for name, value in scoring.features(signals).items()}
    values["amount_log10"] = _log_amount(signals.get("amount"))
    for name in VELOCITY:
        values[name] = _velocity(signals.get(name))
    values["card_amount_24h_log10"] = _log_amount(signals.get("card_amount_24h"))
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


_NUMERIC_NAMES = tuple(numeric({}).keys())


class Columns:
    """Many payments' signals in compact column form, appended chunk by chunk (training's memory stays bounded).

    ``numeric`` is a float64 array, one row per payment, with ``numeric()``'s values computed column by column by
    the same scalar code (so exactly ``Encoder.vector``'s numeric part); each categorical signal is an int32 code
    per payment (-1 when missing) into ``values[name]``, its distinct values in first-seen order. ``matrix`` then
    one-hot encodes any vocabulary into the same matrix ``Encoder.vector`` gives row by row. ``fixed`` keeps the fixed
    weights' own features (``scoring.features``, small integers; some are replaced in ``numeric`` by the velocity
    counter of the same name) to score the test part with the fixed weights.
    """

    def __init__(self):
        self.values: dict[str, list[str]] = {name: [] for name in CATEGORICAL}
        self._codes_of: dict[str, dict[str, int]] = {name: {} for name in CATEGORICAL}
        self._numeric_parts: list = []
        self._code_parts: list = []
        self._fixed_parts: list = []
        self.numeric = self.codes = self.fixed = None

    def add(self, chunk: list[dict[str, Any]]) -> None:
        import numpy as np

        fixed_names = list(scoring.features({}).keys())
        fixed = np.array([tuple(scoring.features(s).values()) for s in chunk], dtype=np.float64)
        fixed = fixed.reshape(len(chunk), len(fixed_names))
        # As ``numeric`` builds its dict: a velocity counter of the same name replaces the fixed feature's value.
        by_name = {name: fixed[:, i] for i, name in enumerate(fixed_names)}
        by_name["amount_log10"] = np.array([_log_amount(s.get("amount")) for s in chunk], dtype=np.float64)
        for name in VELOCITY:
            by_name[name] = np.array([_velocity(s.get(name)) for s in chunk], dtype=np.float64)
        by_name["card_amount_24h_log10"] = np.array([_log_amount(s.get("card_amount_24h")) for s in chunk],
                                                    dtype=np.float64)
        columns = [by_name[name][:, None] for name in _NUMERIC_NAMES]
        self._fixed_parts.append(fixed.astype(np.int16))
        self._numeric_parts.append(np.hstack(columns))
        codes = np.empty((len(chunk), len(CATEGORICAL)), dtype=np.int32)
        for j, name in enumerate(CATEGORICAL):
            known, values = self._codes_of[name], self.values[name]

            def code(value, known=known, values=values):
                if value is None:
                    return -1
                found = known.get(value)
                if found is None:
                    found = known[value] = len(values)
                    values.append(value)
                return found
            codes[:, j] = [code(_category(s.get(name))) for s in chunk]
        self._code_parts.append(codes)

    def finish(self) -> "Columns":
        import numpy as np

        width = len(_NUMERIC_NAMES)
        self.numeric = np.vstack(self._numeric_parts) if self._numeric_parts else np.empty((0, width))
        self.codes = np.vstack(self._code_parts) if self._code_parts else np.empty((0, len(CATEGORICAL)), np.int32)
        fixed_width = len(scoring.features({}))
        self.fixed = np.vstack(self._fixed_parts) if self._fixed_parts else np.empty((0, fixed_width), np.int16)
        self._numeric_parts, self._code_parts, self._fixed_parts = [], [], []
        return self

    def __len__(self) -> int:
        return len(self.numeric)

    def vocabulary(self, rows: int) -> dict[str, list[str]]:
        """``fit_vocabulary`` of the first ``rows`` payments (same counts, same ties: first seen first)."""
        import numpy as np

        vocabulary = {}
        for j, name in enumerate(CATEGORICAL):
            codes = self.codes[:rows, j]
            counts = np.bincount(codes[codes >= 0], minlength=len(self.values[name]))
            ranked = sorted((code for code in range(len(counts)) if counts[code]), key=lambda c: (-counts[c], c))
            vocabulary[name] = sorted(self.values[name][c] for c in ranked[:MAX_CATEGORIES]
                                      if counts[c] >= MIN_CATEGORY_COUNT)
        return vocabulary

    def matrix(self, vocabulary: dict[str, list[str]], rows=slice(None), dtype=None):
        """The features of ``rows`` (a slice or index array) in ``feature_names(vocabulary)`` order."""
        import numpy as np

        block = self.numeric[rows]
        codes = self.codes[rows]
        width = len(feature_names(vocabulary))
        out = np.zeros((len(block), width), dtype=dtype or np.float64)
        out[:, :block.shape[1]] = block
        offset = block.shape[1]
        every = np.arange(len(block))
        for j, name in enumerate(CATEGORICAL):
            known = vocabulary.get(name, [])
            position = {value: i for i, value in enumerate(known)}
            # code -> column within this signal's block; the last entry is code -1 (missing).
            lookup = np.array([position.get(value, len(known)) for value in self.values[name]] + [len(known) + 1],
                              dtype=np.int64)
            out[every, offset + lookup[codes[:, j]]] = 1.0
            offset += len(known) + 2
        return out


def columns(signals: Iterable[dict[str, Any]], chunk: int = 50_000) -> Columns:
    """``Columns`` of an iterable of signals, read ``chunk`` at a time."""
    result, part = Columns(), []
    for item in signals:
        part.append(item)
        if len(part) >= chunk:
            result.add(part)
            part = []
    if part:
        result.add(part)
    return result.finish()


def vector(signals: dict[str, Any], vocabulary: dict[str, list[str]], names: list[str]) -> list[float]:
    values = encode(signals, vocabulary)
    return [values[name] for name in names]
