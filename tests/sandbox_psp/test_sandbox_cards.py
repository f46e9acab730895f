"""Unit tests of the card and fee helpers (in-process, no server)."""
import pytest

from sandbox_psp.cards import TEST_CARDS, CardError, card_brand, luhn_valid, validate_card
from sandbox_psp.settlement import charge_fee

KEY = b"k" * 32


def test_every_test_card_is_luhn_valid():
    assert all(luhn_valid(number) for number in TEST_CARDS)
    assert not luhn_valid("4242424242424241")


@pytest.mark.parametrize("number, brand", [
    ("4242424242424242", "visa"),
    ("5555555555554444", "mastercard"),
    ("2223003122003222", "mastercard"),
    ("378282246310005", "amex"),
    ("6011111111111117", "discover"),
])
def test_brand(number, brand):
    assert card_brand(number) == brand


def test_validate_card_keeps_no_number():
    card = validate_card({"number": "4242 4242 4242 4242", "exp_month": "12", "exp_year": "30", "cvc": "123"},
                         KEY, 2026, 11)
    assert (card.brand, card.last4, card.exp_month, card.exp_year) == ("visa", "4242", 12, 2030)
    assert "4242424242424242" not in repr(card)
    assert card.fingerprint == validate_card(
        {"number": "4242424242424242", "exp_month": 1, "exp_year": 2031, "cvc": "999"}, KEY, 2026, 11
    ).fingerprint


@pytest.mark.parametrize("changes, code", [
    ({"number": "1234"}, "invalid_number"),
    ({"exp_month": 13}, "invalid_expiry"),
    ({"exp_year": 2026, "exp_month": 10}, "invalid_expiry"),
    ({"cvc": "12"}, "invalid_cvc"),
    ({"number": "378282246310005", "cvc": "123"}, "invalid_cvc"),
])
def test_validate_card_errors(changes, code):
    data = {"number": "4242424242424242", "exp_month": 12, "exp_year": 2030, "cvc": "123", **changes}
    with pytest.raises(CardError) as caught:
        validate_card(data, KEY, 2026, 11)
    assert caught.value.code == code


@pytest.mark.parametrize("gross, fee", [
    (10000, 320),  # 290 + 30
    (500, 45),     # 14.5 rounds half up to 15, + 30
    (1, 30),       # 0.029 rounds to 0
    (8000, 262),   # 232 + 30
])
def test_charge_fee_rounds_half_up(gross, fee):
    assert charge_fee(gross) == fee
