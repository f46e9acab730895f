"""The dashboard's payments and refunds lists: filters, search and keyset pages (no Flask).

Filters arrive as the list page's query arguments (a bookmarkable URL) and are parsed into a
``PaymentFilters`` / ``RefundFilters``; ``statement()`` turns them into a SELECT through the book's
Scope, which the list page, the "new payments" poll and the CSV export all use, so an export is exactly
the filtered list.

Order is newest first by (created_at, id); a page is the next ``limit`` rows after (or before) a row
named by its id, so pages never shift when new payments arrive, and page 1,000 costs what page 1 costs
(the indexes are in app/reporting/models.py). Dates are the merchant's local dates.
"""
import re
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, Iterable, Mapping
from zoneinfo import ZoneInfo

from babel.numbers import get_group_symbol
from sqlalchemy import Select, and_, func, or_, select, tuple_
from sqlalchemy.orm import Session

from app import pan
from app.money import (
    CURRENCY_EXPONENTS,
    DEFAULT_LOCALE,
    AmountInputError,
    amount_example,
    parse_amount_input,
    parse_decimal_input,
)
from app.payments import attention
from app.payments.models import Payment, PaymentAttempt, PaymentOrder, PaymentStatus, Refund, RefundStatus
from app.risk.models import LEVELS, OUTCOME_TYPES
from app.scoping import Scope

PAGE_SIZES = (10, 25, 50, 100)
DEFAULT_PAGE_SIZE = 25
# What the "new payments" notice counts up to; beyond it says "99+": counting all would cost a scan.
NEW_COUNT_CAP = 99
# Risk filters (issue 19): the assessment's level, and the outcome's type as Stripe's charge ``outcome`` has it.
RISK_LEVELS = LEVELS
RISK_OUTCOME_TYPES = OUTCOME_TYPES
CARD_BRANDS = ("visa", "mastercard", "amex", "discover", "jcb", "diners", "unionpay")
# Pseudo status: captured payments with at least one successful refund.
REFUNDED = "refunded"
PAYMENT_STATUSES = tuple(PaymentStatus) + (REFUNDED,)
ATTENTION_UNKNOWN = "unknown_attempt"
# Payments with an attempt or refund the PSP has given no definite answer about for too long
# (app/payments/attention.py).
ATTENTION_NEEDED = "needs_attention"
_LAST4 = re.compile(r"^\d{4}$")
_ID = re.compile(r"^[A-Za-z0-9_\-]{1,100}$")
MAX_TEXT = 320
# Amount filters beyond this are refused rather than overflowing the bigint they are compared with.
MAX_MINOR = 10 ** 15


def _first(args: Mapping, name: str) -> str:
    """The first value of a query argument, stripped ('' when absent)."""
    if hasattr(args, "getlist"):
        values = args.getlist(name)
    else:
        value = args.get(name)
        values = value if isinstance(value, list) else ([] if value is None else [value])
    return (str(values[0]) if values else "").strip()[:MAX_TEXT]


def _all(args: Mapping, name: str) -> list[str]:
    if hasattr(args, "getlist"):
        values = args.getlist(name)
    else:
        value = args.get(name)
        values = value if isinstance(value, list) else ([] if value is None else [value])
    return [str(v).strip() for v in values if str(v).strip()]


def _date(text: str) -> date | None:
    try:
        return date.fromisoformat(text) if text else None
    except ValueError:
        return None


def minor_units(value: Decimal, digits: int) -> int | None:
    """A major-unit amount as minor units of a currency with ``digits`` decimals; None if not exact or too big."""
    minor = value.scaleb(digits)
    if minor != minor.to_integral_value() or minor > MAX_MINOR:
        return None
    return int(minor)


def _amount_clause(column, currency_column, value: Decimal, currency: str | None, op: str):
    """amount >= / <= a major-unit amount: exact in the chosen currency, else per currency exponent."""
    compare = (lambda c, v: c >= v) if op == ">=" else (lambda c, v: c <= v)
    if currency:
        minor = minor_units(value, CURRENCY_EXPONENTS[currency])
        return None if minor is None else compare(column, minor)
    clauses = []
    for digits in sorted(set(CURRENCY_EXPONENTS.values())):
        codes = [code for code, e in CURRENCY_EXPONENTS.items() if e == digits]
        minor = minor_units(value, digits)
        if minor is not None:
            clauses.append(and_(currency_column.in_(codes), compare(column, minor)))
    return or_(*clauses) if clauses else None


def _amount_filter(text: str, currency: str | None, locale: str) -> Decimal | None:
    """The filter's amount read in the person's locale as the forms read it (never guessed); None when it is
    not one. Without a currency, an amount with three decimals must be one in some currency (KWD)."""
    try:
        if currency:
            return Decimal(parse_amount_input(text, currency, locale, allow_zero=True)).scaleb(
                -CURRENCY_EXPONENTS[currency])
        value = parse_decimal_input(text, locale)
    except AmountInputError:
        return None
    if value < 0 or -value.as_tuple().exponent > max(CURRENCY_EXPONENTS.values()):
        return None
    if -value.as_tuple().exponent == 3 and get_group_symbol(locale) not in text:
        return None  # "1,000" in German: one or one thousand? Choose a currency, or write 1.000,00
    return value


@dataclass
class ListFilters:
    """What both lists filter on; subclasses add their own fields. Empty string / list = not filtered."""

    status: list[str] = field(default_factory=list)
    date_from: str = ""
    date_to: str = ""
    amount_min: str = ""
    amount_max: str = ""
    currency: str = ""
    q: str = ""
    errors: dict[str, str] = field(default_factory=dict)
    # The locale the amounts were typed in (the person's; an export keeps it with its filters).
    locale: str = DEFAULT_LOCALE

    # Class constants (not dataclass fields: no annotation).
    ALLOWED_STATUSES = ()
    URL_FIELDS = ("status", "date_from", "date_to", "amount_min", "amount_max", "currency", "q")

    @classmethod
    def parse(cls, args: Mapping, locale: str = DEFAULT_LOCALE) -> "ListFilters":
        """Filters from query arguments, amounts in ``locale``; invalid values are dropped and explained in ``errors``."""
        values: dict[str, Any] = {}
        errors: dict[str, str] = {}
        for name in cls.URL_FIELDS:
            values[name] = _all(args, name) if name == "status" else _first(args, name)
        values["status"] = [s for s in values["status"] if s in cls.ALLOWED_STATUSES]
        currency = values["currency"].upper()
        values["currency"] = currency if currency in CURRENCY_EXPONENTS else ""
        if currency and not values["currency"]:
            errors["currency"] = f"{currency} is not a currency Kassa supports."
        for name in ("date_from", "date_to"):
            if values[name] and _date(values[name]) is None:
                errors[name] = "Use a date like 2026-01-31."
                values[name] = ""
        for name in ("amount_min", "amount_max"):
            if values[name] and _amount_filter(values[name], values["currency"] or None, locale) is None:
                example = amount_example(values["currency"] or "EUR", locale)
                errors[name] = f"Enter an amount like {example}" + (
                    f" (in {values['currency']})" if values["currency"] else "") + "."
                values[name] = ""
        values = cls._parse_more(args, values, errors)
        for name, value in values.items():
            # A card number typed into the search box is neither searched for nor kept (an export stores
            # its filters): Kassa has none to find.
            if isinstance(value, str) and pan.find_card_number(value) is not None:
                errors[name] = "Kassa keeps no card numbers: search by the card's last 4 digits instead."
                values[name] = ""
        return cls(**values, errors=errors, locale=locale)

    @classmethod
    def _parse_more(cls, args, values: dict, errors: dict) -> dict:
        return values

    def to_args(self) -> dict[str, Any]:
        """The non-empty filters as query arguments (for links, the poll and the export job)."""
        result = {}
        for name in self.URL_FIELDS:
            value = getattr(self, name)
            if value:
                result[name] = list(value) if isinstance(value, list) else value
        return result

    @property
    def active(self) -> bool:
        return bool(self.to_args())

    @property
    def filter_count(self) -> int:
        """Active filters besides the search box."""
        return len([name for name in self.to_args() if name != "q"])

    def local_range(self, zone: ZoneInfo) -> tuple[datetime | None, datetime | None]:
        """[start, end) instants of the date filter: local midnight of date_from to the day after date_to."""
        first, last = _date(self.date_from), _date(self.date_to)
        if first and last and first > last:
            first, last = last, first
        start = datetime.combine(first, time.min, zone) if first else None
        end = datetime.combine(last + timedelta(days=1), time.min, zone) if last else None
        return start, end

    def _common(self, model, zone: ZoneInfo) -> list:
        clauses = []
        start, end = self.local_range(zone)
        if start:
            clauses.append(model.created_at >= start)
        if end:
            clauses.append(model.created_at < end)
        if self.currency:
            clauses.append(model.currency == self.currency)
        for text, op in ((self.amount_min, ">="), (self.amount_max, "<=")):
            value = _amount_filter(text, self.currency or None, self.locale) if text else None
            if value is not None:
                clause = _amount_clause(model.amount, model.currency, value, self.currency or None, op)
                if clause is not None:
                    clauses.append(clause)
        return clauses


@dataclass
class PaymentFilters(ListFilters):
    """Payments list: status, dates, amount, currency, seller, customer email, card last 4 and brand, search."""

    seller: str = ""
    email: str = ""
    last4: str = ""
    brand: str = ""
    attention: str = ""
    risk_level: str = ""
    risk_outcome: str = ""

    ALLOWED_STATUSES = PAYMENT_STATUSES
    URL_FIELDS = ListFilters.URL_FIELDS + ("seller", "email", "last4", "brand", "attention", "risk_level",
                                           "risk_outcome")

    @classmethod
    def _parse_more(cls, args, values: dict, errors: dict) -> dict:
        if values["last4"] and not _LAST4.match(values["last4"]):
            errors["last4"] = "Enter the last 4 digits of the card."
            values["last4"] = ""
        values["brand"] = values["brand"].lower() if values["brand"].lower() in CARD_BRANDS else ""
        if values["seller"] and not _ID.match(values["seller"]):
            values["seller"] = ""
        values["attention"] = values["attention"] if values["attention"] in (ATTENTION_UNKNOWN, ATTENTION_NEEDED) \
            else ""
        values["risk_level"] = values["risk_level"] if values["risk_level"] in RISK_LEVELS else ""
        values["risk_outcome"] = values["risk_outcome"] if values["risk_outcome"] in RISK_OUTCOME_TYPES else ""
        return values

    def statement(self, scope: Scope, zone: ZoneInfo) -> Select:
        """SELECT of the book's payments matching every filter (not yet ordered or paged)."""
        clauses = self._common(Payment, zone)
        statuses = [s for s in self.status if s not in (REFUNDED, PaymentStatus.SUCCEEDED)]
        status_clauses = []
        if statuses:
            status_clauses.append(Payment.status.in_(statuses) if len(statuses) > 1 else Payment.status == statuses[0])
        if PaymentStatus.SUCCEEDED in self.status:
            # As the list labels them: a payment refunded in full or in part is under "Refunded".
            status_clauses.append(and_(Payment.status == PaymentStatus.SUCCEEDED, Payment.amount_refunded == 0))
        if REFUNDED in self.status:
            status_clauses.append(and_(Payment.status == PaymentStatus.SUCCEEDED, Payment.amount_refunded > 0))
        if status_clauses:
            clauses.append(or_(*status_clauses) if len(status_clauses) > 1 else status_clauses[0])
        if self.email:
            clauses.append(func.lower(Payment.customer_email) == self.email.lower())
        if self.last4:
            clauses.append(Payment.card_last4 == self.last4)
        if self.brand:
            clauses.append(Payment.card_brand == self.brand)
        if self.seller:
            clauses.append(Payment.id.in_(
                scope.select(PaymentOrder, PaymentOrder.seller_id == self.seller)
                .with_only_columns(PaymentOrder.payment_id)))
        if self.attention == ATTENTION_UNKNOWN:
            clauses.append(Payment.id.in_(
                scope.select(PaymentAttempt, PaymentAttempt.status == "unknown")
                .with_only_columns(PaymentAttempt.payment_id)))
        elif self.attention == ATTENTION_NEEDED:
            clauses.append(Payment.id.in_(attention.payment_ids_needing_attention(scope)))
        if self.risk_level:
            clauses.append(Payment.risk_level == self.risk_level)
        if self.risk_outcome:
            # The outcome as Stripe's charge ``outcome`` names it (app/risk: ``type`` of Payment.risk_outcome).
            clauses.append(Payment.risk_outcome["type"].astext == self.risk_outcome)
        if self.q:
            clauses.append(self._search(scope, self.q))
        return scope.select(Payment, *clauses)

    @staticmethod
    def _search(scope: Scope, q: str):
        """Payment id, refund id, PSP reference, or customer email: whole, or its start from 3 characters.

        The email prefix runs on ix_payments_dash_email (text_pattern_ops), one index range per search.
        """
        lowered = q.lower()
        options = [Payment.id == q, Payment.psp_reference == q, func.lower(Payment.customer_email) == lowered]
        if q.startswith("re_"):
            options.append(Payment.id.in_(scope.select(Refund, Refund.id == q).with_only_columns(Refund.payment_id)))
        if len(q) >= 3 and not q.startswith(("pay_", "re_")):
            pattern = lowered.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            options.append(func.lower(Payment.customer_email).like(pattern, escape="\\"))
        return or_(*options)


@dataclass
class RefundFilters(ListFilters):
    """Refunds list: status, dates, amount, currency, search (refund id, payment id, PSP reference)."""

    ALLOWED_STATUSES = tuple(RefundStatus)

    def statement(self, scope: Scope, zone: ZoneInfo) -> Select:
        clauses = self._common(Refund, zone)
        if self.status:
            clauses.append(Refund.status.in_(self.status))
        if self.q:
            clauses.append(or_(Refund.id == self.q, Refund.payment_id == self.q, Refund.psp_reference == self.q))
        return scope.select(Refund, *clauses)


# -- keyset pages --------------------------------------------------------------------------------------------

@dataclass
class Page:
    rows: list
    has_next: bool
    has_prev: bool

    @property
    def first_id(self) -> str | None:
        return self.rows[0].id if self.rows else None

    @property
    def last_id(self) -> str | None:
        return self.rows[-1].id if self.rows else None


def _cursor(session: Session, scope: Scope, model, row_id: str | None) -> tuple[datetime, str] | None:
    """(created_at, id) of a row of the book named in the URL, or None (then the page starts at the top)."""
    if not row_id or not _ID.match(row_id):
        return None
    created = session.scalar(scope.select(model, model.id == row_id).with_only_columns(model.created_at))
    return (created, row_id) if created is not None else None


def page(session: Session, scope: Scope, statement: Select, model, *, after: str | None = None,
         before: str | None = None, limit: int = DEFAULT_PAGE_SIZE) -> Page:
    """``limit`` rows of ``statement`` newest first, after the row ``after`` or before the row ``before``."""
    key = tuple_(model.created_at, model.id)
    if before and (cursor := _cursor(session, scope, model, before)):
        rows = session.scalars(statement.where(key > tuple_(*cursor))
                               .order_by(model.created_at.asc(), model.id.asc()).limit(limit + 1)).all()
        return Page(list(reversed(rows[:limit])), has_next=True, has_prev=len(rows) > limit)
    cursor = _cursor(session, scope, model, after)
    if cursor:
        statement = statement.where(key < tuple_(*cursor))
    rows = session.scalars(statement.order_by(model.created_at.desc(), model.id.desc()).limit(limit + 1)).all()
    return Page(list(rows[:limit]), has_next=len(rows) > limit, has_prev=cursor is not None)


def count_newer(session: Session, scope: Scope, statement: Select, model, newest_id: str | None,
                cap: int = NEW_COUNT_CAP) -> int:
    """How many rows of ``statement`` are newer than ``newest_id`` (the top of the page shown), up to cap+1."""
    cursor = _cursor(session, scope, model, newest_id)
    if cursor:
        statement = statement.where(tuple_(model.created_at, model.id) > tuple_(*cursor))
    limited = statement.with_only_columns(model.id).order_by(None).limit(cap + 1).subquery()
    return session.scalar(select(func.count()).select_from(limited)) or 0


def iterate(session: Session, statement: Select, model, *, batch: int = 1000) -> Iterable[list]:
    """Every row of ``statement`` in list order, ``batch`` at a time by keyset (for exports)."""
    cursor = None
    while True:
        query = statement
        if cursor is not None:
            query = query.where(tuple_(model.created_at, model.id) < tuple_(*cursor))
        rows = session.scalars(query.order_by(model.created_at.desc(), model.id.desc()).limit(batch)).all()
        if not rows:
            return
        yield rows
        if len(rows) < batch:
            return
        cursor = (rows[-1].created_at, rows[-1].id)
