"""Risk in the payment flow: every authorization is screened (app/risk) before the PSP is asked.

Every channel (API, checkout, dashboard) confirms through ``service.confirm_payment``, which stages an
authorization attempt; the worker that claims it screens it right before its first send (app/jobs/payments.py):

* the card's facts come from the vault (``Gateway.card_facts``: GET /v1/tokens/<id> at the sandbox), asked with
  no transaction open;
* then, in one transaction (``screen``): the attempt checked to be still this claim's (one read, no lock), the
  risk engine assesses it (its assessment inserted) and the outcome is applied; but for a block, the payment's
  row is not written then: its risk fields go with the PSP's answer (``apply_fields``, in
  ``processing.apply_attempt_result``), and the API shows the assessment's outcome meanwhile (``pending_outcome``):

  - ``block``: the attempt fails with code ``blocked`` and nothing is sent; the payment returns to
    ``requires_payment_method`` (event ``payment.failed``) with ``outcome.type = blocked``;
  - ``review``: the authorization is sent without a sale; once authorized the payment stops at
    ``requires_capture`` with its review open (``hold_for_review``), even with automatic capture;
  - ``request_3ds``: the authorization asks the PSP for a 3-D Secure challenge whatever the card (a matching
    ``request_3ds`` does not stop the other actions: a block among them refuses as above, without a challenge;
    a review or an allow waits for the challenge, after which the whole chain runs again);
  - ``allow``: as before.

  The vault could not be asked for the card's facts (``CardFactsUnavailable``, or any failure of the read):
  the platform's card block lists cannot be checked, and not knowing is not an answer. Unless a rule blocks on
  what is known (email, IP, amount...), the payment is held as for ``review``, in a review the platform owns,
  with ``outcome.reason`` and the assessment's ``reason`` ``card_facts_unavailable``.

A retry of the same attempt reuses its assessment (never assessed or counted twice). The velocity counters and
the screening's transaction: the evaluation records the confirmation in Redis as it reads the counters (one
script; the members are named by the payment, so a screening rolled back and done again by the attempt's next
run counts it once), and a block or a decline is counted only once its transaction commits
(``count_decline_after_commit``): a rolled-back screening leaves no decline for its retry to see. After a 3-D Secure
challenge succeeds, the whole chain (the platform's blocks, then allow -> block -> review) runs again with its
result (``after_challenge``): a block then voids the authorization, a review holds it.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from types import SimpleNamespace
from typing import Any

from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import Session

from app.payments.models import AttemptStatus, CaptureMethod, Payment, PaymentAttempt, PaymentStatus
from app.risk import evaluate
from app.risk.models import Assessment
from app.risk.velocity import Velocity

log = logging.getLogger(__name__)

BLOCKED_MESSAGE = "This payment was blocked by Kassa's risk rules."


@dataclass
class Screened:
    """The claim to send (None: blocked, nothing to send) and the waiters to wake with a snapshot."""

    claim: Any
    notify: list[str]
    snapshot: dict[str, Any] | None = None
    outcome: str = "allow"
    # The payment's risk fields, written with the PSP's answer (``apply_fields``); None for a block (written).
    risk: dict[str, Any] | None = None


def needs_screening(claim) -> bool:
    from app.payments.models import AttemptOperation

    return claim.operation == AttemptOperation.AUTHORIZE and claim.status == AttemptStatus.PROCESSING


def was_screened(claim) -> bool:
    """A retry of an authorization left ``unknown`` (no definite answer): screened before its first send, never
    again (it may be authorized already); its screening's outcome still shapes the request if it is sent again."""
    from app.payments.models import AttemptOperation

    return claim.operation == AttemptOperation.AUTHORIZE and claim.status == AttemptStatus.UNKNOWN


def earlier_screening(session: Session, claim):
    """The claim of an ``unknown`` authorization shaped by its assessment (held for review: no sale; 3-D Secure
    asked), so that a send again after the PSP answered it has none keeps the hold; unchanged without one."""
    earlier = confirmation_assessment(session, claim.merchant_id, claim.livemode, claim.payment_id, claim.id)
    return claim if earlier is None else _adjusted(claim, earlier.outcome)


def _card_summary(payment: Payment, card: dict | None) -> None:
    """What Kassa may keep of the card, known from the vault before the authorization answers."""
    if not card:
        return
    payment.card_brand = payment.card_brand or card.get("brand")
    payment.card_last4 = payment.card_last4 or card.get("last4")
    payment.card_exp_month = payment.card_exp_month or card.get("exp_month")
    payment.card_exp_year = payment.card_exp_year or card.get("exp_year")
    payment.card_fingerprint = payment.card_fingerprint or card.get("fingerprint")


def _adjusted(claim, outcome: str):
    if outcome == "review":
        return replace(claim, capture_method=CaptureMethod.MANUAL)
    if outcome == "request_3ds":
        return replace(claim, three_d_secure=True)
    return claim


def screen(session: Session, claim, card: dict | None, deps, *, card_facts_unavailable: bool = False) -> Screened:
    """Assess a claimed authorization before its first send and apply the outcome; flushes, never commits.

    ``card_facts_unavailable``: the vault could not be asked; unless a rule blocks on what is known, the payment
    is held for a review the platform owns (its card block lists were not checked).

    The transaction of an allowed, held or 3-D Secure outcome only reads and inserts: one statement reads what
    the evaluation needs of the payment and checks that the attempt is still this claim's (no row lock: the
    claim's lease keeps other runners away, and the PSP's idempotency key makes an overlap past it harmless, as
    for the send), then the evaluation and its assessment. Only a block locks the payment (``_block``)."""
    # Lost in a crash, a screening is done again by the next run of the attempt (its lease runs out): nothing
    # was sent and no money moved, so its commit need not wait for the disk (``relaxed_commit``, set by the
    # read itself: one round trip less).
    row = session.execute(_SCREENING_READ, {"attempt_id": claim.id, "merchant_id": claim.merchant_id}).one_or_none()
    if row is None or row.attempt_status != AttemptStatus.PROCESSING or row.tries != claim.tries:
        return Screened(claim, [])  # resolved or overtaken meanwhile: the send path decides as before
    payment = SimpleNamespace(id=row.id, merchant_id=row.merchant_id, livemode=row.livemode, amount=row.amount,
                              currency=row.currency, customer_email=row.customer_email,
                              customer_ip=row.customer_ip)
    # An earlier run of this attempt may have screened it (and crashed before sending): its assessment stands.
    # The first claim of an attempt (tries 1) has no earlier run: each claim increments tries and screens only
    # while it still holds the attempt (checked above), so the look-up is skipped (one round trip less).
    earlier = None if row.tries <= 1 else confirmation_assessment(session, row.merchant_id, row.livemode, row.id,
                                                                  claim.id)
    if earlier is not None:
        if earlier.outcome == "block":  # decided, then overtaken before its block was applied
            return _block(session, claim, card, earlier, deps)
        return Screened(_adjusted(claim, earlier.outcome), [], outcome=earlier.outcome,
                        risk=screened_fields(session, payment, earlier))
    decision = evaluate.assess(session, payment, redis=deps.redis, card=card, attempt_id=claim.id,
                               card_facts_unavailable=card_facts_unavailable)
    assessment = decision.assessment
    if decision.outcome == "block":
        return _block(session, claim, card, assessment, deps)
    # Any other outcome leaves the payment row alone: the assessment inserted above is the decision (what a
    # retry of this attempt reuses, what the API shows meanwhile: ``pending_outcome``), and the payment's risk
    # fields are written with the PSP's answer, in the UPDATE the payment gets then anyway (``apply_fields``).
    # (``ix_payments_scope_risk_level_id`` indexes risk_level: an UPDATE of it here could not be HOT and would
    # write every index of payments a second time per authorization.)
    return Screened(_adjusted(claim, decision.outcome), [], outcome=decision.outcome,
                    risk={**screened_fields(session, payment, assessment), "card": card})


def _block(session: Session, claim, card: dict | None, assessment, deps) -> Screened:
    """A block: the attempt fails with code ``blocked`` (nothing is sent) and the payment returns to
    ``requires_payment_method`` with its outcome, in the screening's transaction. The payment and its
    attempts are locked first (the payments lock order) and the claim checked again under the lock: overtaken
    since the read, this run sends nothing and leaves the block (its assessment) to the attempt's next run."""
    from app.payments import processing, state

    # The payment and its attempts, locked and current, in one statement; the event shows the attempts.
    payment, attempts = processing._locked_with_attempts(session, claim.payment_id)
    attempt = next(row for row in attempts if row.id == claim.id)
    if attempt.status != AttemptStatus.PROCESSING or attempt.tries != claim.tries:
        return Screened(None, [])
    _card_summary(payment, card)
    payment.risk_score, payment.risk_level = assessment.score, assessment.level
    now = deps.now()
    attempt.status = AttemptStatus.FAILED
    attempt.decline_code = "blocked"
    attempt.error_message = BLOCKED_MESSAGE
    attempt.finished_at, attempt.next_attempt_at, attempt.lease_until = now, None, None
    payment.risk_outcome = evaluate.outcome_object(assessment, "blocked")
    payment.last_error = {"type": "card_error", "code": "blocked", "decline_code": None,
                          "message": BLOCKED_MESSAGE}
    payment.next_action_url = None
    event = state.transition(session, payment, PaymentStatus.REQUIRES_PAYMENT_METHOD)
    count_decline_after_commit(session, payment, attempt, deps)
    session.flush()
    return Screened(None, [attempt.id], event.data if event is not None else None, outcome="block")


_PAYMENTS, _ATTEMPTS = Payment.__table__, PaymentAttempt.__table__
# The screening's read (built once): the payment's columns the evaluation reads and the attempt's claim, with
# ``synchronous_commit`` off for the transaction (what ``app.payments.idempotency.relaxed_commit`` sets).
_SCREENING_READ = (
    select(func.set_config("synchronous_commit", "off", True).label("relaxed"), _PAYMENTS.c.id,
           _PAYMENTS.c.merchant_id, _PAYMENTS.c.livemode, _PAYMENTS.c.amount, _PAYMENTS.c.currency,
           _PAYMENTS.c.customer_email, _PAYMENTS.c.customer_ip, _ATTEMPTS.c.status.label("attempt_status"),
           _ATTEMPTS.c.tries)
    .select_from(_ATTEMPTS.join(_PAYMENTS, (_PAYMENTS.c.id == _ATTEMPTS.c.payment_id)
                                & (_PAYMENTS.c.merchant_id == _ATTEMPTS.c.merchant_id)))
    .where(_ATTEMPTS.c.id == bindparam("attempt_id"), _ATTEMPTS.c.merchant_id == bindparam("merchant_id")))


def screened_fields(session: Session, payment: Payment, assessment) -> dict[str, Any]:
    """The payment's risk fields for a confirmation assessed so (an ``Assessment`` row or the values just
    inserted), blocks aside: what ``apply_fields`` writes with the PSP's answer."""
    if assessment.outcome == "review":
        outcome = evaluate.outcome_object(assessment, "manual_review")
        # The platform's own lists went unchecked: the platform decides, as for its own rules.
        owner = "platform" if assessment.reason == "card_facts_unavailable" else assessment.rule_owner
        outcome["review_owner"] = review_owner(session, payment, owner)
    else:
        outcome = evaluate.outcome_object(
            assessment, "blocked" if assessment.outcome == "block" else "authorized")
    return {"risk_score": assessment.score, "risk_level": assessment.level, "risk_outcome": outcome,
            "request_three_d_secure": assessment.outcome == "request_3ds"}


def apply_fields(payment: Payment, fields: dict[str, Any]) -> None:
    """Write a screening's risk fields on the payment (in the transaction applying the PSP's answer), and the
    card summary the vault gave it (the PSP's answer, applied after, has the last word)."""
    _card_summary(payment, fields.get("card"))
    payment.risk_score, payment.risk_level = fields["risk_score"], fields["risk_level"]
    payment.risk_outcome = dict(fields["risk_outcome"])  # a new dict: JSONB columns see assignments
    if fields["request_three_d_secure"]:
        payment.request_three_d_secure = True


def confirmation_assessment(session: Session, merchant_id: str, livemode: bool, payment_id: str, attempt_id: str):
    """An authorization attempt's assessment at confirmation, or None (found through the payment's index)."""
    return session.scalar(select(Assessment).where(
        Assessment.merchant_id == merchant_id, Assessment.livemode == livemode, Assessment.payment_id == payment_id,
        Assessment.attempt_id == attempt_id, Assessment.stage == "confirmation"))


def unwritten(payment: Payment, attempt: PaymentAttempt) -> bool:
    """This authorization's screening may be decided without the payment showing it yet: the confirmation
    cleared the last outcome, and the screening writes it only with the PSP's answer (or a block)."""
    from app.payments.models import AttemptOperation

    return (payment.risk_outcome is None and attempt.operation == AttemptOperation.AUTHORIZE
            and attempt.tries >= 1 and payment.latest_attempt_id == attempt.id)


def fields_from_assessment(session: Session, payment: Payment, attempt: PaymentAttempt) -> dict[str, Any] | None:
    """The risk fields of an authorization screened but not yet written on its payment, read from its
    assessment (the source of truth: a crash between the screening and the PSP's answer loses nothing)."""
    if not unwritten(payment, attempt):
        return None
    assessment = confirmation_assessment(session, payment.merchant_id, payment.livemode, payment.id, attempt.id)
    return None if assessment is None else screened_fields(session, payment, assessment)


def pending_outcome(session: Session, payment: Payment, attempts) -> dict[str, Any] | None:
    """The outcome the API shows for a payment whose open authorization was screened and not yet answered
    (its risk fields are written with the answer): its assessment's. None when there is none."""
    if payment.risk_outcome is not None or payment.status != PaymentStatus.PROCESSING or not attempts:
        return payment.risk_outcome
    latest = next((a for a in reversed(attempts) if a.id == payment.latest_attempt_id), None)
    if latest is None or latest.status not in (AttemptStatus.PROCESSING, AttemptStatus.UNKNOWN):
        return None
    fields = fields_from_assessment(session, payment, latest)
    return None if fields is None else fields["risk_outcome"]


def review_owner(session: Session, payment: Payment, rule_owner: str | None) -> str:
    from app.accounts.models import Merchant

    if rule_owner == "platform":
        return "platform"
    keeps = session.scalar(select(Merchant.risk_reviews_by_platform).where(Merchant.id == payment.merchant_id))
    return "platform" if keeps else "merchant"


def held_for_review(payment: Payment) -> bool:
    """The screening asked to hold this payment's capture for a review."""
    return bool(payment.risk_outcome) and payment.risk_outcome.get("type") == "manual_review"


def open_review(session: Session, payment: Payment, deps) -> None:
    """The authorization of a held payment succeeded: open its review (once)."""
    from app.risk import reviews

    owner = payment.risk_outcome.get("review_owner") or "merchant"
    reason = payment.risk_outcome.get("reason")
    reviews.open_review(session, payment, owner=owner, assessment_id=payment.risk_outcome.get("assessment"),
                        rule_id=(payment.risk_outcome.get("rule") or {}).get("id"),
                        expires_in=deps.authorization_expiry,
                        opened_reason=reason if reason == "card_facts_unavailable" else "rule")


def count_decline_after_commit(session: Session, payment: Payment, attempt: PaymentAttempt, deps) -> None:
    """Count a decline (or a block) in the velocity counters once this transaction commits, never if it rolls
    back: a screening or an outcome that is rolled back is done again by the attempt's next run, which must
    not see a decline that was never recorded (the member is the attempt's, so the next run counts it once).
    Redis away then: logged, the decline goes uncounted (as any counter while Redis is away)."""
    from app.jobs import call_after_commit

    facts = dict(payment_id=payment.id, attempt_id=attempt.id, merchant_id=payment.merchant_id,
                 livemode=payment.livemode, fingerprint=payment.card_fingerprint, email=payment.customer_email,
                 ip=payment.customer_ip)
    call_after_commit(session, lambda: Velocity(deps.redis).record_decline(**facts))


def note_declined(session: Session, payment: Payment, attempt: PaymentAttempt, deps) -> None:
    """An issuer decline: the outcome says so and the velocity counters count it (after the commit)."""
    if payment.risk_outcome:
        payment.risk_outcome = {**payment.risk_outcome, "type": "issuer_declined",
                                "network_status": "declined_by_network",
                                "seller_message": "The bank did not approve this payment."}
    count_decline_after_commit(session, payment, attempt, deps)


def after_challenge(session: Session, payment: Payment, attempt: PaymentAttempt, deps) -> str:
    """3-D Secure succeeded: the whole chain runs again with its result (the platform's blocks, then allow ->
    block -> review; ``evaluate.decide``). Returns ``block``, ``review`` or ``allow``.

    The payment's card facts are as the authorization left them; velocity is read, not counted again.
    """
    card = {"brand": payment.card_brand, "fingerprint": payment.card_fingerprint}
    earlier = confirmation_assessment(session, payment.merchant_id, payment.livemode, payment.id, attempt.id)
    if earlier is not None:
        stored = earlier.signals
        card.update({"funding": stored.get("card_funding"), "country": stored.get("card_country"),
                     "bin": stored.get("card_bin"), "risk_hint": stored.get("card_risk_hint")})
    decision = evaluate.assess(session, payment, redis=deps.redis, card=card, stage="after_3ds",
                               attempt_id=attempt.id, three_d_secure_result="authenticated", record_velocity=False)
    if decision.rule is None:
        return "allow"
    assessment = decision.assessment
    payment.risk_score, payment.risk_level = assessment.score, assessment.level
    if decision.outcome == "block":
        payment.risk_outcome = evaluate.outcome_object(assessment, "blocked")
        # A block after the challenge is a decline like one before it: the velocity counters count it once the
        # outcome commits (once per attempt: the member is the attempt's).
        count_decline_after_commit(session, payment, attempt, deps)
        return "block"
    if decision.outcome == "review":
        payment.risk_outcome = {**evaluate.outcome_object(assessment, "manual_review"),
                                "review_owner": review_owner(session, payment, decision.rule_owner)}
        return "review"
    payment.risk_outcome = evaluate.outcome_object(assessment, "authorized")
    return "allow"
