"""Rate limits of the sign-in pages, on Flask-Limiter's Redis storage.

Flask-Limiter's decorators count every request to a route; signing in needs finer control: per IP every
attempt counts, per account only failures count (so that the right password after a typo is not
punished, and a known email cannot be locked out by someone who never tries a password). So these views
use the same storage and strategy (`limiter.limiter`, configured by RATELIMIT_STORAGE_URI) directly.
Second-factor codes are limited the same way, on limits of their own; a password typed to re-authenticate
counts against the account's sign-in limits (it is the same secret being guessed).
"""
import logging
import time

from flask import current_app, make_response, render_template, request
from limits import parse

from app.extensions import limiter

logger = logging.getLogger(__name__)

# Limits ("N per period", the `limits` syntax), overridable in the app config. Per IP, 30 attempts per
# 10 minutes leaves room for an office behind one NAT address and stops a password-spraying script. Per
# account, 5 failures per 15 minutes makes guessing one password hopeless while a person who mistyped can
# retry shortly after. Sign-ups and reset mails cost rows and email: nobody needs more than a few an hour.
DEFAULT_LIMITS = {
    "LOGIN_RATE_LIMIT_PER_IP": "30 per 10 minutes",
    "LOGIN_RATE_LIMIT_PER_ACCOUNT": "5 per 15 minutes",
    "SIGNUP_RATE_LIMIT_PER_IP": "10 per hour",
    "RESET_RATE_LIMIT_PER_IP": "10 per hour",
    # A 6-digit code accepted within three 30-second steps: 5 wrong codes per 15 minutes leave an attacker
    # who has the password about a 1 in 200,000 chance per quarter hour (RFC 6238 section 5.2 asks for a
    # limit); per IP, as many attempts as for passwords.
    "SECOND_FACTOR_RATE_LIMIT_PER_IP": "30 per 10 minutes",
    "SECOND_FACTOR_RATE_LIMIT_PER_ACCOUNT": "5 per 15 minutes",
}


class Throttle:
    """One limit for one key (e.g. the sign-in attempts of one IP address).

    When Redis cannot be reached the throttle lets requests through and logs it: rate limiting is a brake,
    and an outage of Redis should not lock everyone out of the dashboard (argon2 still slows guessing).
    """

    def __init__(self, config_name: str, scope: str, kind: str, value: str):
        self.item = parse(current_app.config.get(config_name, DEFAULT_LIMITS[config_name]))
        prefix = current_app.config.get("RATELIMIT_KEY_PREFIX") or "kassa-rl"
        self.keys = (prefix, scope, kind, value)

    @staticmethod
    def enabled() -> bool:
        return bool(limiter.enabled)

    def _call(self, method: str, default):
        if not self.enabled():
            return default
        try:
            return getattr(limiter.limiter, method)(self.item, *self.keys)
        except Exception:  # redis errors of any kind: fail open, loudly
            logger.exception("rate limit storage unavailable; not limiting %s", "/".join(self.keys[1:3]))
            return default

    def hit(self) -> bool:
        """Count one attempt; False when the limit was already used up."""
        return self._call("hit", True)

    def allows(self) -> bool:
        """Whether one more attempt is within the limit (counts nothing)."""
        return self._call("test", True)

    def clear(self) -> None:
        """Forget the attempts counted so far."""
        if self.enabled():
            try:
                limiter.limiter.clear(self.item, *self.keys)
            except Exception:
                logger.exception("rate limit storage unavailable; could not clear %s", "/".join(self.keys[1:3]))

    def retry_after(self) -> int:
        """Seconds until the window lets attempts through again (at least 1)."""
        stats = self._call("get_window_stats", None)
        if stats is None:
            return 60
        return max(1, int(stats.reset_time - time.time()) + 1)


def minutes_text(seconds: int) -> str:
    """"1 minute", "15 minutes": a wait rounded up to whole minutes, for messages."""
    minutes = max(1, -(-seconds // 60))
    return "1 minute" if minutes == 1 else f"{minutes} minutes"


def ip_throttle(config_name: str, scope: str) -> Throttle:
    """The limit of one kind of attempt from this request's IP address."""
    return Throttle(config_name, scope, "ip", request.remote_addr or "unknown")


def hit_ip_limit(config_name: str, scope: str) -> int | None:
    """Count this request against a per-IP limit; the seconds to wait when it is exceeded, else None."""
    throttle = ip_throttle(config_name, scope)
    return None if throttle.hit() else throttle.retry_after()


def throttled(template: str, message: str, retry_after: int, **context):
    """The form again, with the rate limit message, as 429 with Retry-After."""
    response = make_response(render_template(template, throttle_message=message, **context), 429)
    response.headers["Retry-After"] = str(retry_after)
    return response
