"""Shared by the dashboard's payments, refunds, Home, export and logs pages: time zone, formatting, paging."""
import re
from datetime import datetime
from zoneinfo import ZoneInfo

from flask import abort, g, render_template, request

from app.dashboard import bp
from app.dashboard.helpers import user_locale
from app.extensions import db
from app.money import format_money
from app.reporting.exports import payment_status_label
from app.reporting.listing import DEFAULT_PAGE_SIZE, PAGE_SIZES
from app.reporting.rollups import merchant_zone

# How a payment's status reads in lists and on its page (Stripe's words where they fit).
STATUS_LABELS = {
    "requires_payment_method": "Incomplete",
    "requires_confirmation": "Incomplete",
    "requires_action": "Waiting for 3-D Secure",
    "processing": "Processing",
    "requires_capture": "Uncaptured",
    "succeeded": "Succeeded",
    "canceled": "Canceled",
    "refunded": "Refunded",
    "partially_refunded": "Partially refunded",
    "failed": "Failed",
}
# Filter choices (values are the list's status filter values).
STATUS_CHOICES = [
    ("succeeded", "Succeeded"), ("refunded", "Refunded (fully or partly)"), ("requires_capture", "Uncaptured"),
    ("processing", "Processing"), ("requires_action", "Waiting for 3-D Secure"),
    ("requires_payment_method", "Incomplete or failed"), ("requires_confirmation", "Awaiting confirmation"),
    ("canceled", "Canceled"),
]
REFUND_STATUS_LABELS = {"pending": "Pending", "succeeded": "Succeeded", "failed": "Failed"}
BADGE_CLASSES = {
    "succeeded": "ok", "refunded": "neutral", "partially_refunded": "neutral", "requires_capture": "warn",
    "failed": "bad", "canceled": "neutral", "processing": "info", "requires_action": "info",
    "requires_payment_method": "neutral", "requires_confirmation": "neutral", "pending": "info",
}


def render(template: str, **context) -> str:
    """Render, then end the read-only transaction.

    In this order on purpose: a commit expires every loaded row, and a template reading an expired row
    reloads it with one query per row (25 extra queries for a page of payments).
    """
    html = render_template(template, **context)
    db.session.commit()
    return html


_ID = re.compile(r"^[A-Za-z0-9_]{1,100}$")


def row_or_404(model, row_id: str):
    """A row of the current book by the id in the URL; 404 for anything else (another merchant's or
    mode's row, no such row, or text that cannot be an id, such as a NUL byte PostgreSQL would refuse)."""
    row = g.scope.get(db.session, model, row_id) if _ID.match(row_id or "") else None
    if row is None:
        abort(404)
    return row


def sellers_by_id(seller_ids) -> dict:
    """The current book's sellers with these ids (pages show sellers by name, never by id alone)."""
    from app.payments.models import Seller

    ids = list(set(seller_ids))
    return {s.id: s for s in db.session.scalars(g.scope.select(Seller, Seller.id.in_(ids)))} if ids else {}


def zone() -> ZoneInfo:
    """The current merchant's time zone (dates in filters and on screen are its local dates)."""
    return merchant_zone(g.merchant.timezone if g.get("merchant") else None)


def page_size() -> int:
    try:
        size = int(request.args.get("limit", DEFAULT_PAGE_SIZE))
    except ValueError:
        return DEFAULT_PAGE_SIZE
    return size if size in PAGE_SIZES else DEFAULT_PAGE_SIZE


def payment_status(payment) -> str:
    """The status key a person reads: refunds and failures are told apart from the raw state."""
    return payment_status_label(payment)


class Formatter:
    """Formatting helpers for templates, as ``fmt`` (amounts always formatted for their currency)."""

    @staticmethod
    def money(amount: int | None, currency: str) -> str:
        """In the person's locale, as they also type amounts (app.dashboard.helpers.user_locale)."""
        return format_money(int(amount or 0), currency, user_locale())

    @staticmethod
    def local(moment: datetime | None) -> datetime | None:
        return moment.astimezone(zone()) if moment else None

    def time(self, moment: datetime | None) -> str:
        """"Mar 3, 2026, 14:05" in the merchant's zone."""
        local = self.local(moment)
        return f"{local:%b} {local.day}, {local:%Y, %H:%M}" if local else "—"

    def seconds(self, moment: datetime | None) -> str:
        local = self.local(moment)
        return f"{local:%Y-%m-%d %H:%M:%S}" if local else "—"

    def iso(self, moment: datetime | None) -> str:
        local = self.local(moment)
        return local.isoformat(timespec="seconds") if local else ""

    @staticmethod
    def status(payment) -> str:
        return payment_status(payment)

    @staticmethod
    def label(status: str) -> str:
        return STATUS_LABELS.get(status) or REFUND_STATUS_LABELS.get(status) or status.replace("_", " ").capitalize()

    @staticmethod
    def badge(status: str) -> str:
        return BADGE_CLASSES.get(status, "neutral")

    @staticmethod
    def percent(value: float | None) -> str:
        return "—" if value is None else f"{value * 100:.1f}%"

    @staticmethod
    def zone_name() -> str:
        return zone().key


@bp.context_processor
def _reporting_globals() -> dict:
    return {"fmt": Formatter(), "STATUS_CHOICES": STATUS_CHOICES}
