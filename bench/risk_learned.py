"""Learned risk score benchmark (issue 23; bench/risk.py's companion, same harness and dedicated-thread timing).

    same environment as bench/risk.py (`python3 kassa.py servers-only --ephemeral` prints one), then:

    .venv/bin/python bench/risk_learned.py [--evaluations 2000] [--train-size 1000000] [--write]

1. Scoring: the scorer call alone (``app.risk.learning.scorer.score``: features and score, no I/O) with the fixed
   weights v1, a learned logistic regression and learned boosted trees; then the whole evaluation
   (``app.risk.evaluate.assess``, bench/risk.py's "built-in platform rules only, all counters" case) with the fixed
   weights in use and with an approved learned model in use. Each timed in a dedicated thread, p50/p99/max.
2. Training on ``--train-size`` generated labelled payments (app/risk/learning/demo.py's known pattern) by the
   training code itself (``training.fit_and_evaluate``, what ``flask risk train`` runs after ``load_labels``): the
   payments encoded chunk by chunk into compact columns, the vocabulary, logistic regression on the whole training
   part, gradient boosting on its stratified sample with early stopping, the whole test part scored by the stored
   form of each (vectorized); wall time of each step, peak memory, load average. The payments are generated in
   memory, not read from PostgreSQL (``load_labels`` streams one indexed query through a server-side cursor).

``--write`` replaces the "Learned risk score" section of bench/RESULTS.md.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from datetime import date
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import payments as payments_bench  # noqa: E402
from bench.risk import make_app, say, summary, timed_in_thread  # noqa: E402

SECTION_START = "<!-- risk-learned:start -->"
SECTION_END = "<!-- risk-learned:end -->"


def scoring(bench: payments_bench.Bench, count: int) -> dict:
    env = {**bench.env, **bench.fresh_database("risklearn")}
    saved = dict(os.environ)
    try:
        return _scoring(env, count)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _scoring(env: dict, count: int) -> dict:
    app = make_app(env)
    from app.accounts.models import Merchant
    from app.extensions import db
    from app.ids import new_id
    from app.payments.models import Payment
    from app.risk import evaluate
    from app.risk.learning import features, scorer, service, training
    from app.risk.learning.model import LearnedScorer
    from app.risk.scoring import active_weights
    from app.scoping import Scope

    results = {}
    with app.app_context():
        merchant = Merchant(id=new_id("mer"), name="Bench learned")
        db.session.add(merchant)
        db.session.commit()
        say("training a model on 20,000 generated payments")
        model = training.train(db.session, training.demo_rows(20000), actor="bench", demo=True).model
        db.session.commit()
        rows = training.demo_rows(2000, seed=3)
        import numpy as np
        vocabulary = model.parameters["vocabulary"]
        names = model.parameters["names"]
        train_rows = training.demo_rows(20000)
        # Both kinds, whatever the training chose, on the same features.
        encoder = features.Encoder(vocabulary)
        x = np.array([encoder.vector(r.signals) for r in train_rows])
        y = np.array([r.fraudulent for r in train_rows])
        kinds = {"logistic": LearnedScorer("lr", training.fit_logistic(x, y, names, vocabulary)),
                 "gradient_boosting": LearnedScorer("gb", training.fit_boosting(x, y, names, vocabulary))}
        fixed = active_weights(db.session)
        signals = [r.signals for r in rows]
        cursor = SimpleNamespace(i=0)

        def next_signals():
            cursor.i = (cursor.i + 1) % len(signals)
            return signals[cursor.i]

        say(f"timing {count} scorer calls of each kind")
        results["score_fixed"] = summary(timed_in_thread(app, lambda: scorer.score(db.session, fixed, next_signals()),
                                                         count))
        for kind, learned in kinds.items():
            results[f"score_{kind}"] = summary(timed_in_thread(app, lambda: learned.score(next_signals()), count))

        shopper = {"email": "shopper@bench.example", "ip": "81.2.69.160"}

        def payment():
            row = Scope(merchant.id, True).new(Payment, id=new_id("pay"), amount=4200, currency="EUR",
                                               status="processing", capture_method="automatic",
                                               customer_email=shopper["email"], customer_ip=shopper["ip"])
            db.session.add(row)
            db.session.commit()
            return SimpleNamespace(id=row.id, merchant_id=merchant.id, livemode=True, amount=4200, currency="EUR",
                                   customer_email=shopper["email"], customer_ip=shopper["ip"])

        paid = payment()
        redis = app.extensions["redis"]
        card = {"brand": "visa", "funding": "prepaid", "country": "BR", "bin": "424242", "risk_hint": None,
                "fingerprint": "fp_bench_learned"}

        def assess():
            evaluate.assess(db.session, paid, redis=redis, card=card)
            db.session.rollback()

        timed_in_thread(app, assess, 50)
        results["assess_fixed"] = summary(timed_in_thread(app, assess, count))
        service.approve(db.session, model.version, actor="bench", note="benchmark (demo data)")
        db.session.commit()
        timed_in_thread(app, assess, 50)
        results["assess_learned"] = summary(timed_in_thread(app, assess, count))
        results["assess_learned_kind"] = model.kind
        db.session.remove()
        db.engine.dispose()
    return results


def training_time(size: int) -> dict:
    """``training.fit_and_evaluate`` (what ``flask risk train`` runs) on ``size`` generated payments.

    They are generated and encoded chunk by chunk into the compact columns, as ``training.load_labels`` does with
    the database's rows (the generation is timed apart: it is not part of training)."""
    import resource

    import numpy as np

    from app.risk.learning import features, training
    from app.risk.learning.demo import generate

    steps = {"generate": 0.0, "features": 0.0}
    at, fraudulent, columns, chunk = [], [], features.Columns(), []
    mark = time.perf_counter()
    for when, signals, fraud in generate(size):
        at.append(when)
        fraudulent.append(fraud)
        chunk.append(signals)
        if len(chunk) == training.LOAD_CHUNK or len(at) == size:
            now = time.perf_counter()
            steps["generate"] += now - mark
            columns.add(chunk)
            chunk = []
            mark = time.perf_counter()
            steps["features"] += mark - now
    now = time.perf_counter()
    labels = training.Labels(at, np.array(fraudulent, dtype=bool), columns.finish())
    steps["features"] += time.perf_counter() - now
    say(f"{size} payments encoded ({len(features.numeric({}))} numeric columns) in {steps['features']:.1f} s "
        f"(generated in {steps['generate']:.1f} s)")
    fitted = training.fit_and_evaluate(labels, steps=steps, log=say)
    steps["total"] = sum(value for key, value in steps.items() if key != "generate")
    aucs = {parameters["kind"]: metrics["roc_auc"] for metrics, parameters, _ in fitted["evaluated"]}
    trees = [len(p["trees"]) for _, p, _ in fitted["evaluated"] if p["kind"] == "gradient_boosting"][0]
    return {"size": size, "features": len(features.feature_names(fitted["vocabulary"])),
            "fraud": int(labels.fraudulent.sum()), "steps": steps, "auc": aucs,
            "boosting_rows": fitted["boosting_rows"], "trees": trees,
            "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024, "load": os.getloadavg()}


def render(scores: dict, trained: dict, args) -> str:
    lines = [SECTION_START, "## Learned risk score", "",
             f"{date.today().isoformat()}, {platform.machine()}, Python {platform.python_version()}, "
             f"{os.cpu_count()} CPUs shared with other work; `bench/risk_learned.py --evaluations {args.evaluations} "
             f"--train-size {args.train_size}`.", "", "Scoring, in a dedicated thread (ms):", "",
             "| what | n | p50 | p99 | max |", "|---|---|---|---|---|"]
    names = {"score_fixed": "scorer call: fixed weights v1",
             "score_logistic": "scorer call: learned logistic regression",
             "score_gradient_boosting": "scorer call: learned gradient boosting (100 trees of 15 leaves)",
             "assess_fixed": "whole evaluation, built-in rules, all counters: fixed weights in use",
             "assess_learned": f"whole evaluation, same: learned model in use ({scores['assess_learned_kind']})"}
    for key, name in names.items():
        row = scores[key]
        lines.append(f"| {name} | {row['n']} | {row['p50']} | {row['p99']} | {row['max']} |")
    steps = trained["steps"]
    lines += ["", f"Training (`training.fit_and_evaluate`, what `flask risk train` runs) on {trained['size']:,} "
                  f"generated labelled payments ({trained['fraud']:,} fraudulent, {trained['features']} features, "
                  "time-based 80/20 split), wall time (s):", "",
              "| features (chunked, columns) | vocabulary | logistic regression | gradient boosting | "
              "test-set evaluation | total |",
              "|---|---|---|---|---|---|",
              f"| {steps['features']:.1f} | {steps['vocabulary']:.1f} | {steps['logistic']:.1f} | "
              f"{steps['gradient_boosting']:.1f} | {steps['evaluation']:.1f} | {steps['total']:.1f} |", "",
              f"Gradient boosting on its stratified sample of {trained['boosting_rows']:,} rows (every fraudulent "
              f"one), early stopping: {trained['trees']} trees. Held-out ROC AUC (whole test part): logistic "
              f"{trained['auc']['logistic']}, boosting {trained['auc']['gradient_boosting']}. Peak memory of the "
              f"process {trained['peak_mb']:,} MB; load average at the end "
              f"{', '.join(f'{v:.1f}' for v in trained['load'])}. Generating the payments (not timed in the total, "
              f"not part of training) took {steps['generate']:.1f} s. Targets: scoring p99 under 5 ms, training "
              "under 10 minutes.", SECTION_END]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--evaluations", type=int, default=2000)
    parser.add_argument("--train-size", type=int, default=1_000_000)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    bench = payments_bench.Bench(SimpleNamespace(**vars(args), clients=1, throughput_seconds=1))
    try:
        scores = scoring(bench, args.evaluations)
    finally:
        bench.drop_databases()
    trained = training_time(args.train_size)
    text = render(scores, trained, args)
    print(text)
    if args.write:
        payments_bench.write_section(text, SECTION_START, SECTION_END)
    return 0


if __name__ == "__main__":
    sys.exit(main())
