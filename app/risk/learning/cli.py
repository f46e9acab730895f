"""``flask risk train`` (and ``flask risk drift``): train a candidate on the live outcomes, or on generated history."""
import click
from flask.cli import AppGroup

risk_cli = AppGroup("risk", help="The learned risk score: train candidates, report score drift.")


@risk_cli.command("train")
@click.option("--demo", is_flag=True, help="Train on generated history (a demo model, marked as such), not live outcomes.")
@click.option("--size", default=20000, show_default=True, help="With --demo: how many generated payments.")
@click.option("--window-days", type=int, default=None, help="The dispute window: younger payments are not labelled "
              "legitimate yet.  [default: RISK_DISPUTE_WINDOW_DAYS, 120]")
@click.option("--no-boosting", is_flag=True, help="Fit logistic regression only.")
def train_command(demo: bool, size: int, window_days: int | None, no_boosting: bool) -> None:
    """Fit a candidate model, evaluate it against the scorer in use, store it for an operator's approval."""
    from flask import current_app

    from app.extensions import db
    from app.models_base import utcnow
    from app.risk.learning import training

    session = db.session
    if window_days is None:  # as the training job reads it
        window_days = int(current_app.config.get("RISK_DISPUTE_WINDOW_DAYS", training.DISPUTE_WINDOW_DAYS))
    rows = training.demo_rows(size) if demo else training.load_labels(session, now=utcnow(),
                                                                      window_days=window_days)
    try:
        trained = training.train(session, rows, actor="cli", demo=demo, boosting=not no_boosting,
                                 log=lambda message: click.echo(message))
    except training.ColdStart as refusal:
        session.rollback()
        raise click.ClickException(str(refusal)) from None
    session.commit()
    model = trained.model
    candidate, in_use = model.metrics["candidate"], model.metrics["in_use"]
    click.echo(f"Stored candidate {model.version} ({model.kind}{', DEMO data' if demo else ''}) in "
               f"{trained.seconds:.1f} s: ROC AUC {candidate['roc_auc']} vs {in_use['roc_auc']} for "
               f"{model.metrics['in_use_version']} in use. Approve or reject it in the console (/admin/risk/models).")


@risk_cli.command("drift")
def drift_command() -> None:
    """Write last week's score drift report now (the scheduler does it hourly, once per week)."""
    from app.extensions import db
    from app.risk.learning.drift import level, report_week

    report = report_week(db.session)
    db.session.commit()
    if report is None:
        click.echo("Last week's report exists already.")
    else:
        click.echo(f"{report.week}: PSI {report.psi_thousandths} thousandths ({level(report.psi_thousandths)}) "
                   f"over {report.assessments} live assessments.")
