"""Balances and balance transactions, derived from the ledger and reconciliation (issue 22). No Flask, never commits.

A *subject* is a seller (its ``seller_payable:<seller>:<CUR>`` accounts) or, with ``seller_id=None``, the merchant
itself: its net revenue, ``merchant_revenue`` less the ``psp_fees`` and ``dispute_fees`` it bears. Every ledger
entry on a subject's accounts is one **balance transaction** (its id is the entry's id), signed as it moves the
subject's balance: a credit adds, a debit takes away (for the merchant's fee expenses too).

A subject's balance per currency (ARCHITECTURE.md, "Money flows in the ledger"):

* **pending**: charges (entries of capture postings) whose payment's charge line is not yet settled by the PSP,
  reconciled (line ``matched``) and deposited (its batch's bank entry ``matched``), or whose deposit is younger than
  the schedule's delay; a charge already paid by a payout is never pending;
* **available**: the ledger balance less pending less the reserve held; a negative available balance (refunds or
  disputes after a payout) is carried, never paid out (disputes are not subtracted again: opening one already
  debited the payable);
* **in transit**: payouts created and not yet paid, failed or canceled (the ledger's ``payouts_in_transit`` for
  this subject).

The reserve (``PayoutSchedule``): ``reserve_percent_bp`` of each charge for ``reserve_days`` after it became
available, at least ``reserve_minimum``; it holds back at most what is available.

Everything is read at READ COMMITTED in the caller's transaction; ``app/payouts/service.py`` locks the subject's
account row first, so what it reads here cannot change under it.
"""
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from app.scoping import Scope

# Transaction kinds (ledger) to balance transaction types (Stripe's vocabulary, issue 22).
TYPE_OF_KIND = {
    "capture": "charge",
    "refund": "refund",
    "refund_reversal": "adjustment",
    "dispute": "dispute",
    "dispute_reinstated": "dispute",
    "dispute_fee": "fee",
    "dispute_fee_returned": "fee",
    "settlement": "fee",
    "payout": "payout",
    "manual_payout": "payout",
    "payout_reversal": "payout_reversal",
    "payout_return": "payout_reversal",
}
TYPES = ("charge", "refund", "dispute", "fee", "payout", "payout_reversal", "adjustment")
# The payout postings that debit a scheduled payout's items: never an item of a payout themselves.
SCHEDULED_PAYOUT_KIND = "payout"
MERCHANT_ACCOUNT_TYPES = ("merchant_revenue", "psp_fees", "dispute_fees")


@dataclass(frozen=True)
class Balance:
    """A subject's balance in one currency, in minor units (``reserved`` is already out of ``available``)."""

    currency: str
    pending: int
    available: int
    in_transit: int
    reserved: int = 0


@dataclass(frozen=True)
class BalanceTransaction:
    """One movement of a subject's balance: a ledger entry on one of its accounts."""

    id: str
    type: str
    kind: str
    amount: int
    fee: int
    net: int
    currency: str
    created: datetime
    available_on: date | None
    source: str | None
    description: str
    payout: str | None
    seller: str | None

    @property
    def available(self) -> bool:
        return self.available_on is not None


@dataclass(frozen=True)
class Settings:
    """The payout settings a balance depends on (defaults when the subject has no schedule row)."""

    delay_days: int = 0
    reserve_percent_bp: int = 0
    reserve_days: int = 0
    reserve_minimum: int = 0


def subject_of(seller_id: str | None) -> str:
    from app.payouts.models import MERCHANT_SUBJECT

    return seller_id or MERCHANT_SUBJECT


def settings_for(session: Session, scope: Scope, seller_id: str | None) -> Settings:
    """The subject's delay and reserve settings."""
    from app.payouts.models import PayoutSchedule

    row = session.scalars(scope.select(PayoutSchedule, PayoutSchedule.subject == subject_of(seller_id))).one_or_none()
    if row is None:
        return Settings()
    return Settings(row.delay_days, row.reserve_percent_bp, row.reserve_days, row.reserve_minimum)


def _account_filter(seller_id: str | None) -> tuple[str, dict]:
    if seller_id is None:
        return "a.account_type IN ('merchant_revenue', 'psp_fees', 'dispute_fees')", {}
    return "a.account_type = 'seller_payable' AND a.subject = :seller", {"seller": seller_id}


# Each entry of the subject's accounts, signed (credit adds), with its transaction, the payout that paid it, and for
# charges the day their batch was deposited (NULL: not settled, reconciled and deposited yet).
_ITEMS = """
SELECT e.id, e.amount, e.direction, e.currency, e.posted_at, t.kind, t.reference, t.description, a.account_type,
       a.subject, pi.payout_id,
       CASE WHEN e.direction = 'credit' THEN e.amount ELSE -e.amount END AS signed,
       dep.deposited_on
  FROM ledger_accounts a
  JOIN ledger_entries e ON e.account_id = a.id AND e.merchant_id = a.merchant_id AND e.livemode = a.livemode
  JOIN ledger_transactions t ON t.id = e.transaction_id AND t.merchant_id = e.merchant_id
  LEFT JOIN payout_items pi ON pi.merchant_id = e.merchant_id AND pi.entry_id = e.id
  LEFT JOIN LATERAL (
      SELECT min(b.booking_date) AS deposited_on
        FROM payments p
        JOIN reconciliation_lines l ON l.psp = p.connector AND l.livemode = p.livemode
             AND l.reference = p.psp_reference AND l.type = 'charge' AND l.status IN ('matched', 'unchanged')
             AND l.merchant_id = p.merchant_id
        JOIN reconciliation_bank_entries b ON b.livemode = l.livemode AND b.batch_id = l.batch_id
             AND b.status = 'matched'
       WHERE t.kind = 'capture' AND p.merchant_id = a.merchant_id AND p.id = t.reference
  ) dep ON true
 WHERE a.merchant_id = :merchant AND a.livemode = :livemode AND {accounts} {more}
"""


def _rows(session: Session, scope: Scope, seller_id: str | None, more: str = "", params: dict | None = None):
    where, extra = _account_filter(seller_id)
    sql = _ITEMS.format(accounts=where, more=more)
    return session.execute(text(sql + " ORDER BY e.posted_at, e.id"),
                           {"merchant": scope.merchant_id, "livemode": scope.livemode, **extra, **(params or {})}).all()


def _available_on(row, settings: Settings) -> date | None:
    """When a row's money is (or was) available: a charge once deposited plus the delay; anything else at once."""
    if row.kind == "capture":
        if row.payout_id is not None and row.deposited_on is None:
            return row.posted_at.date()  # paid already (e.g. before reconciliation knew its line): not pending
        return None if row.deposited_on is None else row.deposited_on + timedelta(days=settings.delay_days)
    return row.posted_at.date()


def _transaction(row, settings: Settings, fees: dict[str, int]) -> BalanceTransaction:
    type_ = TYPE_OF_KIND.get(row.kind, "adjustment")
    fee = fees.get(row.reference, 0) if type_ == "charge" and row.direction == "credit" else 0
    return BalanceTransaction(
        id=row.id, type=type_, kind=row.kind, amount=row.signed + fee, fee=fee, net=row.signed,
        currency=row.currency, created=row.posted_at, available_on=_available_on(row, settings),
        source=row.reference, description=row.description, payout=row.payout_id,
        seller=row.subject if row.account_type == "seller_payable" else None)


def _platform_fees(session: Session, scope: Scope, seller_id: str | None, references: set[str]) -> dict[str, int]:
    """The platform fee the seller paid on each payment (its orders' fee_captured), for charges' ``fee``."""
    if seller_id is None or not references:
        return {}
    from app.payments.models import PaymentOrder

    rows = session.execute(select(PaymentOrder.payment_id, PaymentOrder.fee_captured).where(
        PaymentOrder.merchant_id == scope.merchant_id, PaymentOrder.livemode == scope.livemode,
        PaymentOrder.seller_id == seller_id, PaymentOrder.payment_id.in_(references))).all()
    return {r.payment_id: r.fee_captured for r in rows}


def balance_transactions(session: Session, scope: Scope, seller_id: str | None, *, currency: str | None = None,
                         unpaid_only: bool = False, payout_id: str | None = None) -> list[BalanceTransaction]:
    """A subject's balance transactions, oldest first (optionally of one currency, not yet paid, or one payout's)."""
    more, params = "", {}
    if currency:
        more += " AND e.currency = :currency"
        params["currency"] = currency
    if unpaid_only:
        more += " AND pi.payout_id IS NULL"
    if payout_id:
        more += " AND pi.payout_id = :payout"
        params["payout"] = payout_id
    rows = _rows(session, scope, seller_id, more, params)
    settings = settings_for(session, scope, seller_id)
    fees = _platform_fees(session, scope, seller_id, {r.reference for r in rows if r.kind == "capture" and r.reference})
    return [_transaction(row, settings, fees) for row in rows]


def _ledger_totals(session: Session, scope: Scope, seller_id: str | None) -> dict[str, int]:
    """The subject's ledger balance per currency (merchant: revenue less the fees it bears)."""
    from app.ledger.models import LedgerAccount

    query = select(LedgerAccount.account_type, LedgerAccount.currency, LedgerAccount.balance).where(
        LedgerAccount.merchant_id == scope.merchant_id, LedgerAccount.livemode == scope.livemode)
    if seller_id is None:
        query = query.where(LedgerAccount.account_type.in_(MERCHANT_ACCOUNT_TYPES))
    else:
        query = query.where(LedgerAccount.account_type == "seller_payable", LedgerAccount.subject == seller_id)
    totals: dict[str, int] = {}
    for row in session.execute(query):
        sign = 1 if row.account_type in ("seller_payable", "merchant_revenue") else -1
        totals[row.currency] = totals.get(row.currency, 0) + sign * row.balance
    return totals


def _in_transit(session: Session, scope: Scope, seller_id: str | None) -> dict[str, int]:
    from sqlalchemy import func

    from app.payouts.models import Payout

    seller_match = Payout.seller_id.is_(None) if seller_id is None else Payout.seller_id == seller_id
    rows = session.execute(select(Payout.currency, func.sum(Payout.amount)).where(
        Payout.merchant_id == scope.merchant_id, Payout.livemode == scope.livemode, seller_match,
        Payout.status.in_(("pending", "in_transit"))).group_by(Payout.currency)).all()
    return {currency: int(total) for currency, total in rows}


def compute(total: int, items: list[BalanceTransaction], settings: Settings, today: date) -> tuple[int, int, int]:
    """(pending, reserved, available) of one currency from its ledger total and its unpaid transactions."""
    pending = sum(t.net for t in items if t.type == "charge" and t.net > 0 and (t.available_on is None
                                                                               or t.available_on > today))
    held = 0
    if settings.reserve_percent_bp:
        window = today - timedelta(days=settings.reserve_days)
        held = sum(t.net * settings.reserve_percent_bp // 10000 for t in items
                   if t.type == "charge" and t.net > 0 and t.available_on is not None and window < t.available_on <= today)
    reserve = max(held, settings.reserve_minimum)
    free = total - pending
    reserved = min(reserve, max(free, 0))
    return pending, reserved, free - reserved


def subject_balances(session: Session, scope: Scope, seller_id: str | None, today: date) -> list[Balance]:
    """The subject's balance per currency on ``today`` (the sandbox clock's date in test mode)."""
    totals = _ledger_totals(session, scope, seller_id)
    transit = _in_transit(session, scope, seller_id)
    settings = settings_for(session, scope, seller_id)
    unpaid = balance_transactions(session, scope, seller_id, unpaid_only=True) if totals else []
    balances = []
    for currency in sorted(set(totals) | set(transit)):
        items = [t for t in unpaid if t.currency == currency]
        pending, reserved, available = compute(totals.get(currency, 0), items, settings, today)
        balances.append(Balance(currency, pending, available, transit.get(currency, 0), reserved))
    return balances


def seller_balances(session: Session, scope: Scope, seller_id: str | None, today: date | None = None) -> list[Balance]:
    """Per currency: pending, available and in transit of a seller (None: the merchant's own revenue).

    ``today`` defaults to the current UTC date; schedules and tests pass the sandbox clock's.
    """
    from app.models_base import utcnow

    return subject_balances(session, scope, seller_id, today or utcnow().date())
