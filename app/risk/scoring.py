"""The risk score: 0-99 from versioned weights kept as data (``risk_weights``), explainable per signal.

Features are small integers read from the signals (``features``); each feature's contribution is its weight
(thousandths) times its value; the score is ``99 * logistic((intercept + sum of contributions) / 1000)``,
rounded down. Levels as Radar's: ``highest`` from 75, ``elevated`` from 65, ``normal`` below. Nothing here
reads the network: the weights are passed in, the signals were gathered before.

A learned model (a later issue) adds a weights version with its own intercept and weights over the same
features (or new ones, computed here) and activates it; assessments record the version that scored them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.risk.models import RiskWeights

ELEVATED_FROM = 65
HIGHEST_FROM = 75
_CAP = 10


@dataclass(frozen=True)
class Weights:
    version: str
    intercept: int
    weights: dict[str, int]


# Used when no version is active (a database without the seed): neutral, says so by its version.
NEUTRAL = Weights("none", -4000, {})


def active_weights(session: Session) -> Weights:
    row = session.execute(select(RiskWeights.version, RiskWeights.intercept, RiskWeights.weights)
                          .where(RiskWeights.active.is_(True))).one_or_none()
    if row is None:
        return NEUTRAL
    return Weights(row.version, int(row.intercept), {k: int(v) for k, v in row.weights.items()})


def _count(value: Any, minus: int = 0) -> int:
    if value is None:
        return 0
    return max(0, min(int(value) - minus, _CAP))


def features(signals: dict[str, Any]) -> dict[str, int]:
    """The model's inputs (documented in the README): small integers, 0 when a signal is missing."""
    amount = signals.get("amount")
    return {
        "card_country_mismatch": int(signals.get("card_ip_country_mismatch") is True),
        "card_first_seen": int(signals.get("is_new_card") is True),
        "card_prepaid": int(signals.get("card_funding") == "prepaid"),
        "amount_over_1000": int(amount is not None and Decimal(amount) >= 1000),
        # This payment is counted in its own counters: the first one is not velocity.
        "card_payments_10m": _count(signals.get("card_payments_10m"), 1),
        "card_declines_24h": _count(signals.get("card_declines_24h")),
        "card_distinct_ips_1h": 0,
        "email_distinct_cards_24h": _count(signals.get("email_distinct_cards_24h"), 1),
        "ip_distinct_cards_1h": _count(signals.get("ip_distinct_cards_1h"), 1),
        "ip_declines_1h": _count(signals.get("ip_declines_1h")),
        "three_d_secure": int(signals.get("is_3d_secure") is True),
        "no_ip_address": int(not signals.get("ip_address")),
    }


def level_of(score: int) -> str:
    if score >= HIGHEST_FROM:
        return "highest"
    if score >= ELEVATED_FROM:
        return "elevated"
    return "normal"


def score(weights: Weights, signals: dict[str, Any]) -> tuple[int, str, dict[str, int]]:
    """(score 0-99, level, contribution per feature in thousandths; zero contributions left out)."""
    contributions = {}
    for name, value in features(signals).items():
        weight = weights.weights.get(name, 0)
        if weight and value:
            contributions[name] = weight * value
    z = (weights.intercept + sum(contributions.values())) / 1000
    value = int(99 / (1 + math.exp(-max(-50.0, min(50.0, z)))))
    value = max(0, min(99, value))
    return value, level_of(value), contributions
