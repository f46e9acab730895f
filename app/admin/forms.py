"""WTForms of the operator console. Every action form carries Flask-WTF's CSRF token and a required reason,
which goes to the audit log (where the merchant's owners and admins read it); like every form of Kassa's,
they refuse text holding a card number (KassaForm)."""
from flask_wtf.file import FileField, FileRequired
from wtforms import DateField, RadioField, SelectField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length, Optional

from app.accounts.audit import REASON_MAX
from app.dashboard.forms import KassaForm, select_choices


class ReasonForm(KassaForm):
    """An operator action that only needs a reason."""

    reason = TextAreaField("Reason", validators=[
        DataRequired("Give a reason: it is recorded in the audit log."),
        Length(max=REASON_MAX, message=f"Keep the reason to {REASON_MAX} characters.")])


class OutcomeForm(KassaForm):
    """The outcome of an attempt or refund, as the operator found it at the PSP."""

    outcome = RadioField("What the PSP says", validators=[DataRequired("Choose what the PSP says.")])
    psp_reference = StringField("PSP reference", validators=[Optional(), Length(max=255)])
    reason = TextAreaField("Note", validators=[
        DataRequired("Write a note: how did you check with the PSP?"),
        Length(max=REASON_MAX, message=f"Keep the note to {REASON_MAX} characters.")])


class BreakResolveForm(KassaForm):
    """How an operator resolves a reconciliation break (app/reconciliation/resolution.py): kind, note, object."""

    resolution = RadioField("Resolution", choices=select_choices([
        ("matched_by_hand", "Matched by hand to an object"),
        ("accepted", "Accepted, with an adjusting posting"),
        ("psp_asked", "PSP asked to correct"),
        ("written_off", "Written off")]), validators=[DataRequired("Choose how the break is resolved.")])
    target = StringField("Matches (payment, refund or dispute id)", validators=[Optional(), Length(max=255)])
    note = TextAreaField("Note", validators=[
        DataRequired("Write a note: what did you find?"),
        Length(max=2000, message="Keep the note to 2000 characters.")])


class BreakAssignForm(KassaForm):
    """Who works a reconciliation break (empty: nobody)."""

    assignee = StringField("Assign to (an operator's email)", validators=[Optional(), Length(max=320)])


class ReconciliationUploadForm(KassaForm):
    """A settlement report or bank statement uploaded by an operator (app/reconciliation/uploads.py)."""

    kind = RadioField("File", choices=select_choices([("settlement", "Settlement report of a PSP (CSV)"),
                                                      ("bank_statement", "Bank statement (camt.053 XML)")]),
                      validators=[DataRequired("Choose what the file is.")])
    psp = SelectField("PSP (for a settlement report)", validators=[Optional()])
    report_date = DateField("Day", validators=[DataRequired("Give the day the file is of.")])
    mode = SelectField("Mode", choices=select_choices([("test", "test"), ("live", "live")]),
                       default="test")
    file = FileField("File", validators=[FileRequired("Choose the file to upload.")])
    reason = TextAreaField("Reason", validators=[
        DataRequired("Give a reason: it is recorded in the audit log."),
        Length(max=REASON_MAX, message=f"Keep the reason to {REASON_MAX} characters.")])


class DepositConfirmationForm(KassaForm):
    """How a merchant's own Stripe account has its payouts confirmed as deposited (app/psp/credentials.py)."""

    deposit_confirmation = RadioField("Deposits confirmed by", choices=select_choices([
        ("payout_events", "Stripe's payout events (paid into the merchant's own bank, which Kassa never sees)"),
        ("bank_statement", "The platform's bank statement (paid into the platform's bank account)")]),
        validators=[DataRequired("Choose how this account's deposits are confirmed.")])
    reason = TextAreaField("Reason", validators=[
        DataRequired("Give a reason: it is recorded in the audit log."),
        Length(max=REASON_MAX, message=f"Keep the reason to {REASON_MAX} characters.")])
