"""Home's figures: rollups kept from the event stream in the payment's own transaction, read per local day."""
from datetime import date, datetime, timedelta, timezone

from sqlalchemy import func, select

from app.events import Event, record_event
from app.models_base import utcnow
from app.payments import idempotency
from app.psp.interfaces import Outcome
from app.reporting import rollups
from app.reporting.models import PaymentRollup, PaymentRollupDelta
from tests.dashboard.conftest import login_as, paid, stored_payment
from tests.payments.helpers import result


def _summary(db_session, scope, key="7d", zone="UTC", first=None, last=None) -> dict:
    period = rollups.period_for(key, rollups.merchant_zone(zone), utcnow(), first, last)
    return {s.currency: s for s in rollups.summarize(db_session, scope, period)}


def _figures(summary) -> tuple:
    return (summary.attempted_count, summary.succeeded_count, summary.gross_amount, summary.refund_count,
            summary.refund_amount)


def _flows(db_session, scope, jobs) -> str:
    """Four attempted USD payments (one declined then paid, one declined only, one uncaptured), a refund, JPY."""
    paid(db_session, scope, jobs, amount=1000)
    refunded = paid(db_session, scope, jobs, amount=2000)
    idempotency.execute(db_session, scope, "refund.create", {"payment": refunded, "amount": 500},
                        key=None, deps=jobs.deps)
    jobs.run()
    jobs.gateway.authorize_results.append(result(Outcome.DECLINED, decline_code="insufficient_funds"))
    retried = paid(db_session, scope, jobs, amount=3000)
    idempotency.execute(db_session, scope, "payment.confirm", {"payment": retried, "payment_method": "tok_mc"},
                        key=None, deps=jobs.deps)
    jobs.run()
    jobs.gateway.authorize_results.append(result(Outcome.DECLINED, decline_code="do_not_honor"))
    paid(db_session, scope, jobs, amount=4000)
    paid(db_session, scope, jobs, amount=5000, manual=True)
    paid(db_session, scope, jobs, amount=700, currency="JPY")
    return refunded


def test_figures_follow_the_payments(db_session, shop, jobs):
    s = shop()
    _flows(db_session, s.scope, jobs)
    figures = _summary(db_session, s.scope)
    # attempted: each payment once, however many tries; succeeded/gross: captures; refunds: succeeded ones.
    assert _figures(figures["USD"]) == (5, 3, 6000, 1, 500)
    assert figures["USD"].success_rate == 3 / 5
    assert _figures(figures["JPY"]) == (1, 1, 700, 0, 0)
    assert list(figures) == ["USD", "JPY"]  # largest volume first


def test_fold_moves_deltas_without_changing_a_figure(db_session, shop, jobs):
    s = shop()
    _flows(db_session, s.scope, jobs)
    before = {c: _figures(v) for c, v in _summary(db_session, s.scope).items()}
    assert db_session.scalar(select(func.count()).select_from(PaymentRollupDelta)) > 0
    while rollups.fold_deltas(db_session, batch=3):  # small batches: figures hold between them too
        db_session.commit()
        assert {c: _figures(v) for c, v in _summary(db_session, s.scope).items()} == before
    db_session.commit()
    assert db_session.scalar(select(func.count()).select_from(PaymentRollupDelta)) == 0
    assert {c: _figures(v) for c, v in _summary(db_session, s.scope).items()} == before


def test_rebuild_from_the_payments_tables_matches_the_event_stream(db_session, shop, jobs):
    s = shop()
    _flows(db_session, s.scope, jobs)
    incremental = {c: _figures(v) for c, v in _summary(db_session, s.scope).items()}
    rollups.rebuild(db_session, s.scope)
    db_session.commit()
    assert db_session.scalar(select(func.count()).select_from(PaymentRollupDelta)
                             .where(PaymentRollupDelta.merchant_id == s.merchant.id)) == 0
    assert {c: _figures(v) for c, v in _summary(db_session, s.scope).items()} == incremental


def test_a_rolled_back_change_leaves_no_figure(db_session, shop):
    s = shop()
    record_event(db_session, s.scope, "payment.succeeded", "payment", "pay_x",
                 {"currency": "USD", "amount_received": 999, "attempts": []})
    db_session.rollback()
    assert _summary(db_session, s.scope) == {}
    assert db_session.scalar(select(func.count()).select_from(Event).where(Event.object_id == "pay_x")) == 0


def test_local_days_are_assembled_from_utc_buckets(db_session, shop):
    s = shop(timezone_name="Asia/Kathmandu")  # UTC+05:45
    # 18:00 UTC is 23:45 on March 1 in Kathmandu; 18:15 UTC is 00:00 on March 2.
    for hour, minute, amount in ((18, 0, 100), (18, 15, 20), (23, 0, 3)):
        db_session.add(PaymentRollup(merchant_id=s.merchant.id, livemode=False, currency="USD",
                                     bucket=datetime(2026, 3, 1, hour, minute, tzinfo=timezone.utc),
                                     attempted_count=1, succeeded_count=1, gross_amount=amount,
                                     refund_count=0, refund_amount=0))
    db_session.commit()
    figures = _summary(db_session, s.scope, "custom", "Asia/Kathmandu", date(2026, 3, 1), date(2026, 3, 2))["USD"]
    assert figures.series == {datetime(2026, 3, 1): 100, datetime(2026, 3, 2): 23}
    one_day = _summary(db_session, s.scope, "custom", "Asia/Kathmandu", date(2026, 3, 2), date(2026, 3, 2))["USD"]
    assert (one_day.gross_amount, one_day.succeeded_count) == (23, 2)
    assert one_day.series == {datetime(2026, 3, 2, 0): 20, datetime(2026, 3, 2, 4): 3}  # by local hour
    # The same rows read for a UTC merchant: all on March 1.
    assert _summary(db_session, s.scope, "custom", "UTC", date(2026, 3, 1), date(2026, 3, 1))["USD"].gross_amount == 123


def test_buckets_are_quarter_hours():
    assert rollups.bucket_of(datetime(2026, 3, 1, 18, 14, 59, tzinfo=timezone.utc)) == \
        datetime(2026, 3, 1, 18, 0, tzinfo=timezone.utc)
    assert rollups.bucket_of(datetime(2026, 3, 1, 18, 15, tzinfo=timezone.utc)) == \
        datetime(2026, 3, 1, 18, 15, tzinfo=timezone.utc)


def test_home_shows_rollup_figures_formatted_per_currency(client, db_session, shop, jobs):
    s = shop()
    _flows(db_session, s.scope, jobs)
    login_as(client, db_session, s.users["analyst"])
    html = client.get(s.url()).get_data(as_text=True)
    assert "$60.00" in html and "60.0%" in html and "¥700" in html and "$5.00" in html
    assert '<svg class="chart"' in html and "Gross volume in USD" in html
    assert "Recent payments" in html
    # Needs attention: the uncaptured payment, linked to the list filtered on it.
    assert "1 uncaptured payment waiting" in html and "status=requires_capture" in html
    today = client.get(s.url("?period=today")).get_data(as_text=True)
    assert "per hour" in today and "$60.00" in today
    empty = client.get(s.url("?period=custom&from=2020-01-01&to=2020-01-31")).get_data(as_text=True)
    assert "No activity in this period" in empty


def test_home_reads_the_rollups_not_the_payments(client, db_session, shop):
    s = shop()
    stored_payment(db_session, s.scope, amount=100)  # a payment row that no event ever counted
    db_session.add(PaymentRollup(merchant_id=s.merchant.id, livemode=False, currency="EUR",
                                 bucket=rollups.bucket_of(utcnow() - timedelta(hours=1)), attempted_count=4,
                                 succeeded_count=2, gross_amount=123456, refund_count=0, refund_amount=0))
    db_session.commit()
    login_as(client, db_session, s.users["owner"])
    html = client.get(s.url("?period=7d")).get_data(as_text=True)
    assert "€1,234.56" in html and "50.0%" in html and "$1.00" not in html.split("Recent payments")[0]


def test_rollup_commands(app, db_session, shop, jobs):
    s = shop()
    _flows(db_session, s.scope, jobs)
    before = {c: _figures(v) for c, v in _summary(db_session, s.scope).items()}
    runner = app.test_cli_runner()
    folded = runner.invoke(args=["reporting", "fold-rollups"])
    assert folded.exit_code == 0 and "Folded" in folded.output
    rebuilt = runner.invoke(args=["reporting", "rebuild-rollups", "--merchant", s.merchant.id, "--test"])
    assert rebuilt.exit_code == 0, rebuilt.output
    db_session.rollback()
    assert {c: _figures(v) for c, v in _summary(db_session, s.scope).items()} == before
