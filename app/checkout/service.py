"""Checkout sessions: create, describe, expire, complete. No Flask here; callers own the transaction.

A session sells one order and owns at most one Payment, created and confirmed through the payments
service exactly like an API payment (see app/checkout/flow.py for the shopper's side).
"""
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.checkout.models import CheckoutSession, SessionStatus, new_session_id
from app.events import record_event
from app.models_base import utcnow
from app.money import MoneyError, exponent, normalize_currency
from app.scoping import Scope

# Stripe's bounds, for the same reasons: under 30 minutes a shopper may not finish typing; over 24 hours
# prices and stock drift, and an open page is an open door for card testing.
DEFAULT_EXPIRY = timedelta(hours=24)
MIN_EXPIRY = timedelta(minutes=30)
MAX_EXPIRY = timedelta(hours=24)
MAX_LINE_ITEMS = 100
MAX_QUANTITY = 1_000_000
# An upper bound that keeps amount arithmetic far from any integer overflow (10^12 minor units is
# ten billion dollars); real limits per merchant belong to risk rules.
MAX_AMOUNT = 10**12
MAX_METADATA_KEYS = 50
# expires_at is checked against now + 30 minutes .. 24 hours; this bound only keeps the timestamp a timestamp.
MAX_EXPIRES_AT = 2**40
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")

EVENT_COMPLETED = "checkout.session.completed"
EVENT_EXPIRED = "checkout.session.expired"


class CheckoutError(Exception):
    """A checkout request that cannot be honoured; ``param`` names the offending parameter, if any."""

    def __init__(self, message: str, param: str | None = None, code: str = "parameter_invalid"):
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


class SessionStateError(CheckoutError):
    """The session is not in a state that allows the operation (e.g. expiring a completed session)."""


@dataclass(frozen=True)
class LineItem:
    name: str
    quantity: int
    unit_amount: int

    @property
    def amount(self) -> int:
        return self.quantity * self.unit_amount


def _integer(value: Any, param: str, *, minimum: int, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, str) and re.fullmatch(r"-?\d{1,19}", value.strip()):
            value = int(value.strip())
        else:
            raise CheckoutError(f"{param} must be an integer.", param)
    if not minimum <= value <= maximum:
        raise CheckoutError(f"{param} must be between {minimum} and {maximum}.", param)
    return value


def _text(value: Any, param: str, *, max_length: int, required: bool = False) -> str | None:
    if value is None or value == "":
        if required:
            raise CheckoutError(f"Missing required parameter: {param}.", param, "parameter_missing")
        return None
    if not isinstance(value, str):
        raise CheckoutError(f"{param} must be a string.", param)
    value = value.strip()
    if len(value) > max_length:
        raise CheckoutError(f"{param} must be at most {max_length} characters.", param)
    if required and not value:
        raise CheckoutError(f"Missing required parameter: {param}.", param, "parameter_missing")
    return value or None


def validate_url(value: Any, param: str, *, required: bool, livemode: bool) -> str | None:
    """An absolute http(s) URL (https only in live mode: the shopper's session id travels in it)."""
    url = _text(value, param, max_length=2000, required=required)
    if url is None:
        return None
    parts = urlsplit(url)
    schemes = ("https",) if livemode else ("http", "https")
    if parts.scheme not in schemes or not parts.netloc or any(c.isspace() for c in url):
        raise CheckoutError(f"{param} must be an absolute {' or '.join(schemes)} URL.", param, "url_invalid")
    return url


def parse_line_items(raw: Any, currency: str) -> list[LineItem]:
    """Line items from a list of {name, quantity, unit_amount} (errors name e.g. line_items[1][quantity])."""
    if isinstance(raw, dict):
        # Form encoding (line_items[0][name]=...) arrives as a dict keyed by index.
        try:
            raw = [raw[key] for key in sorted(raw, key=int)]
        except (TypeError, ValueError):
            raise CheckoutError("line_items must be a list.", "line_items") from None
    if not isinstance(raw, list) or not raw:
        raise CheckoutError("line_items must be a non-empty list.", "line_items")
    if len(raw) > MAX_LINE_ITEMS:
        raise CheckoutError(f"At most {MAX_LINE_ITEMS} line items are allowed.", "line_items")
    items = []
    for index, entry in enumerate(raw):
        prefix = f"line_items[{index}]"
        if not isinstance(entry, dict):
            raise CheckoutError(f"{prefix} must be an object.", prefix)
        unknown = set(entry) - {"name", "quantity", "unit_amount"}
        if unknown:
            name = min(unknown)
            raise CheckoutError(f"Unknown parameter: {prefix}[{name}].", f"{prefix}[{name}]", "parameter_unknown")
        name = _text(entry.get("name"), f"{prefix}[name]", max_length=200, required=True)
        quantity = _integer(entry.get("quantity", 1), f"{prefix}[quantity]", minimum=1, maximum=MAX_QUANTITY)
        if entry.get("unit_amount") is None:
            raise CheckoutError(f"Missing required parameter: {prefix}[unit_amount].", f"{prefix}[unit_amount]",
                                "parameter_missing")
        unit_amount = _integer(entry["unit_amount"], f"{prefix}[unit_amount]", minimum=0, maximum=MAX_AMOUNT)
        items.append(LineItem(name, quantity, unit_amount))
    return items


def create_session(
    session: Session, scope: Scope, *, currency: Any, amount: Any = None, line_items: Any = None,
    description: Any = None, split: Any = None, success_url: Any, cancel_url: Any = None,
    customer_email: Any = None, client_reference_id: Any = None, metadata: Any = None,
    expires_at: Any = None, now: datetime | None = None,
) -> CheckoutSession:
    """Validate the order and add an open CheckoutSession; raises CheckoutError naming the parameter."""
    now = now or utcnow()
    if currency is None or currency == "":
        raise CheckoutError("Missing required parameter: currency.", "currency", "parameter_missing")
    try:
        currency = normalize_currency(currency)
    except MoneyError:
        raise CheckoutError(f"Unsupported currency: {currency!r}.", "currency", "currency_invalid") from None

    if amount is None and line_items is None:
        raise CheckoutError("Missing required parameter: amount (or line_items).", "amount", "parameter_missing")
    if amount is not None and line_items is not None:
        raise CheckoutError("Give either amount or line_items, not both.", "amount")
    items_json = None
    if line_items is not None:
        items = parse_line_items(line_items, currency)
        total = sum(item.amount for item in items)
        items_json = [{"name": i.name, "quantity": i.quantity, "unit_amount": i.unit_amount, "amount": i.amount}
                      for i in items]
        if total <= 0:
            raise CheckoutError("The line items must add up to more than zero.", "line_items", "amount_too_small")
        if total > MAX_AMOUNT:
            raise CheckoutError("The line items add up to more than the largest amount allowed.", "line_items",
                                "amount_too_large")
    else:
        total = _integer(amount, "amount", minimum=1, maximum=MAX_AMOUNT)
    # The exponent is checked here so that an unsupported currency can never reach the page's formatter.
    exponent(currency)

    if split is not None and not isinstance(split, list):
        raise CheckoutError("split must be a list of {seller, amount, fee}.", "split")
    if split is not None and sum(_integer(part.get("amount") if isinstance(part, dict) else None,
                                          f"split[{i}][amount]", minimum=1, maximum=MAX_AMOUNT)
                                 for i, part in enumerate(split)) != total:
        raise CheckoutError("The split amounts must add up to the session's total.", "split", "split_mismatch")

    email = _text(customer_email, "customer_email", max_length=320)
    if email is not None and not _EMAIL.match(email):
        raise CheckoutError("customer_email is not a valid email address.", "customer_email", "email_invalid")

    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict) or len(metadata) > MAX_METADATA_KEYS or not all(
            isinstance(k, str) and len(k) <= 40 and isinstance(v, str) and len(v) <= 500
            for k, v in metadata.items()):
        raise CheckoutError(f"metadata must be at most {MAX_METADATA_KEYS} string keys (40 characters) with "
                            "string values (500 characters).", "metadata")

    if expires_at is None:
        expires = now + DEFAULT_EXPIRY
    else:
        stamp = _integer(expires_at, "expires_at", minimum=0, maximum=MAX_EXPIRES_AT)
        expires = datetime.fromtimestamp(stamp, tz=now.tzinfo)
        if not now + MIN_EXPIRY - timedelta(seconds=1) <= expires <= now + MAX_EXPIRY + timedelta(seconds=1):
            raise CheckoutError("expires_at must be between 30 minutes and 24 hours from now.", "expires_at")

    row = scope.new(
        CheckoutSession,
        id=new_session_id(),
        status=SessionStatus.OPEN,
        currency=currency,
        amount_total=total,
        line_items=items_json,
        description=_text(description, "description", max_length=500),
        split=split,
        success_url=validate_url(success_url, "success_url", required=True, livemode=scope.livemode),
        cancel_url=validate_url(cancel_url, "cancel_url", required=False, livemode=scope.livemode),
        customer_email=email,
        client_reference_id=_text(client_reference_id, "client_reference_id", max_length=200),
        metadata_=metadata,
        attempt_number=1,
        expires_at=expires,
        created_at=now,
    )
    session.add(row)
    session.flush()
    return row


def _stamp(value: datetime | None) -> int | None:
    return int(value.timestamp()) if value else None


def session_payload(cs: CheckoutSession, page_url: str | None = None) -> dict:
    """The public JSON shape of a checkout session (API responses and event data)."""
    return {
        "id": cs.id,
        "object": "checkout.session",
        "livemode": cs.livemode,
        "status": cs.status,
        "payment_status": "paid" if cs.status == SessionStatus.COMPLETE else "unpaid",
        "url": page_url if cs.status == SessionStatus.OPEN else None,
        "amount_total": cs.amount_total,
        "currency": cs.currency,
        "line_items": cs.line_items,
        "description": cs.description,
        "split": cs.split,
        "success_url": cs.success_url,
        "cancel_url": cs.cancel_url,
        "customer_email": cs.customer_email,
        "client_reference_id": cs.client_reference_id,
        "metadata": cs.metadata_,
        "payment": cs.payment_id,
        "attempt_number": cs.attempt_number,
        "expires_at": _stamp(cs.expires_at),
        "created": _stamp(cs.created_at),
        "completed_at": _stamp(cs.completed_at),
        "expired_at": _stamp(cs.expired_at),
    }


def success_redirect_url(cs: CheckoutSession) -> str:
    """success_url with ``session_id=<id>`` added to its query string."""
    parts = urlsplit(cs.success_url)
    query = parse_qsl(parts.query, keep_blank_values=True) + [("session_id", cs.id)]
    return urlunsplit(parts._replace(query=urlencode(query)))


def get_session(session: Session, scope: Scope, session_id: str, *, for_update: bool = False) -> CheckoutSession | None:
    """A merchant's session by id (None for another merchant's or mode's)."""
    return scope.get(session, CheckoutSession, session_id, for_update=for_update)


def get_public(session: Session, session_id: str, *, for_update: bool = False) -> CheckoutSession | None:
    """A session by its unguessable id alone: the hosted page's only credential."""
    statement = select(CheckoutSession).where(CheckoutSession.id == session_id)
    if for_update:
        statement = statement.with_for_update()
    return session.scalars(statement).one_or_none()


def scope_of(cs: CheckoutSession) -> Scope:
    return Scope(cs.merchant_id, cs.livemode)


def list_sessions(session: Session, scope: Scope, *, limit: int = 10, starting_after: str | None = None,
                  status: str | None = None, client_reference_id: str | None = None,
                  payment_id: str | None = None) -> tuple[list[CheckoutSession], bool]:
    """Newest first (ids sort by creation); returns the page and whether more follow."""
    criteria = []
    if starting_after:
        criteria.append(CheckoutSession.id < starting_after)
    if status:
        criteria.append(CheckoutSession.status == status)
    if client_reference_id:
        criteria.append(CheckoutSession.client_reference_id == client_reference_id)
    if payment_id:
        criteria.append(CheckoutSession.payment_id == payment_id)
    rows = list(session.scalars(scope.select(CheckoutSession, *criteria)
                                .order_by(CheckoutSession.id.desc()).limit(limit + 1)))
    return rows[:limit], len(rows) > limit


def mark_complete(session: Session, cs: CheckoutSession, now: datetime | None = None,
                  request_id: str | None = None) -> bool:
    """Open -> complete with its event; False (and nothing written) when it already is complete.

    The caller holds the session row lock and has checked that the payment is authorized.
    """
    if cs.status == SessionStatus.COMPLETE:
        return False
    if cs.status != SessionStatus.OPEN:
        raise SessionStateError(f"A session that is {cs.status} cannot complete.", None, "session_not_open")
    cs.status = SessionStatus.COMPLETE
    cs.completed_at = now or utcnow()
    session.flush()
    record_event(session, scope_of(cs), EVENT_COMPLETED, "checkout.session", cs.id, session_payload(cs),
                 request_id=request_id)
    return True


def mark_expired(session: Session, cs: CheckoutSession, now: datetime | None = None,
                 request_id: str | None = None) -> bool:
    """Open -> expired with its event; False when it already is expired. The caller holds the row lock."""
    if cs.status == SessionStatus.EXPIRED:
        return False
    if cs.status != SessionStatus.OPEN:
        raise SessionStateError(f"A session that is {cs.status} cannot expire.", None, "session_not_open")
    cs.status = SessionStatus.EXPIRED
    cs.expired_at = now or utcnow()
    session.flush()
    record_event(session, scope_of(cs), EVENT_EXPIRED, "checkout.session", cs.id, session_payload(cs),
                 request_id=request_id)
    return True


def seed_demo_session(session: Session, merchant, web_url: str) -> list[str]:
    """SEED_STEPS entry: an open test-mode session of the demo merchant to try the page (reused while open)."""
    scope = Scope(merchant.id, False)
    cs = session.scalars(scope.select(CheckoutSession, CheckoutSession.status == SessionStatus.OPEN,
                                      CheckoutSession.client_reference_id == "demo",
                                      CheckoutSession.expires_at > utcnow() + MIN_EXPIRY)).first()
    if cs is None:
        cs = create_session(
            session, scope, currency="EUR",
            line_items=[{"name": "Kassa T-shirt", "quantity": 1, "unit_amount": 2500},
                        {"name": "Sticker pack", "quantity": 2, "unit_amount": 350}],
            success_url="https://example.com/thanks", cancel_url="https://example.com/cart",
            client_reference_id="demo",
        )
    return [f"Demo checkout (test mode, card 4242 4242 4242 4242): {web_url}/c/{cs.id}"]
