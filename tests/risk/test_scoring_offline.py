"""Scoring never touches the network, whichever scorer is in use: the fixed weights (test_engine.py) and a learned
model of either kind (logistic regression, boosted trees) score with every socket call refused, as does the
offline IP-to-country lookup the signals use."""
import socket

import numpy as np

from app.risk import evaluate, scoring
from app.risk.learning import features, training
from app.risk.learning.model import LearnedScorer


def test_learned_scorers_and_the_ip_country_never_touch_the_network(monkeypatch):
    rows = training.demo_rows(800, seed=5)
    vocabulary = features.fit_vocabulary(r.signals for r in rows)
    encoder = features.Encoder(vocabulary)
    x = np.array([encoder.vector(r.signals) for r in rows])
    y = np.array([r.fraudulent for r in rows])
    scorers = [LearnedScorer("model-lr", training.fit_logistic(x, y, encoder.names, vocabulary)),
               LearnedScorer("model-gb", training.fit_boosting(x, y, encoder.names, vocabulary, trees=5))]

    def refuse(*args, **kwargs):
        raise AssertionError("network used")

    for name in ("socket", "create_connection", "getaddrinfo", "gethostbyname"):
        monkeypatch.setattr(socket, name, refuse)
    signals = {**rows[0].signals, "ip_country": evaluate.ip_country("81.2.69.160")}
    assert signals["ip_country"] == "GB"
    for scorer in scorers:
        value, level, contributions = scorer.score(signals)
        assert 0 <= value <= 99 and level == scoring.level_of(value) and isinstance(contributions, dict)
