"""Risk in the dashboard (issue 19): a payment's risk outcome (score, level, each signal's contribution, the rule
that matched, the review), shown on the payment's page here and in the console.

Every read goes through the book's ``Scope``: another merchant's assessment, rule or review is never read. The
card-fingerprint and IP velocity counters are platform-wide by design (app/risk/language.py), so the merchant's
pages show their contribution to the score but never their values: those count other merchants' payments.

Also the merchant's rules editor (Radar › Rules: by action in evaluation order, create, edit with a backtest
before saving, enable, disable, reorder, delete) and value lists (Radar › Lists), over the services of
app/risk/rules.py and app/risk/lists.py. Everyone in the merchant reads; owners and admins change
(Action.MANAGE_RISK), after a recent re-authentication (app/dashboard/reauth.py), each change audited. The helpers
above the routes are shared with the console's editor of the platform's rules (app/admin/risk_views.py).
"""
from flask import abort, current_app, flash, g, redirect, request
from flask_login import current_user
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.accounts.audit import audit
from app.accounts.permissions import Action, can
from app.dashboard import bp
from app.dashboard.context import merchant_view
from app.dashboard.helpers import dash_url, request_meta
from app.dashboard.reauth import demand_reauth, kept_form
from app.dashboard.reporting_helpers import render
from app.dashboard.risk_forms import ActionForm, ListItemForm, RuleForm, ValueListForm
from app.extensions import db
from app.risk.language import SIGNALS
from app.risk.models import Assessment, PlatformRiskRule, Review, RiskRule
from app.scoping import Scope

# The outcome's ``type`` as Stripe's charge ``outcome`` names it, as people read it (list filter, detail).
OUTCOME_LABELS = {
    "authorized": "Authorized",
    "manual_review": "Held for review",
    "blocked": "Blocked",
    "issuer_declined": "Declined by the issuer",
}
LEVEL_LABELS = {"normal": "Normal", "elevated": "Elevated", "highest": "Highest"}
STAGE_LABELS = {"confirmation": "At confirmation", "after_3ds": "After 3-D Secure"}
CLOSED_REASON_LABELS = {
    "approved": "Approved", "refunded": "Refunded", "refunded_as_fraud": "Refunded as fraud",
    "disputed": "Disputed", "canceled": "Canceled (authorization voided)", "timed_out": "Timed out (voided)",
}


def platform_wide_signal(name: str) -> bool:
    """Whether a signal counts across merchants (card fingerprint and IP velocity), per its documentation."""
    spec = SIGNALS.get(name)
    return spec is not None and "platform-wide" in spec.description


def thousandths(value: int | None) -> str:
    """A contribution kept in thousandths (integers, never floats) as a signed decimal: 1250 -> "+1.250"."""
    if value is None:
        return ""
    sign = "-" if value < 0 else "+"
    return f"{sign}{abs(int(value)) // 1000}.{abs(int(value)) % 1000:03d}"


def _signal_rows(assessment: Assessment, *, show_platform_wide: bool) -> list[dict]:
    """Each signal the rules saw, with its contribution to the score, largest contribution first."""
    contributions = assessment.contributions or {}
    signals = assessment.signals or {}
    rows = []
    for name in sorted(set(signals) | set(contributions)):
        hidden = platform_wide_signal(name) and not show_platform_wide
        value = signals.get(name)
        rows.append({
            "name": name,
            "value": None if hidden else value,
            "hidden": hidden,
            "missing": value is None and name in signals,
            # A learned model's feature (an encoded category, a log amount): its contribution only.
            "feature": name not in signals,
            "contribution": contributions.get(name),
            "contribution_text": thousandths(contributions.get(name)),
            "source": SIGNALS[name].source if name in SIGNALS else "",
        })
    rows.sort(key=lambda row: (-abs(int(row["contribution"] or 0)), row["name"]))
    return rows


def _rule_of(session: Session, scope: Scope, assessment: Assessment) -> dict | None:
    """The rule that decided the assessment, as the assessment recorded it (its text then), plus the rule's
    description when it still exists; a platform rule is named as such."""
    if not assessment.rule_id:
        return None
    description = None
    if assessment.rule_owner == "platform":
        row = session.get(PlatformRiskRule, assessment.rule_id)
    else:
        row = scope.get(session, RiskRule, assessment.rule_id)
    if row is not None:
        description = row.description
    return {"id": assessment.rule_id, "owner": assessment.rule_owner, "action": assessment.rule_action,
            "predicate": assessment.rule_predicate, "description": description, "exists": row is not None}


def payment_risk(session: Session, scope: Scope, payment, *, show_platform_wide: bool = False) -> dict | None:
    """The risk section of a payment's page, or None when the payment was never assessed.

    ``show_platform_wide`` is for the console only: platform admins may read the cross-merchant counters.
    """
    assessments = session.scalars(
        scope.select(Assessment, Assessment.payment_id == payment.id)
        .order_by(Assessment.created_at, Assessment.id)).all()
    review = scope.get(session, Review, payment.review_id) if payment.review_id else None
    if review is None:
        review = session.scalars(scope.select(Review, Review.payment_id == payment.id)).one_or_none()
    if not assessments and review is None and not payment.risk_outcome:
        return None
    outcome = payment.risk_outcome or {}
    return {
        "outcome": outcome,
        "outcome_label": OUTCOME_LABELS.get(outcome.get("type"), (outcome.get("type") or "").replace("_", " ")),
        "score": payment.risk_score if payment.risk_score is not None else
        (assessments[-1].score if assessments else None),
        "level": payment.risk_level or (assessments[-1].level if assessments else None),
        "assessments": [{
            "assessment": a,
            "stage": STAGE_LABELS.get(a.stage, a.stage),
            "signals": _signal_rows(a, show_platform_wide=show_platform_wide),
            "rule": _rule_of(session, scope, a),
        } for a in assessments],
        "review": review,
        "review_closed_reason": CLOSED_REASON_LABELS.get(review.closed_reason, review.closed_reason)
        if review is not None and review.closed_reason else None,
    }


# -- Shared by the dashboard's and the console's rule editors ------------------------------------------------

ACTION_HELP = {
    "request_3ds": "Ask the card's issuer for 3-D Secure when one of these matches.",
    "allow": "Let the payment through (skipping your block and review rules) when one of these matches.",
    "block": "Refuse the payment before the processor is asked.",
    "review": "Authorize, and hold the capture until someone approves it.",
}


def rules_by_action(rows: list) -> list[dict]:
    """Rules grouped by action in evaluation order (Radar's: request_3ds, allow, block, review), each group in
    its own order (first match wins)."""
    from app.dashboard.risk_forms import ACTION_LABELS
    from app.risk.models import ACTIONS

    return [{"action": action, "label": ACTION_LABELS[action], "help": ACTION_HELP[action],
             "rules": [row for row in rows if row.action == action]} for action in ACTIONS]


def moved_order(rows: list, rule_id: str, direction: str) -> tuple[str, list[str]] | None:
    """The action and new id order after moving a rule one place up or down within its action; None when it
    cannot move that way (first or last already, or no such rule)."""
    rule = next((row for row in rows if row.id == rule_id), None)
    if rule is None:
        return None
    ids = [row.id for row in rows if row.action == rule.action]
    index = ids.index(rule_id)
    other = index - 1 if direction == "up" else index + 1
    if direction not in ("up", "down") or not 0 <= other < len(ids):
        return None
    ids[index], ids[other] = ids[other], ids[index]
    return rule.action, ids


def rule_error(error) -> dict:
    """A refusal of the rules service as the editor shows it: the message and, for the rule's text, where."""
    detail = getattr(error, "detail", None) or {}
    return {"message": getattr(error, "message", str(error)), "param": getattr(error, "param", None),
            "line": detail.get("line"), "column": detail.get("column"), "position": detail.get("position")}


def refuse_on_form(form, error) -> dict | None:
    """Put a refusal of the rules service on the rule form's field (its text, unless the action or description
    was refused) and ask for a new backtest; the error to mark in the rule's text, or None."""
    problem = rule_error(error)
    field = problem["param"] if problem["param"] in ("action", "description") else "predicate"
    getattr(form, field).errors = [problem["message"]]
    form.tested.data = ""
    return problem if field == "predicate" else None


def marked_lines(text: str, error: dict | None) -> list[dict] | None:
    """The rule's lines with a caret under the error's column, for the re-rendered form (None: nothing to mark)."""
    if not error or error.get("line") is None or not text:
        return None
    lines = text.splitlines() or [""]
    line = max(1, min(int(error["line"]), len(lines)))
    column = max(1, int(error.get("column") or 1))
    return [{"number": n, "text": value, "caret": (" " * (column - 1) + "^") if n == line else None}
            for n, value in enumerate(lines, start=1)]


def run_backtest(session: Session, scope: Scope | None, predicate: str, **kwargs):
    """(the backtest, None) or (None, the error) for a rule's text."""
    from app.risk import rules as risk_rules
    from app.risk.errors import RiskInvalid

    try:
        return risk_rules.backtest(session, scope, predicate, **kwargs), None
    except RiskInvalid as error:
        return None, rule_error(error)


# -- Dashboard pages: rules, value lists ---------------------------------------------------------------------
INVALID_FORM = 422
ITEMS_SHOWN = 100


def _url(name: str, **values) -> str:
    return dash_url("dashboard." + name, **values)


def _audit(action: str, target: str, details: dict | None = None) -> None:
    """A change of the merchant's risk setup, in its audit log (Settings › Audit log)."""
    audit(db.session, action, merchant_id=g.scope.merchant_id, livemode=g.scope.livemode,
          actor_user_id=current_user.id, actor_label=current_user.email, target=target, details=details or {},
          **request_meta())


def _rules_page(status: int = 200):
    from app.risk import rules as risk_rules
    from app.risk.models import PlatformRiskRule

    rows = risk_rules.list_rules(db.session, g.scope)
    platform_blocks = db.session.scalars(
        select(PlatformRiskRule).where(PlatformRiskRule.action == "block", PlatformRiskRule.enabled.is_(True))
        .order_by(PlatformRiskRule.position, PlatformRiskRule.id)).all()
    return render("dashboard/risk/rules.html", groups=rules_by_action(rows), platform_blocks=platform_blocks,
                  action_form=ActionForm(formdata=None), risk_url=_url), status


@bp.route("/<merchant_id>/<mode>/radar/rules")
@merchant_view(Action.VIEW)
def risk_rules():
    """The merchant's rules by action, in evaluation order, after the platform's blocks (shown read only)."""
    return _rules_page()


def _editor(form: RuleForm, *, rule=None, backtest=None, error=None, status: int = 200, note: str | None = None):
    return render("dashboard/risk/rule_form.html", form=form, rule=rule, backtest=backtest, error=error,
                  marked=marked_lines(form.predicate.data or "", error), note=note, risk_url=_url,
                  payment_url=lambda sample: _url("payment_detail", payment_id=sample["payment"])), status


def _rule_form_post(rule=None):
    """The editor's POST: backtest the text (intent=backtest, or a save of a text not backtested yet), else save
    it. Saving needs a recent re-authentication; the text typed comes back after it."""
    from app.risk import rules as risk_rules
    from app.risk.errors import RiskInvalid, RiskNotFound

    form = RuleForm()
    if not form.validate():
        return _editor(form, rule=rule, status=INVALID_FORM)
    predicate = form.predicate.data.strip()
    saving = request.form.get("intent") == "save"
    if saving and form.tested.data != predicate:
        note = "Here is what the rule would have matched; save it once you have looked."
        saving = False
    else:
        note = None
    if not saving:
        backtest, error = run_backtest(db.session, g.scope, predicate)
        db.session.rollback()
        form.tested.data = predicate if error is None else ""
        if error is not None:
            form.predicate.errors = [error["message"]]
        return _editor(form, rule=rule, backtest=backtest, error=error, note=note,
                       status=INVALID_FORM if error else 200)
    response = demand_reauth()
    if response is not None:
        return response
    try:
        if rule is None:
            saved = risk_rules.create_rule(db.session, g.scope, action=form.action.data, predicate=predicate,
                                           description=form.description.data or None, actor=current_user.id)
            _audit("risk.rule_created", saved.id, {"action": saved.action, "predicate": saved.predicate})
        else:
            saved = risk_rules.update_rule(db.session, g.scope, rule.id, predicate=predicate,
                                           action=form.action.data, description=form.description.data or "",
                                           actor=current_user.id)
            _audit("risk.rule_updated", saved.id, {"action": saved.action, "predicate": saved.predicate})
    except RiskNotFound:
        abort(404)
    except RiskInvalid as error:
        db.session.rollback()
        return _editor(form, rule=rule, error=refuse_on_form(form, error), status=INVALID_FORM)
    db.session.commit()
    flash("The rule is saved." if rule is None else "The rule is updated.", "success")
    return redirect(_url("risk_rules"), code=303)


@bp.route("/<merchant_id>/<mode>/radar/rules/new", methods=["GET", "POST"])
@merchant_view(Action.MANAGE_RISK)
def risk_rule_new():
    """Write a rule, backtest it over the last 30 days, save it."""
    if request.method == "POST":
        return _rule_form_post()
    kept = kept_form()
    form = RuleForm(formdata=kept) if kept else RuleForm(formdata=None, action=request.args.get("action", "block"))
    return _editor(form)


def _rule_or_404(rule_id: str):
    from app.risk import rules as risk_rules
    from app.risk.errors import RiskNotFound

    try:
        return risk_rules.get_rule(db.session, g.scope, rule_id)
    except RiskNotFound:
        abort(404)


@bp.route("/<merchant_id>/<mode>/radar/rules/<rule_id>", methods=["GET", "POST"])
@merchant_view(Action.MANAGE_RISK)
def risk_rule_edit(rule_id: str):
    """Change a rule's text, action or description (backtested again before saving)."""
    rule = _rule_or_404(rule_id)
    if request.method == "POST":
        return _rule_form_post(rule)
    kept = kept_form()
    form = RuleForm(formdata=kept) if kept else RuleForm(
        formdata=None, action=rule.action, predicate=rule.predicate, description=rule.description or "")
    return _editor(form, rule=rule)


RULE_OPS = ("enable", "disable", "up", "down", "delete")


@bp.post("/<merchant_id>/<mode>/radar/rules/<rule_id>/op")
@merchant_view(Action.MANAGE_RISK)
def risk_rule_op(rule_id: str):
    """Enable, disable, move up or down within its action, or delete a rule (after a re-authentication)."""
    from app.risk import rules as risk_rules
    from app.risk.errors import RiskInvalid, RiskNotFound

    form = ActionForm()
    op = request.form.get("op")
    if not form.validate() or op not in RULE_OPS:
        flash("That did not work: reload the page and try again.", "error")
        return _rules_page(INVALID_FORM)
    response = demand_reauth(_url("risk_rules"))
    if response is not None:
        return response
    try:
        rule = risk_rules.get_rule(db.session, g.scope, rule_id, for_update=True)
        if op in ("enable", "disable"):
            risk_rules.set_rule_enabled(db.session, g.scope, rule.id, op == "enable", actor=current_user.id)
        elif op == "delete":
            risk_rules.delete_rule(db.session, g.scope, rule.id, actor=current_user.id)
        else:
            moved = moved_order(risk_rules.list_rules(db.session, g.scope), rule.id, op)
            if moved is None:
                db.session.rollback()
                return redirect(_url("risk_rules"), code=303)
            risk_rules.reorder_rules(db.session, g.scope, moved[0], moved[1], actor=current_user.id)
        _audit(f"risk.rule_{'moved' if op in ('up', 'down') else op + 'd'}", rule_id, {"op": op})
    except RiskNotFound:
        db.session.rollback()
        abort(404)
    except RiskInvalid as error:
        db.session.rollback()
        flash(error.message, "error")
        return _rules_page(INVALID_FORM)
    db.session.commit()
    flash({"enable": "The rule is enabled.", "disable": "The rule is disabled.", "delete": "The rule is deleted.",
           "up": "The rule moved up.", "down": "The rule moved down."}[op], "success")
    return redirect(_url("risk_rules"), code=303)


def _lists_page(form: ValueListForm | None = None, status: int = 200):
    from app.risk import lists as value_lists
    from app.risk.models import PlatformValueList

    rows = value_lists.list_value_lists(db.session, g.scope, limit=200)
    counts = {row.id: value_lists.item_count(db.session, g.scope, row.id) for row in rows}
    platform = db.session.scalars(select(PlatformValueList).order_by(PlatformValueList.alias)).all()
    return render("dashboard/risk/lists.html", lists=rows, counts=counts, platform_lists=platform,
                  form=form or ValueListForm(formdata=kept_form() or None), risk_url=_url,
                  may_manage=can(g.role, Action.MANAGE_RISK)), status


@bp.route("/<merchant_id>/<mode>/radar/lists", methods=["GET", "POST"])
@merchant_view(Action.VIEW)
def risk_lists():
    """The merchant's value lists (rules name them @alias), the platform's (read only), and a new list's form."""
    if request.method == "GET":
        return _lists_page()
    if not can(g.role, Action.MANAGE_RISK):
        abort(403)
    from app.risk import lists as value_lists
    from app.risk.errors import RiskInvalid

    form = ValueListForm()
    if not form.validate():
        return _lists_page(form, INVALID_FORM)
    response = demand_reauth()
    if response is not None:
        return response
    try:
        row = value_lists.create_value_list(db.session, g.scope, alias=form.alias.data.strip(),
                                            name=form.name.data, item_type=form.item_type.data, actor=current_user.id)
        _audit("risk.value_list_created", row.id, {"alias": row.alias, "item_type": row.item_type})
    except RiskInvalid as error:
        db.session.rollback()
        getattr(form, error.param if error.param in ("alias", "name", "item_type") else "alias").errors = \
            [error.message]
        return _lists_page(form, INVALID_FORM)
    db.session.commit()
    flash(f"The list @{row.alias} is created.", "success")
    return redirect(_url("risk_list", list_id=row.id), code=303)


def _list_or_404(list_id: str):
    from app.risk import lists as value_lists
    from app.risk.errors import RiskNotFound

    try:
        return value_lists.get_value_list(db.session, g.scope, list_id)
    except RiskNotFound:
        abort(404)


def _list_page(value_list, form: ListItemForm | None = None, status: int = 200):
    from app.risk import lists as value_lists

    search = (request.args.get("value") or "").strip()[:800] or None
    items = value_lists.list_items(db.session, g.scope, value_list.id, value=search, limit=ITEMS_SHOWN)
    return render("dashboard/risk/list.html", value_list=value_list, items=items, search=search or "",
                  count=value_lists.item_count(db.session, g.scope, value_list.id),
                  form=form or ListItemForm(formdata=kept_form() or None), action_form=ActionForm(formdata=None),
                  risk_url=_url, may_manage=can(g.role, Action.MANAGE_RISK)), status


@bp.route("/<merchant_id>/<mode>/radar/lists/<list_id>")
@merchant_view(Action.VIEW)
def risk_list(list_id: str):
    """A value list's items, newest first (a value can be searched), and the form to add one."""
    return _list_page(_list_or_404(list_id))


@bp.post("/<merchant_id>/<mode>/radar/lists/<list_id>/items")
@merchant_view(Action.MANAGE_RISK)
def risk_item_add(list_id: str):
    """Add an item (normalized by the list's type: lower-case emails, CIDR ranges, ...)."""
    from app.risk import lists as value_lists
    from app.risk.errors import RiskInvalid

    value_list = _list_or_404(list_id)
    form = ListItemForm()
    if not form.validate():
        return _list_page(value_list, form, INVALID_FORM)
    response = demand_reauth(_url("risk_list", list_id=list_id))
    if response is not None:
        return response
    try:
        item = value_lists.add_item(db.session, g.scope, value_list.id, form.value.data, actor=current_user.id)
        _audit("risk.value_list_item_added", item.id, {"list": value_list.id, "value": item.value})
    except RiskInvalid as error:
        db.session.rollback()
        form.value.errors = [error.message]
        return _list_page(_list_or_404(list_id), form, INVALID_FORM)
    db.session.commit()
    flash(f"{item.value} is added.", "success")
    return redirect(_url("risk_list", list_id=list_id), code=303)


@bp.post("/<merchant_id>/<mode>/radar/lists/<list_id>/items/<item_id>/delete")
@merchant_view(Action.MANAGE_RISK)
def risk_item_delete(list_id: str, item_id: str):
    """Remove an item from a list."""
    from app.risk import lists as value_lists
    from app.risk.errors import RiskNotFound

    value_list = _list_or_404(list_id)
    if not ActionForm().validate():
        return _list_page(value_list, status=INVALID_FORM)
    response = demand_reauth(_url("risk_list", list_id=list_id))
    if response is not None:
        return response
    try:
        item = value_lists.get_item(db.session, g.scope, item_id)
        if item.value_list_id != value_list.id:
            raise RiskNotFound("No such item.")
        value = item.value
        value_lists.delete_item(db.session, g.scope, item_id)
    except RiskNotFound:
        db.session.rollback()
        abort(404)
    _audit("risk.value_list_item_removed", item_id, {"list": value_list.id, "value": value})
    db.session.commit()
    flash(f"{value} is removed.", "success")
    return redirect(_url("risk_list", list_id=list_id), code=303)


@bp.post("/<merchant_id>/<mode>/radar/lists/<list_id>/delete")
@merchant_view(Action.MANAGE_RISK)
def risk_list_delete(list_id: str):
    """Delete a list (refused while a rule names it)."""
    from app.risk import lists as value_lists
    from app.risk.errors import RiskInvalid

    value_list = _list_or_404(list_id)
    if not ActionForm().validate():
        return _list_page(value_list, status=INVALID_FORM)
    response = demand_reauth(_url("risk_list", list_id=list_id))
    if response is not None:
        return response
    alias = value_list.alias
    try:
        value_lists.delete_value_list(db.session, g.scope, value_list.id)
    except RiskInvalid as error:
        db.session.rollback()
        flash(error.message, "error")
        return _list_page(_list_or_404(list_id), status=INVALID_FORM)
    _audit("risk.value_list_deleted", list_id, {"alias": alias})
    db.session.commit()
    flash(f"The list @{alias} is deleted.", "success")
    return redirect(_url("risk_lists"), code=303)


# -- Dashboard pages: reviews --------------------------------------------------------------------------------

REVIEWS_SHOWN = 100


def _review_filters(args) -> dict:
    """The Reviews page's filters from the query string (status, level, rule, age); unknown values are dropped."""
    from app.risk.models import LEVELS
    from app.risk.reviews import REVIEW_AGES

    return {
        "status": "closed" if args.get("status") == "closed" else "open",
        "level": args.get("level") if args.get("level") in LEVELS else "",
        "rule": (args.get("rule") or "").strip()[:64],
        "age": args.get("age") if args.get("age") in REVIEW_AGES else "",
    }


@bp.route("/<merchant_id>/<mode>/radar/reviews")
@merchant_view(Action.VIEW)
def risk_reviews():
    """The book's payments held for review: open ones oldest first (closed ones newest first), filtered by
    status, risk level, the rule that opened them and age (the reviews service's ``list_reviews``)."""
    from app.payments.models import Payment
    from app.risk.models import LEVELS
    from app.risk.reviews import REVIEW_AGES, list_reviews

    filters = _review_filters(request.args)
    status = filters["status"]
    rows = list_reviews(db.session, g.scope, status=status, level=filters["level"] or None,
                        rule_id=filters["rule"] or None, older_than=REVIEW_AGES.get(filters["age"]),
                        limit=REVIEWS_SHOWN, newest_first=status == "closed")
    payments = {p.id: p for p in db.session.scalars(g.scope.select(
        Payment, Payment.id.in_([r.payment_id for r in rows])))} if rows else {}
    # The rules that opened a review of this book, for the rule filter (id and predicate as assessed).
    rules_seen = db.session.execute(g.scope.select(Review).with_only_columns(Review.rule_id, Assessment.rule_predicate)
                                    .join(Assessment, (Assessment.merchant_id == Review.merchant_id)
                                          & (Assessment.id == Review.assessment_id))
                                    .where(Review.rule_id.is_not(None)).distinct().order_by(Review.rule_id)).all()
    return render("dashboard/risk/reviews.html", reviews=rows, payments=payments, status=status, risk_url=_url,
                  by_platform=bool(g.merchant.risk_reviews_by_platform), filters=filters, levels=LEVELS,
                  ages=REVIEW_AGES, rules_seen=rules_seen,
                  filtered=any(filters[name] for name in ("level", "rule", "age")))


def _review_or_404(review_id: str) -> Review:
    row = g.scope.get(db.session, Review, review_id) if isinstance(review_id, str) and len(review_id) <= 64 else None
    if row is None:
        abort(404)
    return row


def may_decide(review: Review) -> bool:
    """Whether the member may decide this review here: open, the merchant's own (not kept by the platform),
    and a role that reviews (owners and admins)."""
    return review.status == "open" and review.owner == "merchant" and can(g.role, Action.REVIEW_PAYMENTS)


def _review_page(review: Review, form=None, status: int = 200):
    from app.dashboard.risk_forms import ReviewDecisionForm
    from app.payments.models import Payment

    payment = g.scope.get(db.session, Payment, review.payment_id)
    return render("dashboard/risk/review.html", review=review, payment=payment,
                  risk=payment_risk(db.session, g.scope, payment) if payment is not None else None,
                  history=_history(review), form=form or ReviewDecisionForm(formdata=kept_form() or None),
                  may_decide=may_decide(review), risk_url=_url,
                  payment_url=lambda payment_id: _url("payment_detail", payment_id=payment_id),
                  closed_reason=CLOSED_REASON_LABELS.get(review.closed_reason, review.closed_reason)), status


def _history(review: Review) -> dict:
    """The card's and email's recent history in the merchant's own book (the reviews service's)."""
    from app.risk.reviews import review_history

    return review_history(db.session, g.scope, review)


@bp.route("/<merchant_id>/<mode>/radar/reviews/<review_id>")
@merchant_view(Action.VIEW)
def risk_review(review_id: str):
    """One review: the payment, its risk outcome, the card's and email's history, and the decision."""
    return _review_page(_review_or_404(review_id))


@bp.post("/<merchant_id>/<mode>/radar/reviews/<review_id>/<decision>")
@merchant_view(Action.REVIEW_PAYMENTS)
def risk_review_decide(review_id: str, decision: str):
    """Approve (capture) or reject (void) a payment held for review, with a note, after a re-authentication."""
    from app.dashboard.risk_forms import ReviewDecisionForm
    from app.payments.deps import deps_for
    from app.risk import reviews as risk_reviews
    from app.risk.errors import NotReviewOwner, ReviewDecided, RiskInvalid, RiskNotFound

    if decision not in ("approve", "reject"):
        abort(404)
    review = _review_or_404(review_id)
    form = ReviewDecisionForm()
    if not form.validate():
        return _review_page(review, form, INVALID_FORM)
    response = demand_reauth(_url("risk_review", review_id=review_id))
    if response is not None:
        return response
    try:
        risk_reviews.decide(db.session, g.scope, review.id, decision, actor=current_user.id, note=form.note.data,
                            deps=deps_for(current_app._get_current_object()), acting_as="merchant", as_fraud=bool(form.as_fraud.data),
                            request_id=g.get("request_id"), ip=request.remote_addr)
    except RiskNotFound:
        db.session.rollback()
        abort(404)
    except RiskInvalid as error:
        db.session.rollback()
        form.note.errors = [error.message]
        return _review_page(_review_or_404(review_id), form, INVALID_FORM)
    except (ReviewDecided, NotReviewOwner) as error:
        db.session.rollback()
        flash(error.message, "error")
        return _review_page(_review_or_404(review_id), form, 409)
    db.session.commit()
    flash("Approved: the payment is captured." if decision == "approve" else "Rejected: the authorization is voided.",
          "success")
    return redirect(_url("risk_review", review_id=review_id), code=303)
