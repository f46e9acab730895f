"""Payouts: schedules, creating a payout (scheduled or manual) exactly once, cancel, and booking paid / failed.
No Flask; services flush and never commit (the view, job or test owns the transaction).

Postings (ARCHITECTURE.md, "Money flows in the ledger"), each under its own business key:

| movement | key | debit | credit |
|---|---|---|---|
| created (scheduled: ``payout``, manual: ``manual_payout``) | ``payout:<id>`` | the subject's account | ``payouts_in_transit`` |
| paid | ``payout_paid:<id>`` | ``payouts_in_transit`` | ``cash`` |
| failed or canceled before paid (reversal of the creation) | ``payout_reversal:<id>`` | ``payouts_in_transit`` | the subject's account |
| failed after paid (a bank return: both reversed, netted in one posting) | ``payout_return:<id>`` | ``cash`` | the subject's account |

The subject's account is ``seller_payable:<seller>:<CUR>``, or for the merchant's own payouts ``merchant_revenue``.

Creating a payout, scheduled or manual, happens in one transaction that first locks, in one statement and in id
order, the subject's account row(s), ``cash`` and ``payouts_in_transit`` of the currency; then, under those locks,
it finds whether the business key is taken, recomputes what is available, checks that ``cash`` less what is
already in transit covers the payout, writes the payout, its items and its posting. A second scheduler or a manual
payout racing the scheduled one waits on the lock and then sees the first one's payout (READ COMMITTED: each new
statement sees what committed before it), so money is paid once.
"""
import calendar
import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Callable

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from app.events import record_event
from app.ids import new_id
from app.ledger import accounts
from app.ledger.service import Leg, post_transaction
from app.models_base import utcnow
from app.payments.errors import InvalidRequest, NotFound, PaymentError
from app.payouts import balances
from app.payouts.models import (INTERVALS, MERCHANT_SUBJECT, WEEKDAYS, Payout, PayoutItem, PayoutSchedule,
                                PayoutStatus)
from app.payouts.serializers import payout_object
from app.payouts.state import InvalidPayoutTransition, transition
from app.scoping import Scope

log = logging.getLogger(__name__)


class PayoutRefused(PaymentError):
    """A payout that cannot be made now (400): more than available, no bank account, cash short."""

    code = "payout_refused"


@dataclass(frozen=True)
class Schedule:
    interval: str = "daily"
    weekly_anchor: str = "monday"
    monthly_anchor: int = 1
    minimum_amount: int = 0
    delay_days: int = 0
    reserve_percent_bp: int = 0
    reserve_days: int = 0
    reserve_minimum: int = 0


DEFAULT_SCHEDULE = Schedule()


# ---------------------------------------------------------------------------------------------- schedules


def get_schedule(session: Session, scope: Scope, seller_id: str | None) -> Schedule:
    """A subject's schedule and reserve (the default when none was set)."""
    row = session.scalars(scope.select(PayoutSchedule, PayoutSchedule.subject == balances.subject_of(seller_id))
                          ).one_or_none()
    if row is None:
        return DEFAULT_SCHEDULE
    return Schedule(row.interval, row.weekly_anchor, row.monthly_anchor, row.minimum_amount, row.delay_days,
                    row.reserve_percent_bp, row.reserve_days, row.reserve_minimum)


def _int(params: dict, name: str, low: int, high: int) -> int | None:
    if name not in params or params[name] is None:
        return None
    value = params[name]
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidRequest(f"{name} must be a whole number from {low} to {high}.", param=name)
    return value


def set_schedule(session: Session, scope: Scope, seller_id: str | None, params: dict) -> Schedule:
    """Change a subject's schedule and reserve (only the fields given); InvalidRequest names a bad one."""
    current = get_schedule(session, scope, seller_id)
    values = dict(current.__dict__)
    interval = params.get("interval")
    if interval is not None:
        if interval not in INTERVALS:
            raise InvalidRequest(f"interval must be one of {', '.join(INTERVALS)}.", param="interval")
        values["interval"] = interval
    anchor = params.get("weekly_anchor")
    if anchor is not None:
        if anchor not in WEEKDAYS:
            raise InvalidRequest(f"weekly_anchor must be one of {', '.join(WEEKDAYS)}.", param="weekly_anchor")
        values["weekly_anchor"] = anchor
    for name, low, high in (("monthly_anchor", 1, 31), ("minimum_amount", 0, 10**12), ("delay_days", 0, 365),
                            ("reserve_percent_bp", 0, 10000), ("reserve_days", 0, 365),
                            ("reserve_minimum", 0, 10**12)):
        value = _int(params, name, low, high)
        if value is not None:
            values[name] = value
    subject = balances.subject_of(seller_id)
    row = session.scalars(scope.select(PayoutSchedule, PayoutSchedule.subject == subject)
                          .with_for_update()).one_or_none()
    if row is None:
        row = scope.new(PayoutSchedule, subject=subject)
        session.add(row)
    for name, value in values.items():
        setattr(row, name, value)
    row.updated_at = utcnow()
    session.flush()
    return Schedule(**values)


def is_due(schedule: Schedule, today: date) -> bool:
    """Whether a schedule pays on ``today`` (monthly on a day past the month's end: its last day)."""
    if schedule.interval == "daily":
        return True
    if schedule.interval == "weekly":
        return WEEKDAYS[today.weekday()] == schedule.weekly_anchor
    if schedule.interval == "monthly":
        last = calendar.monthrange(today.year, today.month)[1]
        return today.day == min(schedule.monthly_anchor, last)
    return False


# ---------------------------------------------------------------------------------------------- destinations


def _destination(session: Session, scope: Scope, seller_id: str | None):
    """The subject's bank account (app/payouts/bank_accounts.py, payouts-banks' contract), or None."""
    try:
        from app.payouts.bank_accounts import payout_destination
    except ImportError:  # bank accounts not merged yet: no destination
        return None
    return payout_destination(session, scope, seller_id)


def payout_rail(session: Session, scope: Scope) -> str:
    """The merchant's payout rail: ``sandbox`` (the sandbox's bank transfers) or ``sepa`` (export files)."""
    from app.accounts.models import Merchant

    return session.scalar(select(Merchant.payout_rail).where(Merchant.id == scope.merchant_id)) or "sandbox"


# Replaceable for tests that run before bank accounts exist (tests/payouts set it); production uses _destination.
destination_lookup: Callable = _destination


def _last4(destination) -> str | None:
    number = getattr(destination, "iban", None) or getattr(destination, "account_number", None)
    return number[-4:] if number else None


# ---------------------------------------------------------------------------------------------- creating


def subject_account_codes(seller_id: str | None, currency: str) -> list[str]:
    """The accounts whose balance is the subject's (merchant: revenue less the fees it bears)."""
    if seller_id is None:
        return [accounts.merchant_revenue(currency), accounts.psp_fees(currency), accounts.dispute_fees(currency)]
    return [accounts.seller_payable(seller_id, currency)]


def _debit_account(seller_id: str | None, currency: str) -> str:
    return accounts.merchant_revenue(currency) if seller_id is None else accounts.seller_payable(seller_id, currency)


_LOCK = text("SELECT code, balance FROM ledger_accounts WHERE merchant_id = :m AND livemode = :l "
             "AND code = ANY(CAST(:codes AS text[])) ORDER BY id FOR UPDATE")


def lock_accounts(session: Session, scope: Scope, codes: list[str]) -> dict[str, int]:
    """Lock the book's accounts of ``codes`` in id order (the ledger's lock order); their balances."""
    rows = session.execute(_LOCK, {"m": scope.merchant_id, "l": scope.livemode, "codes": sorted(set(codes))}).all()
    return {row.code: row.balance for row in rows}


def _candidates(items: list[balances.BalanceTransaction], available: int, today: date):
    """The unpaid transactions a scheduled payout pays: every debit first (a negative balance is recovered), then
    available credits oldest first while the sum stays within what is available."""
    payable = [t for t in items if t.kind != balances.SCHEDULED_PAYOUT_KIND
               and t.available_on is not None and t.available_on <= today]
    negatives = [t for t in payable if t.net <= 0]
    positives = sorted((t for t in payable if t.net > 0), key=lambda t: (t.available_on, t.created, t.id))
    chosen, total = list(negatives), sum(t.net for t in negatives)
    for t in positives:
        if total + t.net > available:
            break
        chosen.append(t)
        total += t.net
    return chosen, total


@dataclass
class Created:
    payout: Payout | None
    created: bool
    reason: str | None = None


def create_payout(session: Session, scope: Scope, *, seller_id: str | None, currency: str, hmac_key: bytes,
                  today: date, amount: int | None = None, business_key: str | None = None,
                  period: date | None = None, description: str | None = None, created_by: str | None = None,
                  now: datetime | None = None) -> Created:
    """Create one payout of a subject in one currency: scheduled (``amount`` None: what is available, with its
    items, under ``business_key``) or manual (``amount`` ≤ available, no items). Locks first (module docstring).

    Scheduled: returns Created(None, False, reason) when there is nothing to pay; the existing payout when the key is
    taken. Manual: PayoutRefused with the reason.
    """
    now = now or utcnow()
    manual = amount is not None
    codes = subject_account_codes(seller_id, currency) + [accounts.cash(currency),
                                                          accounts.payouts_in_transit(currency)]
    locked = lock_accounts(session, scope, codes)
    key = business_key or f"manual:{new_id('po')}"
    existing = session.scalars(scope.select(Payout, Payout.business_key == key)).one_or_none()
    if existing is not None:
        return Created(existing, False)

    def refuse(reason: str, message: str) -> Created:
        if manual:
            raise PayoutRefused(message, param="amount" if reason in ("amount_too_large", "cash_short") else None)
        return Created(None, False, reason)

    settings = balances.settings_for(session, scope, seller_id)
    total = sum((1 if code.split(":")[0] in ("seller_payable", "merchant_revenue") else -1) * locked.get(code, 0)
                for code in subject_account_codes(seller_id, currency))
    items = balances.balance_transactions(session, scope, seller_id, currency=currency, unpaid_only=True)
    _pending, _reserved, available = balances.compute(total, items, settings, today)
    chosen: list[balances.BalanceTransaction] = []
    if manual:
        if amount > available:
            return refuse("amount_too_large", f"The amount exceeds what is available ({max(available, 0)} in "
                                              f"{currency} minor units).")
    else:
        chosen, amount = _candidates(items, available, today)
        schedule = get_schedule(session, scope, seller_id)
        if amount <= 0:
            return refuse("nothing_available", "Nothing is available to pay out.")
        if amount < schedule.minimum_amount:
            return refuse("below_minimum", "What is available is below the schedule's minimum.")
    if amount <= 0:
        return refuse("amount_too_large", "The amount must be positive.")
    cash_free = locked.get(accounts.cash(currency), 0) - locked.get(accounts.payouts_in_transit(currency), 0)
    if amount > cash_free:
        return refuse("cash_short", "The platform's bank balance less what is already in transit does not cover "
                                    "this payout yet.")
    destination = destination_lookup(session, scope, seller_id)
    if destination is None:
        return refuse("no_bank_account", "There is no bank account to pay out to.")
    if getattr(destination, "flagged", False):
        return refuse("bank_account_flagged", "A payout to this bank account failed; it must be changed first.")
    cooling = getattr(destination, "cooling_until", None)
    held = cooling is not None and cooling > now
    # A SEPA payout leaves in an export file (app/payouts/sepa.py), never through the rail job: no rail work is due.
    rail = payout_rail(session, scope)
    payout = scope.new(Payout, id=new_id("po"), seller_id=seller_id, amount=amount, currency=currency,
                       status=PayoutStatus.PENDING, kind="manual" if manual else "scheduled", business_key=key,
                       period=period, description=description, bank_account_id=destination.bank_account_id,
                       bank_account_last4=_last4(destination), held_until=cooling if held else None,
                       hold_reason="cooling_period" if held else None, rail=rail,
                       next_attempt_at=None if rail == "sepa" else cooling if held else now, created_by=created_by,
                       created_at=now)
    session.add(payout)
    session.flush()
    for item in chosen:
        session.add(scope.new(PayoutItem, entry_id=item.id, payout_id=payout.id, amount=item.net))
    session.flush()
    record_event(session, scope, "payout.created", "payout", payout.id, payout_object(payout))
    post_transaction(session, scope, f"payout:{payout.id}", "manual_payout" if manual else "payout",
                     [Leg(_debit_account(seller_id, currency), "debit", amount, currency),
                      Leg(accounts.payouts_in_transit(currency), "credit", amount, currency)],
                     hmac_key=hmac_key, description=f"Payout {payout.id}", reference=payout.id)
    return Created(payout, True)


def period_key(seller_id: str | None, currency: str, today: date) -> str:
    """The business key of a subject's scheduled payout of one currency and day."""
    return f"sched:{balances.subject_of(seller_id)}:{currency}:{today.isoformat()}"


def subjects_of(session: Session, scope: Scope) -> list[tuple[str | None, str]]:
    """Every (seller or None, currency) of the book that has a payable (or revenue) account."""
    from app.ledger.models import LedgerAccount

    rows = session.execute(select(LedgerAccount.account_type, LedgerAccount.subject, LedgerAccount.currency).where(
        LedgerAccount.merchant_id == scope.merchant_id, LedgerAccount.livemode == scope.livemode,
        LedgerAccount.account_type.in_(("seller_payable", "merchant_revenue")))
        .order_by(LedgerAccount.account_type, LedgerAccount.subject, LedgerAccount.currency)).all()
    return [(row.subject if row.account_type == "seller_payable" else None, row.currency) for row in rows]


def books_with_payables(session: Session, livemode: bool) -> list[str]:
    """Merchants with a payable or revenue account in a mode (the scheduler's work list)."""
    from app.ledger.models import LedgerAccount

    return list(session.scalars(select(LedgerAccount.merchant_id).where(
        LedgerAccount.livemode == livemode, LedgerAccount.account_type.in_(("seller_payable", "merchant_revenue")))
        .distinct().order_by(LedgerAccount.merchant_id)))


def run_schedules(session_factory, scope: Scope, *, today: date, hmac_key: bytes, commit) -> list[Created]:
    """Create the book's scheduled payouts due on ``today``, each subject and currency in its own transaction
    (``commit`` ends it); a failure of one is logged and the others go on."""
    session = session_factory()
    work = subjects_of(session, scope)
    session.rollback()
    results = []
    for seller_id, currency in work:
        schedule = get_schedule(session, scope, seller_id)
        if not is_due(schedule, today):
            session.rollback()
            continue
        try:
            result = create_payout(session, scope, seller_id=seller_id, currency=currency, hmac_key=hmac_key,
                                   today=today, business_key=period_key(seller_id, currency, today), period=today)
            commit()
            results.append(result)
        except Exception:  # noqa: BLE001 - one subject's trouble must not stop the others; it is due again
            session.rollback()
            log.warning("payouts: scheduled payout of %s %s in %s failed", seller_id or MERCHANT_SUBJECT, currency,
                        scope.merchant_id, exc_info=True)
    return results


# ---------------------------------------------------------------------------------------------- reading


def get_payout(session: Session, scope: Scope, payout_id: str, *, for_update: bool = False) -> Payout:
    """The scope's payout, or NotFound."""
    payout = scope.get(session, Payout, payout_id, for_update=for_update) if isinstance(payout_id, str) else None
    if payout is None:
        raise NotFound(f"No such payout: '{payout_id}'", param="id")
    return payout


def payout_items(session: Session, scope: Scope, payout_id: str) -> list[balances.BalanceTransaction]:
    """The balance transactions a payout pays (none for a manual payout); their nets add up to its amount."""
    payout = get_payout(session, scope, payout_id)
    return balances.balance_transactions(session, scope, payout.seller_id, payout_id=payout.id)


RECONCILIATION_HEADER = ("balance_transaction", "type", "created", "available_on", "source", "currency", "amount",
                         "fee", "net", "description")


def reconciliation_csv(session: Session, scope: Scope, payout_id: str) -> str:
    """Stripe's payout reconciliation report of one payout: a line per balance transaction it pays."""
    import csv
    import io

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(RECONCILIATION_HEADER)
    for t in payout_items(session, scope, payout_id):
        writer.writerow((t.id, t.type, t.created.isoformat(), t.available_on.isoformat() if t.available_on else "",
                         t.source or "", t.currency, t.amount, t.fee, t.net, t.description))
    return out.getvalue()


# ---------------------------------------------------------------------------------------------- outcomes


def _reverse(session: Session, payout: Payout, hmac_key: bytes) -> None:
    scope = Scope(payout.merchant_id, payout.livemode)
    post_transaction(session, scope, f"payout_reversal:{payout.id}", "payout_reversal",
                     [Leg(accounts.payouts_in_transit(payout.currency), "debit", payout.amount, payout.currency),
                      Leg(_debit_account(payout.seller_id, payout.currency), "credit", payout.amount, payout.currency)],
                     hmac_key=hmac_key, description=f"Reversal of payout {payout.id}", reference=payout.id)


def cancel_payout(session: Session, scope: Scope, payout_id: str, *, hmac_key: bytes) -> Payout:
    """Cancel a pending payout: the money goes back to the payable (payout_unexpected_state otherwise)."""
    payout = get_payout(session, scope, payout_id, for_update=True)
    if payout.status == PayoutStatus.CANCELED:
        return payout
    if payout.status == PayoutStatus.PENDING and payout.sent_at is not None:
        # Handed to the rail (process_payout): the bank may be paying it, so it can no longer be taken back.
        raise InvalidPayoutTransition("This payout was already handed to the bank; it can no longer be canceled.")
    transition(session, payout, PayoutStatus.CANCELED)
    payout.next_attempt_at = None
    _reverse(session, payout, hmac_key)
    return payout


def mark_in_transit(session: Session, payout: Payout, *, rail_reference: str | None, arrival_date: date | None,
                    next_check: datetime) -> None:
    """The rail accepted the payout (row locked by the caller)."""
    if payout.status != PayoutStatus.PENDING:
        return
    payout.rail_reference = rail_reference
    payout.arrival_date = arrival_date
    payout.sent_at = utcnow()
    payout.next_attempt_at = next_check
    transition(session, payout, PayoutStatus.IN_TRANSIT)


def mark_paid(session: Session, payout: Payout, *, hmac_key: bytes) -> None:
    """The money left the bank: in transit to cash (once; a repeated outcome changes nothing)."""
    if payout.status == PayoutStatus.PAID or payout.status == PayoutStatus.FAILED:
        return
    transition(session, payout, PayoutStatus.PAID)
    payout.next_attempt_at = None
    scope = Scope(payout.merchant_id, payout.livemode)
    post_transaction(session, scope, f"payout_paid:{payout.id}", "payout_paid",
                     [Leg(accounts.payouts_in_transit(payout.currency), "debit", payout.amount, payout.currency),
                      Leg(accounts.cash(payout.currency), "credit", payout.amount, payout.currency)],
                     hmac_key=hmac_key, description=f"Payout {payout.id} paid", reference=payout.id)


def mark_failed(session: Session, payout: Payout, *, failure_code: str, failure_message: str | None = None,
                hmac_key: bytes, flag_account: bool = True) -> None:
    """The payout failed (before or after it was paid): reversed once back to the subject's account, and, when the
    bank refused it (``flag_account``), its bank account flagged and the owners told (flag_after_failed_payout)."""
    if payout.status in (PayoutStatus.FAILED, PayoutStatus.CANCELED):
        return
    was_paid = payout.status == PayoutStatus.PAID
    payout.failure_code = failure_code
    payout.failure_message = failure_message or FAILURE_MESSAGES.get(failure_code, failure_code)
    payout.next_attempt_at = None
    transition(session, payout, PayoutStatus.FAILED)
    scope = Scope(payout.merchant_id, payout.livemode)
    if was_paid:
        # Both reversals in one posting (one posting per transaction keeps the ledger's lock order): the paid
        # posting's and the creation's legs on payouts_in_transit cancel out, leaving cash back to the payable.
        post_transaction(session, scope, f"payout_return:{payout.id}", "payout_return",
                         [Leg(accounts.cash(payout.currency), "debit", payout.amount, payout.currency),
                          Leg(_debit_account(payout.seller_id, payout.currency), "credit", payout.amount,
                              payout.currency)],
                         hmac_key=hmac_key, description=f"Payout {payout.id} returned after it was paid",
                         reference=payout.id)
    else:
        _reverse(session, payout, hmac_key)
    if payout.bank_account_id and flag_account:
        try:
            from app.payouts.bank_accounts import flag_after_failed_payout
        except ImportError:  # bank accounts not merged yet
            return
        flag_after_failed_payout(session, scope, payout.bank_account_id, failure_code)


FAILURE_MESSAGES = {
    "account_closed": "The bank account has been closed.",
    "no_account": "The bank account details on file do not match an account.",
    "invalid_currency": "The bank account cannot receive payouts in this currency.",
}


# ---------------------------------------------------------------------------------------------- the rail

# A claimed payout is not claimed again for this long (a worker that died mid-call leaves it to the next sweep).
CLAIM_LEASE = timedelta(minutes=5)
# An in-transit payout's rail is asked again after this long: the sandbox settles in days, a minute is plenty.
CHECK_EVERY = timedelta(minutes=1)
# A paid payout is watched this long for a bank return (failed after paid), asked every RETURN_CHECK_EVERY.
RETURN_WINDOW = timedelta(days=5)
RETURN_CHECK_EVERY = timedelta(hours=1)
CLAIM_BATCH = 50

_CLAIM = text("""
UPDATE payouts SET next_attempt_at = :lease, attempts = attempts + 1
 WHERE (merchant_id, id) IN (SELECT merchant_id, id FROM payouts
                              WHERE next_attempt_at <= :now AND status IN ('pending', 'in_transit', 'paid')
                              ORDER BY next_attempt_at LIMIT :limit FOR UPDATE SKIP LOCKED)
RETURNING merchant_id, livemode, id
""")


def claim_due(session: Session, now: datetime, limit: int = CLAIM_BATCH) -> list[tuple[Scope, str]]:
    """Claim payouts whose rail work is due (send, check, watch for a return) for CLAIM_LEASE; the caller commits.
    A platform-wide sweep, as the other sweeps (the database is the schedule)."""
    rows = session.execute(_CLAIM, {"now": now, "lease": now + CLAIM_LEASE, "limit": limit}).all()
    return [(Scope(r.merchant_id, r.livemode), r.id) for r in rows]


def process_payout(session: Session, scope: Scope, payout_id: str, rail, *, hmac_key: bytes, commit,
                   now: datetime | None = None) -> str:
    """One claimed payout's rail step: send it (pending), ask its status (in transit), or watch for a return (paid).
    The rail is called with no row lock held; its answer is applied under the payout's row lock. Returns what
    happened (for logs and tests)."""
    now = now or utcnow()
    payout = get_payout(session, scope, payout_id)
    status = payout.status
    if status == PayoutStatus.PENDING:
        destination = destination_lookup(session, scope, payout.seller_id)
        if destination is not None and getattr(destination, "cooling_until", None) and destination.cooling_until > now:
            payout = get_payout(session, scope, payout_id, for_update=True)
            payout.held_until, payout.hold_reason = destination.cooling_until, "cooling_period"
            payout.next_attempt_at = destination.cooling_until
            commit()
            return "held"
        if destination is None or destination.bank_account_id != payout.bank_account_id or destination.flagged:
            payout = get_payout(session, scope, payout_id, for_update=True)
            mark_failed(session, payout, failure_code="bank_account_changed",
                        failure_message="The bank account changed or was flagged after this payout was created.",
                        hmac_key=hmac_key, flag_account=False)  # Kassa stopped it: no bank refused that account
            commit()
            return "failed"
        # Mark it handed to the rail, committed before the call: from now on a cancel is refused (the transfer may
        # exist even if the rail's answer is lost), so a payout is never both canceled here and paid by the bank.
        payout = get_payout(session, scope, payout_id, for_update=True)
        if payout.status != status:
            commit()
            return "changed"
        payout.sent_at = payout.sent_at or now
        amount, currency = payout.amount, payout.currency
        commit()  # no transaction (and no lock) across the rail's call
        answer = rail.send(payout_id, amount, currency, destination)
    else:
        session.rollback()
        answer = rail.status(payout_id)
    payout = get_payout(session, scope, payout_id, for_update=True)
    if payout.status != status:  # changed meanwhile (canceled, or another worker): its next step is its own
        commit()
        return "changed"
    result = _apply(session, payout, answer, hmac_key=hmac_key, now=now)
    commit()
    return result


def apply_rail_notice(session: Session, scope: Scope, payout_id: str, answer, *, hmac_key: bytes,
                      now: datetime | None = None) -> str:
    """The rail told us a transfer's outcome by callback (app/payouts/callbacks.py): applied under the payout's row
    lock exactly as the status query's answer (``_apply``), so whichever comes first moves it and the other changes
    nothing. Only a sandbox-rail payout still pending, in transit or paid; the caller commits."""
    payout = get_payout(session, scope, payout_id, for_update=True)
    if payout.rail != "sandbox" or payout.status not in (PayoutStatus.PENDING, PayoutStatus.IN_TRANSIT,
                                                          PayoutStatus.PAID):
        return "ignored"
    return _apply(session, payout, answer, hmac_key=hmac_key, now=now or utcnow())


def _apply(session: Session, payout: Payout, answer, *, hmac_key: bytes, now: datetime) -> str:
    if answer.outcome == "unknown":
        return "unknown"  # the claim's lease runs out and the next sweep asks again (sending is idempotent)
    if answer.outcome == "absent":
        if payout.status == PayoutStatus.PENDING and answer.refused:
            mark_failed(session, payout, failure_code="rail_refused", failure_message=answer.refused[:500],
                        hmac_key=hmac_key)
            return "failed"
        log.warning("payouts: rail has no transfer for %s payout %s; asked again later", payout.status, payout.id)
        return "absent"
    if payout.status == PayoutStatus.PENDING:
        mark_in_transit(session, payout, rail_reference=answer.reference, arrival_date=None,
                        next_check=now + CHECK_EVERY)
    if answer.status == "paid" and payout.status == PayoutStatus.IN_TRANSIT:
        mark_paid(session, payout, hmac_key=hmac_key)
        payout.next_attempt_at = now + RETURN_CHECK_EVERY
        return "paid"
    if answer.status == "failed":
        mark_failed(session, payout, failure_code=answer.failure_code or "could_not_process", hmac_key=hmac_key)
        return "failed"
    if payout.status == PayoutStatus.PAID:
        paid_at = payout.paid_at or now
        payout.next_attempt_at = now + RETURN_CHECK_EVERY if now < paid_at + RETURN_WINDOW else None
        return "paid"
    payout.next_attempt_at = now + CHECK_EVERY
    return "in_transit"
