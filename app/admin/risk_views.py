"""/admin/risk: the platform's risk rules and value lists (the editor shared with the dashboard's, over the same
services with ``scope=None``), the review queue across merchants, and the per-merchant setting that keeps the
review of a merchant's payments with the platform (shown on the console's merchant page).

Every change takes a reason and is audited (the console's rule, app/admin/forms.py); every POST of the console
needs a recent second-factor confirmation (app/admin/__init__.py). A backtest changes nothing and needs none.
"""

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from sqlalchemy import select

from app.accounts.audit import ReasonRequired, audit, operator_reason
from app.accounts.models import Merchant
from app.admin import bp
from app.admin.helpers import INVALID_FORM, meta, merchant_names, operator
from app.dashboard.context import platform_admin_required
from app.dashboard.risk_forms import (
    PlatformActionForm,
    PlatformListItemForm,
    PlatformRuleForm,
    PlatformValueListForm,
    ReviewDecisionForm,
)
from app.dashboard.risk_views import (
    CLOSED_REASON_LABELS,
    RULE_OPS,
    marked_lines,
    moved_order,
    payment_risk,
    refuse_on_form,
    rules_by_action,
    run_backtest,
)
from app.extensions import db
from app.models_base import utcnow
from app.payments.models import Payment
from app.risk import lists as value_lists
from app.risk import rules as risk_rules
from app.risk.errors import RiskInvalid, RiskNotFound
from app.risk.models import LEVELS, Review
from app.risk.reviews import REVIEW_AGES
from app.scoping import Scope

ITEMS_SHOWN = 100
QUEUE_SIZE = 100
# The queue's age filter: reviews open longer than this.
AGES = REVIEW_AGES
BULK_MAX = QUEUE_SIZE


def _url(name: str, **values) -> str:
    return url_for("admin." + name, **values)


def _audit(action: str, target: str, reason: str, *, merchant_id: str | None = None, livemode: bool | None = None,
           details: dict | None = None) -> None:
    """An operator's risk change, with its reason (platform rules and lists: no merchant)."""
    audit(db.session, action, merchant_id=merchant_id, livemode=livemode, actor_user_id=operator().id,
          actor_label=operator().email, target=target, details={"reason": reason, **(details or {})},
          **meta().as_kwargs())


def _reason_or_error(form) -> str | None:
    """The form's reason, or None with the message set on the field."""
    try:
        return operator_reason(form.reason.data)
    except ReasonRequired as error:
        form.reason.errors = [*form.reason.errors, error.message]
        return None


# -- Platform rules ------------------------------------------------------------------------------------------

def _rules_page(status: int = 200, problem: str | None = None):
    page = render_template("admin/risk_rules.html", groups=rules_by_action(risk_rules.list_rules(db.session, None)),
                           action_form=PlatformActionForm(formdata=None), risk_url=_url, problem=problem)
    db.session.rollback()  # read-only
    return page, status


@bp.get("/risk/rules")
@platform_admin_required
def risk_rules_page():
    """The platform's rules by action in evaluation order (its blocks run before any merchant rule)."""
    return _rules_page()


def _editor(form, *, rule=None, backtest=None, error=None, status: int = 200, note: str | None = None):
    page = render_template("admin/risk_rule_form.html", form=form, rule=rule, backtest=backtest, error=error,
                           marked=marked_lines(form.predicate.data or "", error), note=note, risk_url=_url,
                           payment_url=lambda sample: _url("payment", payment_id=sample["payment"]))
    db.session.rollback()
    return page, status


def _rule_form_post(rule=None):
    form = PlatformRuleForm()
    if not form.validate():
        return _editor(form, rule=rule, status=INVALID_FORM)
    predicate = form.predicate.data.strip()
    saving = request.form.get("intent") == "save"
    note = None
    if saving and form.tested.data != predicate:
        note, saving = "Here is what the rule would have matched; save it once you have looked.", False
    if not saving:
        # Every merchant's last 30 days (an admin report across books): what a platform rule would change.
        backtest, error = run_backtest(db.session, None, predicate)
        form.tested.data = predicate if error is None else ""
        if error is not None:
            form.predicate.errors = [error["message"]]
        return _editor(form, rule=rule, backtest=backtest, error=error, note=note,
                       status=INVALID_FORM if error else 200)
    reason = _reason_or_error(form)
    if reason is None:
        return _editor(form, rule=rule, status=INVALID_FORM)
    try:
        if rule is None:
            saved = risk_rules.create_rule(db.session, None, action=form.action.data, predicate=predicate,
                                           description=form.description.data or None, actor=operator().id)
            _audit("risk.platform_rule_created", saved.id, reason,
                   details={"action": saved.action, "predicate": saved.predicate})
        else:
            saved = risk_rules.update_rule(db.session, None, rule.id, predicate=predicate, action=form.action.data,
                                           description=form.description.data or "", actor=operator().id)
            _audit("risk.platform_rule_updated", saved.id, reason,
                   details={"action": saved.action, "predicate": saved.predicate})
    except RiskNotFound:
        db.session.rollback()
        abort(404)
    except RiskInvalid as error:
        db.session.rollback()
        return _editor(form, rule=rule, error=refuse_on_form(form, error), status=INVALID_FORM)
    db.session.commit()
    flash("The platform rule is saved." if rule is None else "The platform rule is updated.", "success")
    return redirect(_url("risk_rules_page"), code=303)


@bp.route("/risk/rules/new", methods=["GET", "POST"])
@platform_admin_required
def risk_rule_new():
    """Write a platform rule, backtest it across merchants, save it with a reason."""
    if request.method == "POST":
        return _rule_form_post()
    return _editor(PlatformRuleForm(formdata=None, action=request.args.get("action", "block")))


def _rule_or_404(rule_id: str):
    try:
        return risk_rules.get_rule(db.session, None, rule_id)
    except RiskNotFound:
        abort(404)


@bp.route("/risk/rules/<rule_id>", methods=["GET", "POST"])
@platform_admin_required
def risk_rule_edit(rule_id: str):
    """Change a platform rule (backtested again before saving)."""
    rule = _rule_or_404(rule_id)
    if request.method == "POST":
        return _rule_form_post(rule)
    return _editor(PlatformRuleForm(formdata=None, action=rule.action, predicate=rule.predicate,
                                    description=rule.description or ""), rule=rule)


@bp.post("/risk/rules/<rule_id>/op")
@platform_admin_required
def risk_rule_op(rule_id: str):
    """Enable, disable, move or delete a platform rule, with a reason."""
    form = PlatformActionForm()
    op = request.form.get("op")
    if not form.validate() or op not in RULE_OPS:
        return _rules_page(INVALID_FORM, "That did not work: reload the page and try again.")
    try:
        reason = operator_reason(form.reason.data)
    except ReasonRequired as error:
        return _rules_page(INVALID_FORM, error.message)
    try:
        rule = risk_rules.get_rule(db.session, None, rule_id, for_update=True)
        if op in ("enable", "disable"):
            risk_rules.set_rule_enabled(db.session, None, rule.id, op == "enable", actor=operator().id)
        elif op == "delete":
            risk_rules.delete_rule(db.session, None, rule.id, actor=operator().id)
        else:
            moved = moved_order(risk_rules.list_rules(db.session, None), rule.id, op)
            if moved is None:
                db.session.rollback()
                return redirect(_url("risk_rules_page"), code=303)
            risk_rules.reorder_rules(db.session, None, moved[0], moved[1], actor=operator().id)
        _audit(f"risk.platform_rule_{'moved' if op in ('up', 'down') else op + 'd'}", rule_id, reason,
               details={"op": op})
    except RiskNotFound:
        db.session.rollback()
        abort(404)
    except RiskInvalid as error:
        db.session.rollback()
        return _rules_page(INVALID_FORM, error.message)
    db.session.commit()
    flash("The platform rule is changed.", "success")
    return redirect(_url("risk_rules_page"), code=303)


# -- Platform value lists ------------------------------------------------------------------------------------

def _lists_page(form=None, status: int = 200):
    rows = value_lists.list_value_lists(db.session, None, limit=200)
    counts = {row.id: value_lists.item_count(db.session, None, row.id) for row in rows}
    page = render_template("admin/risk_lists.html", lists=rows, counts=counts,
                           form=form or PlatformValueListForm(formdata=None), risk_url=_url)
    db.session.rollback()
    return page, status


@bp.route("/risk/lists", methods=["GET", "POST"])
@platform_admin_required
def risk_lists():
    """The platform's value lists (built-in block lists and the platform's own) and a new list's form."""
    if request.method == "GET":
        return _lists_page()
    form = PlatformValueListForm()
    if not form.validate():
        return _lists_page(form, INVALID_FORM)
    reason = _reason_or_error(form)
    if reason is None:
        return _lists_page(form, INVALID_FORM)
    try:
        row = value_lists.create_value_list(db.session, None, alias=form.alias.data.strip(), name=form.name.data,
                                            item_type=form.item_type.data, actor=operator().id)
        _audit("risk.platform_value_list_created", row.id, reason, details={"alias": row.alias})
    except RiskInvalid as error:
        db.session.rollback()
        getattr(form, error.param if error.param in ("alias", "name", "item_type") else "alias").errors = \
            [error.message]
        return _lists_page(form, INVALID_FORM)
    db.session.commit()
    flash(f"The list @{row.alias} is created.", "success")
    return redirect(_url("risk_list", list_id=row.id), code=303)


def _list_or_404(list_id: str):
    try:
        return value_lists.get_value_list(db.session, None, list_id)
    except RiskNotFound:
        abort(404)


def _list_page(value_list, form=None, status: int = 200, problem: str | None = None):
    search = (request.args.get("value") or "").strip()[:800] or None
    page = render_template(
        "admin/risk_list.html", value_list=value_list, search=search or "", problem=problem,
        items=value_lists.list_items(db.session, None, value_list.id, value=search, limit=ITEMS_SHOWN),
        count=value_lists.item_count(db.session, None, value_list.id),
        form=form or PlatformListItemForm(formdata=None), action_form=PlatformActionForm(formdata=None),
        risk_url=_url)
    db.session.rollback()
    return page, status


@bp.get("/risk/lists/<list_id>")
@platform_admin_required
def risk_list(list_id: str):
    """A platform list's items, newest first, and the form to add one."""
    return _list_page(_list_or_404(list_id))


@bp.post("/risk/lists/<list_id>/items")
@platform_admin_required
def risk_item_add(list_id: str):
    """Add an item to a platform list, with a reason."""
    value_list = _list_or_404(list_id)
    form = PlatformListItemForm()
    if not form.validate():
        return _list_page(value_list, form, INVALID_FORM)
    reason = _reason_or_error(form)
    if reason is None:
        return _list_page(value_list, form, INVALID_FORM)
    try:
        item = value_lists.add_item(db.session, None, value_list.id, form.value.data, actor=operator().id)
        _audit("risk.platform_value_list_item_added", item.id, reason,
               details={"list": value_list.id, "value": item.value})
    except RiskInvalid as error:
        db.session.rollback()
        form.value.errors = [error.message]
        return _list_page(_list_or_404(list_id), form, INVALID_FORM)
    db.session.commit()
    flash(f"{item.value} is added.", "success")
    return redirect(_url("risk_list", list_id=list_id), code=303)


@bp.post("/risk/lists/<list_id>/items/<item_id>/delete")
@platform_admin_required
def risk_item_delete(list_id: str, item_id: str):
    """Remove an item from a platform list, with a reason."""
    value_list = _list_or_404(list_id)
    form = PlatformActionForm()
    if not form.validate():
        return _list_page(value_list, status=INVALID_FORM)
    try:
        reason = operator_reason(form.reason.data)
    except ReasonRequired as error:
        return _list_page(value_list, status=INVALID_FORM, problem=error.message)
    try:
        item = value_lists.get_item(db.session, None, item_id)
        if item.value_list_id != value_list.id:
            raise RiskNotFound("No such item.")
        value = item.value
        value_lists.delete_item(db.session, None, item_id)
    except RiskNotFound:
        db.session.rollback()
        abort(404)
    _audit("risk.platform_value_list_item_removed", item_id, reason, details={"list": value_list.id, "value": value})
    db.session.commit()
    flash(f"{value} is removed.", "success")
    return redirect(_url("risk_list", list_id=list_id), code=303)


@bp.post("/risk/lists/<list_id>/delete")
@platform_admin_required
def risk_list_delete(list_id: str):
    """Delete a platform list (refused for built-in lists and while a rule names it), with a reason."""
    value_list = _list_or_404(list_id)
    form = PlatformActionForm()
    if not form.validate():
        return _list_page(value_list, status=INVALID_FORM)
    try:
        reason = operator_reason(form.reason.data)
    except ReasonRequired as error:
        return _list_page(value_list, status=INVALID_FORM, problem=error.message)
    alias = value_list.alias
    try:
        value_lists.delete_value_list(db.session, None, value_list.id)
    except RiskInvalid as error:
        db.session.rollback()
        return _list_page(_list_or_404(list_id), status=INVALID_FORM, problem=error.message)
    _audit("risk.platform_value_list_deleted", list_id, reason, details={"alias": alias})
    db.session.commit()
    flash(f"The list @{alias} is deleted.", "success")
    return redirect(_url("risk_lists"), code=303)


# -- The per-merchant setting: the platform keeps the review -------------------------------------------------

@bp.post("/merchants/<merchant_id>/risk-reviews")
@platform_admin_required
def risk_reviews_setting(merchant_id: str):
    """Keep the review of this merchant's payments with the platform, or leave it to the merchant (a reason,
    audited on the merchant, whose owners and admins read it)."""
    from app.risk.reviews import set_reviews_by_platform

    if db.session.get(Merchant, merchant_id) is None:
        abort(404)
    form = PlatformActionForm()
    keep = request.form.get("by_platform") == "yes"
    if not form.validate():
        abort(400)
    try:
        reason = operator_reason(form.reason.data)
    except ReasonRequired as error:
        db.session.rollback()
        flash(error.message, "error")
        return redirect(_url("merchant", merchant_id=merchant_id), code=303)
    set_reviews_by_platform(db.session, merchant_id, keep, actor=operator().id, reason=reason)
    db.session.commit()
    flash("The platform now reviews this merchant's payments." if keep
          else "The merchant now reviews its own payments.", "success")
    return redirect(_url("merchant", merchant_id=merchant_id), code=303)


# -- The review queue ----------------------------------------------------------------------------------------

def _queue_filters(args) -> dict:
    """The queue's filters from the query string; unknown values are dropped."""
    return {
        "merchant": (args.get("merchant") or "").strip()[:64],
        "level": args.get("level") if args.get("level") in LEVELS else "",
        "rule": (args.get("rule") or "").strip()[:64],
        "age": args.get("age") if args.get("age") in AGES else "",
        "owner": args.get("owner") if args.get("owner") in ("platform", "merchant") else "",
    }


def _top_signals(assessment, count: int = 4) -> list[dict]:
    """The signals that raised the score most (the queue's column), with their values: operators see them all."""
    if assessment is None:
        return []
    contributions = assessment.contributions or {}
    names = sorted(contributions, key=lambda name: -int(contributions[name] or 0))[:count]
    return [{"name": name, "value": (assessment.signals or {}).get(name), "contribution": contributions[name]}
            for name in names if int(contributions[name] or 0) > 0]


def _queue_rows(reviews: list[Review]) -> list[dict]:
    from app.risk.models import Assessment
    from app.risk.reviews import review_history

    if not reviews:
        return []
    merchant_ids = {r.merchant_id for r in reviews}
    payments = {(p.merchant_id, p.id): p for p in db.session.scalars(select(Payment).where(
        Payment.merchant_id.in_(merchant_ids), Payment.id.in_([r.payment_id for r in reviews])))}
    assessments = {(a.merchant_id, a.id): a for a in db.session.scalars(select(Assessment).where(
        Assessment.merchant_id.in_(merchant_ids),
        Assessment.id.in_([r.assessment_id for r in reviews if r.assessment_id])))}
    names = merchant_names(merchant_ids)
    rows = []
    for review in reviews:
        assessment = assessments.get((review.merchant_id, review.assessment_id))
        rows.append({"review": review, "payment": payments.get((review.merchant_id, review.payment_id)),
                     "assessment": assessment, "merchant": names.get(review.merchant_id, review.merchant_id),
                     "signals": _top_signals(assessment),
                     "history": review_history(db.session, Scope(review.merchant_id, review.livemode), review,
                                               limit=5)})
    return rows


@bp.get("/risk/reviews")
@platform_admin_required
def risk_reviews():
    """Open reviews across merchants, oldest first: age, amount, score, signals, the rule, the card's and email's
    history, who works it; filters by merchant, level, rule, age; bulk decisions behind a confirmation."""
    from app.risk.reviews import list_reviews

    filters = _queue_filters(request.args)
    after = (request.args.get("starting_after") or "").strip()[:64] or None
    reviews = list_reviews(db.session, None, status="open", merchant_id=filters["merchant"] or None,
                           level=filters["level"] or None, rule_id=filters["rule"] or None,
                           owner=filters["owner"] or None, older_than=AGES.get(filters["age"]), limit=QUEUE_SIZE + 1,
                           starting_after=after)
    # One more than a page tells whether a next one exists; it starts after this page's last (newest) review.
    more = len(reviews) > QUEUE_SIZE
    reviews = reviews[:QUEUE_SIZE]
    first_page = {name: value for name, value in filters.items() if value}
    next_page = {**first_page, "starting_after": reviews[-1].id} if more else None
    page = render_template("admin/risk_reviews.html", rows=_queue_rows(reviews), filters=filters, levels=LEVELS,
                           ages=AGES, form=ReviewDecisionForm(formdata=None), risk_url=_url, now=utcnow(),
                           first_page=first_page, next_page=next_page, paged=after is not None)
    db.session.rollback()  # read-only
    return page


def _review_or_404(review_id: str) -> Review:
    row = db.session.scalars(select(Review).where(Review.id == review_id)).first() \
        if isinstance(review_id, str) and len(review_id) <= 64 else None
    if row is None:
        abort(404)
    return row


def _review_page(review: Review, form=None, status: int = 200):
    from app.risk.reviews import review_history

    scope = Scope(review.merchant_id, review.livemode)
    payment = scope.get(db.session, Payment, review.payment_id)
    if status == 200:  # a read of the merchant's data, audited like a payment's page (not again on a refusal)
        audit(db.session, "admin.risk_review_viewed", merchant_id=review.merchant_id, livemode=review.livemode,
              actor_user_id=operator().id, actor_label=operator().email, target=review.id, **meta().as_kwargs())
    page = render_template(
        "admin/risk_review.html", review=review, payment=payment,
        merchant=db.session.get(Merchant, review.merchant_id),
        risk=payment_risk(db.session, scope, payment, show_platform_wide=True) if payment is not None else None,
        history=review_history(db.session, scope, review), form=form or ReviewDecisionForm(formdata=None),
        closed_reason=CLOSED_REASON_LABELS.get(review.closed_reason, review.closed_reason), risk_url=_url,
        payment_url=lambda payment_id: _url("payment", payment_id=payment_id))
    db.session.commit()  # the audit row of the read
    return page, status


@bp.get("/risk/reviews/<review_id>")
@platform_admin_required
def risk_review(review_id: str):
    """One review of any merchant (audited as a read of its data)."""
    return _review_page(_review_or_404(review_id))


@bp.post("/risk/reviews/<review_id>/claim")
@platform_admin_required
def risk_review_claim(review_id: str):
    """Claim a review, or assign it to another platform admin (by email): who works it shows in the queue."""
    from app.accounts.models import User
    from app.risk.errors import ReviewDecided
    from app.risk.reviews import claim_review

    review = _review_or_404(review_id)
    if not PlatformActionForm().validate():
        abort(400)
    assign_to = None
    email = (request.form.get("assign_to") or "").strip().lower()
    if email:
        user = db.session.scalars(select(User).where(User.email == email, User.is_platform_admin.is_(True))).first()
        if user is None:
            flash("Assign to a platform admin: no platform admin has that email.", "error")
            return redirect(_url("risk_review", review_id=review_id), code=303)
        assign_to = user.id
    try:
        claim_review(db.session, Scope(review.merchant_id, review.livemode), review.id, user_id=operator().id,
                     assign_to=assign_to)
    except ReviewDecided as error:
        db.session.rollback()
        flash(error.message, "error")
        return redirect(_url("risk_review", review_id=review_id), code=303)
    db.session.commit()
    flash("Assigned." if assign_to else "You work this review now.", "success")
    return redirect(safe_back() or _url("risk_review", review_id=review_id), code=303)


def safe_back() -> str | None:
    from app.dashboard.helpers import safe_next

    return safe_next(request.form.get("next"))


@bp.post("/risk/reviews/<review_id>/decide/<decision>")
@platform_admin_required
def risk_review_decide(review_id: str, decision: str):
    """Approve (capture, or leave it to the merchant's manual capture) or reject (void) with a note, once."""
    from app.payments.deps import deps_for
    from app.risk.errors import ReviewDecided
    from app.risk.reviews import decide

    if decision not in ("approve", "reject"):
        abort(404)
    review = _review_or_404(review_id)
    form = ReviewDecisionForm()
    if not form.validate():
        return _review_page(review, form, INVALID_FORM)
    try:
        decide(db.session, Scope(review.merchant_id, review.livemode), review.id, decision, actor=operator().id,
               note=form.note.data, deps=deps_for(current_app._get_current_object()), acting_as="platform",
               capture=request.form.get("leave_capture") != "yes", as_fraud=bool(form.as_fraud.data),
               ip=request.remote_addr)
    except RiskInvalid as error:
        db.session.rollback()
        form.note.errors = [error.message]
        return _review_page(_review_or_404(review_id), form, INVALID_FORM)
    except ReviewDecided as error:
        db.session.rollback()
        flash(error.message, "error")
        return _review_page(_review_or_404(review_id), form, 409)
    db.session.commit()
    flash("Approved." if decision == "approve" else "Rejected: the authorization is voided.", "success")
    return redirect(_url("risk_review", review_id=review_id), code=303)


@bp.post("/risk/reviews/bulk")
@platform_admin_required
def risk_reviews_bulk():
    """Decide several reviews at once: the first POST shows what would be decided (the confirmation step), the
    second (``confirm=yes``) decides each in its own savepoint and says which did not go through."""
    from app.payments.deps import deps_for
    from app.risk.reviews import bulk_decide

    form = ReviewDecisionForm()
    decision = request.form.get("decision")
    ids = list(dict.fromkeys(request.form.getlist("review")))[:BULK_MAX]
    if decision not in ("approve", "reject") or not ids:
        flash("Choose reviews and a decision.", "error")
        return redirect(_url("risk_reviews"), code=303)
    reviews = db.session.scalars(select(Review).where(Review.id.in_(ids)).order_by(Review.created_at)).all()
    if not form.validate() or request.form.get("confirm") != "yes":
        page = render_template("admin/risk_reviews_bulk.html", rows=_queue_rows(reviews), decision=decision,
                               form=form, risk_url=_url, now=utcnow(), checked=request.form.get("confirm") == "yes")
        db.session.rollback()
        return page, (INVALID_FORM if request.form.get("confirm") == "yes" else 200)
    results = bulk_decide(db.session, [(Scope(r.merchant_id, r.livemode), r.id) for r in reviews], decision,
                          actor=operator().id, note=form.note.data, deps=deps_for(current_app._get_current_object()),
                          as_fraud=bool(form.as_fraud.data))
    db.session.commit()
    done = [review_id for review_id, result in results.items() if result == "ok"]
    failed = {review_id: result for review_id, result in results.items() if result != "ok"}
    flash(f"{len(done)} review{'' if len(done) == 1 else 's'} "
          f"{'approved' if decision == 'approve' else 'rejected'}.", "success")
    for review_id, why in failed.items():
        flash(f"{review_id}: {why}", "error")
    return redirect(_url("risk_reviews"), code=303)
