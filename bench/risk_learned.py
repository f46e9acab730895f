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
   memory here, to time training alone.
3. Reading the labels from PostgreSQL (``--labels-size``, 1,000,000 by default): that many live payments with their
   confirmation assessments (the same generated signals) COPYed into a fresh database, the fraudulent ones marked
   by an early fraud warning, a fraudulent refund or a fraudulent dispute in turn, plus a tenth more payments that
   are not labelled (too young, or canceled); then ``training.load_labels`` (the labels query streamed through a
   server-side cursor in chunks, encoded into compact columns: what ``flask risk train`` and the training job
   read) timed whole, and the query alone (rows fetched, nothing encoded) timed apart; load average before and
   after.

``--write`` replaces the "Learned risk score" section of bench/RESULTS.md; with ``--labels-only`` only step 3 runs
and ``--write`` replaces its part of that section (between the risk-learned-labels markers).
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
from bench.risk import make_app  # noqa: E402
from bench.timing import load_average, say, summary, timed_in_thread  # noqa: E402

SECTION_START = "<!-- risk-learned:start -->"
SECTION_END = "<!-- risk-learned:end -->"
LABELS_START = "<!-- risk-learned-labels:start -->"
LABELS_END = "<!-- risk-learned-labels:end -->"
# Rows per COPY batch when loading the payments (bounded memory; one COPY per table per batch).
LOAD_BATCH = 100_000


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


def labels_read(bench: payments_bench.Bench, size: int) -> dict:
    """Step 3 (see the module's docstring) in a fresh database of its own."""
    env = {**bench.env, **bench.fresh_database("risklabels")}
    saved = dict(os.environ)
    try:
        return _labels_read(env, size)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _copy_history(env: dict, merchant_id: str, size: int) -> dict:
    """COPY ``size`` labelled live payments (and a tenth more unlabelled ones) with their assessments and outcomes."""
    import json
    from datetime import datetime, timedelta, timezone

    import psycopg

    from app.ids import new_id
    from app.risk.learning.demo import generate

    counts = {"payments": 0, "fraud": 0, "efw": 0, "refund": 0, "dispute": 0, "unlabelled": 0}
    recent = datetime.now(timezone.utc) - timedelta(days=10)
    payments, assessments, warnings, refunds, disputes = [], [], [], [], []

    def flush(conn) -> None:
        with conn.cursor() as cur:
            for table, columns, rows in (
                ("payments", "id, merchant_id, livemode, amount, currency, status, capture_method, created_at, "
                             "updated_at", payments),
                ("risk_assessments", "id, merchant_id, livemode, payment_id, stage, signals, score, level, "
                                     "weights_version, outcome, created_at", assessments),
                ("early_fraud_warnings", "id, merchant_id, livemode, payment_id, psp, psp_reference, fraud_type, "
                                         "actionable, psp_created", warnings),
                ("refunds", "id, merchant_id, livemode, payment_id, amount, currency, status, reason, allocations, "
                            "idempotency_key", refunds),
                ("disputes", "merchant_id, livemode, id, psp, psp_reference, payment_id, amount, currency, reason, "
                             "status, created_at", disputes)):
                if rows:
                    with cur.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                        for row in rows:
                            copy.write_row(row)
                    rows.clear()
        conn.commit()

    total = size + size // 10
    with psycopg.connect(payments_bench.libpq(env["DATABASE_OWNER_URL"])) as conn:
        for index, (at, signals, fraudulent) in enumerate(generate(total, seed=5)):
            payment_id = new_id("pay")
            labelled = index % 11 != 10  # every eleventh payment is not labelled
            status = "succeeded"
            if not labelled:
                counts["unlabelled"] += 1
                fraudulent = False
                if index % 2:
                    at = recent           # too young to be legitimate yet
                else:
                    status = "canceled"   # never captured
            payments.append((payment_id, merchant_id, True, 5000, "EUR", status, "automatic", at, at))
            assessments.append((new_id("rska"), merchant_id, True, payment_id, "confirmation", json.dumps(signals),
                                10, "normal", "v1", "allow", at))
            if fraudulent:
                counts["fraud"] += 1
                kind = ("efw", "refund", "dispute")[counts["fraud"] % 3]
                counts[kind] += 1
                if kind == "efw":
                    warnings.append((new_id("issfr"), merchant_id, True, payment_id, "stripe", new_id("issfr_psp"),
                                     "made_with_stolen_card", True, at))
                elif kind == "refund":
                    refunds.append((new_id("re"), merchant_id, True, payment_id, 5000, "EUR", "succeeded",
                                    "fraudulent", "[]", new_id("idem")))
                else:
                    disputes.append((merchant_id, True, new_id("dsp"), "stripe", new_id("dp"), payment_id, 5000,
                                     "EUR", "fraudulent", "lost", at))
            counts["payments"] += 1
            if len(payments) >= LOAD_BATCH:
                flush(conn)
                say(f"{counts['payments']:,} of {total:,} payments stored")
        flush(conn)
        conn.autocommit = True
        for table in ("payments", "risk_assessments", "early_fraud_warnings", "refunds", "disputes"):
            conn.execute(f"ANALYZE {table}")
    return counts


def _labels_read(env: dict, size: int) -> dict:
    import gc
    from datetime import timedelta

    app = make_app(env)
    from app.accounts.models import Merchant
    from app.extensions import db
    from app.ids import new_id
    from app.models_base import utcnow
    from app.risk.learning import training

    with app.app_context():
        merchant = Merchant(id=new_id("mer"), name="Bench labels")
        db.session.add(merchant)
        db.session.commit()
        merchant_id = merchant.id
        db.session.remove()
    say(f"storing {size:,} labelled live payments (and a tenth more unlabelled) with COPY")
    started = time.perf_counter()
    counts = _copy_history(env, merchant_id, size)
    counts["store_seconds"] = time.perf_counter() - started
    say(f"stored in {counts['store_seconds']:.1f} s: {counts}")
    result = {"counts": counts, "load_before": load_average()}
    with app.app_context():
        now = utcnow()
        session = db.session
        # The query alone: every labelled row fetched through the same server-side cursor, nothing encoded.
        statement = training._LABELS.execution_options(stream_results=True, max_row_buffer=training.LOAD_CHUNK)
        started = time.perf_counter()
        rows = fraud = 0
        legit_before = now - timedelta(days=training.DISPUTE_WINDOW_DAYS)
        for part in session.execute(statement, {"legit_before": legit_before}).partitions(training.LOAD_CHUNK):
            rows += len(part)
            fraud += sum(1 for row in part if row.fraudulent)
        result["query_seconds"] = time.perf_counter() - started
        session.rollback()
        say(f"labels query: {rows:,} rows ({fraud:,} fraudulent) in {result['query_seconds']:.1f} s")
        gc.collect()
        started = time.perf_counter()
        labels = training.load_labels(session, now=now)
        result["load_seconds"] = time.perf_counter() - started
        session.rollback()
        result.update(rows=len(labels), fraud=int(labels.fraudulent.sum()), query_rows=rows, query_fraud=fraud)
        say(f"load_labels: {len(labels):,} labels in {result['load_seconds']:.1f} s")
        db.session.remove()
        db.engine.dispose()
    result["load_after"] = load_average()
    return result


def render_labels(read: dict, args) -> str:
    counts = read["counts"]
    return "\n".join([
        LABELS_START,
        f"Reading the labels from PostgreSQL ({date.today().isoformat()}, same machine, `bench/risk_learned.py "
        f"--labels-only --labels-size {args.labels_size}`; load average {read['load_before']} before, "
        f"{read['load_after']} after): {counts['payments']:,} live payments with their confirmation assessments "
        f"COPYed into a fresh database ({counts['store_seconds']:.0f} s), of which {counts['unlabelled']:,} not "
        f"labelled (too young or canceled) and {counts['fraud']:,} fraudulent, marked in turn by an early fraud "
        f"warning ({counts['efw']:,}), a fraudulent refund ({counts['refund']:,}) or a fraudulent dispute "
        f"({counts['dispute']:,}).", "",
        "| what | labelled payments | fraudulent | wall time (s) |", "|---|---|---|---|",
        f"| the labels query alone (server-side cursor, chunks of 50,000, rows fetched, nothing encoded) | "
        f"{read['query_rows']:,} | {read['query_fraud']:,} | {read['query_seconds']:.1f} |",
        f"| `training.load_labels` (the same query, each chunk encoded into compact columns: what `flask risk train` "
        f"and the training job read before fitting) | {read['rows']:,} | {read['fraud']:,} | "
        f"{read['load_seconds']:.1f} |",
        LABELS_END])


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
    parser.add_argument("--labels-size", type=int, default=1_000_000)
    parser.add_argument("--labels-only", action="store_true", help="Only time reading the labels from PostgreSQL.")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    bench = payments_bench.Bench(SimpleNamespace(**vars(args), clients=1, throughput_seconds=1))
    try:
        read = labels_read(bench, args.labels_size)
        labels_text = render_labels(read, args)
        if args.labels_only:
            print(labels_text)
            if args.write:
                payments_bench.write_section(labels_text, LABELS_START, LABELS_END)
            return 0
        scores = scoring(bench, args.evaluations)
    finally:
        bench.drop_databases()
    trained = training_time(args.train_size)
    text = render(scores, trained, args).replace(SECTION_END, labels_text + "\n" + SECTION_END)
    print(text)
    if args.write:
        payments_bench.write_section(text, SECTION_START, SECTION_END)
    return 0


if __name__ == "__main__":
    sys.exit(main())
