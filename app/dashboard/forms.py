"""WTForms for the dashboard's own pages (sign-in, sign-up, passwords, team, branding).

Every form carries Flask-WTF's CSRF token; validation messages are written for the person at the form.
Every dashboard form is a ``KassaForm``: text with a card number in it is refused, field by field, like
the API refuses it (app/pan.py), so that no card number typed into a form is ever kept.
"""
import re
from urllib.parse import urlsplit

from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    EmailField,
    Field,
    HiddenField,
    PasswordField,
    SelectField,
    StringField,
    URLField,
)
from wtforms.validators import DataRequired, EqualTo, Length, Optional, ValidationError

from app import pan
from app.accounts.passwords import MIN_PASSWORD_LENGTH
from app.money import CURRENCY_EXPONENTS

try:  # WTForms 3.3 deprecates (value, label) tuples in favour of SelectChoice
    from wtforms import SelectChoice
except ImportError:  # pragma: no cover - older WTForms
    SelectChoice = None

# Argon2 accepts any length, but hashing megabytes on request would be a denial-of-service lever.
MAX_PASSWORD_LENGTH = 256
ROLE_CHOICES = [("admin", "Admin"), ("developer", "Developer"), ("analyst", "Analyst")]


def select_choices(pairs) -> list:
    """(value, label) pairs in the shape this WTForms version wants for SelectField choices."""
    if SelectChoice is None:
        return list(pairs)
    return [SelectChoice(value, label) for value, label in pairs]
HEX_COLOUR = re.compile(r"^#[0-9a-fA-F]{6}$")
CARD_NUMBER_MESSAGE = ("This looks like a card number. Card numbers must never be entered in Kassa: shoppers "
                       "type them on the checkout page, which sends them straight to the payment processor.")


class KassaForm(FlaskForm):
    """A dashboard form whose text fields refuse card numbers (passwords are only hashed, hidden fields
    are the page's own: neither is free text anyone keeps)."""

    def validate(self, extra_validators=None) -> bool:
        valid = super().validate(extra_validators)
        for field in self:
            if _holds_card_number(field):
                field.errors = [*field.errors, CARD_NUMBER_MESSAGE]
                valid = False
        return valid


def _holds_card_number(field: Field) -> bool:
    if not isinstance(field, StringField) or isinstance(field, (PasswordField, HiddenField)):
        return False
    return isinstance(field.data, str) and pan.find_card_number(field.data) is not None


# Deliberately simple: one @, something before it, a dotted domain after it, no spaces. The email link
# proves the address; stricter syntax rules (or email_validator's refusal of .test domains) would only
# turn away real addresses and the demo's.
EMAIL_SHAPE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")


def _email_shape(_form, field):
    if field.data and not EMAIL_SHAPE.match(field.data.strip()):
        raise ValidationError("Enter a valid email address, like name@example.com.")


def _email_field(label="Email"):
    return EmailField(label, validators=[
        DataRequired("Enter your email address."), Length(max=320, message="This email address is too long."),
        _email_shape])


def _new_password(label="Password"):
    return PasswordField(label, validators=[
        DataRequired("Choose a password."),
        Length(min=MIN_PASSWORD_LENGTH, max=MAX_PASSWORD_LENGTH,
               message=f"Use at least {MIN_PASSWORD_LENGTH} characters (and at most {MAX_PASSWORD_LENGTH}).")])


def _confirm(target: str):
    return PasswordField("Repeat the password", validators=[
        DataRequired("Repeat the password."), EqualTo(target, message="The two passwords do not match.")])


class LoginForm(KassaForm):
    email = _email_field()
    password = PasswordField("Password", validators=[
        DataRequired("Enter your password."), Length(max=MAX_PASSWORD_LENGTH, message="This password is too long.")])
    next = HiddenField()


class SignupForm(KassaForm):
    name = StringField("Your name", validators=[DataRequired("Enter your name."), Length(max=200)])
    business_name = StringField("Business name", validators=[
        DataRequired("Enter the name of your business."), Length(max=200, message="Use at most 200 characters.")])
    email = _email_field("Work email")
    password = _new_password()
    confirm = _confirm("password")


class ForgotPasswordForm(KassaForm):
    email = _email_field()


class ResetPasswordForm(KassaForm):
    password = _new_password("New password")
    confirm = _confirm("password")


class ChangePasswordForm(KassaForm):
    current_password = PasswordField("Current password", validators=[
        DataRequired("Enter your current password."), Length(max=MAX_PASSWORD_LENGTH)])
    new_password = _new_password("New password")
    confirm = _confirm("new_password")


class AcceptInvitationSignupForm(KassaForm):
    """A new user accepting an invitation: the email is the invited one, so only name and password."""

    name = StringField("Your name", validators=[DataRequired("Enter your name."), Length(max=200)])
    password = _new_password()
    confirm = _confirm("password")


class AcceptInvitationForm(KassaForm):
    """A signed-in user joining the team (the CSRF token is the whole form)."""


class InviteForm(KassaForm):
    email = _email_field("Email of the person to invite")
    role = SelectField("Role", choices=select_choices(ROLE_CHOICES), default="developer",
                       validators=[DataRequired("Choose a role.")])


class RoleForm(KassaForm):
    role = SelectField("Role", choices=select_choices(ROLE_CHOICES), validators=[DataRequired("Choose a role.")])


class ConfirmForm(KassaForm):
    """A button that changes something (remove, revoke): only the CSRF token."""


class BrandingForm(KassaForm):
    display_name = StringField("Display name", validators=[
        DataRequired("Enter the name shoppers see."), Length(max=200, message="Use at most 200 characters.")])
    accent_color = StringField("Accent colour", validators=[DataRequired("Enter a colour like #4f46e5.")])
    logo_url = URLField("Logo URL", validators=[Optional(), Length(max=2000, message="Use at most 2000 characters.")])

    def validate_accent_color(self, field):
        if not HEX_COLOUR.match(field.data.strip()):
            raise ValidationError("Use a hex colour with six digits, like #4f46e5.")

    def validate_logo_url(self, field):
        parts = urlsplit(field.data.strip())
        if parts.scheme != "https" or not parts.hostname:
            raise ValidationError("Use an https:// address, like https://example.com/logo.png.")


def _countries() -> list:
    """ISO 3166-1 alpha-2 countries by their English name (Babel's CLDR data; regions and groups left out)."""
    from babel import Locale

    names = Locale("en").territories
    # CLDR lists groups and placeholders among territories: the EU, the eurozone, the UN, test codes.
    groups = {"EU", "EZ", "UN", "QO", "XA", "XB", "ZZ"}
    pairs = sorted(((code, name) for code, name in names.items() if len(code) == 2 and code.isalpha()
                    and code not in groups), key=lambda pair: pair[1])
    return select_choices([("", "Choose a country"), *pairs])


class BusinessDetailsForm(KassaForm):
    """The business details item of the go-live checklist."""

    legal_name = StringField("Legal name", validators=[
        DataRequired("Enter the business's legal name."), Length(max=200, message="Use at most 200 characters.")])
    address_line1 = StringField("Address", validators=[
        DataRequired("Enter the street address."), Length(max=200, message="Use at most 200 characters.")])
    address_line2 = StringField("Address, second line", validators=[
        Optional(), Length(max=200, message="Use at most 200 characters.")])
    postal_code = StringField("Postal code", validators=[
        DataRequired("Enter the postal code."), Length(max=20, message="Use at most 20 characters.")])
    city = StringField("City", validators=[
        DataRequired("Enter the city."), Length(max=100, message="Use at most 100 characters.")])
    country = SelectField("Country", validators=[DataRequired("Choose the country.")])
    support_email = EmailField("Support email", validators=[
        DataRequired("Enter the address shoppers write to for help."), Length(max=320), _email_shape])
    support_url = URLField("Support page", validators=[Optional(), Length(max=2000, message="Use at most 2000 characters.")])

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.country.choices = _countries()

    def validate_support_url(self, field):
        parts = urlsplit(field.data.strip())
        if parts.scheme != "https" or not parts.hostname:
            raise ValidationError("Use an https:// address, like https://example.com/help.")


class WebhooksNotNeededForm(KassaForm):
    """The merchant's word that its integration needs no webhook endpoint."""

    not_needed = BooleanField("Our integration needs no webhooks (we read payment results through the API)")


# A TOTP code is 6 digits and a recovery code 11 characters ("xxxxx-xxxxx"); people add spaces.
MAX_CODE_LENGTH = 40


def _code_field(label: str, message: str):
    return StringField(label, validators=[DataRequired(message), Length(max=MAX_CODE_LENGTH, message=message)])


class SecondFactorForm(KassaForm):
    """Sign-in's second step: a code from the authenticator app, or a recovery code."""

    code = _code_field("Authentication code", "Enter the 6-digit code from your authenticator app, or a recovery code.")
    next = HiddenField()


class EnrolmentForm(KassaForm):
    """The first code of a new authenticator, which confirms it."""

    code = _code_field("Code from your authenticator app", "Enter the 6-digit code your authenticator app shows.")


class ConfirmIdentityForm(KassaForm):
    """Re-authentication: the password or a second-factor code (the page shows the ways the user may use)."""

    method = HiddenField()
    password = PasswordField("Password", validators=[Optional(), Length(max=MAX_PASSWORD_LENGTH)])
    code = StringField("Authentication code", validators=[Optional(), Length(max=MAX_CODE_LENGTH)])
    next = HiddenField()


class SecuritySettingsForm(KassaForm):
    require_second_factor = BooleanField("Every member must use two-step sign-in")
    refund_threshold = StringField("Refunds up to this amount need no re-authentication",
                                   validators=[Optional(), Length(max=30, message="Use at most 30 characters.")])
    refund_currency = SelectField("Currency of that amount", default="EUR",
                                  choices=select_choices((code, code) for code in sorted(CURRENCY_EXPONENTS)))
