"""Risk: every confirmation is scored and checked against rules before the PSP is asked (issue 19).

No Flask here: services take the SQLAlchemy session (and a Redis client where counters are involved), flush,
never commit; views and jobs own the transaction. Tables in ``app/risk/models.py``.

Modules and their service functions (``scope`` is an ``app.scoping.Scope``; ``actor`` a user id or None;
``owner`` is ``"platform"`` or ``"merchant"``; a platform-side call passes ``scope=None``):

``app.risk.language`` — the rule language (a lark grammar, typed signals, bounded by construction)
    ``compile_rule(text: str, *, lists: ListResolver) -> CompiledRule``  raises ``RuleError(message, line,
    column, position)``; ``CompiledRule.evaluate(signals: dict, lists) -> bool``; ``CompiledRule.uses_3ds``
    ``SIGNALS: dict[str, SignalSpec]`` (name -> type, source, description), ``FUNCTIONS`` (documented ones)

``app.risk.rules`` — rules as data (platform and per merchant)
    ``list_rules(session, scope | None) -> list[RiskRule | PlatformRiskRule]``   (ordered by action, position)
    ``create_rule(session, scope | None, *, action, predicate, description=None, enabled=True, actor=None)``
    ``update_rule(session, scope | None, rule_id, *, predicate=None, description=None, action=None, actor=None)``
    ``set_rule_enabled(session, scope | None, rule_id, enabled: bool, *, actor=None)``
    ``reorder_rules(session, scope | None, action, rule_ids: list[str], *, actor=None)``
    ``delete_rule(session, scope | None, rule_id, *, actor=None)``
    ``check_predicate(session, scope | None, predicate) -> CompiledRule``  (for an editor's live check)
    ``backtest(session, scope | None, predicate, *, action, days=30, sample_size=20) -> Backtest``
        matched count, later disputed or refunded-as-fraud count, a sample of payments (ids, amount, score)

``app.risk.lists`` — value lists (Stripe's radar.value_list / value_list_item)
    ``list_value_lists(session, scope | None, *, alias=None, contains=None, limit, starting_after) ``
    ``create_value_list(session, scope | None, *, alias, name, item_type, metadata=None, actor=None)``
    ``update_value_list(session, scope | None, list_id, *, alias=None, name=None, metadata=None)``
    ``delete_value_list(session, scope | None, list_id)``
    ``add_item(session, scope | None, list_id, value, *, actor=None)``, ``delete_item(session, scope | None, item_id)``
    ``list_items(session, scope | None, list_id, *, value=None, limit, starting_after)``

``app.risk.signals`` / ``app.risk.velocity`` / ``app.risk.scoring``
    ``gather_signals(session, payment, *, redis, stage) -> Signals`` (IP country offline, first-seen card, ...)
    ``velocity.record(redis, payment, *, declined: bool)``; ``velocity.read(redis, payment) -> dict | None``
    ``score(weights: RiskWeights, signals) -> (score, level, contributions)``

``app.risk.evaluate`` — the engine
    ``assess(session, payment, *, redis, stage="confirmation") -> Assessment`` (writes the assessment)
    ``outcome_of(assessment, payment) -> dict`` (Stripe's charge ``outcome``)

``app.risk.reviews`` — the review queue (platform admins) and merchants' reviews
    ``open_review(session, payment, assessment, *, owner) -> Review``   (event ``review.opened``)
    ``list_reviews(session, scope | None, *, status="open", owner=None, merchant_id=None, level=None,
        rule_id=None, older_than=None, limit=50, starting_after=None) -> list[Review]``  (oldest first)
    ``get_review(session, scope | None, review_id) -> Review | None``
    ``claim_review(session, scope | None, review_id, *, user_id, assign_to=None)``
    ``approve_review(session, scope | None, review_id, *, actor, note, capture=True, as_owner)``
    ``reject_review(session, scope | None, review_id, *, actor, note, as_fraud=False, as_owner)``
    ``bulk_decide(session, scope | None, review_ids, decision, *, actor, note, as_owner) -> dict[id, result]``
    ``close_review(session, payment, reason)`` (refunded, disputed, canceled: called by payments/disputes)
    ``expire_due_reviews(session, *, now) -> list[Review]`` (the scheduled sweep; voids, alerts)
    ``review_history(session, scope, review) -> dict`` (the card's and email's recent payments, declines,
        disputes in the merchant's own book)
"""
from app.risk import inbox as _inbox  # noqa: E402,F401  (registers the operators' inbox kind "review")
