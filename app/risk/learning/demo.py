"""Generated payment history with a known fraud pattern: the demo's training data, the tests' and the benchmark's.

Clearly not real: a model trained on it is stored with ``demo = true`` and shown as "demo data" in the console.
Signals have the shape the engine stores on an assessment (JSON types). The fraud pattern (log-odds):

    -4.6 + 4.0 * (prepaid card issued in BR) + 2.5 * (email at a disposable domain)
         + 1.0 * (IP used by 3 or more cards in the last hour) + 1.2 * (amount between 200 and 600)

while a card/IP country mismatch, which the fixed weights punish hardest, is as common in legitimate
payments (travellers) as in fraud. A learned model should find the pattern; the fixed weights cannot.
"""
from __future__ import annotations

import math
import random
from datetime import datetime, timedelta, timezone
from typing import Any, Iterator

COUNTRIES = ("de", "fr", "nl", "es", "it", "us", "gb", "br", "pl", "se")
DOMAINS = ("gmail.com", "outlook.com", "web.de", "yahoo.com", "orange.fr", "mailinator.com", "guerrillamail.com")
DISPOSABLE = ("mailinator.com", "guerrillamail.com")


def fraud_log_odds(signals: dict[str, Any]) -> float:
    amount = float(signals["amount"])
    return (-4.6 + 4.0 * (signals["card_funding"] == "prepaid" and signals["card_country"] == "BR")
            + 2.5 * (signals["email_domain"] in DISPOSABLE) + 1.0 * (signals["ip_distinct_cards_1h"] >= 3)
            + 1.2 * (200 <= amount <= 600))


def generate(count: int, *, seed: int = 7, start: datetime | None = None,
             days: int = 365) -> Iterator[tuple[datetime, dict[str, Any], bool]]:
    """``count`` (time, signals, fraudulent) in time order over ``days`` from ``start``."""
    rng = random.Random(seed)
    start = start or datetime(2025, 1, 1, tzinfo=timezone.utc)
    step = timedelta(days=days) / max(count, 1)
    for index in range(count):
        card_country = rng.choice(COUNTRIES).upper()
        mismatch = rng.random() < 0.25
        ip_country = rng.choice([c for c in COUNTRIES if c.upper() != card_country]).upper() if mismatch \
            else card_country
        domain = rng.choice(DOMAINS)
        amount = round(rng.lognormvariate(4.0, 1.1), 2)
        distinct_ip_cards = rng.choice((1, 1, 1, 1, 2, 2, 3, 5))
        signals = {
            "amount": f"{amount:.2f}", "currency": rng.choice(("eur", "eur", "eur", "usd", "gbp")),
            "card_brand": rng.choice(("visa", "visa", "mastercard", "amex")),
            "card_funding": rng.choice(("credit", "debit", "debit", "prepaid")),
            "card_country": card_country, "ip_country": ip_country, "card_ip_country_mismatch": mismatch,
            "email_domain": domain, "ip_address": f"198.51.100.{index % 250 + 1}",
            "is_new_card": rng.random() < 0.4, "is_3d_secure": False, "three_d_secure_result": "not_attempted",
            "card_payments_10m": rng.choice((1, 1, 1, 2)), "card_declines_24h": rng.choice((0, 0, 0, 1)),
            "email_distinct_cards_24h": rng.choice((1, 1, 1, 2)), "ip_distinct_cards_1h": distinct_ip_cards,
            "ip_declines_1h": rng.choice((0, 0, 1)),
        }
        fraudulent = rng.random() < 1 / (1 + math.exp(-fraud_log_odds(signals)))
        yield start + step * index, signals, fraudulent


DEMO_SEED_SIZE = 5000


def seed_demo_model(session, _merchant, _web_url: str) -> list[str]:
    """SEED_STEPS entry: one candidate trained on generated history (demo data, logistic regression only, for a
    fast seed), for the console's approval page; once. Never approved by the seed: the fixed weights score."""
    from sqlalchemy import select

    from app.risk.learning import training
    from app.risk.learning.tables import RiskModel

    if session.scalar(select(RiskModel.version).where(RiskModel.demo.is_(True)).limit(1)) is not None:
        return []
    model = training.train(session, training.demo_rows(DEMO_SEED_SIZE), actor="seed", demo=True,
                           boosting=False).model
    return [f"Risk: a learned model trained on generated demo history ({model.version}, ROC AUC "
            f"{model.metrics['candidate']['roc_auc']}), waiting for approval at /admin/risk/models "
            "(flask risk train --demo trains another)"]
