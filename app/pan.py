"""Card numbers (PANs) in text: find them, refuse them, redact them (no Flask).

No card number ever enters Kassa (PCI DSS: a merchant whose checkout uses hosted fields stays in the
small SAQ A scope only if no PAN ever reaches its servers). Cards go from the browser straight to a
PSP's vault, and Kassa keeps the vault's token. Every door text comes in by refuses a value that holds
a card number, with this module: the API's parameters (app/api/params.py), the dashboard's forms
(app/dashboard/forms.py), the checkout's confirmation; logs redact what slipped through anyway
(app/observability.py), as does the API request log (app/reporting/request_logs.py).

What counts as a card number: 13 to 19 digits, optionally grouped by single spaces or dashes, not
touching another letter or digit, whose leading digits fall in a card brand's number range (IIN) with
a length that brand issues, and that pass the Luhn check. About one random digit string in ten passes
Luhn alone, so the ranges and lengths keep order numbers, phone numbers and the like out.

A number is the same number however it is written: digits of any script (full-width "４２４２" from a
Japanese keyboard, Arabic-Indic "٤٢٤٢"), any space between groups (the no-break and thin spaces of a
number copied from a PDF or a web page) and any dash ("‐", "–"); and percent-encoded in a URL or a form
body ("4242%204242...", "%34%32..."), which whoever opens the URL reads decoded.
"""
import re
import unicodedata
from dataclasses import dataclass
from typing import Any, Iterator
from urllib.parse import unquote, unquote_plus

from stdnum import luhn

MIN_DIGITS = 13
MAX_DIGITS = 19
REDACTED = "[card number redacted]"


@dataclass(frozen=True)
class Brand:
    """A card scheme: the ranges of leading digits it issues from (inclusive) and its number lengths."""

    name: str
    ranges: tuple[tuple[str, str], ...]
    lengths: frozenset[int]


def _lengths(low: int, high: int) -> frozenset[int]:
    return frozenset(range(low, high + 1))


# The schemes' published IIN ranges and lengths (ISO/IEC 7812 as each scheme assigns them). A number may
# fall in several (UnionPay's 62 contains Discover's 622126-622925): any one is enough.
BRANDS = (
    Brand("Visa", (("4", "4"),), frozenset({13, 16, 19})),
    Brand("Mastercard", (("51", "55"), ("2221", "2720")), frozenset({16})),
    Brand("American Express", (("34", "34"), ("37", "37")), frozenset({15})),
    Brand("Discover", (("6011", "6011"), ("644", "649"), ("65", "65"), ("622126", "622925")), _lengths(16, 19)),
    Brand("JCB", (("3528", "3589"),), _lengths(16, 19)),
    Brand("Diners Club", (("300", "305"), ("36", "36"), ("38", "39")), _lengths(14, 19)),
    Brand("UnionPay", (("62", "62"), ("8100", "8171")), _lengths(16, 19)),
    Brand("Maestro", (("5018", "5018"), ("5020", "5020"), ("5038", "5038"), ("5893", "5893"), ("6304", "6304"),
                      ("6759", "6759"), ("6761", "6763")), _lengths(13, 19)),
    Brand("Mir", (("2200", "2204"),), _lengths(16, 19)),
)

# A run of digits (of any script: ``\d`` is Unicode's decimal digits), each separated from the next by at
# most one space (any Unicode space) or dash (ASCII, the Unicode hyphens and dashes, the minus sign).
# Whether it touches a letter or digit on either side is checked on the match (a run inside an id like
# "pay_01J4242...X" is part of that id, not a card number).
_SEPARATOR = r"[^\S\r\n]|[-\u2010-\u2015\u2212]"
_DIGIT_RUN = re.compile(rf"\d(?:(?:{_SEPARATOR})?\d)*")
_GROUP = re.compile(r"\d+")
# Percent-encoding ("%20", "%34") and a form's "+" for a space: text that may hold an encoded number.
_ENCODED = re.compile(r"%[0-9A-Fa-f]{2}|\+")


def _ascii_digits(digits: str) -> str:
    """Digits of any script as ASCII digits ("４２" -> "42")."""
    return digits if digits.isascii() else "".join(str(unicodedata.decimal(d)) for d in digits)


@dataclass(frozen=True)
class CardNumberMatch:
    """Where a card number sits in a text, and which brand it looks like (the digits are not kept)."""

    start: int
    end: int
    brand: str


def brand_of(digits: str) -> str | None:
    """The brand whose range and length ``digits`` (digits only) fit and that passes Luhn, else None."""
    if not MIN_DIGITS <= len(digits) <= MAX_DIGITS or not digits.isdigit():
        return None
    for brand in BRANDS:
        if len(digits) in brand.lengths and any(low <= digits[:len(low)] <= high for low, high in brand.ranges):
            return brand.name if luhn.is_valid(digits) else None
    return None


_DASH = re.compile(r"[-\u2010-\u2015\u2212]")


def _touches_word(text: str, start: int, end: int) -> bool:
    """The run touches a letter or digit, directly or through a dash: it is part of an identifier (a UUID
    such as an idempotency key, "42424242-4242-4242-a242-...", whose digit groups alone may look like a card
    number), not a number of its own."""
    def joined(at: int, through: int) -> bool:
        return 0 <= at < len(text) and (text[at].isalnum() or (
            _DASH.fullmatch(text[at]) is not None and 0 <= through < len(text) and text[through].isalnum()))
    return joined(start - 1, start - 2) or joined(end, end + 1)


def find_card_numbers(text: str) -> Iterator[CardNumberMatch]:
    """Every card number in ``text``, in order (non-overlapping)."""
    for run in _DIGIT_RUN.finditer(text):
        if _touches_word(text, run.start(), run.end()):
            continue
        # A run may hold a card number among other groups ("order 12 4242 4242 4242 4242"): try the spans
        # of whole groups from each group on, longest first (at most MAX_DIGITS digits: bounded work).
        groups = [(run.start() + g.start(), run.start() + g.end()) for g in _GROUP.finditer(run.group())]
        index = 0
        while index < len(groups):
            found = _longest_card_number(text, groups, index)
            if found is None:
                index += 1
                continue
            yield found[0]
            index = found[1] + 1


def _longest_card_number(text: str, groups: list[tuple[int, int]], first: int) -> tuple[CardNumberMatch, int] | None:
    """The longest card number made of groups[first..last], with ``last``; None when there is none."""
    spans, digits = [], ""
    for last in range(first, len(groups)):
        digits += _ascii_digits(text[groups[last][0]:groups[last][1]])
        if len(digits) > MAX_DIGITS:
            break
        spans.append((last, digits))
    for last, candidate in reversed(spans):
        brand = brand_of(candidate)
        if brand is not None:
            return CardNumberMatch(groups[first][0], groups[last][1], brand), last
    return None


def _decoded_with_card_number(text: str) -> str | None:
    """``text`` percent-decoded (a URL, a form body) when only the decoded text holds a card number, else None.

    Decoded as a URL first, so that a "+" elsewhere in the text (a phone number, a log line's "+0000") stays
    as it is; as a form body (where "+" is a space) only if that finds nothing.
    """
    if not _ENCODED.search(text):
        return None
    for decoded in (unquote(text), unquote_plus(text)):
        if decoded != text and next(find_card_numbers(decoded), None) is not None:
            return decoded
    return None


def find_card_number(text: str) -> CardNumberMatch | None:
    """The first card number in ``text``, or None. A number found only once ``text`` is percent-decoded
    is reported as spanning the whole text (its place in the encoded text is not known)."""
    if not isinstance(text, str) or len(text) < MIN_DIGITS:
        return None
    found = next(find_card_numbers(text), None)
    if found is None and (decoded := _decoded_with_card_number(text)) is not None:
        found = CardNumberMatch(0, len(text), next(find_card_numbers(decoded)).brand)
    return found


def redact(text: str) -> str:
    """``text`` with every card number replaced by REDACTED; a text holding one only once percent-decoded
    is kept decoded, with the number redacted."""
    if not isinstance(text, str) or len(text) < MIN_DIGITS:
        return text
    if next(find_card_numbers(text), None) is None:
        text = _decoded_with_card_number(text) or text
    parts, position = [], 0
    for match in find_card_numbers(text):
        parts += [text[position:match.start], REDACTED]
        position = match.end
    if not parts:
        return text
    return "".join(parts) + text[position:]


def redact_value(value: Any) -> Any:
    """A copy of a JSON-like value (dicts, lists, strings) with card numbers redacted in keys and strings."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {redact_value(k): redact_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_value(v) for v in value]
    return value


def refusal(param: str, match: CardNumberMatch) -> str:
    """The message of a refusal: names the parameter and why, never the number."""
    return (f"{param} contains what looks like a {match.brand} card number. Card numbers must never be sent "
            "to Kassa: cards go from the shopper's browser straight to the PSP's vault (the checkout page, "
            "Stripe.js), and Kassa takes only the vault's token.")
