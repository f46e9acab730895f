"""Bank accounts that payouts go to: validated, sealed at rest, shown masked, every change audited and mailed.

- ``set_bank_account`` adds or changes the account of a seller (or of the merchant itself, ``seller_id`` None):
  the numbers are validated with schwifty (IBAN and BIC) or python-stdnum (a US routing number), the previous
  account is marked replaced, the new one waits a cooling period before its first payout, the change is
  audited, recorded as an event (masked) and mailed to the merchant's owners. Callers must have re-authenticated
  the user first (the dashboard does: app/dashboard/sellers_views.py); no API key reaches it.
- ``payout_destination`` and ``flag_after_failed_payout``: the contract with the payouts themselves.
- Account numbers are only ever decrypted for a payout (``payout_destination``); everything else shows the
  last four characters (``masked``). Never imports Flask; never commits.
"""
import os
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from babel import Locale
from schwifty import BIC, IBAN
from schwifty.exceptions import (
    InvalidBankCode, InvalidBBANChecksum, InvalidChecksumDigits, InvalidCountryCode, InvalidLength,
    InvalidStructure, SchwiftyException,
)
from sqlalchemy.orm import Session
from stdnum.exceptions import ValidationError as StdnumError
from stdnum.us import rtn

from app.accounts.audit import audit
from app.accounts.mail import queue_mail
from app.accounts.service import NO_META, Meta
from app.crypto import SecretBox
from app.events import record_event
from app.ids import new_id
from app.merchants.lifecycle import owner_emails
from app.models_base import utcnow
from app.money import MoneyError, normalize_currency
from app.payments.models import Seller
from app.payouts.bank_account_models import BankAccount, account_aad
from app.scoping import Scope

# Three days: long enough for the owners to read the change's email and stop a hijacked account before money
# leaves, short enough not to hold a genuine change for long (the default). PAYOUT_COOLING_DAYS
# overrides it (app/config.py).
DEFAULT_COOLING = timedelta(days=3)
HOLDER_NAME_MAX = 140  # pain.001's Max140Text for a creditor's name
MASK = "••••"


class BankAccountError(ValueError):
    """Input that cannot become a bank account; ``message`` is for the person, ``field`` names the form field."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field


@dataclass(frozen=True)
class PayoutDestination:
    """Where a payout goes, with the account number in clear (for the payout rail or the SEPA file only)."""

    bank_account_id: str          # ba_...
    holder_name: str
    country: str
    currency: str
    iban: str | None
    bic: str | None
    account_number: str | None
    routing_code: str | None
    cooling_until: datetime | None   # payouts to it wait until then (None: none)
    flagged: bool                    # a payout to it failed; no payout until changed

    def __repr__(self) -> str:  # a destination in a log line or a traceback shows no account number
        return f"PayoutDestination({self.bank_account_id}, {masked_last4(self.iban or self.account_number or '')})"

    __str__ = __repr__


@dataclass(frozen=True)
class Actor:
    """Who changes an account, from where (for the audit log)."""

    user_id: str | None
    label: str | None
    meta: Meta = NO_META


def default_box() -> SecretBox:
    """The key ring of KASSA_ENCRYPTION_KEYS, read from the environment as app/config.py reads it."""
    return SecretBox(os.environ.get("KASSA_ENCRYPTION_KEYS", ""))


def masked_last4(number: str) -> str:
    return f"{MASK} {number[-4:]}" if number else MASK


def masked(row: BankAccount) -> str:
    """The account as people see it: '•••• 3000'."""
    return f"{MASK} {row.last4}"


# -- validation --------------------------------------------------------------------------------------------

_IBAN_MESSAGES = (
    (InvalidChecksumDigits, "The IBAN's check digits do not match: look for a typing error."),
    (InvalidCountryCode, "The IBAN must start with a country code that uses IBANs (such as DE or FR)."),
    (InvalidLength, "The IBAN has the wrong number of characters for its country."),
    (InvalidStructure, "The IBAN's format is not the one of its country."),
    (InvalidBankCode, "The IBAN's bank code belongs to no bank."),
    (InvalidBBANChecksum, "The IBAN's account number does not pass its country's check: look for a typing error."),
)
_LOCAL_NUMBER = re.compile(r"[A-Z0-9]{4,34}")
_COUNTRIES = frozenset(code for code in Locale("en").territories if len(code) == 2 and code.isalpha())


@dataclass(frozen=True)
class _Validated:
    holder_name: str
    country: str
    currency: str
    kind: str
    number: str
    bic: str | None
    routing_code: str | None
    bank_name: str | None


def _compact(value: str | None) -> str:
    return re.sub(r"[\s\-]", "", value or "").upper()


def validate_account(*, holder_name: str | None, country: str | None, currency: str | None,
                     iban: str | None = None, bic: str | None = None, account_number: str | None = None,
                     routing_code: str | None = None) -> _Validated:
    """The normalized account, or BankAccountError naming the field and what is wrong with it."""
    holder = " ".join((holder_name or "").split())
    if not holder:
        raise BankAccountError("Enter the account holder's name.", "holder_name")
    if len(holder) > HOLDER_NAME_MAX:
        raise BankAccountError(f"Keep the holder's name to {HOLDER_NAME_MAX} characters.", "holder_name")
    try:
        currency = normalize_currency((currency or "").strip())
    except MoneyError:
        raise BankAccountError("Choose a currency Kassa pays out in (such as EUR).", "currency") from None
    country = (country or "").strip().upper() or None
    if country is not None and country not in _COUNTRIES:
        raise BankAccountError("Choose the account's country (two letters, such as DE).", "country")
    if _compact(iban):
        return _validate_iban(holder, country, currency, _compact(iban), _compact(bic) or None)
    number, routing = _compact(account_number), _compact(routing_code)
    if not number:
        raise BankAccountError("Enter an IBAN, or an account number and its routing code.", "iban")
    if country is None:
        raise BankAccountError("Choose the account's country (two letters, such as US).", "country")
    if not _LOCAL_NUMBER.fullmatch(number):
        raise BankAccountError("The account number has 4 to 34 letters and digits.", "account_number")
    if not routing:
        raise BankAccountError("Enter the routing code (sort code, routing number) of the account's bank.",
                               "routing_code")
    if country == "US":
        try:
            routing = rtn.validate(routing)
        except StdnumError:
            raise BankAccountError("This is not a valid US routing number (9 digits with a check digit).",
                                   "routing_code") from None
    elif not re.fullmatch(r"[A-Z0-9]{3,34}", routing):
        raise BankAccountError("The routing code has 3 to 34 letters and digits.", "routing_code")
    return _Validated(holder, country, currency, "local", number, None, routing, None)


def _validate_iban(holder: str, country: str | None, currency: str, value: str, bic: str | None) -> _Validated:
    try:
        iban = IBAN(value)
    except SchwiftyException as exc:
        message = next((text for kind, text in _IBAN_MESSAGES if isinstance(exc, kind)),
                       "This is not a valid IBAN.")
        raise BankAccountError(message, "iban") from None
    if country is not None and iban.country_code != country:
        raise BankAccountError(f"This IBAN belongs to an account in {iban.country_code}, not {country}.", "country")
    bank_name = None
    if bic:
        try:
            bic_value = BIC(bic)
        except SchwiftyException:
            raise BankAccountError("This is not a valid BIC (8 or 11 letters and digits, such as DEUTDEFF).",
                                   "bic") from None
        bic = str(bic_value.compact)
    else:
        derived = _iban_bic(iban)
        bic = str(derived.compact) if derived is not None else None
    try:
        bank_name = iban.bank_name
    except Exception:  # schwifty's registry has no entry for every bank: the name is a nicety
        bank_name = None
    return _Validated(holder, iban.country_code, currency, "iban", str(iban.compact), bic, None,
                      (bank_name or None) and str(bank_name)[:200])


def _iban_bic(iban: IBAN) -> BIC | None:
    try:
        return iban.bic
    except SchwiftyException:
        return None


# -- reads -------------------------------------------------------------------------------------------------

def active_bank_account(session: Session, scope: Scope, seller_id: str | None, *,
                        for_update: bool = False) -> BankAccount | None:
    """The account payouts of this seller (None: the merchant itself) go to, or None."""
    statement = scope.select(BankAccount, BankAccount.replaced_at.is_(None),
                             BankAccount.seller_id.is_(None) if seller_id is None
                             else BankAccount.seller_id == seller_id)
    if for_update:
        statement = statement.with_for_update()
    return session.scalars(statement).one_or_none()


def bank_account_history(session: Session, scope: Scope, seller_id: str | None) -> list[BankAccount]:
    """Every account this seller (None: the merchant) had, newest first."""
    return list(session.scalars(
        scope.select(BankAccount, BankAccount.seller_id.is_(None) if seller_id is None
                     else BankAccount.seller_id == seller_id)
        .order_by(BankAccount.created_at.desc(), BankAccount.id.desc())))


def bank_account_object(row: BankAccount) -> dict[str, Any]:
    """The API and event shape (Stripe's bank account, masked: never the number)."""
    return {
        "id": row.id, "object": "bank_account", "seller": row.seller_id, "account_holder_name": row.holder_name,
        "country": row.country, "currency": row.currency, "kind": row.kind, "last4": row.last4,
        "bic": row.bic, "routing_code": row.routing_code, "bank_name": row.bank_name,
        "cooling_until": _unix(row.cooling_until), "flagged": row.flagged_at is not None,
        "failure_code": row.flag_code, "replaced": row.replaced_at is not None,
        "created": _unix(row.created_at), "livemode": row.livemode,
    }


def _unix(value: datetime | None) -> int | None:
    return int(value.timestamp()) if value is not None else None


# -- changes -----------------------------------------------------------------------------------------------

def set_bank_account(session: Session, scope: Scope, *, seller_id: str | None, holder_name: str | None,
                     country: str | None, currency: str | None, iban: str | None = None, bic: str | None = None,
                     account_number: str | None = None, routing_code: str | None = None, actor: Actor,
                     now: datetime | None = None, cooling: timedelta = DEFAULT_COOLING,
                     box: SecretBox | None = None, base_url: str = "") -> BankAccount:
    """Add or change the payout account of a seller (None: of the merchant itself).

    The caller re-authenticated the user. BankAccountError for bad input (nothing changed); the seller must be
    the scope's (BankAccountError on ``seller`` otherwise, as if it did not exist).
    """
    now = now or utcnow()
    seller = None
    if seller_id is not None:
        seller = scope.get(session, Seller, seller_id) if isinstance(seller_id, str) else None
        if seller is None:
            raise BankAccountError("No such seller.", "seller")
    valid = validate_account(holder_name=holder_name, country=country, currency=currency, iban=iban, bic=bic,
                             account_number=account_number, routing_code=routing_code)
    box = box or default_box()
    previous = active_bank_account(session, scope, seller_id, for_update=True)
    if previous is not None:
        previous.replaced_at = now
        session.flush()  # frees the one-active-account index for the new row
    row = BankAccount(
        merchant_id=scope.merchant_id, livemode=scope.livemode, id=new_id("ba"), seller_id=seller_id,
        holder_name=valid.holder_name, country=valid.country, currency=valid.currency, kind=valid.kind,
        number_encrypted="", last4=valid.number[-4:], bic=valid.bic, routing_code=valid.routing_code,
        bank_name=valid.bank_name, cooling_until=now + cooling if cooling else None, created_by=actor.user_id,
        created_at=now,
    )
    row.number_encrypted = box.encrypt(valid.number, account_aad(row))
    session.add(row)
    session.flush()
    action = "bank_account.replaced" if previous is not None else "bank_account.created"
    audit(session, action, merchant_id=scope.merchant_id, livemode=scope.livemode, actor_user_id=actor.user_id,
          actor_label=actor.label, target=row.id,
          details={"seller": seller_id, "last4": row.last4, "country": row.country, "currency": row.currency,
                   "previous": previous.id if previous else None,
                   "previous_last4": previous.last4 if previous else None,
                   "cooling_until": row.cooling_until.isoformat() if row.cooling_until else None},
          **actor.meta.as_kwargs())
    record_event(session, scope, "bank_account.created", "bank_account", row.id, bank_account_object(row),
                 request_id=actor.meta.request_id)
    _mail_owners(session, scope, row, previous, seller, actor, base_url)
    return row


def _whose(seller: Seller | None) -> str:
    return f"seller {seller.name} ({seller.id})" if seller is not None else "your own account (your revenue)"


def _mail_owners(session: Session, scope: Scope, row: BankAccount, previous: BankAccount | None,
                 seller: Seller | None, actor: Actor, base_url: str) -> None:
    mode = "" if scope.livemode else " (test mode)"
    change = (f"changed from {masked(previous)} to {masked(row)}" if previous is not None
              else f"set to {masked(row)}")
    wait = (f"\n\nThe first payout to it waits until {row.cooling_until:%Y-%m-%d %H:%M} UTC, so that you can "
            "stop a change you did not make." if row.cooling_until else "")
    path = f"/dashboard/{scope.merchant_id}/{scope.mode}/sellers" + (f"/{seller.id}" if seller else "")
    body = (f"The payout bank account of {_whose(seller)} was {change}{mode}, by {actor.label or 'someone'}"
            f"{' from ' + actor.meta.ip if actor.meta.ip else ''}.{wait}\n\n"
            f"If you did not expect this, check it at once:\n\n    {base_url.rstrip('/')}{path}\n")
    for address in owner_emails(session, scope.merchant_id):
        queue_mail(session, kind="bank_account_changed", to=address, merchant_id=scope.merchant_id,
                   subject=f"Payout bank account {'changed' if previous else 'added'}{mode}: {masked(row)}",
                   body=body)


# -- the contract with the payouts -------------------------------------------------------------------------

def payout_destination(session: Session, scope: Scope, seller_id: str | None, *,
                       box: SecretBox | None = None) -> PayoutDestination | None:
    """The active bank account of a seller (None = the merchant's own account); None if there is none."""
    row = active_bank_account(session, scope, seller_id)
    return _destination(row, box) if row is not None else None


def account_destination(session: Session, scope: Scope, bank_account_id: str, *,
                        box: SecretBox | None = None) -> PayoutDestination | None:
    """The destination of one account by id (a payout goes to the account it was created for), or None."""
    row = session.scalars(scope.select(BankAccount, BankAccount.id == bank_account_id)).one_or_none()
    return _destination(row, box) if row is not None else None


def _destination(row: BankAccount, box: SecretBox | None) -> PayoutDestination:
    number = (box or default_box()).decrypt(row.number_encrypted, account_aad(row))
    return PayoutDestination(
        bank_account_id=row.id, holder_name=row.holder_name, country=row.country, currency=row.currency,
        iban=number if row.kind == "iban" else None, bic=row.bic,
        account_number=number if row.kind == "local" else None, routing_code=row.routing_code,
        cooling_until=row.cooling_until, flagged=row.flagged_at is not None)


def flag_after_failed_payout(session: Session, scope: Scope, bank_account_id: str, failure_code: str, *,
                             now: datetime | None = None, base_url: str = "") -> None:
    """Flag the account and email the merchant's owners (in the caller's transaction).

    Flagging an account already flagged changes nothing and sends nothing (a failure applied twice).
    """
    row = session.scalars(scope.select(BankAccount, BankAccount.id == bank_account_id).with_for_update()
                          ).one_or_none()
    if row is None or row.flagged_at is not None:
        return
    row.flagged_at = now or utcnow()
    row.flag_code = (failure_code or "unknown")[:64]
    session.flush()
    audit(session, "bank_account.flagged", merchant_id=scope.merchant_id, livemode=scope.livemode,
          target=row.id, details={"seller": row.seller_id, "last4": row.last4, "failure_code": row.flag_code})
    record_event(session, scope, "bank_account.updated", "bank_account", row.id, bank_account_object(row))
    seller = scope.get(session, Seller, row.seller_id) if row.seller_id else None
    mode = "" if scope.livemode else " (test mode)"
    path = f"/dashboard/{scope.merchant_id}/{scope.mode}/sellers" + (f"/{seller.id}" if seller else "")
    body = (f"A payout to the bank account {masked(row)} of {_whose(seller)} failed{mode}: "
            f"{row.flag_code.replace('_', ' ')}.\n\nThe money is back in the balance, and no payout goes to this "
            f"account until it is changed. Change it here:\n\n    {base_url.rstrip('/')}{path}\n")
    for address in owner_emails(session, scope.merchant_id):
        queue_mail(session, kind="bank_account_flagged", to=address, merchant_id=scope.merchant_id,
                   subject=f"A payout failed: bank account {masked(row)} needs attention{mode}", body=body)
