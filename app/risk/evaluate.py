"""The engine: gather a confirmation's signals, score them, run the rules in order, write the Assessment.

Order: the platform's ``block`` rules (built-in block lists included) first, which no merchant rule can
override; then, per Radar's order, ``request_3ds`` -> ``allow`` -> ``block`` (the merchant's) -> ``review``,
first match wins *within each action* (the platform's rules before the merchant's), so a matching
``request_3ds`` does not stop the rest: it is one decision (whether to challenge), and allow -> block -> review
another (``decide``). A merchant's ``allow`` skips the merchant's blocks and every review rule (the
platform's too), never a platform block. Nothing matched: ``allow``.

At confirmation, a matched ``request_3ds`` leaves out of the other actions the rules that depend on 3-D Secure
(``:is_3d_secure:``, ``:three_d_secure_result:``: not known until the challenge); a block among the rest still
refuses before any PSP call (outcome ``block``, no challenge needed); otherwise the outcome is ``request_3ds``.
After 3-D Secure (stage ``after_3ds``) the whole chain (the platform's blocks, then allow -> block -> review)
runs again with the 3-D Secure signals, without ``request_3ds``: a block then voids the authorization, a review
holds its capture.

Nothing here calls the network except Redis for the velocity counters (bounded by its client's timeouts; away,
the evaluation goes on without them and the assessment says so) and the database session it is given.

Round trips of an evaluation: the velocity script (Redis), one statement (``_CURRENT``: the configuration
stamps, the first-seen fact and every value-list lookup of both owners) and the assessment's INSERT, while this
process's compiled configuration of the book (``_CACHE``) is current; a changed stamp reads the configuration
again (``_CONFIGURATION``) and looks the lists up after it.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import iptocc
from sqlalchemy import insert, select, text
from sqlalchemy.orm import Session

from app.ids import new_id
from app.money import exponent
from app.risk import lists as value_lists, rules as rule_store, scoring
from app.risk.learning import scorer
from app.risk.models import Assessment
from app.risk.language import ListRef
from app.risk.rules import LoadedRule
from app.risk.velocity import Velocity
from app.scoping import Scope

log = logging.getLogger(__name__)


class Assessed(SimpleNamespace):
    """An inserted assessment's values, read like an ``Assessment`` row (``assessment.score``, ``.id``...)."""


@dataclass
class Decision:
    assessment: Assessed
    outcome: str                 # allow, block, review, request_3ds
    rule: LoadedRule | None
    signals: dict[str, Any]

    @property
    def rule_owner(self) -> str | None:
        return self.rule.owner if self.rule else None


def ip_country(ip: str | None) -> str | None:
    """The IP address's country (ISO alpha-2) from iptocc's offline table; None when unknown or private."""
    if not ip:
        return None
    try:
        return iptocc.country_code(ip)
    except Exception:  # noqa: BLE001 - a malformed address is an unknown country
        return None


def _major(amount: int, currency: str) -> Decimal:
    return Decimal(amount).scaleb(-exponent(currency))


def card_signals(card: dict | None) -> dict[str, Any]:
    card = card or {}
    country = card.get("country")
    return {
        "card_brand": card.get("brand"),
        "card_funding": card.get("funding"),
        "card_country": country.upper() if isinstance(country, str) and country else None,
        "card_bin": card.get("bin"),
        "card_fingerprint": card.get("fingerprint"),
        "card_risk_hint": card.get("risk_hint"),
    }


def gather_signals(session: Session, scope: Scope, payment, card: dict | None, velocity: dict | None, *,
                   three_d_secure_result: str | None = None, seen_before: bool | None = None) -> dict[str, Any]:
    """Every signal of this confirmation (SIGNALS in app/risk/language.py), None where unknown."""
    signals: dict[str, Any] = {
        "amount": _major(payment.amount, payment.currency),
        "currency": payment.currency.lower(),
        **card_signals(card),
    }
    email = (payment.customer_email or "").strip().casefold() or None
    signals["email"] = email
    signals["email_domain"] = email.rsplit("@", 1)[1] if email and "@" in email else None
    signals["ip_address"] = payment.customer_ip
    signals["ip_country"] = ip_country(payment.customer_ip)
    card_country, where = signals["card_country"], signals["ip_country"]
    signals["card_ip_country_mismatch"] = (card_country != where) if card_country and where else None
    fingerprint = signals["card_fingerprint"]
    if fingerprint and seen_before is not None:
        signals["is_new_card"] = not seen_before
    elif fingerprint:
        from app.payments.models import Payment

        seen = session.scalar(select(Payment.id).where(
            Payment.merchant_id == scope.merchant_id, Payment.livemode == scope.livemode,
            Payment.card_fingerprint == fingerprint, Payment.id != payment.id).limit(1))
        signals["is_new_card"] = seen is None
    else:
        signals["is_new_card"] = None
    signals["three_d_secure_result"] = three_d_secure_result or "not_attempted"
    signals["is_3d_secure"] = three_d_secure_result == "authenticated"
    if velocity is not None:
        minor = velocity.pop("card_amount_24h_minor", None)
        signals.update(velocity)
        if minor is not None:
            signals["card_amount_24h"] = _major(minor, payment.currency)
    return signals


# Whether this merchant saw the card before (the ``is_new_card`` signal).
_SEEN = """(SELECT EXISTS (SELECT 1 FROM payments WHERE merchant_id = :merchant_id AND livemode = :livemode
                  AND card_fingerprint = :fingerprint AND id <> :payment_id))"""

# Everything an evaluation reads besides the list items, in one round trip: both owners' enabled rules and
# lists, the active weights, the configuration stamps they were read with, and whether this merchant saw the card.
_CONFIGURATION = text("""
SELECT
  (SELECT stamp::text FROM risk_platform_config_stamp WHERE id = 1) AS platform_stamp,
  (SELECT stamp::text FROM risk_config_stamps WHERE merchant_id = :merchant_id AND livemode = :livemode)
     AS merchant_stamp,
  (SELECT coalesce(json_agg(json_build_array(id, action, predicate, position) ORDER BY position, id), '[]')
     FROM risk_platform_rules WHERE enabled) AS platform_rules,
  (SELECT coalesce(json_agg(json_build_array(id, action, predicate, position) ORDER BY position, id), '[]')
     FROM risk_rules WHERE merchant_id = :merchant_id AND livemode = :livemode AND enabled) AS merchant_rules,
  (SELECT coalesce(json_agg(json_build_array(id, alias, item_type)), '[]') FROM risk_platform_value_lists)
     AS platform_lists,
  (SELECT coalesce(json_agg(json_build_array(id, alias, item_type)), '[]') FROM risk_value_lists
     WHERE merchant_id = :merchant_id AND livemode = :livemode) AS merchant_lists,
  (SELECT json_build_array(version, intercept, weights) FROM risk_weights WHERE active) AS weights,
  """ + _SEEN + """ AS seen
""")

# The cached configuration's round trip: is it still current (both stamps), did this merchant see the card,
# and the value-list lookups its rules need, all in one statement.
_CURRENT = text("""
SELECT
  (SELECT stamp::text FROM risk_platform_config_stamp WHERE id = 1) AS platform_stamp,
  (SELECT stamp::text FROM risk_config_stamps WHERE merchant_id = :merchant_id AND livemode = :livemode)
     AS merchant_stamp,
  """ + _SEEN + """ AS seen,
  (SELECT coalesce(json_agg(json_build_array(found.owner, found.list_id, found.value)), '[]')
     FROM (""" + value_lists.LOOKUP_SQL + """) AS found(owner, list_id, value)) AS found
""")


@dataclass
class Configuration:
    platform: list[LoadedRule]
    merchant: list[LoadedRule]
    weights: scoring.Weights
    seen_before: bool | None
    platform_stamp: str | None = None
    merchant_stamp: str | None = None
    plans: dict[str, Plan] = field(default_factory=dict)
    # Per stage: the (signal, list) lookups of its rules, each once, known before the score and after it.
    lookups: dict[str, tuple[tuple, tuple]] = field(default_factory=dict)

    def plan(self, stage: str) -> Plan:
        if stage not in self.plans:
            self.plans[stage] = plan(self.platform, self.merchant, stage)
        return self.plans[stage]

    def stage_lookups(self, stage: str) -> tuple[tuple, tuple]:
        """(early, late): the stage's distinct (signal name, list) lookups, split by ``_LATE_SIGNALS``."""
        if stage not in self.lookups:
            pairs = dict.fromkeys(pair for rule in self.plan(stage).rules for pair in rule.compiled.lookups)
            self.lookups[stage] = (tuple(p for p in pairs if p[0] not in _LATE_SIGNALS),
                                   tuple(p for p in pairs if p[0] in _LATE_SIGNALS))
        return self.lookups[stage]


# Per process: (merchant, livemode) -> the compiled Configuration and the stamps it was read with. An evaluation
# uses it only after its one query has seen both stamps unchanged; otherwise it reads the configuration again.
_CACHE: dict[tuple[str, bool], Configuration] = {}
_CACHE_MAX = 10_000


def configuration(session: Session, scope: Scope, payment_id: str, fingerprint: str | None) -> Configuration:
    """Rules (compiled, cached by text), weights, their stamps and the first-seen fact, read in one query;
    remembered for the book's next evaluations (``_CACHE``)."""
    row = session.execute(_CONFIGURATION, {"merchant_id": scope.merchant_id, "livemode": scope.livemode,
                                           "fingerprint": fingerprint or "", "payment_id": payment_id}).one()
    platform_lists = {alias: ListRef("platform", list_id, alias, item_type)
                      for list_id, alias, item_type in row.platform_lists}
    merchant_lists = {alias: ListRef("merchant", list_id, alias, item_type)
                      for list_id, alias, item_type in row.merchant_lists}
    platform = rule_store.compiled(row.platform_rules, "platform", platform_lists.get)
    merchant = rule_store.compiled(row.merchant_rules, "merchant",
                                   lambda alias: merchant_lists.get(alias) or platform_lists.get(alias))
    if row.weights is None:
        weights = scoring.NEUTRAL
    else:
        version, intercept, values = row.weights
        weights = scoring.Weights(version, int(intercept), {k: int(v) for k, v in values.items()})
    config = Configuration(platform, merchant, weights, bool(row.seen) if fingerprint else None,
                           row.platform_stamp, row.merchant_stamp)
    if row.platform_stamp is not None:  # no platform stamp (a database without migration 0028_risk_screening's row): no cache
        if len(_CACHE) >= _CACHE_MAX:
            _CACHE.clear()
        _CACHE[(scope.merchant_id, scope.livemode)] = config
    return config


# Signals known only once the configuration's query answered (the first-seen fact) and the score computed.
_LATE_SIGNALS = frozenset({"is_new_card", "risk_score", "risk_level"})


def _current(session: Session, scope: Scope, payment_id: str, fingerprint: str | None, stage: str,
             signals: dict[str, Any]) -> tuple[Configuration, value_lists.Memberships | None]:
    """The configuration and, when the cached one is current, the memberships of its rules' early lookups: one
    round trip. A changed stamp (or nothing cached): the configuration's query, and memberships None."""
    cached = _CACHE.get((scope.merchant_id, scope.livemode))
    if cached is not None:
        early, _ = cached.stage_lookups(stage)
        parameters, wanted = value_lists.lookup_parameters(scope, [(ref, signals.get(name)) for name, ref in early])
        row = session.execute(_CURRENT, {**parameters, "livemode": scope.livemode, "fingerprint": fingerprint or "",
                                         "payment_id": payment_id}).one()
        if row.platform_stamp == cached.platform_stamp and row.merchant_stamp == cached.merchant_stamp:
            config = replace(cached, seen_before=bool(row.seen) if fingerprint else None)
            return config, value_lists.memberships(row.found, wanted)
    return configuration(session, scope, payment_id, fingerprint), None


@dataclass(frozen=True)
class Plan:
    """A stage's rules in evaluation order (see the module's docstring), grouped as ``decide`` runs them."""

    blocks: tuple[LoadedRule, ...]     # the platform's blocks
    requests: tuple[LoadedRule, ...]   # request_3ds, the platform's first (at confirmation only)
    rest: tuple[LoadedRule, ...]       # allow -> block (the merchant's) -> review, the platform's first in each
    # The same without the rules that depend on 3-D Secure: what is known before a requested challenge.
    known_blocks: tuple[LoadedRule, ...]
    known_rest: tuple[LoadedRule, ...]

    @property
    def rules(self) -> tuple[LoadedRule, ...]:
        return self.blocks + self.requests + self.rest


def plan(platform: list[LoadedRule], merchant: list[LoadedRule], stage: str) -> Plan:
    """The stage's rules, grouped and ordered (see the module's docstring)."""
    def of(rules, action):
        return tuple(rule for rule in rules if rule.action == action)

    def known(rules):
        return tuple(rule for rule in rules if not rule.compiled.uses_3ds)

    blocks = of(platform, "block")
    requests = of(platform, "request_3ds") + of(merchant, "request_3ds") if stage == "confirmation" else ()
    rest = (of(platform, "allow") + of(merchant, "allow") + of(merchant, "block")
            + of(platform, "review") + of(merchant, "review"))
    return Plan(blocks, requests, rest, known(blocks), known(rest))


def decide(plan_: Plan, signals: dict[str, Any], memberships) -> LoadedRule | None:
    """The deciding rule (None: nothing matched, ``allow``). ``request_3ds`` is decided on its own: a match
    does not stop allow -> block -> review, which then run over what is known before the challenge (the rules
    that depend on 3-D Secure wait for the stage ``after_3ds``); a block among them wins (refused before any
    PSP call), any other match waits for the challenge's result, when the whole chain runs again."""
    def first(rules):
        return next((rule for rule in rules if rule.compiled.evaluate(signals, memberships)), None)

    requested = first(plan_.requests)
    if requested is None:
        return first(plan_.blocks) or first(plan_.rest)
    matched = first(plan_.known_blocks) or first(plan_.known_rest)
    return matched if matched is not None and matched.action == "block" else requested


def _stored(signals: dict[str, Any]) -> dict[str, Any]:
    return {name: (str(value) if isinstance(value, Decimal) else value) for name, value in signals.items()}


def assess(session: Session, payment, *, redis: Any, card: dict | None, stage: str = "confirmation",
           attempt_id: str | None = None, three_d_secure_result: str | None = None,
           record_velocity: bool = True, card_facts_unavailable: bool = False) -> Decision:
    """Evaluate one confirmation (or its 3-D Secure result) and insert its Assessment in the session's
    transaction (``Decision.assessment``: its values, transient); never commits.

    ``card_facts_unavailable``: the vault could not be asked for the card (``card`` is None), so the platform's
    card block lists and card rules could not be checked. Could not ask is not an answer: unless a rule blocks
    on what is known, the outcome is ``review`` with the assessment's ``reason`` ``card_facts_unavailable``
    (neither let through nor declined)."""
    scope = Scope(payment.merchant_id, payment.livemode)
    fingerprint = (card or {}).get("fingerprint")
    velocity = Velocity(redis).record_and_read(
        payment_id=payment.id, merchant_id=payment.merchant_id, livemode=payment.livemode, fingerprint=fingerprint,
        email=(payment.customer_email or "").strip().casefold() or None, ip=payment.customer_ip,
        currency=payment.currency, amount=payment.amount, record=record_velocity and stage == "confirmation")
    # The signals but the first-seen fact, which comes with the configuration's round trip.
    signals = gather_signals(session, scope, payment, card, velocity, three_d_secure_result=three_d_secure_result,
                             seen_before=False)
    config, memberships = _current(session, scope, payment.id, fingerprint, stage, signals)
    if fingerprint and config.seen_before is not None:
        signals["is_new_card"] = not config.seen_before
    weights = config.weights
    # The scorer in use: fixed weights or an approved learned model (app/risk/learning/scorer.py).
    score, level, contributions = scorer.score(session, weights, signals)
    signals["risk_score"] = score
    signals["risk_level"] = level
    stage_plan = config.plan(stage)
    if memberships is None:  # the configuration was read again: its lookups now, all at once
        memberships = value_lists.lookup(session, scope, [(ref, signals.get(name)) for rule in stage_plan.rules
                                                          for name, ref in rule.compiled.lookups])
    else:
        late = [(ref, signals.get(name)) for name, ref in config.stage_lookups(stage)[1]]
        if late:  # a list of scores or levels (rare): one more round trip
            memberships.found |= value_lists.lookup(session, scope, late).found
    matched = decide(stage_plan, signals, memberships)
    outcome = matched.action if matched else "allow"
    reason = None
    if card_facts_unavailable and stage == "confirmation" and outcome != "block":
        outcome, matched, reason = "review", None, "card_facts_unavailable"
    values = dict(
        merchant_id=scope.merchant_id, livemode=scope.livemode, id=new_id("rska"), payment_id=payment.id,
        attempt_id=attempt_id, stage=stage, signals=_stored(signals), contributions=contributions, score=score,
        level=level, weights_version=weights.version, outcome=outcome, rule_id=matched.id if matched else None,
        rule_owner=matched.owner if matched else None, rule_action=matched.action if matched else None,
        rule_predicate=matched.predicate if matched else None, redis_degraded=velocity is None, reason=reason)
    # A plain INSERT in the caller's transaction (no unit of work, no identity map, no ORM instance: the
    # evaluation's hot path); the Decision carries the same values.
    session.execute(_INSERT_ASSESSMENT, values)
    return Decision(Assessed(**values), outcome, matched, signals)


_INSERT_ASSESSMENT = insert(Assessment.__table__)


# ---------------------------------------------------------------- Stripe's charge ``outcome``

_SELLER_MESSAGES = {
    "authorized": "Payment complete.",
    "manual_review": "Kassa's risk rules held this payment for review: it is authorized, and captured only "
                     "once the review is approved.",
    "blocked": "Kassa blocked this payment as too risky.",
    "issuer_declined": "The bank did not approve this payment.",
}


_REASON_MESSAGES = {
    "card_facts_unavailable": "The card's details could not be read from the vault, so the platform's card "
                              "block lists could not be checked: the payment is authorized and held for review.",
}


def outcome_object(assessment: Assessment | Assessed, type_: str) -> dict[str, Any]:
    """Stripe's charge ``outcome`` for a payment assessed so: type, risk level and score, the rule, a message."""
    rule = None
    if assessment.rule_id:
        rule = {"id": assessment.rule_id, "action": assessment.rule_action, "predicate": assessment.rule_predicate,
                "owner": assessment.rule_owner}
    network = {"blocked": "not_sent_to_network", "issuer_declined": "declined_by_network"}.get(
        type_, "approved_by_network")
    reason = None
    message = _SELLER_MESSAGES[type_]
    if type_ in ("blocked", "manual_review"):
        reason = assessment.reason or "rule"
        message = _REASON_MESSAGES.get(assessment.reason, message)
    return {
        "type": type_,
        "network_status": network,
        "reason": reason,
        "risk_level": assessment.level,
        "risk_score": assessment.score,
        "rule": rule,
        "seller_message": message,
        "assessment": assessment.id,
        "redis_degraded": assessment.redis_degraded,
    }
