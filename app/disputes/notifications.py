"""Mail to a merchant's owners about its disputes (the mail outbox, app/accounts/mail.py): when one opens, and
REMINDER_BEFORE its deadline while nothing was submitted. No Flask; never commits.
"""
import logging
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.accounts.mail import queue_mail
from app.accounts.models import Membership, User
from app.disputes.models import AWAITING_RESPONSE, INQUIRY_STATUSES, Dispute
from app.money import format_money

log = logging.getLogger(__name__)

# Two days before the deadline: time enough to gather receipts and tracking, late enough not to nag at once
# (a dispute opens with seven days to answer, the sandbox's and the card networks' usual minimum).
REMINDER_BEFORE = timedelta(hours=48)
# Reminders one sweep sends at most: the rest wait for the next run (a minute later).
REMINDER_BATCH = 200
NOTIFY_ROLES = ("owner",)


def _owners(session: Session, merchant_id: str) -> list[str]:
    return list(session.scalars(
        select(User.email).join(Membership, Membership.user_id == User.id)
        .where(Membership.merchant_id == merchant_id, Membership.role.in_(NOTIFY_ROLES)).order_by(User.email)))


def dispute_path(dispute: Dispute) -> str:
    """The dispute's page in the dashboard (app/dashboard/disputes_views.py)."""
    return f"/dashboard/{dispute.merchant_id}/{'live' if dispute.livemode else 'test'}/disputes/{dispute.id}"


def _what(dispute: Dispute) -> str:
    kind = "an inquiry" if dispute.status in INQUIRY_STATUSES else "a dispute"
    mode = "" if dispute.livemode else " (test mode)"
    return f"{kind} about a payment of {format_money(dispute.amount, dispute.currency)}{mode}"


def _deadline(dispute: Dispute) -> str:
    return f"{dispute.evidence_due_by:%Y-%m-%d %H:%M} UTC" if dispute.evidence_due_by else "the processor's deadline"


def notify_opened(session: Session, dispute: Dispute, *, base_url: str = "", now: datetime) -> None:
    """Tell the owners that a customer's bank opened a dispute or an inquiry (once per dispute)."""
    if dispute.opened_notified_at is not None:
        return
    dispute.opened_notified_at = now
    reason = (dispute.reason or "general").replace("_", " ")
    if dispute.status in AWAITING_RESPONSE:
        ask = (f"Respond by {_deadline(dispute)}: submit evidence that the payment was genuine, or accept the "
               "dispute, from its page:")
    else:
        ask = "Its page shows where it stands:"
    body = (f"A customer's bank opened {_what(dispute)}, reason: {reason}.\n\n{ask}\n\n    "
            f"{base_url.rstrip('/')}{dispute_path(dispute)}\n\n"
            "Until it is decided, the disputed amount is held back from the seller's balance (an inquiry holds "
            "nothing back).\n")
    for address in _owners(session, dispute.merchant_id):
        queue_mail(session, kind="dispute_opened", to=address, merchant_id=dispute.merchant_id, body=body,
                   subject=f"New {'inquiry' if dispute.status in INQUIRY_STATUSES else 'dispute'}: "
                           f"{format_money(dispute.amount, dispute.currency)}, respond by {_deadline(dispute)}")


def send_due_reminders(session: Session, *, now: datetime, base_url: str = "", batch: int = REMINDER_BATCH) -> list[str]:
    """Remind the owners of disputes due within REMINDER_BEFORE that no evidence was submitted for, once each.

    Across merchants (a sweep); each reminder goes to its dispute's merchant only. Returns the dispute ids.
    """
    rows = session.scalars(
        select(Dispute).where(Dispute.status.in_(AWAITING_RESPONSE), Dispute.evidence_due_by.is_not(None),
                              Dispute.evidence_due_by > now, Dispute.evidence_due_by <= now + REMINDER_BEFORE,
                              Dispute.reminded_at.is_(None), Dispute.submitted_at.is_(None),
                              Dispute.pending_action.is_(None))
        .order_by(Dispute.evidence_due_by).limit(batch).with_for_update(skip_locked=True)).all()
    for dispute in rows:
        dispute.reminded_at = now
        hours = max(int((dispute.evidence_due_by - now).total_seconds() // 3600), 1)
        body = (f"No evidence has been submitted yet for {_what(dispute)}. The deadline is {_deadline(dispute)}, "
                f"in about {hours} hours; after it the dispute is lost.\n\nSubmit evidence or accept it here:\n\n    "
                f"{base_url.rstrip('/')}{dispute_path(dispute)}\n")
        for address in _owners(session, dispute.merchant_id):
            queue_mail(session, kind="dispute_reminder", to=address, merchant_id=dispute.merchant_id, body=body,
                       subject=f"Reminder: respond to the dispute of {format_money(dispute.amount, dispute.currency)} "
                               f"by {_deadline(dispute)}")
    session.flush()
    if rows:
        log.info("dispute reminders sent for %d disputes", len(rows))
    return [row.id for row in rows]
