"""Forms of the Sellers page (app/dashboard/sellers_views.py): a seller's name and email, a bank account."""
from wtforms import EmailField, IntegerField, SelectField, StringField
from wtforms.validators import DataRequired, Length, NumberRange, Optional

from app.dashboard.forms import KassaForm, _email_shape, select_choices
from app.money import CURRENCY_EXPONENTS


class SellerForm(KassaForm):
    name = StringField("Name", validators=[DataRequired("Enter the seller's name."),
                                           Length(max=200, message="Use at most 200 characters.")])
    email = EmailField("Email (optional)", validators=[Optional(), Length(max=320), _email_shape])


class BankAccountForm(KassaForm):
    """An IBAN (and optionally its BIC), or a local account number with its routing code; the service validates."""

    holder_name = StringField("Account holder's name", validators=[Length(max=140)])
    currency = SelectField("Payout currency", choices=select_choices((c, c) for c in sorted(CURRENCY_EXPONENTS)),
                           default="EUR")
    country = StringField("Country of the account (two letters, e.g. DE)", validators=[Length(max=2)])
    iban = StringField("IBAN", validators=[Length(max=50)])
    bic = StringField("BIC (optional with an IBAN)", validators=[Length(max=15)])
    account_number = StringField("Account number (without an IBAN)", validators=[Length(max=40)])
    routing_code = StringField("Routing code: sort code, routing number (without an IBAN)",
                               validators=[Length(max=40)])


class RailForm(KassaForm):
    rail = SelectField("Pay out through", choices=select_choices(
        (("sandbox", "The sandbox's bank transfers"), ("sepa", "SEPA credit-transfer files from your own bank"))),
        validators=[DataRequired("Choose how payouts leave.")])


class ScheduleForm(KassaForm):
    """A subject's payout schedule and reserve (app/payouts/service.py set_schedule checks the ranges again)."""

    interval = SelectField("Pay out", choices=select_choices(
        (("daily", "Daily"), ("weekly", "Weekly"), ("monthly", "Monthly"), ("manual", "Only by hand"))))
    weekly_anchor = SelectField("Weekday (weekly)", choices=select_choices(
        (d, d.capitalize()) for d in ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")))
    monthly_anchor = IntegerField("Day of the month (monthly)", validators=[
        DataRequired("Enter a day from 1 to 31."), NumberRange(1, 31, "Enter a day from 1 to 31.")])
    minimum_amount = IntegerField("Minimum payout (minor units)", validators=[
        Optional(), NumberRange(0, 10**12, "Enter 0 or more.")], default=0)
    delay_days = IntegerField("Delay (days after the money is available)", validators=[
        Optional(), NumberRange(0, 365, "Enter 0 to 365 days.")], default=0)
    reserve_percent_bp = IntegerField("Reserve (basis points of each charge: 100 = 1%)", validators=[
        Optional(), NumberRange(0, 10000, "Enter 0 to 10000.")], default=0)
    reserve_days = IntegerField("Reserve held for (days)", validators=[
        Optional(), NumberRange(0, 365, "Enter 0 to 365 days.")], default=0)
    reserve_minimum = IntegerField("Reserve minimum (minor units)", validators=[
        Optional(), NumberRange(0, 10**12, "Enter 0 or more.")], default=0)
