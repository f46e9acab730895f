"""Money: integer minor units, currency exponents, largest-remainder allocation, formatting."""
import pytest
from hypothesis import given, settings, strategies as st

from app.money import Money, MoneyError, allocate, exponent, format_money


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
