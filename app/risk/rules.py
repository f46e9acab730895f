"""Rules as data: the platform's (``scope=None``) and each merchant's (a Scope), checked on save.

A rule's text is compiled by ``app.risk.language`` when it is saved (refused with the error's position) and
again when rules load for an evaluation: a row that does not compile any more (a list it named was removed
behind its back, or a row written around this module) is skipped and logged, never run. Compiled rules are
cached per process by their text and the lists they can see, so that an evaluation does not parse.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.ids import new_id
from app.models_base import utcnow
from app.risk import lists as value_lists
from app.risk.errors import RiskInvalid, RiskNotFound
from app.risk.language import SIGNALS, CompiledRule, ListRef, RuleError, compile_rule
from app.risk.models import ACTIONS, PlatformRiskRule, RiskRule
from app.scoping import Scope

log = logging.getLogger(__name__)

MAX_RULES_PER_OWNER = 200
_ALIAS_IN_TEXT = re.compile(r"@([A-Za-z_][A-Za-z0-9_]{0,99})")


@dataclass(frozen=True)
class LoadedRule:
    """A rule ready to evaluate: its row's facts and its compiled form."""

    id: str
    owner: str
    action: str
    predicate: str
    position: int
    compiled: CompiledRule


def _model(scope: Scope | None):
    return PlatformRiskRule if scope is None else RiskRule


def _select(scope: Scope | None, *criteria):
    return select(PlatformRiskRule).where(*criteria) if scope is None else scope.select(RiskRule, *criteria)


@lru_cache(maxsize=4096)
def _compile_cached(text: str, visible: tuple[tuple[str, ListRef], ...]) -> CompiledRule:
    mapping = dict(visible)
    return compile_rule(text, lists=mapping.get)


def compile_for(text: str, resolve) -> CompiledRule:
    """Compile with the lists a rule's owner sees (cached by the text and the lists it names)."""
    if not isinstance(text, str):
        raise RuleError("The rule must be text.", line=1, column=1, position=0)
    names = sorted(set(_ALIAS_IN_TEXT.findall(text)))
    visible = tuple((name, ref) for name in names if (ref := resolve(name)) is not None)
    return _compile_cached(text, visible)


def check_predicate(session: Session, scope: Scope | None, predicate: Any) -> CompiledRule:
    """Compile a rule as its owner would save it; RiskInvalid with the error's position otherwise.

    A merchant's rule may not use a platform-wide counter (SignalSpec.platform_wide): its matches would tell the
    merchant how a card or an address was used at other merchants."""
    try:
        compiled = compile_for(predicate, value_lists.resolver(session, scope))
        if scope is not None:
            _refuse_platform_wide(predicate, compiled)
        return compiled
    except RuleError as error:
        raise RiskInvalid(f"The rule is not valid: {error}", param="predicate", code="rule_invalid",
                          detail=error.as_dict()) from None


def _refuse_platform_wide(text: str, compiled: CompiledRule) -> None:
    wide = sorted(name for name in compiled.signals if SIGNALS[name].platform_wide)
    if not wide:
        return
    lowered = text.lower()  # signal names are read in any case (":CARD_PAYMENTS_10M:")
    position = min(found for name in wide if (found := lowered.find(f":{name}:")) >= 0)
    line = text.count("\n", 0, position) + 1
    column = position - (text.rfind("\n", 0, position) + 1) + 1
    raise RuleError(f":{wide[0]}: counts payments across every merchant of the platform; a merchant's rule "
                    f"cannot use it (the risk score already weighs it). Use the per-merchant email counters "
                    f"instead", line=line, column=column, position=position)


def _check_action(action: Any) -> str:
    if action not in ACTIONS:
        raise RiskInvalid(f"action must be one of: {', '.join(ACTIONS)}.", param="action")
    return action


def list_rules(session: Session, scope: Scope | None) -> list:
    model = _model(scope)
    order = {action: index for index, action in enumerate(ACTIONS)}
    rows = session.scalars(_select(scope).order_by(model.position, model.created_at, model.id)).all()
    return sorted(rows, key=lambda row: (order[row.action], row.position))


def get_rule(session: Session, scope: Scope | None, rule_id: Any, *, for_update: bool = False):
    if not isinstance(rule_id, str):
        raise RiskNotFound(f"No such rule: '{rule_id}'.", param="id")
    row = (session.get(PlatformRiskRule, rule_id, with_for_update=for_update) if scope is None
           else scope.get(session, RiskRule, rule_id, for_update=for_update))
    if row is None:
        raise RiskNotFound(f"No such rule: '{rule_id}'.", param="id")
    return row


def create_rule(session: Session, scope: Scope | None, *, action: Any, predicate: Any, description: Any = None,
                enabled: bool = True, actor: str | None = None):
    action = _check_action(action)
    check_predicate(session, scope, predicate)
    model = _model(scope)
    count = session.scalar(select(func.count()).select_from(_select(scope).subquery()))
    if count >= MAX_RULES_PER_OWNER:
        raise RiskInvalid(f"At most {MAX_RULES_PER_OWNER} rules.", param="predicate", code="too_many_rules")
    last = session.scalar(_select(scope, model.action == action).with_only_columns(func.max(model.position)))
    values = dict(id=new_id("rule"), action=action, predicate=predicate.strip(),
                  description=_description(description), position=(last or 0) + 10, enabled=bool(enabled),
                  created_by=actor)
    row = model(**values) if scope is None else scope.new(RiskRule, **values)
    session.add(row)
    session.flush()
    return row


def _description(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 500:
        raise RiskInvalid("description must be a string of at most 500 characters.", param="description")
    return value.strip() or None


def update_rule(session: Session, scope: Scope | None, rule_id: str, *, predicate: Any = None,
                description: Any = None, action: Any = None, actor: str | None = None):
    row = get_rule(session, scope, rule_id, for_update=True)
    if row.builtin and (predicate is not None or action is not None):
        raise RiskInvalid("A built-in rule can be enabled or disabled, not changed.", param="predicate")
    if action is not None and _check_action(action) != row.action:
        # Moved to another action: last of its new group (its old position means nothing there, and a tie
        # with a rule of the new group would make "first match wins" depend on ids).
        model = _model(scope)
        last = session.scalar(_select(scope, model.action == action).with_only_columns(func.max(model.position)))
        row.action, row.position = action, (last or 0) + 10
    if predicate is not None:
        check_predicate(session, scope, predicate)
        row.predicate = predicate.strip()
    if description is not None:
        row.description = _description(description)
    row.updated_at = utcnow()
    session.flush()
    return row


def set_rule_enabled(session: Session, scope: Scope | None, rule_id: str, enabled: bool, *,
                     actor: str | None = None):
    row = get_rule(session, scope, rule_id, for_update=True)
    if enabled and not row.enabled:
        check_predicate(session, scope, row.predicate)  # the lists it names may have gone
    row.enabled = bool(enabled)
    row.updated_at = utcnow()
    session.flush()
    return row


def reorder_rules(session: Session, scope: Scope | None, action: Any, rule_ids: list[str], *,
                  actor: str | None = None) -> list:
    """Set the order of one action's rules: ``rule_ids`` names every one of them, first match first."""
    action = _check_action(action)
    model = _model(scope)
    rows = {row.id: row for row in session.scalars(_select(scope, model.action == action).with_for_update())}
    if not isinstance(rule_ids, list) or sorted(rule_ids) != sorted(rows):
        raise RiskInvalid(f"rule_ids must name each {action} rule exactly once.", param="rule_ids")
    for index, rule_id in enumerate(rule_ids):
        rows[rule_id].position = (index + 1) * 10
    session.flush()
    return [rows[rule_id] for rule_id in rule_ids]


def delete_rule(session: Session, scope: Scope | None, rule_id: str, *, actor: str | None = None) -> str:
    row = get_rule(session, scope, rule_id, for_update=True)
    if row.builtin:
        raise RiskInvalid("A built-in rule can be disabled, not deleted.", param="id")
    session.delete(row)
    session.flush()
    return row.id


def rules_using_alias(session: Session, scope: Scope | None, alias: str) -> list[str]:
    """Ids of rules (of this owner; for the platform, of any merchant too) whose text names ``@alias``."""
    pattern = re.compile(rf"@{re.escape(alias)}(?![A-Za-z0-9_])")
    found = [row.id for row in session.scalars(_select(scope)) if pattern.search(row.predicate)]
    if scope is None:
        found += [row.id for row in session.scalars(select(RiskRule).where(RiskRule.predicate.contains(f"@{alias}")))
                  if pattern.search(row.predicate)]
    return found


def load(session: Session, scope: Scope | None) -> list[LoadedRule]:
    """The enabled rules of one owner, compiled, in order; rows that do not compile are skipped (logged)."""
    resolve = value_lists.resolver(session, scope)
    model = _model(scope)
    owner = "platform" if scope is None else "merchant"
    loaded = []
    for row in session.execute(_select(scope, model.enabled.is_(True))
                               .with_only_columns(model.id, model.action, model.predicate, model.position)
                               .order_by(model.position, model.id)):
        try:
            compiled = compile_for(row.predicate, resolve)
        except RuleError as error:
            log.error("risk rule %s (%s) does not compile and is skipped: %s", row.id, owner, error)
            continue
        loaded.append(LoadedRule(row.id, owner, row.action, row.predicate, row.position, compiled))
    return loaded


def compiled(rows, owner: str, resolve) -> list[LoadedRule]:
    """(id, action, predicate, position) rows compiled (cached by text); rows that do not compile are skipped."""
    loaded = []
    for rule_id, action, predicate, position in rows:
        try:
            rule = compile_for(predicate, resolve)
        except RuleError as error:
            log.error("risk rule %s (%s) does not compile and is skipped: %s", rule_id, owner, error)
            continue
        loaded.append(LoadedRule(rule_id, owner, action, predicate, position, rule))
    return loaded


@dataclass
class Backtest:
    """What a rule would have matched over a past window of one book."""

    matched: int = 0
    evaluated: int = 0
    disputed_or_fraud_refunded: int = 0
    sample: list[dict] = field(default_factory=list)
    days: int = 30


def backtest(session: Session, scope: Scope | None, predicate: Any, *, days: int = 30, sample_size: int = 20,
             merchant_scope: Scope | None = None, limit: int = 20000) -> Backtest:
    """Run a rule over the last ``days`` of assessments (their stored signals, as they were then) and count
    how many payments it matches and how many of those were later disputed or refunded as fraud.

    A merchant's backtest reads its own book only; the platform's (``scope=None``) reads the book given as
    ``merchant_scope``, or every book when None (an admin report). Value lists are looked up as they are now.
    """
    from app.disputes.models import Dispute
    from app.payments.models import Refund
    from app.risk.models import Assessment, Review

    compiled = check_predicate(session, scope, predicate)
    since = utcnow() - timedelta(days=days)
    book = scope or merchant_scope
    statement = select(Assessment).where(Assessment.created_at >= since, Assessment.stage == "confirmation")
    if book is not None:
        statement = statement.where(Assessment.merchant_id == book.merchant_id, Assessment.livemode == book.livemode)
    result = Backtest(days=days)
    # Counted per payment: a payment confirmed again (another card after a decline) has an assessment per
    # confirmation; it counts once, as matched when any of its confirmations matches (newest first).
    seen, matched, matched_keys = set(), [], set()
    for assessment in session.scalars(statement.order_by(Assessment.created_at.desc()).limit(limit)):
        key = (assessment.merchant_id, assessment.payment_id)
        seen.add(key)
        if key in matched_keys:
            continue
        signals = _revive(assessment.signals)
        pairs = [(ref, signals.get(name)) for name, ref in compiled.lookups]
        memberships = value_lists.lookup(session, Scope(assessment.merchant_id, assessment.livemode), pairs)
        if compiled.evaluate(signals, memberships):
            matched.append(assessment)
            matched_keys.add(key)
    result.evaluated = len(seen)
    result.matched = len(matched)
    if not matched:
        return result
    keys = {(a.merchant_id, a.payment_id) for a in matched}
    bad = set()
    for merchant_id, payment_id in session.execute(
            select(Dispute.merchant_id, Dispute.payment_id).where(
                Dispute.merchant_id.in_({m for m, _ in keys}), Dispute.payment_id.in_({p for _, p in keys}))):
        bad.add((merchant_id, payment_id))
    # A refund with reason ``fraudulent`` (the merchant's own, or a review's rejection) counts like the learned
    # score's labels count it (app/risk/learning/training.py), not only a review closed ``refunded_as_fraud``.
    for merchant_id, payment_id in session.execute(
            select(Refund.merchant_id, Refund.payment_id).where(
                Refund.reason == "fraudulent", Refund.status != "failed",
                Refund.merchant_id.in_({m for m, _ in keys}), Refund.payment_id.in_({p for _, p in keys}))):
        bad.add((merchant_id, payment_id))
    for merchant_id, payment_id in session.execute(
            select(Review.merchant_id, Review.payment_id).where(
                Review.closed_reason == "refunded_as_fraud", Review.merchant_id.in_({m for m, _ in keys}),
                Review.payment_id.in_({p for _, p in keys}))):
        bad.add((merchant_id, payment_id))
    result.disputed_or_fraud_refunded = len(keys & bad)
    for assessment in matched[:sample_size]:
        result.sample.append({"payment": assessment.payment_id, "merchant": assessment.merchant_id,
                              "created": assessment.created_at.isoformat(), "risk_score": assessment.score,
                              "risk_level": assessment.level, "outcome": assessment.outcome,
                              "amount": assessment.signals.get("amount"), "currency": assessment.signals.get("currency"),
                              "disputed_or_fraud_refunded": (assessment.merchant_id, assessment.payment_id) in bad})
    return result


def _revive(stored: dict) -> dict:
    """Signals as stored (JSON) back to what rules compare: numbers as Decimal."""
    from decimal import Decimal

    from app.risk.language import SIGNALS

    revived = {}
    for name, value in stored.items():
        spec = SIGNALS.get(name)
        if spec is not None and spec.type == "number" and value is not None and not isinstance(value, bool):
            value = Decimal(str(value))
        revived[name] = value
    return revived
