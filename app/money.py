"""Money as integer minor units plus an ISO 4217 currency; formatting for people through Babel."""
from dataclasses import dataclass

from babel.numbers import format_currency, get_currency_precision

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
