"""Forms of the Sellers page (app/dashboard/sellers_views.py): a seller's name and email, a bank account."""
from wtforms import EmailField, SelectField, StringField
from wtforms.validators import DataRequired, Length, Optional

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
