"""Money: integer minor units, currency exponents, largest-remainder allocation, formatting."""
import pytest
from hypothesis import given, settings, strategies as st

from app.money import (
    AmountInputError,
    Money,
    MoneyError,
    allocate,
    exponent,
    format_amount_input,
    format_money,
    parse_amount_input,
)


def test_exponents():
    assert (exponent("JPY"), exponent("usd"), exponent("KWD")) == (0, 2, 3)


def test_rejects_floats_and_mixed_currencies():
    with pytest.raises(MoneyError):
        Money(1.5, "USD")
    with pytest.raises(MoneyError):
        Money(100, "USD") + Money(100, "EUR")
    with pytest.raises(MoneyError):
        Money(100, "XXX")


def test_allocate_examples_from_the_architecture():
    assert allocate(100, [1, 1, 1]) == [34, 33, 33]
    assert allocate(3000, [6000, 4000]) == [1800, 1200]


@settings(max_examples=50, deadline=None)
@given(st.integers(min_value=-10**9, max_value=10**9),
       st.lists(st.integers(min_value=0, max_value=10**6), min_size=1, max_size=8).filter(lambda w: sum(w) > 0))
def test_allocate_always_adds_up(total, weights):
    parts = allocate(total, weights)
    assert sum(parts) == total
    for part, weight in zip(parts, weights):
        exact = total * weight / sum(weights)
        assert abs(part - exact) < 1


def test_format_for_people():
    assert format_money(123450, "USD", "en_US") == "$1,234.50"
    assert format_money(100, "JPY", "en_US") == "¥100"
    assert format_money(1234, "KWD", "en_US").endswith("1.234")
    assert format_money(123450, "EUR", "de_DE") == "1.234,50\xa0€"


@pytest.mark.parametrize("text, currency, locale, minor", [
    ("12,50", "EUR", "de_DE", 1250),          # the German decimal comma
    ("0,5", "EUR", "de_DE", 50),              # was read as 5.00 before
    ("1.000,50", "EUR", "de_DE", 100050),
    ("1,000.50", "USD", "en_US", 100050),
    ("1,000", "USD", "en_US", 100000),        # a thousands comma in English
    ("12.5", "USD", "en_US", 1250),
    ("1 000,50", "EUR", "fr_FR", 100050),     # a plain space for French's narrow no-break space
    ("1.000", "JPY", "de_DE", 1000),
    ("1,250", "JPY", "en_US", 1250),
    ("1.234", "KWD", "en_US", 1234),
    ("1,234", "KWD", "de_DE", 1234),
])
def test_amounts_typed_in_the_persons_locale(text, currency, locale, minor):
    assert parse_amount_input(text, currency, locale) == minor


@pytest.mark.parametrize("text, currency, locale, says", [
    ("1,000", "EUR", "de_DE", "ambiguous"),   # one, or one thousand? never guessed
    ("1,500", "EUR", "de_DE", "1.500,00 or 1,50"),
    ("1,000", "JPY", "de_DE", "ambiguous"),
    ("0.5", "EUR", "de_DE", "“,” for decimals"),
    ("0,5", "USD", "en_US", "“.” for decimals"),
    ("12.345", "USD", "en_US", "ambiguous"),
    ("12.3456", "USD", "en_US", "2 decimals"),
    ("", "USD", "en_US", "Enter an amount"),
    ("0", "USD", "en_US", "greater than zero"),
    ("-5", "USD", "en_US", "greater than zero"),
    ("abc", "USD", "en_US", "not an amount"),
    ("NaN", "USD", "en_US", "not an amount"),
    ("1e3", "USD", "en_US", "not an amount"),
    ("10000000000000000000000", "USD", "en_US", "at most 999,999.99"),
])
def test_amounts_that_cannot_be_read_exactly_are_refused_with_a_reason(text, currency, locale, says):
    with pytest.raises(AmountInputError) as refused:
        parse_amount_input(text, currency, locale)
    assert says in refused.value.message


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=1, max_value=99_999_999), st.sampled_from(["USD", "JPY", "KWD", "EUR"]),
       st.sampled_from(["en_US", "de_DE", "fr_FR", "de_CH", "ja_JP"]))
def test_a_prefilled_amount_reads_back_as_itself(minor, currency, locale):
    assert parse_amount_input(format_amount_input(minor, currency, locale), currency, locale) == minor
