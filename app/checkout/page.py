"""What the hosted page shows: branding with readable colours, amounts in the shopper's locale, plain words.

Pure helpers (no Flask): the views pass in the Accept-Language header and the merchant row.
"""
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from app.money import format_money

DEFAULT_ACCENT = "#4f46e5"
_HEX_COLOUR = re.compile(r"^#[0-9a-fA-F]{6}$")
# WCAG 2.1 AA for normal text.
MIN_CONTRAST = 4.5

BRAND_NAMES = {
    "visa": "Visa", "mastercard": "Mastercard", "amex": "American Express", "discover": "Discover",
    "diners": "Diners Club", "jcb": "JCB", "unionpay": "UnionPay",
}

# Decline codes in plain words. Codes that would help a card tester (stolen, lost, fraudulent...)
# deliberately get the generic sentence, as card networks recommend.
DECLINE_MESSAGES = {
    "insufficient_funds": "Your card has insufficient funds.",
    "expired_card": "Your card has expired.",
    "incorrect_cvc": "The security code (CVC) is incorrect.",
    "incorrect_number": "The card number is incorrect.",
    "authentication_failed": "Your bank could not confirm that it is you (the security check failed).",
    "processing_error": "Something went wrong while processing your card. No money was taken.",
    "card_velocity_exceeded": "Your card has been used too many times. Try another card.",
    "blocked": "This payment could not be accepted.",
}
GENERIC_DECLINE = "Your card was declined."

def decline_message(code: str | None) -> str:
    """A sentence a shopper understands, for a PSP decline code."""
    return DECLINE_MESSAGES.get(code or "", GENERIC_DECLINE)

def _channel(value: int) -> float:
    c = value / 255
    return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

def luminance(colour: str) -> float:
    """WCAG relative luminance of #rrggbb."""
    r, g, b = (int(colour[i:i + 2], 16) for i in (1, 3, 5))
    return 0.2126 * _channel(r) + 0.7152 * _channel(g) + 0.0722 * _channel(b)

def contrast(a: str, b: str) -> float:
    """WCAG contrast ratio of two #rrggbb colours (1 to 21)."""
    la, lb = sorted((luminance(a), luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)

def _darken(colour: str, factor: float) -> str:
    r, g, b = (int(colour[i:i + 2], 16) for i in (1, 3, 5))
    return f"#{int(r * factor):02x}{int(g * factor):02x}{int(b * factor):02x}"

@dataclass(frozen=True)
class Branding:
    """The merchant's look, with colours adjusted so that text stays readable whatever the merchant chose."""

    name: str
    logo_url: str | None
    accent: str          # button background
    on_accent: str       # text on the button: black or white, whichever contrasts more
    accent_text: str     # the accent darkened until it reads on white (links, focus, headings)

    @property
    def logo_origin(self) -> str | None:
        """The one source the page's img-src adds for the logo: scheme, host and port (no path, no user info)."""
        if not self.logo_url:
            return None
        parts = urlsplit(self.logo_url)
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        return f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")

    @property
    def css(self) -> str:
        """Custom properties for a nonce'd <style> block (values are validated hex colours only)."""
        return (f":root{{--accent:{self.accent};--on-accent:{self.on_accent};"
                f"--accent-text:{self.accent_text};}}")


def _usable_logo_url(url: str | None) -> bool:
    """An http(s) URL with a host, a valid port and no user info, and nothing that could end a CSP source or an
    HTML attribute."""
    if not url or any(c in url for c in "'\" \\;"):
        return False
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018  (raises ValueError for a port that is not a number in range)
    except ValueError:
        return False
    return parts.scheme in ("https", "http") and bool(parts.hostname) and "@" not in parts.netloc


def branding(merchant) -> Branding:
    """Branding for a Merchant row; invalid colours or logo URLs fall back to defaults."""
    accent = merchant.accent_color if merchant.accent_color and _HEX_COLOUR.match(merchant.accent_color) \
        else DEFAULT_ACCENT
    accent = accent.lower()
    on_accent = "#ffffff" if contrast(accent, "#ffffff") >= contrast(accent, "#000000") else "#000000"
    accent_text = accent
    for _ in range(30):
        if contrast(accent_text, "#ffffff") >= MIN_CONTRAST:
            break
        accent_text = _darken(accent_text, 0.9)
    logo = merchant.logo_url if _usable_logo_url(merchant.logo_url) else None
    return Branding(
        name=merchant.display_name or merchant.name, logo_url=logo, accent=accent,
        on_accent=on_accent, accent_text=accent_text,
    )

def money(amount: int, currency: str, locale: str) -> str:
    """Minor units formatted for the shopper's locale and the currency's exponent."""
    return format_money(amount, currency, locale)
