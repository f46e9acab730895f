"""The learned risk score (issue 23): labels from live outcomes, features shared with scoring, training with
scikit-learn, models stored as JSON data, approval and rollback, weekly drift. No Flask here.

``features`` (Encoder: the one feature code), ``model`` (LearnedScorer: a stored model's scorer, no pickle),
``scorer`` (the scorer in use: the engine's one scoring call), ``training`` (labels, train, ColdStart),
``service`` (approve, reject, rollback), ``drift`` (report_week), ``demo`` (generated history), ``cli``
(``flask risk train``, ``flask risk drift``). README, "The learned risk score".
"""
