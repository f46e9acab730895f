"""Home, Payments (list, live updates, detail) and Refunds: the pages a merchant lives in.

Every read goes through ``g.scope`` (the merchant and mode of the URL, re-checked by @merchant_view),
so another merchant's payment id is a 404 like a missing one. Lists are keyset-paged by (created_at,
id) and filtered by query arguments parsed in app/reporting/listing.py, shared with the CSV export.
Home's figures come from the rollups (app/reporting/rollups.py), never from scanning payments.
"""
from datetime import date, timedelta

from flask import current_app, g, request, url_for
from sqlalchemy import func, select
from ulid import ULID

from app.accounts.permissions import Action, can
from app.dashboard import bp
from app.dashboard.charts import Point, bar_chart
from app.dashboard.context import may_open, merchant_view
from app.dashboard.helpers import dash_url, user_locale
from app.dashboard.reporting_helpers import page_size, render, row_or_404, sellers_by_id, zone
from app.dashboard.risk_views import OUTCOME_LABELS as RISK_OUTCOME_LABELS, payment_risk
from app.disputes.booking import BUSINESS_KEY_KINDS as DISPUTE_KEYS
from app.disputes.models import Dispute
from app.disputes.queries import awaiting_response, payment_disputes, withdrawn_by_order
from app.events import Event
from app.extensions import db, htmx
from app.ledger.models import Entry, JournalTransaction, LedgerAccount
from app.models_base import utcnow
from app.money import format_money
from app.payments import attention
from app.payments.deps import deps_for
from app.payments.models import (
    OPEN_ATTEMPT_STATUSES,
    Payment,
    PaymentAttempt,
    PaymentOrder,
    PaymentStatus,
    Refund,
    RefundStatus,
    Seller,
)
from app.reporting import listing, rollups
from app.reporting.listing import CARD_BRANDS, RISK_LEVELS, RISK_OUTCOME_TYPES, PaymentFilters, RefundFilters
from app.risk.fraud_warnings import warnings_for_payment
from app.webhooks.models import WebhookDelivery, WebhookEndpoint

# Home shows charts for this many currencies (the largest by volume); the figures table lists all.
CHART_CURRENCIES = 3
RECENT_PAYMENTS = 5
# "Needs attention" counts stop here ("50+"): a count is a hint with a link, not a report.
ATTENTION_CAP = 50
# A refund still pending after this long is worth a look (the PSP normally answers within seconds).
REFUND_PENDING_ATTENTION = timedelta(minutes=15)
# How often an open payments list asks whether new payments arrived: fresh enough for a person
# watching, one cheap indexed count per open tab per 10 s.
POLL_SECONDS = 10
# The seller filter is a select up to this many sellers, a text box (seller id) beyond.
SELLER_SELECT_MAX = 100
WEBHOOK_ATTENTION_WINDOW = timedelta(days=7)
# A merchant has a few webhook endpoints; this only bounds the attention query's IN list.
ENDPOINTS_MAX = 100
CANCELABLE = (PaymentStatus.REQUIRES_PAYMENT_METHOD, PaymentStatus.REQUIRES_CONFIRMATION,
              PaymentStatus.REQUIRES_ACTION, PaymentStatus.REQUIRES_CAPTURE)


def _capped_count(statement, cap: int = ATTENTION_CAP) -> int:
    limited = statement.limit(cap + 1).subquery()
    return db.session.scalar(select(func.count()).select_from(limited)) or 0


# -- Home ----------------------------------------------------------------------------------------------------

@bp.route("/<merchant_id>/<mode>/")
@merchant_view(Action.VIEW)
def home():
    """Figures over a period in the merchant's time zone, charts, balances, recent payments, attention."""
    tz = zone()
    key = request.args.get("period", "7d")
    first, last = _date_arg("from"), _date_arg("to")
    period = rollups.period_for(key if key in ("today", "7d", "30d", "custom") else "7d", tz, utcnow(), first, last)
    summaries = rollups.summarize(db.session, g.scope, period)
    charts = [_chart(summary, period) for summary in summaries[:CHART_CURRENCIES]]
    recent = listing.page(db.session, g.scope, g.scope.select(Payment), Payment, limit=RECENT_PAYMENTS)
    has_any = bool(recent.rows)
    context = dict(
        period=period, summaries=summaries, charts=charts, recent=recent.rows, has_any=has_any,
        balances=_balances() if can(g.role, Action.VIEW_LEDGER) else None,
        attention=_attention() if has_any else [],
        custom_from=(first or period.first_day).isoformat(), custom_to=(last or period.last_day).isoformat(),
    )
    return render("dashboard/overview.html", **context)


def _date_arg(name: str) -> date | None:
    try:
        return date.fromisoformat(request.args.get(name, ""))
    except ValueError:
        return None


def _chart(summary: rollups.CurrencySummary, period: rollups.Period) -> dict:
    points = []
    for slot in rollups.slots(period):
        value = summary.series.get(slot, 0)
        label = f"{slot:%H}:00" if period.hourly else f"{slot:%b} {slot.day}"
        points.append(Point(slot, label, value, format_money(value, summary.currency, user_locale())))
    top = max((p.value for p in points), default=0)
    title = (f"Gross volume in {summary.currency} per {'hour' if period.hourly else 'day'}, "
             f"{period.first_day:%b} {period.first_day.day} to {period.last_day:%b} {period.last_day.day}: "
             f"{format_money(summary.gross_amount, summary.currency, user_locale())} in total")
    return {"summary": summary, "points": points,
            "svg": bar_chart(points, title=title, max_text=format_money(top, summary.currency, user_locale()))}


def _balances() -> list[dict]:
    """Per currency: what the book owes its sellers and the platform fees it earned (ledger balances)."""
    rows = db.session.execute(
        g.scope.select(LedgerAccount, LedgerAccount.account_type.in_(("seller_payable", "merchant_revenue")))
        .with_only_columns(LedgerAccount.account_type, LedgerAccount.currency, func.sum(LedgerAccount.balance))
        .group_by(LedgerAccount.account_type, LedgerAccount.currency))
    by_currency: dict[str, dict] = {}
    for account_type, currency, total in rows:
        entry = by_currency.setdefault(currency, {"currency": currency, "seller_payable": 0, "merchant_revenue": 0})
        entry[account_type] = int(total or 0)
    return [by_currency[c] for c in sorted(by_currency)]


def _attention() -> list[dict]:
    """Links to what needs a person: only for what exists and only when there is something."""
    items = []
    marked = _capped_count(attention.payment_ids_needing_attention(g.scope))
    if marked:
        minutes = int(deps_for(current_app._get_current_object()).attention_after.total_seconds() // 60)
        items.append({"count": marked, "text": (
            "payment", "payments", f"without a definite answer from the processor for over {minutes} minutes "
            "(Kassa keeps asking; look at them)"),
            "url": dash_url("dashboard.payments", attention=listing.ATTENTION_NEEDED)})
    unknown = _capped_count(g.scope.select(PaymentAttempt, PaymentAttempt.status == "unknown")
                            .with_only_columns(PaymentAttempt.payment_id).distinct())
    if unknown:
        items.append({"count": unknown, "text": ("payment", "payments", "with an attempt in an unknown state (being resolved with the processor)"),
                      "url": dash_url("dashboard.payments", attention=listing.ATTENTION_UNKNOWN)})
    uncaptured = _capped_count(g.scope.select(Payment, Payment.status == PaymentStatus.REQUIRES_CAPTURE)
                               .with_only_columns(Payment.id))
    if uncaptured:
        items.append({"count": uncaptured, "text": ("uncaptured payment", "uncaptured payments", "waiting for a capture or cancel"),
                      "url": dash_url("dashboard.payments", status="requires_capture")})
    disputes = _capped_count(awaiting_response(g.scope).with_only_columns(Dispute.id))
    if disputes:
        items.append({"count": disputes, "text": ("dispute", "disputes", "waiting for your response (evidence or acceptance) "
                                                  "before their deadline"),
                      "url": dash_url("dashboard.disputes", status="needs_response")})
    stuck_refunds = _capped_count(g.scope.select(
        Refund, Refund.status == RefundStatus.PENDING, Refund.created_at < utcnow() - REFUND_PENDING_ATTENTION)
        .with_only_columns(Refund.id))
    if stuck_refunds:
        items.append({"count": stuck_refunds, "text": ("refund", "refunds", "pending at the processor for over 15 minutes"),
                      "url": dash_url("dashboard.refunds", status="pending")})
    endpoints = db.session.scalars(g.scope.select(WebhookEndpoint).with_only_columns(WebhookEndpoint.id)
                                   .limit(ENDPOINTS_MAX)).all()
    if endpoints:
        # Ids are time-sortable (app/ids.py), so "created in the last 7 days" is an id range on the
        # (endpoint_id, id) index: a week of deliveries is read, never the book's whole history.
        since = "whd_" + str(ULID.from_datetime(utcnow() - WEBHOOK_ATTENTION_WINDOW))[:10] + "0" * 16
        failed = _capped_count(g.scope.select(
            WebhookDelivery, WebhookDelivery.endpoint_id.in_(endpoints), WebhookDelivery.id >= since,
            WebhookDelivery.status == "failed").with_only_columns(WebhookDelivery.id))
        if failed:
            items.append({"count": failed, "text": ("webhook delivery", "webhook deliveries", "failed in the last 7 days"),
                          "url": dash_url("dashboard.webhooks")})
    return items


# -- Payments list -------------------------------------------------------------------------------------------

def _sellers_for_filter():
    """The book's sellers for the filter's select, or None (a text box) when there are too many to list.

    LIMIT before any ORDER BY, so a marketplace with a hundred thousand sellers reads 101 index entries.
    """
    sellers = db.session.scalars(g.scope.select(Seller).limit(SELLER_SELECT_MAX + 1)).all()
    if len(sellers) > SELLER_SELECT_MAX:
        return None
    return sorted(sellers, key=lambda s: (not s.is_default, s.name.lower()))


@bp.route("/<merchant_id>/<mode>/payments")
@merchant_view(Action.VIEW)
def payments():
    """Filtered, searchable, keyset-paged payments, newest first; new ones announced by polling."""
    filters = PaymentFilters.parse(request.args, user_locale())
    statement = filters.statement(g.scope, zone())
    limit = page_size()
    result = listing.page(db.session, g.scope, statement, Payment, after=request.args.get("after"),
                          before=request.args.get("before"), limit=limit)
    args = filters.to_args()
    context = dict(
        filters=filters, page=result, limit=limit, args=args, brands=CARD_BRANDS, sellers=_sellers_for_filter(),
        risk_levels=RISK_LEVELS, risk_outcomes=[(t, RISK_OUTCOME_LABELS[t]) for t in RISK_OUTCOME_TYPES],
        any_payments=bool(result.rows) or _book_has(Payment),
        # The poll announces payments newer than the top of the first page (later pages stay put).
        poll_url=dash_url("dashboard.payments_updates", since=result.first_id or "", **args)
        if not result.has_prev else None,
        export_kind="payments", poll_seconds=current_app.config.get("DASHBOARD_POLL_SECONDS", POLL_SECONDS),
    )
    if htmx and htmx.target == "payments-results":
        return render("dashboard/payments/_results.html", **context)
    return render("dashboard/payments/list.html", **context)


def _book_has(model) -> bool:
    return db.session.scalar(g.scope.select(model).with_only_columns(model.id).limit(1)) is not None


@bp.route("/<merchant_id>/<mode>/payments/updates")
@merchant_view(Action.VIEW)
def payments_updates():
    """htmx poll: how many payments matching the filters arrived since the list was shown."""
    filters = PaymentFilters.parse(request.args, user_locale())
    since = request.args.get("since") or None
    count = listing.count_newer(db.session, g.scope, filters.statement(g.scope, zone()), Payment, since)
    return render("dashboard/payments/_updates.html", count=count, cap=listing.NEW_COUNT_CAP,
                  show_url=dash_url("dashboard.payments", **filters.to_args()))


# -- Payment detail ------------------------------------------------------------------------------------------

@bp.route("/<merchant_id>/<mode>/payments/<payment_id>")
@merchant_view(Action.VIEW)
def payment_detail(payment_id: str):
    """Everything about one payment: money, split, card, timeline, attempts, ledger, webhooks, actions."""
    return render("dashboard/payments/detail.html", **payment_context(row_or_404(Payment, payment_id)))


def payment_context(payment: Payment) -> dict:
    from app.reconciliation.queries import payment_settlement

    scope = g.scope
    session = db.session
    orders = session.scalars(scope.select(PaymentOrder, PaymentOrder.payment_id == payment.id)
                             .order_by(PaymentOrder.position)).all()
    sellers = sellers_by_id(o.seller_id for o in orders)
    attempts = session.scalars(scope.select(PaymentAttempt, PaymentAttempt.payment_id == payment.id)
                               .order_by(PaymentAttempt.created_at, PaymentAttempt.id)).all()
    refunds = session.scalars(scope.select(Refund, Refund.payment_id == payment.id)
                              .order_by(Refund.created_at, Refund.id)).all()
    disputes = payment_disputes(session, scope, payment.id)
    fraud_warnings = warnings_for_payment(session, scope, payment.id)
    object_ids = [payment.id] + [r.id for r in refunds] + [d.id for d in disputes] + [w.id for w in fraud_warnings]
    events = session.scalars(scope.select(Event, Event.object_id.in_(object_ids))
                             .order_by(Event.created_at, Event.id)).all()
    pending_refunds = sum(r.amount for r in refunds if r.status == RefundStatus.PENDING)
    # What a dispute withdrew cannot be refunded (app/payments/service.py create_refund says why).
    disputed = sum(amount for amount, _fee in withdrawn_by_order(session, scope, payment.id).values())
    refundable = max(payment.amount_received - payment.amount_refunded - pending_refunds - disputed, 0) \
        if payment.status == PaymentStatus.SUCCEEDED else 0
    fee = sum(o.fee_captured - o.fee_refunded for o in orders)
    open_attempt = any(a.status in OPEN_ATTEMPT_STATUSES for a in attempts)
    risk = payment_risk(session, scope, payment)
    # A platform-owned open review decides the payment: the merchant neither captures nor cancels it meanwhile
    # (app/risk/reviews.py refuse_during_platform_review; the action routes answer 409 payment_in_review).
    review = risk["review"] if risk else None
    in_platform_review = review is not None and review.status == "open" and review.owner == "platform"
    return dict(
        payment=payment, orders=orders, sellers=sellers, attempts=attempts, refunds=refunds, events=events,
        needs_attention=attention.needing_attention(session, scope, payment_id=payment.id),
        # The books are for roles that may read the ledger (app/accounts/permissions.py: not developers).
        ledger=_ledger_lines(payment, refunds, disputes) if can(g.role, Action.VIEW_LEDGER) else None,
        # Its settlement line(s) and the processor's fee, once a report carried it (app/reconciliation).
        settlement=payment_settlement(session, scope, payment.id) if can(g.role, Action.VIEW_LEDGER) else None,
        deliveries=_deliveries([e.id for e in events]),
        refundable=refundable, pending_refunds=pending_refunds, fee=fee, disputes=disputes, disputed=disputed,
        net=payment.amount_received - payment.amount_refunded - fee,
        can_refund=refundable > 0,
        can_capture=payment.status == PaymentStatus.REQUIRES_CAPTURE and not open_attempt
        and payment.amount_capturable > 0 and not in_platform_review,
        can_cancel=payment.status in CANCELABLE and not open_attempt and not in_platform_review,
        in_platform_review=in_platform_review,
        metadata=sorted((payment.metadata_ or {}).items()),
        risk=risk,
        fraud_warnings=fraud_warnings,  # issuers' early fraud warnings (app/risk/fraud_warnings.py)
    )


def _ledger_lines(payment: Payment, refunds: list[Refund], disputes: list[Dispute]) -> list[dict]:
    """The journal transactions this payment produced (captures, refunds, disputes) with their entries."""
    keys = [f"capture:{payment.id}"] + [f"capture:{payment.id}:{n}" for n in range(2, payment.capture_count + 1)]
    keys += [f"refund:{r.id}" for r in refunds]
    keys += [f"{kind}:{d.id}" for d in disputes for kind in DISPUTE_KEYS]
    transactions = db.session.scalars(g.scope.select(JournalTransaction, JournalTransaction.business_key.in_(keys))
                                      .order_by(JournalTransaction.posted_at, JournalTransaction.id)).all()
    if not transactions:
        return []
    entries = db.session.execute(
        g.scope.select(Entry, Entry.transaction_id.in_([t.id for t in transactions]))
        .join(LedgerAccount, LedgerAccount.id == Entry.account_id)
        .add_columns(LedgerAccount.code).order_by(Entry.id)).all()
    by_txn: dict[str, list] = {}
    for entry, code in entries:
        by_txn.setdefault(entry.transaction_id, []).append({"entry": entry, "code": code})
    return [{"transaction": t, "entries": by_txn.get(t.id, [])} for t in transactions]


def _deliveries(event_ids: list[str]) -> list[dict]:
    """Webhook deliveries of the payment's events, with their endpoint's URL."""
    if not event_ids:
        return []
    rows = db.session.execute(
        g.scope.select(WebhookDelivery, WebhookDelivery.event_id.in_(event_ids))
        .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id).add_columns(WebhookEndpoint.url)
        .order_by(WebhookDelivery.created_at, WebhookDelivery.id)).all()
    return [{"delivery": row[0], "url": row[1]} for row in rows]


def ledger_account_url(account_id: str) -> str | None:
    """The account's statement page (app/dashboard/ledger_views.py), when this role may open it."""
    if not may_open("dashboard.ledger_account", g.get("role")):
        return None
    return url_for("dashboard.ledger_account", merchant_id=g.merchant.id, mode=g.mode, account_id=account_id)


@bp.context_processor
def _detail_helpers() -> dict:
    return {"ledger_account_url": ledger_account_url}


# -- Refunds list --------------------------------------------------------------------------------------------

@bp.route("/<merchant_id>/<mode>/refunds")
@merchant_view(Action.VIEW)
def refunds():
    """Refunds with the same filtering and paging as payments."""
    filters = RefundFilters.parse(request.args, user_locale())
    limit = page_size()
    result = listing.page(db.session, g.scope, filters.statement(g.scope, zone()), Refund,
                          after=request.args.get("after"), before=request.args.get("before"), limit=limit)
    context = dict(filters=filters, page=result, limit=limit, args=filters.to_args(),
                   any_refunds=bool(result.rows) or _book_has(Refund), export_kind="refunds")
    if htmx and htmx.target == "refunds-results":
        return render("dashboard/refunds/_results.html", **context)
    return render("dashboard/refunds/list.html", **context)

