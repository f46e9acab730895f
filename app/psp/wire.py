"""Amounts on the wire: how each PSP writes Kassa's amounts, and how its amounts are read back.

Kassa keeps every amount in ISO 4217 minor units (app/money.py ``CURRENCY_EXPONENTS``). A PSP may write
a currency with another number of decimals, or take only some of its amounts. Each connector names its
``WireRules`` (``Connector.wire``) and converts at every boundary: ``to_wire`` for each amount it sends,
``from_wire`` for each amount it reads back (answers, status queries, callbacks). The payments service
asks the same rules before anything is staged (``check``), so that an amount the PSP cannot take is
refused to the merchant with a 400 naming it. An amount is never rounded: what cannot be written exactly
is refused, in both directions.

The sandbox PSP speaks ISO 4217 minor units (sandbox_psp/API.md): its rules are ``ISO_MINOR_UNITS``, the
identity. Stripe's are ``STRIPE``, from https://docs.stripe.com/currencies ("Specify amounts in API
requests", "Zero-decimal currencies", "Special cases", and the three-decimal rule of the same page):

* Amounts are integers in the currency's minor unit; currencies are two-decimal unless listed otherwise.
* Zero-decimal currencies (JPY, KRW, VND, CLP, ...) are sent as they are.
* ISK and UGX "transitioned to a zero-decimal currency, but backward compatibility requires you to
  represent it as a two-decimal value, where the decimal amount is always 00": ISO exponent 0, Stripe
  two decimals, a multiple of 100 (15,000 ISK is ``1500000``). Kassa holds whole krónur, so every ISK
  amount can be sent.
* Three-decimal currencies (BHD, JOD, KWD, OMR, TND) are accepted "for the standard payment flows,
  including Payment Intents, Refunds, and Disputes", but "these API calls require the least-significant
  (last) digit to be 0": an amount of Kassa's that is not a multiple of 10 fils cannot be sent.
* HUF and TWD: "Stripe treats HUF [TWD] as a zero-decimal currency for payouts, even though you can
  charge two-decimal amounts", a rule of manual payouts only. Kassa sends Stripe charges, captures and
  refunds, never payouts (its payouts run on its own rails, app/payouts), so both are plain two-decimal
  currencies here and any amount can be sent.

A currency without a row in a PSP's table is one that PSP does not take (refused, never guessed). Every
currency Kassa accepts has a row in Stripe's (tests/psp/test_wire.py goes through all of them).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from math import gcd
from types import MappingProxyType
from typing import Any, Mapping

from app.money import MoneyError, exponent, format_money, normalize_currency
from app.psp.interfaces import Outcome, PspResult

log = logging.getLogger(__name__)

AMOUNT_NOT_REPRESENTABLE = "amount_not_representable"
CURRENCY_NOT_SUPPORTED = "currency_not_supported"


class WireError(MoneyError):
    """An amount or currency a PSP cannot take; ``code`` and ``param`` say what to tell the merchant."""

    code = AMOUNT_NOT_REPRESENTABLE
    param = "amount"


class AmountNotRepresentable(WireError):
    """An amount the PSP cannot write exactly in its currency (it would have to be rounded)."""

    def __init__(self, psp: str, amount: int, currency: str, multiple: int):
        self.psp, self.amount, self.currency, self.multiple = psp, amount, currency, multiple
        lower, upper = amount - amount % multiple, amount - amount % multiple + multiple
        choices = f"{lower} or {upper}" if lower > 0 else f"{upper}"
        super().__init__(
            f"{psp} cannot take an amount of {amount} in {currency} ({format_money(amount, currency)}): it takes "
            f"{currency} amounts in multiples of {multiple} minor units ({format_money(multiple, currency)}), "
            f"such as {choices}.")


class CurrencyNotSupported(WireError):
    """A currency the PSP does not take at all."""

    code = CURRENCY_NOT_SUPPORTED
    param = "currency"

    def __init__(self, psp: str, currency: str):
        self.psp, self.currency = psp, currency
        super().__init__(f"{psp} does not take payments in {currency}.")


@dataclass(frozen=True)
class WireCurrency:
    """How a PSP writes one currency: its amount's decimals, and the multiple its amounts must be of."""

    exponent: int
    step: int = 1    # in the PSP's own units: Stripe's ISK amounts end in 00 (100), its BHD ones in 0 (10)


@dataclass(frozen=True)
class WireRules:
    """One PSP's currency table. ``currencies=None``: ISO 4217 minor units for every currency Kassa takes."""

    psp: str                                          # for messages: "Stripe", "the sandbox PSP"
    currencies: Mapping[str, WireCurrency] | None = None

    def _row(self, currency: str) -> tuple[str, int, WireCurrency]:
        """The normalized code, Kassa's exponent and the PSP's row (CurrencyNotSupported without one)."""
        try:
            code = normalize_currency(currency)
        except MoneyError:  # not one of Kassa's currencies: nothing it could send anywhere
            raise CurrencyNotSupported(self.psp, str(currency).upper()) from None
        if self.currencies is None:
            return code, exponent(code), WireCurrency(exponent(code))
        row = self.currencies.get(code)
        if row is None:
            raise CurrencyNotSupported(self.psp, code)
        return code, exponent(code), row

    def multiple(self, currency: str) -> int:
        """The smallest step, in Kassa's minor units, between two amounts this PSP can take."""
        _, kassa, row = self._row(currency)
        if row.exponent >= kassa:
            scale = 10 ** (row.exponent - kassa)
            return row.step // gcd(row.step, scale)
        return 10 ** (kassa - row.exponent) * row.step

    def check(self, amount: int, currency: str) -> None:
        """Raise WireError when the PSP cannot take ``amount`` (Kassa's minor units) of ``currency``."""
        code = self._row(currency)[0]
        multiple = self.multiple(code)
        if amount % multiple:
            raise AmountNotRepresentable(self.psp, amount, code, multiple)

    def to_wire(self, amount: int, currency: str) -> int:
        """Kassa's amount as the PSP writes it (WireError when it cannot be written exactly)."""
        self.check(amount, currency)
        _, kassa, row = self._row(currency)
        if row.exponent >= kassa:
            return amount * 10 ** (row.exponent - kassa)
        return amount // 10 ** (kassa - row.exponent)

    def from_wire(self, wire_amount: int, currency: str) -> int:
        """The PSP's amount in Kassa's minor units (WireError when it is not a whole number of them)."""
        code, kassa, row = self._row(currency)
        if row.exponent <= kassa:
            return wire_amount * 10 ** (kassa - row.exponent)
        scale = 10 ** (row.exponent - kassa)
        if wire_amount % scale:
            raise WireError(f"{self.psp} sent an amount of {wire_amount} in {code}, which is not a whole number "
                            f"of minor units of {code}.")
        return wire_amount // scale


def refused(connector: str, error: WireError) -> PspResult:
    """A connector's answer for an amount its PSP cannot take: declined here, nothing sent to the PSP.

    The payments service refuses such amounts before anything is staged; this is the backstop.
    """
    return PspResult(outcome=Outcome.DECLINED, connector=connector, error="client_error", decline_code=error.code,
                     message=str(error), status=error.code)


def read_amount(rules: WireRules, connector: str, wire_amount: Any, currency: Any) -> int | None:
    """An amount a PSP sent back, in Kassa's minor units; None when it sent none or one Kassa cannot hold
    (logged: the answer's raw body keeps the PSP's own figure, and nothing is rounded)."""
    if wire_amount is None or not currency:
        return None
    try:
        return rules.from_wire(int(wire_amount), currency)
    except (TypeError, ValueError):  # a MoneyError is a ValueError
        log.error("%s sent an amount Kassa cannot read: %r %r", connector, wire_amount, currency)
        return None


# The sandbox PSP takes and sends ISO 4217 minor units (sandbox_psp/API.md): nothing to convert.
ISO_MINOR_UNITS = WireRules("the sandbox PSP")

_STRIPE_TWO_DECIMAL = ("USD", "EUR", "GBP", "CHF", "CAD", "AUD", "NZD", "SEK", "NOK", "DKK", "PLN", "CZK", "SGD",
                       "HKD", "MXN", "BRL", "INR", "ZAR", "AED", "ILS", "THB", "TRY", "CNY",
                       # Zero-decimal for Stripe's payouts only (module docstring): two-decimal charges.
                       "HUF", "TWD")
_STRIPE_ZERO_DECIMAL = ("JPY", "KRW", "VND", "CLP")
_STRIPE_THREE_DECIMAL = ("BHD", "JOD", "KWD", "OMR", "TND")
STRIPE = WireRules("Stripe", MappingProxyType({
    **{code: WireCurrency(2) for code in _STRIPE_TWO_DECIMAL},
    **{code: WireCurrency(0) for code in _STRIPE_ZERO_DECIMAL},
    # Zero-decimal in ISO 4217, written by Stripe with two decimals that are always 00.
    "ISK": WireCurrency(2, step=100),
    "UGX": WireCurrency(2, step=100),
    # Three decimals, the last one always 0.
    **{code: WireCurrency(3, step=10) for code in _STRIPE_THREE_DECIMAL},
}))
