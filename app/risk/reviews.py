"""Reviews (Stripe's ``review``): payments held by a ``review`` rule, authorized and not captured until decided.

Who decides: ``owner`` ``platform`` (a platform rule opened it, or the merchant leaves review to the
platform: ``merchants.risk_reviews_by_platform``) or ``merchant``. Platform admins may decide any review;
a merchant only its own (``acting_as="merchant"``), and its capture of a payment whose platform-owned review
is open is refused (409 ``payment_in_review``), and so is its cancel: one guard, ``refuse_during_platform_review``,
used by ``check_capture`` and ``check_cancel``.

Decisions (``approve``, ``reject``) lock the review row and require it open: a concurrent approve and reject
decide once (the second gets 409 ``review_closed``). Approve captures (or leaves the payment for the
merchant's manual capture); reject voids the authorization (or refunds what was captured). Each decision
carries a note, is audited and writes ``review.closed``. Reviews left open are voided by the sweep
(``expire_due_reviews``) before the authorization would expire, with an alert (an error log line and the
audit entry); a payment canceled or refunded otherwise closes its review (``close_for_payment``).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.accounts.audit import audit
from app.events import record_event
from app.ids import new_id
from app.models_base import utcnow
from app.risk.errors import NotReviewOwner, PaymentInReview, ReviewDecided, RiskInvalid, RiskNotFound
from app.risk.evaluate import ip_country
from app.risk.models import Assessment, Review
from app.scoping import Scope

log = logging.getLogger(__name__)

# A review is voided this long before its authorization would expire (at least half the expiry earlier).
EXPIRY_MARGIN = timedelta(days=1)
NOTE_MAX = 2000
DECISIONS = ("approve", "reject")


def _unix(value: datetime | None) -> int | None:
    return int(value.timestamp()) if value else None


def review_object(review: Review) -> dict[str, Any]:
    """A review as the API shows it (Stripe's Reviews API shape, plus Kassa's owner and expiry)."""
    return {
        "id": review.id,
        "object": "review",
        "livemode": review.livemode,
        "created": _unix(review.created_at),
        "payment": review.payment_id,
        "payment_intent": review.payment_id,
        "charge": None,
        "billing_zip": None,
        "open": review.status == "open",
        "opened_reason": review.opened_reason,
        "closed_reason": review.closed_reason,
        "reason": review.closed_reason or review.opened_reason,
        "ip_address": review.ip_address,
        "ip_address_location": {"city": None, "country": review.ip_country, "latitude": None, "longitude": None,
                                "region": None},
        "session": {"browser": None, "device": None, "platform": None, "version": None},
        "owner": review.owner,
        "rule": review.rule_id,
        "expires_at": _unix(review.expires_at),
        "closed_at": _unix(review.closed_at),
    }


def _who(actor: str | None) -> dict[str, str | None]:
    """Audit fields of an actor: a user id (``usr_...``), or a label (an API key, the system)."""
    if actor and actor.startswith("usr_"):
        return {"actor_user_id": actor, "actor_label": None}
    return {"actor_user_id": None, "actor_label": actor or "system"}


def _note(actor: str | None, text: Any) -> dict[str, Any]:
    if not isinstance(text, str) or not text.strip():
        raise RiskInvalid("A note is required: say why.", param="note")
    if len(text) > NOTE_MAX:
        raise RiskInvalid(f"A note is at most {NOTE_MAX} characters.", param="note")
    return {"at": utcnow().isoformat(), "by": actor or "system", "text": text.strip()}


def open_review(session: Session, payment, *, owner: str, assessment_id: str | None, rule_id: str | None,
                expires_in: timedelta, opened_reason: str = "rule") -> Review:
    """Open the review of a held payment (once) and write ``review.opened``."""
    scope = Scope(payment.merchant_id, payment.livemode)
    if payment.review_id:
        existing = scope.get(session, Review, payment.review_id)
        if existing is not None:
            return existing
    now = utcnow()
    margin = min(EXPIRY_MARGIN, expires_in / 2)
    review = scope.new(Review, id=new_id("prv"), payment_id=payment.id, assessment_id=assessment_id, status="open",
                       owner=owner, opened_reason=opened_reason, rule_id=rule_id, ip_address=payment.customer_ip,
                       ip_country=ip_country(payment.customer_ip), notes=[], expires_at=now + expires_in - margin,
                       created_at=now)
    session.add(review)
    payment.review_id = review.id
    session.flush()
    record_event(session, scope, "review.opened", "review", review.id, review_object(review))
    return review


def get_review(session: Session, scope: Scope, review_id: Any, *, for_update: bool = False) -> Review:
    row = scope.get(session, Review, review_id, for_update=for_update) if isinstance(review_id, str) else None
    if row is None:
        raise RiskNotFound(f"No such review: '{review_id}'.", param="id")
    return row


# The review lists' age filter ("open for more than"), in the console's queue and the dashboard's Reviews page.
REVIEW_AGES = {"1h": timedelta(hours=1), "24h": timedelta(hours=24), "3d": timedelta(days=3)}


def list_reviews(session: Session, scope: Scope | None, *, status: str | None = "open", owner: str | None = None,
                 merchant_id: str | None = None, livemode: bool | None = None, level: str | None = None,
                 rule_id: str | None = None, older_than: timedelta | None = None, limit: int = 50,
                 starting_after: str | None = None, newest_first: bool = False) -> list[Review]:
    """Reviews of one book (``scope``) or, for platform admins (``scope=None``), across merchants; oldest first
    by default (the queue's order), filtered by status, owner, merchant, risk level, rule and age."""
    statement = scope.select(Review) if scope is not None else select(Review)
    if scope is None and merchant_id:
        statement = statement.where(Review.merchant_id == merchant_id)
    if scope is None and livemode is not None:
        statement = statement.where(Review.livemode == livemode)
    if status:
        statement = statement.where(Review.status == status)
    if owner:
        statement = statement.where(Review.owner == owner)
    if rule_id:
        statement = statement.where(Review.rule_id == rule_id)
    if older_than is not None:
        statement = statement.where(Review.created_at <= utcnow() - older_than)
    if level:
        statement = statement.where(Review.assessment_id.in_(
            select(Assessment.id).where(Assessment.merchant_id == Review.merchant_id, Assessment.level == level)))
    if starting_after:
        statement = statement.where(Review.id < starting_after if newest_first else Review.id > starting_after)
    order = Review.id.desc() if newest_first else Review.id.asc()
    return session.scalars(statement.order_by(order).limit(limit)).all()


def claim_review(session: Session, scope: Scope, review_id: str, *, user_id: str, assign_to: str | None = None,
                 acting_as: str = "platform") -> Review:
    """Claim a review (or assign it to someone): who works it, shown in the queue."""
    review = get_review(session, scope, review_id, for_update=True)
    _check_owner(review, acting_as)
    if review.status != "open":
        raise ReviewDecided("This review is closed.")
    review.claimed_by = assign_to or user_id
    review.claimed_at = utcnow()
    audit(session, "risk.review.claimed", merchant_id=review.merchant_id, livemode=review.livemode,
          **_who(user_id), target=review.id, details={"claimed_by": review.claimed_by, "as": acting_as})
    session.flush()
    return review


def add_note(session: Session, scope: Scope, review_id: str, *, user_id: str | None, note: str,
             acting_as: str = "platform") -> Review:
    review = get_review(session, scope, review_id, for_update=True)
    _check_owner(review, acting_as)
    review.notes = [*review.notes, _note(user_id, note)]
    session.flush()
    return review


def _check_owner(review: Review, acting_as: str) -> None:
    if acting_as not in ("platform", "merchant"):
        raise ValueError(acting_as)
    if acting_as == "merchant" and review.owner != "merchant":
        raise NotReviewOwner("The platform reviews this payment: only a platform admin can decide it.")


def _close(session: Session, review: Review, reason: str, *, actor: str | None, note: dict | None,
           request_id: str | None = None) -> None:
    review.status = "closed"
    review.closed_reason = reason
    review.closed_at = utcnow()
    review.decided_by = actor
    if note is not None:
        review.notes = [*review.notes, note]
    session.flush()
    record_event(session, Scope(review.merchant_id, review.livemode), "review.closed", "review", review.id,
                 review_object(review), request_id=request_id)


@dataclass
class Decided:
    review: Review
    payment: Any


def decide(session: Session, scope: Scope, review_id: str, decision: str, *, actor: str | None, note: Any,
           deps, acting_as: str = "platform", capture: bool = True, as_fraud: bool = False,
           request_id: str | None = None, ip: str | None = None) -> Decided:
    """Approve or reject an open review, once; flushes, never commits (the caller's transaction)."""
    from app.payments import service
    from app.payments.models import PaymentStatus

    if decision not in DECISIONS:
        raise RiskInvalid("decision must be approve or reject.", param="decision")
    entry = _note(actor, note)
    payment = service.get_payment(session, scope, _payment_id_of(session, scope, review_id), for_update=True)
    review = get_review(session, scope, review_id, for_update=True)  # payment first: the payments lock order
    _check_owner(review, acting_as)
    if review.status != "open":
        raise ReviewDecided(f"This review was closed already ({review.closed_reason}).")
    if decision == "approve":
        _close(session, review, "approved", actor=actor, note=entry, request_id=request_id)
        _outcome_approved(payment)
        if capture and payment.status == PaymentStatus.REQUIRES_CAPTURE:
            service.start_capture(session, scope, payment.id, deps, request_id=request_id, reviewed=True)
    else:
        reason = "refunded_as_fraud" if as_fraud else "refunded"
        _close(session, review, reason, actor=actor, note=entry, request_id=request_id)
        if payment.status == PaymentStatus.REQUIRES_CAPTURE:
            service.cancel_payment(session, scope, payment.id, deps, reason="fraudulent", request_id=request_id,
                                   payment=payment, closing_review=False, by_merchant=False)
        elif payment.status == PaymentStatus.SUCCEEDED and payment.amount_received > payment.amount_refunded:
            service.create_refund(session, scope, {"payment": payment.id, "reason": "fraudulent"}, deps,
                                  request_id=request_id)
    audit(session, f"risk.review.{'approved' if decision == 'approve' else 'rejected'}",
          merchant_id=review.merchant_id, livemode=review.livemode, **_who(actor), target=review.id, ip=ip,
          request_id=request_id, details={"payment": payment.id, "note": entry["text"], "as": acting_as,
                                          "closed_reason": review.closed_reason, "capture": capture})
    session.flush()
    return Decided(review, payment)


def _payment_id_of(session: Session, scope: Scope, review_id: Any) -> str:
    payment_id = session.scalar(scope.select(Review, Review.id == review_id).with_only_columns(Review.payment_id)) \
        if isinstance(review_id, str) else None
    if payment_id is None:
        raise RiskNotFound(f"No such review: '{review_id}'.", param="id")
    return payment_id


def bulk_decide(session: Session, items: list[tuple[Scope, str]], decision: str, *, actor: str | None, note: str,
                deps, acting_as: str = "platform", capture: bool = True, as_fraud: bool = False) -> dict[str, str]:
    """Decide several reviews, each in its own savepoint: review id -> "ok" or why not."""
    results = {}
    for scope, review_id in items:
        try:
            with session.begin_nested():
                decide(session, scope, review_id, decision, actor=actor, note=note, deps=deps, acting_as=acting_as,
                       capture=capture, as_fraud=as_fraud)
            results[review_id] = "ok"
        except (RiskInvalid, RiskNotFound, ReviewDecided, NotReviewOwner) as error:
            results[review_id] = error.message
        except Exception as error:  # noqa: BLE001 - one payment's refusal does not stop the others
            results[review_id] = getattr(error, "message", str(error))
    return results


# What the merchant is told when its own action meets a platform-owned open review (409 ``payment_in_review``).
_IN_REVIEW = {
    "capture": "This payment is held for review by the platform: it can be captured once the review is approved.",
    "cancel": "This payment is held for review by the platform: it cannot be canceled while the review is open "
              "(the platform's rejection voids the authorization).",
}


def refuse_during_platform_review(session: Session, payment, action: str, *, lock: bool = True) -> Review | None:
    """The one guard of a merchant's own ``capture`` or ``cancel`` of a payment: PaymentInReview (409
    ``payment_in_review``) while a platform-owned review of it is open; otherwise its open merchant-owned review
    (the caller's action decides it) or None. ``lock=False`` only to tell a screen beforehand (nothing decided)."""
    if not payment.review_id:
        return None
    review = Scope(payment.merchant_id, payment.livemode).get(session, Review, payment.review_id, for_update=lock)
    if review is None or review.status != "open":
        return None
    if review.owner == "platform":
        raise PaymentInReview(_IN_REVIEW[action])
    return review


def check_capture(session: Session, payment) -> None:
    """Before a merchant's capture: refused while a platform-owned review is open; a merchant-owned open review
    is approved by the capture itself (the merchant decided)."""
    review = refuse_during_platform_review(session, payment, "capture")
    if review is None:
        return
    _close(session, review, "approved", actor=None, note=_note(None, "Captured by the merchant."))
    _outcome_approved(payment)


def check_cancel(session: Session, payment) -> None:
    """Before a merchant's cancel: refused while a platform-owned review is open; a merchant-owned open review
    closes ``canceled`` (the merchant decided)."""
    review = refuse_during_platform_review(session, payment, "cancel")
    if review is not None:
        _close(session, review, "canceled", actor=None, note=None)


def _outcome_approved(payment) -> None:
    """The payment's risk outcome once its review is approved, however it was (a decision or the merchant's capture)."""
    if payment.risk_outcome:
        payment.risk_outcome = {**payment.risk_outcome, "type": "authorized", "seller_message": "Approved after review."}


def close_for_payment(session: Session, payment, reason: str) -> None:
    """The payment was canceled, refunded or disputed otherwise: its open review closes with that reason."""
    if not payment.review_id:
        return
    review = Scope(payment.merchant_id, payment.livemode).get(session, Review, payment.review_id, for_update=True)
    if review is not None and review.status == "open":
        _close(session, review, reason, actor=None, note=None)


def expire_due_reviews(session: Session, deps, *, now: datetime | None = None, batch: int = 100) -> list[str]:
    """Void the payments of reviews still open at their ``expires_at`` (before the authorization would expire);
    each closes ``timed_out`` with an alert. Skips payments a decision or another sweep holds."""
    from app.payments import service
    from app.payments.models import Payment, PaymentStatus

    now = now or deps.now()
    # Locks in the decisions' order (payment, then review: ``decide``): the due reviews are read unlocked, then
    # each payment is locked (skipped when a decision or another sweep holds it: the next sweep tries again), then
    # its review, read again under the lock. Locking the review first deadlocked against a decision under way.
    due = session.execute(select(Review.merchant_id, Review.livemode, Review.id, Review.payment_id)
                          .where(Review.status == "open", Review.expires_at <= now)
                          .order_by(Review.expires_at).limit(batch)).all()
    expired = []
    for row in due:
        scope = Scope(row.merchant_id, row.livemode)
        try:
            with session.begin_nested():
                payment = session.scalars(scope.select(Payment, Payment.id == row.payment_id)
                                          .with_for_update(skip_locked=True)).one_or_none()
                if payment is None:
                    continue
                review = scope.get(session, Review, row.id, for_update=True)
                if review is None or review.status != "open" or review.expires_at > now:
                    continue
                _close(session, review, "timed_out", actor=None,
                       note=_note(None, "Nobody decided before the authorization would expire: voided."))
                if payment.status == PaymentStatus.REQUIRES_CAPTURE:
                    service.cancel_payment(session, scope, payment.id, deps, reason="expired", payment=payment,
                                           closing_review=False, by_merchant=False)
                audit(session, "risk.review.timed_out", merchant_id=review.merchant_id, livemode=review.livemode,
                      actor_label="system", target=review.id, details={"payment": payment.id})
            log.error("ALERT risk review %s of payment %s (merchant %s) timed out undecided: the authorization "
                      "was voided", review.id, review.payment_id, review.merchant_id)
            expired.append(review.id)
        except Exception:  # noqa: BLE001 - the next sweep tries again
            log.exception("could not time out review %s", row.id)
    return expired


def review_history(session: Session, scope: Scope, review: Review, *, days: int = 90, limit: int = 20) -> dict:
    """The card's and the email's recent history in the merchant's own book: payments, declines, disputes."""
    from app.disputes.models import Dispute
    from app.payments.models import Payment, PaymentAttempt

    payment = scope.get(session, Payment, review.payment_id)
    since = utcnow() - timedelta(days=days)
    history = {}
    for label, column, value in (("card", Payment.card_fingerprint, payment and payment.card_fingerprint),
                                 ("email", Payment.customer_email, payment and payment.customer_email)):
        if not value:
            history[label] = None
            continue
        rows = session.scalars(scope.select(Payment, column == value, Payment.created_at >= since)
                               .order_by(Payment.id.desc()).limit(limit)).all()
        ids = [row.id for row in rows]
        declines = session.scalar(select(func.count()).select_from(PaymentAttempt).where(
            PaymentAttempt.merchant_id == scope.merchant_id, PaymentAttempt.payment_id.in_(ids),
            PaymentAttempt.status.in_(("declined", "failed")))) if ids else 0
        disputes = session.scalar(select(func.count()).select_from(Dispute).where(
            Dispute.merchant_id == scope.merchant_id, Dispute.livemode == scope.livemode,
            Dispute.payment_id.in_(ids))) if ids else 0
        history[label] = {"payments": [{"id": row.id, "amount": row.amount, "currency": row.currency,
                                        "status": row.status, "risk_score": row.risk_score,
                                        "created": _unix(row.created_at)} for row in rows],
                          "declines": declines or 0, "disputes": disputes or 0}
    return history


def set_reviews_by_platform(session: Session, merchant_id: str, value: bool, *, actor: str | None,
                            reason: str | None = None) -> None:
    """The per-merchant setting "the platform keeps review to itself" (a platform admin's action, audited):
    reviews the merchant's own rules open are then the platform's too (already open ones keep their owner)."""
    from app.accounts.models import Merchant

    merchant = session.get(Merchant, merchant_id, with_for_update=True)
    if merchant is None:
        raise RiskNotFound(f"No such merchant: '{merchant_id}'.", param="merchant")
    if merchant.risk_reviews_by_platform != bool(value):
        merchant.risk_reviews_by_platform = bool(value)
        audit(session, "risk.reviews_by_platform." + ("on" if value else "off"), merchant_id=merchant_id,
              **_who(actor), target=merchant_id, details={"reason": reason} if reason else {})
    session.flush()
