"""The learned score's jobs (issue 23): the training job fits a candidate on the live outcomes stored in
PostgreSQL (here labelled fraudulent by early fraud warnings) and the console shows it for a decision; the console's
"Train now" enqueues that job after its commit; cold start stores nothing; the weekly drift job writes last week's
report once and the console shows it."""
from datetime import timedelta

from rq import Queue
from sqlalchemy import func, insert, select

from app.ids import new_id
from app.jobs.risk import TRAINING_JOB_TIMEOUT_SECONDS, report_score_drift, train_risk_model
from app.models_base import utcnow
from app.payments.models import Payment
from app.risk.fraud_warnings import EarlyFraudWarning
from app.risk.learning import drift, training
from app.risk.learning.tables import DriftReport, RiskModel
from app.risk.models import Assessment
from app.scoping import Scope
from tests.admin import conftest as admin_fixtures
from tests.admin.conftest import audit_rows, csrf_of, login_as

# The admin tests' fixtures: the app (no confirm wait, no rate limits) and a platform admin.
app, admin = admin_fixtures.app, admin_fixtures.admin

ROWS = training.demo_rows(3000, seed=23)


def _store_history(session, merchant_id: str) -> int:
    """ROWS as live payments with their confirmation assessments (all older than the dispute window); the
    fraudulent ones have an early fraud warning and nothing else. Returns how many are fraudulent."""
    payments, assessments, warnings = [], [], []
    for row in ROWS:
        payment_id = new_id("pay")
        payments.append({"id": payment_id, "merchant_id": merchant_id, "livemode": True, "amount": 5000,
                         "currency": "EUR", "status": "succeeded", "capture_method": "automatic",
                         "created_at": row.at, "updated_at": row.at})
        assessments.append({"id": new_id("rska"), "merchant_id": merchant_id, "livemode": True,
                            "payment_id": payment_id, "stage": "confirmation", "signals": row.signals, "score": 10,
                            "level": "normal", "weights_version": "v1", "outcome": "allow", "created_at": row.at})
        if row.fraudulent:
            warnings.append({"id": new_id("issfr"), "merchant_id": merchant_id, "livemode": True,
                             "payment_id": payment_id, "psp": "stripe", "psp_reference": new_id("issfr_psp"),
                             "fraud_type": "made_with_stolen_card", "actionable": True, "psp_created": row.at})
    session.execute(insert(Payment), payments)
    session.execute(insert(Assessment), assessments)
    session.execute(insert(EarlyFraudWarning), warnings)
    session.commit()
    return len(warnings)


def test_the_training_job_stores_a_candidate_the_console_shows(client, db_session, admin, merchant):
    fraudulent = _store_history(db_session, merchant.id)
    assert fraudulent >= training.MIN_FRAUD
    version = train_risk_model(admin.id)
    db_session.rollback()
    model = db_session.get(RiskModel, version)
    assert model.status == "candidate" and model.trained_by == admin.id and model.demo is False
    assert model.metrics["counts"]["train"] + model.metrics["counts"]["test"] == len(ROWS)
    # Warnings were the only fraud labels, and the pattern behind them was found.
    assert model.metrics["candidate"]["roc_auc"] > 0.7

    login_as(client, db_session, admin)
    page = client.get("/admin/risk/models").get_data(as_text=True)
    assert f'data-model="{version}"' in page and str(model.metrics["candidate"]["roc_auc"]) in page


def test_the_console_enqueues_the_training_job_after_its_commit(client, db_session, admin, redis):
    login_as(client, db_session, admin)
    token = csrf_of(client, "/admin/risk/models")
    queue = Queue("default", connection=redis)
    queue.empty()
    refused = client.post("/admin/risk/models/train", data={"csrf_token": token, "reason": ""})
    assert refused.status_code == 422 and queue.count == 0
    started = client.post("/admin/risk/models/train", data={"csrf_token": token, "reason": "New outcomes this month"})
    assert started.status_code == 303
    [job] = queue.jobs
    assert job.func_name == "app.jobs.risk.train_risk_model" and job.args == (admin.id,)
    # Not RQ's default 180 s: training a large history takes minutes, and RQ would kill it half way.
    assert job.timeout == TRAINING_JOB_TIMEOUT_SECONDS > Queue.DEFAULT_TIMEOUT
    assert audit_rows(db_session, "risk.model.training_requested")[-1].details["note"] == "New outcomes this month"
    queue.empty()


def test_the_training_job_refuses_at_cold_start_and_stores_nothing(db_session, monkeypatch):
    monkeypatch.setattr(training, "load_labels", lambda session, **_: training.as_labels(ROWS[:200]))
    stored = db_session.scalar(select(func.count()).select_from(RiskModel))
    db_session.rollback()
    assert train_risk_model("job") is None
    assert db_session.scalar(select(func.count()).select_from(RiskModel)) == stored


def test_the_weekly_drift_job_writes_last_weeks_report_once_and_the_console_shows_it(
        client, db_session, admin, merchant):
    live = Scope(merchant.id, True)
    last_week = drift.week_start(utcnow()) - timedelta(days=3)
    for index in range(40):
        for created, score in ((last_week - timedelta(days=14), 5 + index % 20), (last_week, 70 + index % 20)):
            db_session.add(live.new(Assessment, id=new_id("rska"), payment_id=new_id("pay"), stage="confirmation",
                                    signals={}, score=score, level="normal", weights_version="v1", outcome="allow",
                                    created_at=created))
    db_session.commit()
    week = report_score_drift()
    assert week is not None and report_score_drift() is None  # once per week
    db_session.rollback()
    report = db_session.scalars(select(DriftReport).where(DriftReport.week == week)).one()
    assert report.assessments >= 40 and report.psi_thousandths > 250

    login_as(client, db_session, admin)
    page = client.get("/admin/risk/models").get_data(as_text=True)
    row = page[page.index(f'data-week="{week}"'):]
    row = row[:row.index("</tr>")]
    assert f"{report.psi_thousandths / 1000:.3f}" in row and "significant shift" in row
