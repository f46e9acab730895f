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
    ``get_rule(session, scope | None, rule_id)``; ``rules_using_alias(session, scope | None, alias)``
    ``backtest(session, scope | None, predicate, *, days=30, sample_size=20, merchant_scope=None) -> Backtest``
        over the stored signals of the last ``days`` of assessments (one book; the platform's: ``merchant_scope``
        or every book): ``matched``, ``evaluated``, ``disputed_or_fraud_refunded``, ``sample`` (payment, merchant,
        created, risk score and level, outcome, amount, currency, whether later disputed or refunded as fraud)

``app.risk.lists`` — value lists (Stripe's radar.value_list / value_list_item)
    ``list_value_lists(session, scope | None, *, alias=None, contains=None, limit, starting_after) ``
    ``create_value_list(session, scope | None, *, alias, name, item_type, metadata=None, actor=None)``
    ``update_value_list(session, scope | None, list_id, *, alias=None, name=None, metadata=None)``
    ``delete_value_list(session, scope | None, list_id)``
    ``add_item(session, scope | None, list_id, value, *, actor=None)``, ``delete_item(session, scope | None, item_id)``
    ``list_items(session, scope | None, list_id, *, value=None, limit, starting_after)``, ``get_value_list``,
    ``get_item``, ``item_count``

``app.risk.evaluate`` — the engine (signals, velocity, score, rules; ``app.risk.velocity``, ``app.risk.scoring``)
    ``assess(session, payment, *, redis, card: dict | None, stage="confirmation", attempt_id=None,
        three_d_secure_result=None, record_velocity=True) -> Decision`` (inserts the Assessment in the
        caller's transaction; ``Decision.assessment`` holds its values, not an ORM instance)
    ``outcome_object(assessment, type_) -> dict`` (Stripe's charge ``outcome``)
    ``ip_country(ip) -> str | None`` (iptocc, offline)
    The payment side (screening before the PSP call, holding, after 3-D Secure) is ``app/payments/risk.py``.

``app.risk.reviews`` — the review queue (platform admins) and merchants' reviews
    ``list_reviews(session, scope | None, *, status="open", owner=None, merchant_id=None, livemode=None,
        level=None, rule_id=None, older_than: timedelta | None = None, limit=50, starting_after=None,
        newest_first=False) -> list[Review]``  (oldest first: the queue's order)
    ``get_review(session, scope, review_id) -> Review``; ``review_object(review) -> dict`` (the API's shape)
    ``claim_review(session, scope, review_id, *, user_id, assign_to=None, acting_as="platform")``
    ``add_note(session, scope, review_id, *, user_id, note, acting_as="platform")``
    ``decide(session, scope, review_id, "approve" | "reject", *, actor, note, deps, acting_as="platform",
        capture=True, as_fraud=False, request_id=None, ip=None) -> Decided``  (once; 409 ReviewDecided after)
    ``bulk_decide(session, [(scope, review_id), ...], decision, *, actor, note, deps, acting_as="platform",
        capture=True, as_fraud=False) -> {review_id: "ok" | why not}``
    ``review_history(session, scope, review) -> {"card": {...}, "email": {...}}`` (payments, declines, disputes
        of the merchant's own book)
    ``set_reviews_by_platform(session, merchant_id, value, *, actor, reason=None)`` (per-merchant setting)
    ``expire_due_reviews(session, deps, *, now=None) -> list[review id]`` (the scheduled sweep: voids, alerts)
    ``refuse_during_platform_review(session, payment, "capture" | "cancel", lock=True)`` (the one guard of the
        merchant's capture and cancel: PaymentInReview while a platform-owned review is open), used by
        ``check_capture(session, payment)`` and ``check_cancel(session, payment)``;
        ``close_for_payment(session, payment, reason)`` (a cancel, refund or dispute otherwise; used by payments
        and disputes)
    ``actor`` is a user id (``usr_...``, audited as the user) or a label (``api_key:...``); ``acting_as`` is
    ``"platform"`` (admins: any review) or ``"merchant"`` (its own reviews only: NotReviewOwner otherwise).

``app.risk.fraud_warnings`` — early fraud warnings PSPs report (table ``early_fraud_warnings``; issue 23)
    ``apply_notice(session, psp, event, scope, payment_id) -> list[Event]`` (the ``early_fraud_warning.*`` callback
    handler's work), ``warnings_for_payment(session, scope, payment_id)``, ``warning_object(row) -> dict``

Errors (``app.risk.errors``, the payments error family: status, code, message, param): RiskInvalid (400;
``detail`` has the rule error's line, column, position), RiskNotFound (404), ReviewDecided (409
``review_closed``), PaymentInReview (409 ``payment_in_review``), NotReviewOwner (403 ``review_not_owned``).
"""
from app.risk import inbox as _inbox  # noqa: E402,F401  (registers the operators' inbox kind "review")
