"""Test cards, card number checks and tokenization input validation.

A card number lives only inside ``validate_card``: the caller gets back brand, last4,
expiry, a keyed fingerprint and the *outcome* the number stands for, and stores those.
Numbers and CVCs are never stored or logged.
"""
import dataclasses
import hashlib
import hmac

# Outcomes an authorization can have, keyed by test card number. Any other valid
# number behaves like the first one ("success").
TEST_CARDS = {
    "4242424242424242": "success",
    "5555555555554444": "success",
    "4000000000009995": "decline_insufficient_funds",
    "4000000000009979": "decline_stolen_card",
    "4000000000000069": "decline_expired_card",
    "4000000000000127": "decline_incorrect_cvc",
    "4000000000003220": "three_d_secure",
    "4000000000000119": "processing_error",
    "4000000000000341": "timeout",
    "4000000000000259": "dispute",
    "4000000000002685": "dispute_product_not_received",
    "4000000000001976": "inquiry",
    "4000000000007726": "refund_pending",
    "4100000000000019": "fraudulent",
}
DEFAULT_OUTCOME = "success"
# Issuing country and funding of test cards (Stripe's country and funding test cards); any other card is a
# US credit card. Risk rules read them from the token (GET /v1/tokens/<id>).
CARD_COUNTRIES = {
    "4000000400000008": "AT",
    "4000002500000003": "FR",
    "4000002760000016": "DE",
    "4000008260000000": "GB",
    "4000000760000002": "BR",
    "4000003920000003": "JP",
}
PREPAID_CARDS = {"5105105105105100", "4000056655665556"}
DEFAULT_COUNTRY = "US"

# Card numbers are 12 to 19 digits long (ISO/IEC 7812); anything else is a typo.
MIN_NUMBER_LENGTH = 12
MAX_NUMBER_LENGTH = 19
# Expiry years further ahead than this are typos, not cards (issuers use <= ~10 years).
MAX_EXPIRY_YEARS_AHEAD = 50


class CardError(ValueError):
    """Invalid card input; ``code`` and ``param`` go to the API error."""

    def __init__(self, code: str, message: str, param: str):
        super().__init__(message)
        self.code = code
        self.message = message
        self.param = param


@dataclasses.dataclass(frozen=True)
class CardDetails:
    """What the vault keeps of a card: never the number or the CVC."""

    brand: str
    last4: str
    exp_month: int
    exp_year: int
    fingerprint: str
    outcome: str
    risk_hint: str | None
    bin: str = ""
    funding: str = "credit"
    country: str = DEFAULT_COUNTRY


def luhn_valid(number: str) -> bool:
    """True when a digit string passes the Luhn check."""
    total = 0
    for position, char in enumerate(reversed(number)):
        digit = int(char)
        if position % 2 == 1:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return total % 10 == 0


def card_brand(number: str) -> str:
    """Brand from the number's leading digits (the common IIN ranges only)."""
    if number.startswith("4"):
        return "visa"
    if number[:2] in ("34", "37"):
        return "amex"
    if 51 <= int(number[:2]) <= 55 or 2221 <= int(number[:4]) <= 2720:
        return "mastercard"
    if number.startswith(("6011", "65")):
        return "discover"
    return "unknown"


def fingerprint(number: str, vault_key: bytes) -> str:
    """Keyed hash of the number: equal for the same card, useless without the key."""
    digest = hmac.new(vault_key, number.encode("ascii"), hashlib.sha256).hexdigest()
    # 16 bytes of the MAC are plenty to tell cards apart and keep the id short.
    return "fp_" + digest[:32]


def _as_int(value, param: str, code: str) -> int:
    if isinstance(value, bool):
        raise CardError(code, f"{param} must be a number", param)
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    raise CardError(code, f"{param} must be a number", param)


def validate_card(data: dict, vault_key: bytes, today_year: int, today_month: int) -> CardDetails:
    """Check tokenization input and reduce it to what may be stored.

    ``data`` has number, exp_month, exp_year, cvc (strings or ints). The expiry is
    compared with the sandbox clock's month. Raises CardError on invalid input.
    """
    raw_number = data.get("number")
    if not isinstance(raw_number, (str, int)) or isinstance(raw_number, bool):
        raise CardError("invalid_number", "The card number is missing.", "number")
    number = str(raw_number).replace(" ", "").replace("-", "")
    if (
        not number.isdigit()
        or not MIN_NUMBER_LENGTH <= len(number) <= MAX_NUMBER_LENGTH
        or not luhn_valid(number)
    ):
        raise CardError("invalid_number", "The card number is not a valid card number.", "number")

    exp_month = _as_int(data.get("exp_month"), "exp_month", "invalid_expiry")
    exp_year = _as_int(data.get("exp_year"), "exp_year", "invalid_expiry")
    if exp_year < 100:
        exp_year += 2000  # two-digit years as printed on cards
    if not 1 <= exp_month <= 12:
        raise CardError("invalid_expiry", "The expiry month is invalid.", "exp_month")
    if (exp_year, exp_month) < (today_year, today_month):
        raise CardError("invalid_expiry", "The card has expired.", "exp_year")
    if exp_year > today_year + MAX_EXPIRY_YEARS_AHEAD:
        raise CardError("invalid_expiry", "The expiry year is invalid.", "exp_year")

    brand = card_brand(number)
    cvc = data.get("cvc")
    cvc = str(cvc).strip() if isinstance(cvc, (str, int)) and not isinstance(cvc, bool) else ""
    cvc_length = 4 if brand == "amex" else 3
    if not cvc.isdigit() or len(cvc) != cvc_length:
        raise CardError("invalid_cvc", f"The CVC must be {cvc_length} digits.", "cvc")

    outcome = TEST_CARDS.get(number, DEFAULT_OUTCOME)
    return CardDetails(
        brand=brand,
        last4=number[-4:],
        exp_month=exp_month,
        exp_year=exp_year,
        fingerprint=fingerprint(number, vault_key),
        outcome=outcome,
        risk_hint="fraudulent" if outcome == "fraudulent" else None,
        bin=number[:6],
        funding="prepaid" if number in PREPAID_CARDS else "credit",
        country=CARD_COUNTRIES.get(number, DEFAULT_COUNTRY),
    )

