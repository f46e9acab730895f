"""Money as integer minor units plus an ISO 4217 currency; formatting and parsing for people through Babel."""
from dataclasses import dataclass
from decimal import Decimal

from babel import Locale, UnknownLocaleError
from babel.numbers import (
    NumberFormatError,
    format_currency,
    format_decimal,
    get_currency_precision,
    get_decimal_symbol,
    get_group_symbol,
    parse_decimal,
)

# Currencies Kassa accepts, with their ISO 4217 exponent (minor-unit digits). Kept explicit rather
# than taken from Babel's CLDR data, because CLDR's "digits" for display (e.g. 0 for HUF) can differ
# from the exponent PSPs settle in.
CURRENCY_EXPONENTS: dict[str, int] = {
    "USD": 2, "EUR": 2, "GBP": 2, "CHF": 2, "CAD": 2, "AUD": 2, "NZD": 2, "SEK": 2, "NOK": 2,
    "DKK": 2, "PLN": 2, "CZK": 2, "HUF": 2, "SGD": 2, "HKD": 2, "MXN": 2, "BRL": 2, "INR": 2,
    "ZAR": 2, "AED": 2, "ILS": 2, "THB": 2, "TRY": 2, "CNY": 2,
    "JPY": 0, "KRW": 0, "VND": 0, "CLP": 0, "ISK": 0,
    "KWD": 3, "BHD": 3, "OMR": 3, "JOD": 3, "TND": 3,
}


class MoneyError(ValueError):
    """An invalid amount or currency, or an operation mixing currencies."""


def normalize_currency(code: str) -> str:
    """Upper-case ISO 4217 code, or MoneyError when Kassa does not support it."""
    if not isinstance(code, str) or code.upper() not in CURRENCY_EXPONENTS:
        raise MoneyError(f"unsupported currency: {code!r}")
    return code.upper()


def exponent(currency: str) -> int:
    """Number of minor-unit digits of a currency (JPY 0, USD 2, KWD 3)."""
    return CURRENCY_EXPONENTS[normalize_currency(currency)]


@dataclass(frozen=True, order=False)
class Money:
    """An amount in integer minor units of one currency."""

    amount: int
    currency: str

    def __post_init__(self):
        if isinstance(self.amount, bool) or not isinstance(self.amount, int):
            raise MoneyError(f"amount must be an integer number of minor units, got {self.amount!r}")
        object.__setattr__(self, "currency", normalize_currency(self.currency))

    def _same(self, other: "Money") -> None:
        if not isinstance(other, Money):
            raise MoneyError(f"cannot combine Money with {type(other).__name__}")
        if other.currency != self.currency:
            raise MoneyError(f"currency mismatch: {self.currency} and {other.currency}")

    def __add__(self, other: "Money") -> "Money":
        self._same(other)
        return Money(self.amount + other.amount, self.currency)

    def __sub__(self, other: "Money") -> "Money":
        self._same(other)
        return Money(self.amount - other.amount, self.currency)

    def __neg__(self) -> "Money":
        return Money(-self.amount, self.currency)

    def __lt__(self, other: "Money") -> bool:
        self._same(other)
        return self.amount < other.amount

    def __le__(self, other: "Money") -> bool:
        self._same(other)
        return self.amount <= other.amount

    def format(self, locale: str = "en_US") -> str:
        """Human format for a locale, e.g. $1,234.50, 1.234,50 €, ￥100."""
        return format_money(self.amount, self.currency, locale)


def format_money(amount: int, currency: str, locale: str = "en_US") -> str:
    """Format integer minor units for people; exact (no float) thanks to Decimal scaling."""
    from decimal import Decimal

    digits = exponent(currency)
    value = Decimal(amount).scaleb(-digits)
    # Babel would otherwise round to CLDR's display precision; force the ISO exponent.
    pattern_digits = digits if digits != get_currency_precision(currency) else None
    if pattern_digits is None:
        return format_currency(value, currency, locale=locale)
    return format_currency(value, currency, locale=locale, currency_digits=False,
                           format="¤#,##0" + ("." + "0" * digits if digits else ""))


def allocate(total: int, weights: list[int]) -> list[int]:
    """Split ``total`` minor units in proportion to ``weights`` by the largest-remainder method.

    The parts always add up to ``total`` exactly: 100 over [1, 1, 1] gives [34, 33, 33].
    Ties in remainder go to the earlier part, so the result is deterministic.
    """
    if not weights or any(w < 0 for w in weights) or sum(weights) == 0:
        raise MoneyError("weights must be non-negative and not all zero")
    weight_sum = sum(weights)
    sign = -1 if total < 0 else 1
    magnitude = abs(total)
    floors = [magnitude * w // weight_sum for w in weights]
    remainders = [magnitude * w % weight_sum for w in weights]
    leftover = magnitude - sum(floors)
    order = sorted(range(len(weights)), key=lambda i: (-remainders[i], i))
    for i in order[:leftover]:
        floors[i] += 1
    return [sign * part for part in floors]


# -- people's amounts ----------------------------------------------------------------------------------

DEFAULT_LOCALE = "en_US"


def negotiate_locale(accept_language: list[tuple[str, float]]) -> str:
    """The first language of Accept-Language (by quality) that Babel knows, e.g. ``de_DE``; else en_US."""
    for tag, _quality in sorted(accept_language, key=lambda pair: -pair[1]):
        if tag == "*":
            continue
        try:
            locale = Locale.parse(tag.replace("-", "_"))
        except (UnknownLocaleError, ValueError, TypeError):
            continue
        return str(locale)
    return DEFAULT_LOCALE


class AmountInputError(MoneyError):
    """An amount a person typed that cannot be read exactly in their locale; ``message`` says why."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def amount_example(currency: str, locale: str) -> str:
    """Twelve and a half (1,250 without decimals) as a person in ``locale`` writes it: 12.50, 12,50, 1.250."""
    digits = exponent(currency)
    return format_amount_input(12 * 10 ** digits + 5 * 10 ** (digits - 1) if digits else 1250, currency, locale)


def format_amount_input(amount: int, currency: str, locale: str) -> str:
    """Minor units as a person in ``locale`` types the amount (no symbol): 1234 EUR in de_DE -> "12,34"."""
    digits = exponent(currency)
    return format_decimal(Decimal(amount).scaleb(-digits), format="#,##0" + ("." + "0" * digits if digits else ""),
                          locale=locale)


def parse_amount_input(text: str, currency: str, locale: str, *, allow_zero: bool = False) -> int:
    """A typed amount in major units, read with the locale's separators, as exact minor units.

    Never guesses: "1,000" in a locale whose decimal separator is the comma, for a currency with two
    decimals, could mean one or one thousand, and is refused with a message saying how to write each.
    Raises AmountInputError with a message for the person at the form.
    """
    digits = exponent(currency)
    typed = (text or "").strip()
    if not typed:
        raise AmountInputError(f"Enter an amount, like {amount_example(currency, locale)}.")
    value = parse_decimal_input(typed, locale, currency)
    typed_digits = max(0, -value.as_tuple().exponent)
    if typed_digits > digits:
        decimal_symbol = get_decimal_symbol(locale)
        if typed_digits == 3 and get_group_symbol(locale) not in typed:
            # Three digits after the only separator: the writer may have meant it as a thousands mark.
            readings = [format_amount_input(int(value * 1000) * 10 ** digits, currency, locale)]
            if value.scaleb(digits) == value.scaleb(digits).to_integral_value():
                readings.append(format_amount_input(int(value.scaleb(digits)), currency, locale))
            raise AmountInputError(
                f"“{typed}” is ambiguous: here “{decimal_symbol}” separates decimals and {currency} has "
                f"{_decimals(digits)}. Write {' or '.join(readings)}.")
        raise AmountInputError(f"{currency} amounts have {_decimals(digits)}; “{typed}” has {typed_digits}.")
    if value < 0 or (value == 0 and not allow_zero):
        raise AmountInputError("Enter an amount greater than zero." if not allow_zero else "Enter a positive amount.")
    minor = int(value.scaleb(digits))
    if minor > MAX_INPUT_MINOR:
        raise AmountInputError(f"Enter at most {format_amount_input(MAX_INPUT_MINOR, currency, locale)}.")
    return minor


# The largest amount a form accepts, in minor units: the API's own bound on amounts (8 digits).
MAX_INPUT_MINOR = 99_999_999


def _decimals(digits: int) -> str:
    return "no decimals" if digits == 0 else "1 decimal" if digits == 1 else f"{digits} decimals"


def parse_decimal_input(text: str, locale: str, currency: str = "EUR") -> Decimal:
    """The number in ``text`` by the locale's rules (strict grouping); any space reads as a space-like group
    mark (French writes 1 000,50 with a narrow no-break space, people type a plain one).

    ``currency`` only shapes the example in the error message.
    """
    cleaned = (text or "").strip()
    group = get_group_symbol(locale)
    if group.isspace():
        cleaned = "".join(group if char.isspace() else char for char in cleaned)
    elif any(char.isspace() for char in cleaned):
        cleaned = "".join(char for char in cleaned if not char.isspace())
    refusal = AmountInputError(
        f"“{text.strip()}” is not an amount as written here: use “{get_decimal_symbol(locale)}” for decimals, "
        f"like {amount_example(currency, locale)}.")
    if any(char.isalpha() for char in cleaned):  # NaN, Infinity, 1e3: numbers to Python, not amounts to people
        raise refusal
    try:
        value = parse_decimal(cleaned, locale=locale, strict=True)
    except NumberFormatError:
        raise refusal from None
    return value
