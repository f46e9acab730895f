"""WTForms of the risk screens (issue 19), in the dashboard and the console: the rule editor, value lists and
their items, review decisions. Each carries Flask-WTF's CSRF token and refuses card numbers (KassaForm); the
console's forms add a required reason (checked by the view, since backtesting a rule needs none)."""
from wtforms import BooleanField, HiddenField, SelectField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length, Optional

from app.accounts.audit import REASON_MAX
from app.dashboard.forms import KassaForm, select_choices
from app.risk.language import MAX_LENGTH
from app.risk.models import ACTIONS, ITEM_TYPES

ACTION_LABELS = {
    "request_3ds": "Request 3-D Secure",
    "allow": "Allow",
    "block": "Block",
    "review": "Review",
}
ITEM_TYPE_LABELS = {
    "card_fingerprint": "Card fingerprints", "card_bin": "Card BINs", "email": "Emails",
    "email_domain": "Email domains", "ip_address": "IP addresses and ranges", "country": "Countries",
    "string": "Text (any case)", "case_sensitive_string": "Text (case-sensitive)",
}


def _reason_field():
    return TextAreaField("Reason", validators=[
        Optional(), Length(max=REASON_MAX, message=f"Keep the reason to {REASON_MAX} characters.")])


class RuleForm(KassaForm):
    """A rule: its action, its text in the rule language, a description. ``tested`` is the text last backtested
    on this form: saving a text that was not backtested runs the backtest first."""

    action = SelectField("Action", choices=select_choices((a, ACTION_LABELS[a]) for a in ACTIONS),
                         validators=[DataRequired("Choose what the rule does.")])
    predicate = TextAreaField("Rule", validators=[
        DataRequired("Write the rule, for example :risk_score: > 75"),
        Length(max=MAX_LENGTH, message=f"Keep the rule to {MAX_LENGTH} characters.")])
    description = StringField("Description", validators=[Optional(), Length(max=500)])
    tested = HiddenField()


class PlatformRuleForm(RuleForm):
    reason = _reason_field()


class ValueListForm(KassaForm):
    alias = StringField("Alias", validators=[DataRequired("Give the list an alias: rules name it @alias."),
                                             Length(max=100)])
    name = StringField("Name", validators=[DataRequired("Give the list a name."), Length(max=200)])
    item_type = SelectField("Holds", choices=select_choices((t, ITEM_TYPE_LABELS[t]) for t in ITEM_TYPES),
                            validators=[DataRequired()])


class PlatformValueListForm(ValueListForm):
    reason = _reason_field()


class ListItemForm(KassaForm):
    value = StringField("Value", validators=[DataRequired("Enter a value to add."), Length(max=800)])


class PlatformListItemForm(ListItemForm):
    reason = _reason_field()


class ActionForm(KassaForm):
    """A button that changes something (enable, move, delete): only the CSRF token (and the console's reason)."""


class PlatformActionForm(ActionForm):
    reason = _reason_field()


class ReviewDecisionForm(KassaForm):
    """Approve or reject a payment held for review, with a note (kept on the review and in the audit log)."""

    note = TextAreaField("Note", validators=[
        DataRequired("Write a note: why this decision?"),
        Length(max=REASON_MAX, message=f"Keep the note to {REASON_MAX} characters.")])
    as_fraud = BooleanField("Reject as fraud")
