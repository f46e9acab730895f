"""The learned risk score (issue 23): labels (live mode only), features shared by training and scoring, training
on a known fraud pattern, the model stored as data and loaded back, approval, rollback, the version on
assessments, cold start, weekly drift."""
import json
import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from app.ids import new_id
from app.models_base import utcnow
from app.payments.models import Payment, Refund
from app.risk import evaluate
from app.risk.errors import RiskInvalid
from app.risk.learning import drift, features, scorer, service, training
from app.risk.learning.model import LearnedScorer, ModelFormatError
from app.risk.learning.tables import DriftReport, RiskModel, ScorerActivation
from app.risk.models import Assessment, Review, RiskWeights
from app.scoping import Scope
from tests import factories
from tests.admin.conftest import admin, app, audit_rows, csrf_of, login_as  # noqa: F401  (pytest fixtures)
from tests.dashboard.conftest import shop, stored_payment  # noqa: F401  (pytest fixtures)

CARD = {"brand": "visa", "funding": "prepaid", "country": "BR", "bin": "424242", "fingerprint": "fp_learn",
        "risk_hint": None, "last4": "4242"}
# Small enough to be fast, large enough for a stable test set (about 100 fraudulent of 3,000).
ROWS = training.demo_rows(3000, seed=11)
FEW = {"min_labels": 1000, "min_fraud": 50}


_TRAINED: dict = {}


@pytest.fixture
def trained(db_session):
    """A candidate trained on ROWS against the fixed weights (trained once; later tests store a copy)."""
    if not _TRAINED:
        model = training.train(db_session, ROWS, actor="test", **FEW).model
        _TRAINED.update(kind=model.kind, parameters=model.parameters, metrics=model.metrics, baseline=model.baseline)
    else:
        model = RiskModel(version=training.next_version(db_session), status="candidate", trained_by="test",
                          **_TRAINED)
        db_session.add(model)
    db_session.commit()
    yield model
    # The fixed weights score again for the next test (stored models stay: the app may not delete them).
    db_session.rollback()
    db_session.execute(RiskWeights.__table__.update().values(active=False))
    db_session.execute(RiskWeights.__table__.update().where(RiskWeights.version == "v1").values(active=True))
    db_session.commit()


def test_training_finds_the_known_pattern_and_beats_the_fixed_weights(trained):
    metrics = trained.metrics
    assert metrics["in_use_version"] == "v1"
    assert metrics["candidate"]["roc_auc"] > 0.7
    assert metrics["candidate"]["roc_auc"] > metrics["in_use"]["roc_auc"] + 0.1 and metrics["better"] is True
    for level in ("elevated", "highest"):
        assert set(metrics["candidate"][level]) >= {"precision", "recall", "threshold", "flagged"}
        assert set(metrics["in_use"][level]) >= {"precision", "recall"}
    # Time-based split: the test set is newer than everything trained on.
    assert metrics["train_until"] <= metrics["test_from"]
    assert metrics["counts"]["test"] == 600 and trained.kind in ("logistic", "gradient_boosting")
    # The pattern's features weigh most (prepaid cards from BR, disposable email domains).
    top = LearnedScorer("x", trained.parameters).score(
        {"amount": "300.00", "currency": "eur", "card_funding": "prepaid", "card_country": "BR",
         "email_domain": "mailinator.com", "ip_distinct_cards_1h": 1})
    assert top[0] >= 65 and top[1] in ("elevated", "highest")
    assert {"card_country=br", "email_domain=mailinator.com"} & set(top[2])


def test_a_stored_model_scores_identically_once_loaded(db_session, trained):
    before = LearnedScorer(trained.version, trained.parameters)
    version = trained.version
    db_session.expunge_all()
    scorer._cache.clear()
    loaded = scorer.learned(db_session, version)
    assert loaded is not before
    for _at, signals, _fraud in [(r.at, r.signals, r.fraudulent) for r in ROWS[:300]]:
        assert loaded.score(signals) == before.score(signals)
    # The stored document is plain JSON data: it survives a text round trip and nothing else is accepted.
    assert json.loads(json.dumps(trained.parameters)) == loaded.parameters
    with pytest.raises(ModelFormatError):
        LearnedScorer("bad", {**trained.parameters, "kind": "pickle"})
    if trained.kind == "gradient_boosting":
        broken = json.loads(json.dumps(trained.parameters))
        broken["trees"][0]["left"][0] = 0  # a loop
        with pytest.raises(ModelFormatError):
            LearnedScorer("bad", broken)


def test_a_tree_models_explanations_name_only_the_categories_the_payment_has(db_session):
    """A split on `email_domain=<a common domain>` that this payment does not have is credited to `email_domain`:
    a payment's page never names a value (another merchant's domain, say) that is not its own."""
    import numpy as np

    rows = ROWS[:1500]
    vocabulary = features.fit_vocabulary(r.signals for r in rows)
    encoder = features.Encoder(vocabulary)
    x = np.array([encoder.vector(r.signals) for r in rows])
    boosted = LearnedScorer("gb", training.fit_boosting(x, np.array([r.fraudulent for r in rows]), encoder.names,
                                                        vocabulary, trees=10))
    named = 0
    for row in rows[:300]:
        own = {name for name, value in zip(encoder.names, encoder.vector(row.signals)) if value}
        for name in boosted.score(row.signals)[2]:
            if "=" in name:
                assert name in own, (name, row.signals)
                named += 1
    assert named  # the payments' own categories are still named


def test_both_kinds_match_scikit_learn(db_session):
    import numpy as np
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression

    rows = ROWS[:1500]
    vocabulary = features.fit_vocabulary(r.signals for r in rows)
    encoder = features.Encoder(vocabulary)
    names = encoder.names
    x = np.array([encoder.vector(r.signals) for r in rows])
    assert [features.vector(r.signals, vocabulary, names) for r in rows[:50]] == x[:50].tolist()
    y = np.array([r.fraudulent for r in rows])
    boosted = training.fit_boosting(x, y, names, vocabulary, trees=10)
    reference = HistGradientBoostingClassifier(max_iter=10, max_leaf_nodes=15, learning_rate=0.1, early_stopping=False,
                                               class_weight="balanced", random_state=0).fit(x, y)
    ours = LearnedScorer("gb", boosted)
    assert np.allclose([ours.probability(r.signals) for r in rows[:300]], reference.predict_proba(x[:300])[:, 1],
                       atol=1e-9)
    logistic = LearnedScorer("lr", training.fit_logistic(x, y, names, vocabulary))
    mean, std = x.mean(axis=0), x.std(axis=0)
    std[std == 0] = 1
    fitted = LogisticRegression(class_weight="balanced", max_iter=500).fit((x - mean) / std, y)
    assert np.allclose([logistic.probability(r.signals) for r in rows[:300]],
                       fitted.predict_proba((x[:300] - mean) / std)[:, 1], atol=1e-9)
    # Explanations add up: the contributions and the starting point give the log-odds.
    z, contributions = ours.log_odds(x[0].tolist())
    assert abs(boosted["init"] + sum(tree["value"][0] for tree in boosted["trees"]) + sum(contributions.values())
               - z) < 1e-9


def test_cold_start_refuses_with_a_message(db_session, app):
    stored = db_session.scalar(select(func.count()).select_from(RiskModel))
    with pytest.raises(training.ColdStart, match="at least 1000 with 50 fraudulent"):
        training.train(db_session, ROWS[:500])
    db_session.rollback()
    result = app.test_cli_runner().invoke(args=["risk", "train"])
    assert result.exit_code != 0 and "Too few labels to train: 0 labelled live payments" in result.output
    assert db_session.scalar(select(func.count()).select_from(RiskModel)) == stored


def test_the_dispute_window_is_configured_once_for_the_command_and_the_job(app, monkeypatch):
    from app.config import load_config

    assert load_config({"KASSA_ENV": "test", "RISK_DISPUTE_WINDOW_DAYS": "90"})["RISK_DISPUTE_WINDOW_DAYS"] == 90
    assert load_config({"KASSA_ENV": "test"})["RISK_DISPUTE_WINDOW_DAYS"] == 120
    asked = []

    def load_labels(session, *, now, window_days, **_):
        asked.append(window_days)
        return training.as_labels(ROWS[:10])

    monkeypatch.setattr(training, "load_labels", load_labels)
    monkeypatch.setitem(app.config, "RISK_DISPUTE_WINDOW_DAYS", 90)
    assert app.test_cli_runner().invoke(args=["risk", "train"]).exit_code != 0  # cold start: 10 labels
    assert app.test_cli_runner().invoke(args=["risk", "train", "--window-days", "30"]).exit_code != 0
    assert asked == [90, 30]


def _payment(session, scope, *, created, status="succeeded", signals=None):
    payment = scope.new(Payment, id=new_id("pay"), amount=5000, currency="EUR", status=status,
                        capture_method="automatic", created_at=created, updated_at=created)
    session.add(payment)
    session.flush()
    session.add(scope.new(Assessment, id=new_id("rska"), payment_id=payment.id, stage="confirmation",
                          signals=signals or {"amount": "50.00", "currency": "eur"}, score=10, level="normal",
                          weights_version="v1", outcome="allow", created_at=created))
    return payment


def _fraud_refund(session, scope, payment):
    session.add(scope.new(Refund, id=new_id("re"), payment_id=payment.id, amount=payment.amount, currency="EUR",
                          status="succeeded", reason="fraudulent", allocations=[],
                          idempotency_key=new_id("idem")))


def test_labels_come_from_live_outcomes_only(db_session, merchant):
    live, test = Scope(merchant.id, True), Scope(merchant.id, False)
    now = utcnow()
    old, recent = now - timedelta(days=200), now - timedelta(days=10)
    legit = _payment(db_session, live, created=old)
    refunded = _payment(db_session, live, created=recent)
    _fraud_refund(db_session, live, refunded)
    too_young = _payment(db_session, live, created=recent)
    canceled = _payment(db_session, live, created=old, status="canceled")
    rejected = _payment(db_session, live, created=recent, status="canceled")
    db_session.add(live.new(Review, id=new_id("prv"), payment_id=rejected.id, status="closed", owner="platform",
                            closed_reason="refunded_as_fraud", expires_at=now, closed_at=now))
    # Test mode: a deliberate fraud card refunded as fraud, and an old captured payment. Never used.
    test_fraud = _payment(db_session, test, created=recent)
    _fraud_refund(db_session, test, test_fraud)
    test_legit = _payment(db_session, test, created=old)
    db_session.flush()
    labels = {row.payment_id: row.fraudulent for row in training.labelled_payments(db_session, now=now)}
    assert labels == {legit.id: False, refunded.id: True, rejected.id: True}
    assert too_young.id not in labels and canceled.id not in labels
    assert test_fraud.id not in labels and test_legit.id not in labels
    # A shorter dispute window labels the younger captured payment legitimate too.
    assert training.labelled_payments(db_session, now=now, window_days=5)[-1].payment_id in (too_young.id,
                                                                                            refunded.id, rejected.id)
    db_session.rollback()


def test_the_chunked_loader_gives_the_one_shot_matrix(db_session, merchant, monkeypatch):
    """``load_labels`` (server-side cursor, chunk by chunk, compact columns) gives exactly the rows, vocabulary and
    feature matrix of ``labelled_payments`` encoded row by row."""
    monkeypatch.setattr(features, "MIN_CATEGORY_COUNT", 2)
    live = Scope(merchant.id, True)
    now = utcnow()
    odd = [{"amount": "999.999", "card_brand": "", "card_funding": "PREPAID", "ip_distinct_cards_1h": True,
            "card_amount_24h": "12.5", "email_domain": "new.example"},
           {"currency": "eur", "card_payments_10m": 70, "card_declines_24h": 2.7, "amount": "1000.00"}]
    for i, signals in enumerate([r.signals for r in ROWS[:40]] + odd):
        payment = _payment(db_session, live, created=now - timedelta(days=300, minutes=-i), signals=signals)
        if i < 40 and ROWS[i].fraudulent or i == 40:
            _fraud_refund(db_session, live, payment)
    db_session.flush()
    one_shot = training.labelled_payments(db_session, now=now)
    chunked = training.load_labels(db_session, now=now, chunk=7)
    assert len(one_shot) >= 42 and chunked.at == [row.at for row in one_shot]
    assert chunked.fraudulent.tolist() == [row.fraudulent for row in one_shot]
    vocabulary = features.fit_vocabulary(row.signals for row in one_shot[:30])
    assert chunked.columns.vocabulary(30) == vocabulary and vocabulary["card_brand"]
    encoder = features.Encoder(vocabulary)
    assert chunked.columns.matrix(vocabulary).tolist() == [encoder.vector(row.signals) for row in one_shot]
    db_session.rollback()


def test_training_in_compact_form_equals_the_row_by_row_code():
    """The columns' vocabulary and matrix, the vectorized test-set scoring and the fixed weights' scores equal the
    row-by-row code (``fit_vocabulary``, ``Encoder.vector``, ``LearnedScorer.probability``, ``scoring.score``);
    the boosting sample keeps every fraudulent payment."""
    import numpy as np

    from app.risk import scoring
    from app.risk.learning.model import probability_to_score

    labels = training.as_labels(ROWS, chunk=500)
    assert labels.columns.vocabulary(2400) == features.fit_vocabulary(r.signals for r in ROWS[:2400])
    vocabulary = labels.columns.vocabulary(2400)
    encoder = features.Encoder(vocabulary)
    x = labels.columns.matrix(vocabulary)
    assert x.tolist() == [encoder.vector(r.signals) for r in ROWS]
    y = labels.fraudulent
    for parameters in (training.fit_logistic(x[:2400], y[:2400], encoder.names, vocabulary),
                       training.fit_boosting(x[:2400], y[:2400], encoder.names, vocabulary, trees=20)):
        model = LearnedScorer("m", parameters)
        together = model.probabilities(x[2400:])
        one_by_one = [model.probability(r.signals) for r in ROWS[2400:]]
        assert np.allclose(together, one_by_one, rtol=0, atol=1e-12)
        assert [probability_to_score(p) for p in together] == [probability_to_score(p) for p in one_by_one]
    weights = scoring.Weights(version="t", intercept=-3000,
                              weights={name: 700 + 100 * i for i, name in enumerate(scoring.features({}))})
    assert training.fixed_scores(weights, labels.columns.fixed)[0] == [scoring.score(weights, r.signals)[0]
                                                                          for r in ROWS]
    sample = training.boosting_sample(y, limit=1000)
    assert len(sample) == 1000 and y[sample].sum() == y.sum() and (np.diff(sample) > 0).all()


def test_features_at_training_equal_features_at_scoring(db_session, merchant, redis):
    live = Scope(merchant.id, True)
    payment = live.new(Payment, id=new_id("pay"), amount=45000, currency="EUR", status="processing",
                       capture_method="automatic", customer_email="a@mailinator.com", customer_ip="81.2.69.160")
    db_session.add(payment)
    db_session.flush()
    decision = evaluate.assess(db_session, payment, redis=redis, card=CARD)
    payment.status = "succeeded"
    _fraud_refund(db_session, live, payment)
    db_session.flush()
    [row] = [r for r in training.labelled_payments(db_session, now=utcnow()) if r.payment_id == payment.id]
    assert row.fraudulent is True
    vocabulary = {"card_country": ["br", "de"], "email_domain": ["mailinator.com"], "card_funding": ["prepaid"]}
    names = features.feature_names(vocabulary)
    at_scoring = features.vector(decision.signals, vocabulary, names)
    assert features.vector(row.signals, vocabulary, names) == at_scoring
    encoded = dict(zip(names, at_scoring))
    assert encoded["card_country=br"] == 1 and encoded["email_domain=mailinator.com"] == 1
    assert encoded["amount_log10"] > 2.6 and encoded["ip_country=other"] == 1
    # The outcome and the old score are not features.
    assert not any(name.startswith("risk_") for name in names)
    db_session.rollback()


def _assess(db_session, scope, redis):
    payment = scope.new(Payment, id=new_id("pay"), amount=30000, currency="EUR", status="processing",
                        capture_method="automatic", customer_email="b@mailinator.com", customer_ip="81.2.69.160")
    db_session.add(payment)
    db_session.flush()
    return evaluate.assess(db_session, payment, redis=redis, card=CARD).assessment


def test_approval_rollback_and_the_version_on_assessments(db_session, merchant, redis, trained):
    scope = Scope(merchant.id, True)
    operator_user = factories.user(db_session)
    assert _assess(db_session, scope, redis).weights_version == "v1"
    service.approve(db_session, trained.version, actor=operator_user.id)
    db_session.commit()
    assessment = _assess(db_session, scope, redis)
    assert assessment.weights_version == trained.version
    assert 0 < len(assessment.contributions) <= 5 and all(isinstance(v, int) for v in assessment.contributions.values())
    assert assessment.score == LearnedScorer("x", trained.parameters).score(assessment.signals)[0]
    with pytest.raises(RiskInvalid, match="in use already"):
        service.approve(db_session, trained.version, actor=operator_user.id, note="again")
    db_session.rollback()

    # A second candidate, compared with the model now in use: not better on the same data, so it needs a note.
    second = training.train(db_session, ROWS, actor="test", boosting=False, **FEW).model
    db_session.commit()
    assert second.metrics["in_use_version"] == trained.version
    if not second.metrics["better"]:
        with pytest.raises(RiskInvalid, match="A note is required"):
            service.approve(db_session, second.version, actor=operator_user.id)
        db_session.rollback()
    service.approve(db_session, second.version, actor=operator_user.id, note="Same data, simpler model")
    db_session.commit()
    assert _assess(db_session, scope, redis).weights_version == second.version

    # One step back, then back to the fixed weights.
    assert service.rollback(db_session, actor=operator_user.id, note="Too many reviews") == trained.version
    db_session.commit()
    assert _assess(db_session, scope, redis).weights_version == trained.version
    assert service.rollback(db_session, actor=operator_user.id) == "v1"
    db_session.commit()
    assert _assess(db_session, scope, redis).weights_version == "v1"
    assert db_session.get(RiskModel, second.version).decision_note == "Same data, simpler model"
    db_session.rollback()


def test_two_approvals_at_once_record_what_each_replaced(app, db_session, trained):
    """Two operators approve two candidates at the same moment: the second waits for the first and records the
    first's model as the one it replaced, so that rolling back returns to it (not to the scorer both saw)."""
    from sqlalchemy.orm import Session

    from app.extensions import db

    other = RiskModel(version=training.next_version(db_session), status="candidate", trained_by="test",
                      kind=trained.kind, parameters=trained.parameters, metrics=trained.metrics,
                      baseline=trained.baseline)
    db_session.add(other)
    db_session.commit()
    engine = db.engine
    errors = []
    with Session(engine) as first:
        service.approve(first, trained.version, actor="test", note="first")
        first.flush()

        def second_operator():
            try:
                with app.app_context(), Session(engine) as second:
                    service.approve(second, other.version, actor="test", note="second")
                    second.commit()
            except Exception as error:  # noqa: BLE001 - reported below
                errors.append(error)

        thread = threading.Thread(target=second_operator)
        thread.start()
        _wait_for_a_lock_waiter(engine, thread, errors)
        first.commit()
    thread.join(JOIN_SECONDS)
    assert not thread.is_alive() and not errors, errors
    assert scorer.active_version(db_session) == other.version
    [activation] = db_session.scalars(select(ScorerActivation).where(ScorerActivation.version == other.version))
    assert activation.previous_version == trained.version
    assert service.rollback(db_session, actor="test", note="back") == trained.version
    db_session.commit()


def test_two_trainings_finishing_at_once_store_two_versions(app, db_session, trained):
    """The second of two trainings that finish together waits for the first's version to be stored, then takes the
    next one (it does not fail on the key after fitting for minutes)."""
    from sqlalchemy.orm import Session

    from app.extensions import db

    engine = db.engine
    taken, errors = [], []
    with Session(engine) as first:
        version = training.next_version(first)
        first.add(RiskModel(version=version, status="candidate", trained_by="test", **_TRAINED))
        first.flush()

        def second_training():
            try:
                with app.app_context(), Session(engine) as second:
                    taken.append(training.next_version(second))
                    second.add(RiskModel(version=taken[-1], status="candidate", trained_by="test", **_TRAINED))
                    second.commit()
            except Exception as error:  # noqa: BLE001 - reported below
                errors.append(error)

        thread = threading.Thread(target=second_training)
        thread.start()
        _wait_for_a_lock_waiter(engine, thread, errors)
        first.commit()
    thread.join(JOIN_SECONDS)
    assert not thread.is_alive() and not errors, errors
    number = int(version.removeprefix(scorer.MODEL_PREFIX))
    assert taken == [f"{scorer.MODEL_PREFIX}{number + 1}"]


JOIN_SECONDS = 60


def _wait_for_a_lock_waiter(engine, thread, errors) -> None:
    """Block until a session of this database waits on a lock (the second approval queues behind the first)."""
    import time

    from sqlalchemy import text

    deadline = time.monotonic() + JOIN_SECONDS
    with engine.connect() as conn:
        while time.monotonic() < deadline and thread.is_alive():
            if conn.execute(text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                 "AND wait_event_type = 'Lock'")).scalar():
                return
            conn.rollback()
            time.sleep(0.01)  # polling another session's state; not waiting for time to pass
    raise AssertionError(f"the second approval never queued behind the first: {errors}")


def test_a_model_this_code_cannot_score_is_never_approved(db_session, trained):
    """A candidate whose features are not the ones this code computes (trained before an upgrade changed them) would
    fail every confirmation once in use: approval refuses it, and the scorer in use stays."""
    parameters = json.loads(json.dumps(trained.parameters))
    parameters["names"] = parameters["names"][:-1] + ["a_feature_this_code_does_not_compute"]
    stale = RiskModel(version=training.next_version(db_session), status="candidate", trained_by="test",
                      kind=trained.kind, parameters=parameters, metrics=trained.metrics, baseline=trained.baseline)
    db_session.add(stale)
    db_session.commit()
    with pytest.raises(RiskInvalid, match="cannot score with this version"):
        service.approve(db_session, stale.version, actor="test", note="anyway")
    db_session.rollback()
    assert scorer.active_version(db_session) == "v1"

    # Nor does a rollback return to one: the scorer in use stays.
    service.approve(db_session, trained.version, actor="test", note="first")
    newer = RiskModel(version=training.next_version(db_session), status="candidate", trained_by="test",
                      kind=trained.kind, parameters=trained.parameters, metrics=trained.metrics,
                      baseline=trained.baseline)
    db_session.add(newer)
    db_session.flush()
    service.approve(db_session, newer.version, actor="test", note="second")
    db_session.get(RiskModel, trained.version).parameters = parameters
    db_session.flush()
    with pytest.raises(RiskInvalid, match="cannot score with this version"):
        service.rollback(db_session, actor="test", note="back")
    assert scorer.active_version(db_session) == newer.version
    db_session.rollback()


def test_a_rejected_candidate_never_scores(db_session, trained):
    service.reject(db_session, trained.version, actor="test", note="Demo")
    db_session.commit()
    with pytest.raises(RiskInvalid, match="rejected"):
        service.approve(db_session, trained.version, actor="test", note="anyway")
    db_session.rollback()
    assert scorer.active_version(db_session) == "v1"


def test_weekly_drift_report(db_session, merchant):
    live = Scope(merchant.id, True)
    now = utcnow()
    last_week = drift.week_start(now) - timedelta(days=3)
    for index in range(40):
        # Four weeks before: low scores; last week: high ones.
        for created, score in ((last_week - timedelta(days=14), 5 + index % 20), (last_week, 70 + index % 20)):
            db_session.add(live.new(Assessment, id=new_id("rska"), payment_id=new_id("pay"), stage="confirmation",
                                    signals={}, score=score, level="normal", weights_version="v1", outcome="allow",
                                    created_at=created))
    db_session.flush()
    report = drift.report_week(db_session, now=now)
    assert report.assessments == 40 and report.reference == "previous_4_weeks"
    assert report.psi_thousandths > 250 and drift.level(report.psi_thousandths) == "significant shift"
    assert drift.report_week(db_session, now=now) is None
    db_session.rollback()
    assert db_session.scalar(select(DriftReport.id)) is None


def test_the_drift_report_reads_the_scores_of_the_scorer_in_use_only(db_session, merchant):
    """A week in which another scorer scored too (before a rollback, say): its scores are not drift."""
    live = Scope(merchant.id, True)
    now = utcnow()
    last_week = drift.week_start(now) - timedelta(days=3)
    for index in range(40):
        rows = ((last_week - timedelta(days=14), 5 + index % 20, "v1"), (last_week, 5 + index % 20, "v1"),
                (last_week, 70 + index % 20, "model-rolled-back"))
        for created, score, version in rows:
            db_session.add(live.new(Assessment, id=new_id("rska"), payment_id=new_id("pay"), stage="confirmation",
                                    signals={}, score=score, level="normal", weights_version=version,
                                    outcome="allow", created_at=created))
    db_session.flush()
    report = drift.report_week(db_session, now=now)
    assert (report.version, report.assessments, report.psi_thousandths) == ("v1", 40, 0)
    assert drift.level(report.psi_thousandths) == "stable"
    db_session.rollback()


def test_the_console_shows_candidates_and_decides_with_a_reason(client, db_session, admin, shop, trained):
    login_as(client, db_session, admin)
    page = client.get("/admin/risk/models").get_data(as_text=True)
    assert f'data-model="{trained.version}"' in page and '<span class="mono">v1</span>' in page
    assert str(trained.metrics["candidate"]["roc_auc"]) in page
    decide = f"/admin/risk/models/{trained.version}/decide"
    token = csrf_of(client, "/admin/risk/models")
    refused = client.post(decide, data={"csrf_token": token, "decision": "approve", "reason": ""})
    assert refused.status_code == 422 and "Give a reason" in refused.get_data(as_text=True)
    forged = client.post(decide, data={"decision": "approve", "reason": "No token"})
    assert forged.status_code in (400, 422)
    assert scorer.active_version(db_session) == "v1"
    approved = client.post(decide, data={"csrf_token": token, "decision": "approve", "reason": "Better AUC"})
    assert approved.status_code == 303
    db_session.rollback()
    assert scorer.active_version(db_session) == trained.version
    assert audit_rows(db_session, "risk.model.approved")[-1].details["note"] == "Better AUC"

    # The payment page names the learned model's features and the version that scored.
    s = shop()
    payment = stored_payment(db_session, s.scope, amount=30000, currency="EUR", risk_score=88, risk_level="highest")
    db_session.add(s.scope.new(Assessment, id=new_id("rska"), payment_id=payment.id, stage="confirmation",
                               signals={"amount": "300.00", "card_country": "BR"},
                               contributions={"card_country=br": 2100, "email_domain=other": -300}, score=88,
                               level="highest", weights_version=trained.version, outcome="allow"))
    db_session.commit()
    html = client.get(f"/admin/payments/{payment.id}").get_data(as_text=True)
    row = html[html.index('data-signal="card_country=br"'):]
    assert "learned model's feature" in row[:row.index("</tr>")] and "+2.100" in row[:row.index("</tr>")]
    assert f'<span class="risk-version">{trained.version}</span>' in html

    rolled = client.post("/admin/risk/models/rollback", data={"csrf_token": token, "reason": "Too many reviews"})
    assert rolled.status_code == 303
    db_session.rollback()
    assert scorer.active_version(db_session) == "v1"
    again = client.post("/admin/risk/models/rollback", data={"csrf_token": token, "reason": "Once more"})
    assert again.status_code == 422 and "nothing to roll back" in again.get_data(as_text=True)


def test_the_demo_seeds_a_candidate_marked_as_demo_data_once(db_session):
    from app.risk.learning.demo import seed_demo_model

    db_session.execute(RiskModel.__table__.update().where(RiskModel.demo.is_(True)).values(demo=False))
    lines = seed_demo_model(db_session, None, "")
    db_session.commit()
    [model] = db_session.scalars(select(RiskModel).where(RiskModel.demo.is_(True))).all()
    assert "demo history" in lines[0] and model.status == "candidate" and model.trained_by == "seed"
    assert scorer.active_version(db_session) == "v1"
    assert "trained on generated demo history" in service.needs_note(db_session, model)
    assert seed_demo_model(db_session, None, "") == []
