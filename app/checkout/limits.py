"""Card-testing defence: Redis counters of confirmations and declines per session, IP and card fingerprint.

Card testers run stolen numbers through a payment page to learn which ones work; what gives them away
is many confirmations or declines from one session, one address, or for one card. Each limit is a
fixed window counter (INCR + EXPIRE on first use). Redis holds only these counters: losing them
loosens the defence for one window and never loses a payment.

Limits come from config ``CHECKOUT_LIMITS`` (a string such as
``"session_confirmations=10,ip_declines=20,window_seconds=3600"``, or a dict); unnamed ones keep their
defaults below.
"""
import logging
from dataclasses import dataclass, fields, replace

import redis as redis_lib

log = logging.getLogger(__name__)

_PREFIX = "kassa:checkout"


@dataclass(frozen=True)
class Limits:
    """Maximum confirmations and declines per window for each subject."""

    # A shopper rarely needs more than a few cards; ten tries on one page is already generous.
    session_confirmations: int = 10
    session_declines: int = 5
    # One address may be a household or an office NAT behind many shoppers: looser than per session.
    ip_confirmations: int = 30
    ip_declines: int = 10
    # One card declined again and again is being tested, whichever page or address it comes from.
    fingerprint_confirmations: int = 20
    fingerprint_declines: int = 5
    # An hour: long enough to make testing slow, short enough that a real shopper is not locked out for long.
    window_seconds: int = 3600

    @classmethod
    def from_config(cls, value) -> "Limits":
        """Parse ``CHECKOUT_LIMITS`` (None, a dict, or ``"name=value,..."``)."""
        if not value:
            return cls()
        if isinstance(value, str):
            pairs = {}
            for item in value.split(","):
                if item.strip():
                    name, _, number = item.partition("=")
                    pairs[name.strip()] = number.strip()
            value = pairs
        known = {f.name for f in fields(cls)}
        unknown = set(value) - known
        if unknown:
            raise ValueError(f"unknown CHECKOUT_LIMITS entries: {sorted(unknown)}")
        return replace(cls(), **{name: int(number) for name, number in value.items()})


@dataclass(frozen=True)
class Subject:
    """Who is confirming: the session, the client address and (when known) the card's fingerprint."""

    session_id: str
    ip: str | None
    fingerprint: str | None

    def subjects(self) -> list[tuple[str, str]]:
        subjects = [("session", self.session_id)]
        if self.ip:
            subjects.append(("ip", self.ip))
        if self.fingerprint:
            subjects.append(("fingerprint", self.fingerprint))
        return subjects


def _key(kind: str, subject: str, value: str, window: int, now: float) -> str:
    # The window number is part of the key, so counters reset by themselves and EXPIRE only cleans up.
    return f"{_PREFIX}:{kind}:{subject}:{value}:{int(now // window)}"


class CardTestingGuard:
    """Checks and counts confirmations and declines; every method tolerates Redis being down."""

    def __init__(self, redis: redis_lib.Redis, limits: Limits):
        self.redis = redis
        self.limits = limits

    def _limit(self, kind: str, subject: str) -> int:
        return getattr(self.limits, f"{subject}_{kind}")

    def refused(self, subject: Subject, now: float) -> str | None:
        """The name of the first exhausted limit (e.g. ``"ip_declines"``), or None when confirming may go on."""
        window = self.limits.window_seconds
        checks = [(kind, name, value) for kind in ("declines", "confirmations") for name, value in subject.subjects()]
        try:
            counts = self.redis.mget([_key(kind, name, value, window, now) for kind, name, value in checks])
        except redis_lib.RedisError:
            # The PSP's and the risk engine's own checks still apply; refusing every shopper would not help.
            log.warning("card-testing counters unavailable; not limiting", exc_info=True)
            return None
        for (kind, name, _value), count in zip(checks, counts):
            if count is not None and int(count) >= self._limit(kind, name):
                return f"{name}_{kind}"
        return None

    def _count(self, kind: str, subject: Subject, now: float, amount: int = 1) -> None:
        window = self.limits.window_seconds
        try:
            pipe = self.redis.pipeline()
            for name, value in subject.subjects():
                key = _key(kind, name, value, window, now)
                pipe.incrby(key, amount)
                pipe.expire(key, window * 2)
            pipe.execute()
        except redis_lib.RedisError:
            log.warning("card-testing counters unavailable; %s not counted", kind, exc_info=True)

    def count_confirmation(self, subject: Subject, now: float) -> None:
        """One confirmation sent to the payments service on behalf of this subject."""
        self._count("confirmations", subject, now)

    def count_declines(self, subject: Subject, now: float, declines: int = 1) -> None:
        """``declines`` definite declines observed for this subject."""
        if declines > 0:
            self._count("declines", subject, now, declines)

    def flag_liar(self, subject: Subject, now: float) -> None:
        """The browser named another card than the PSP saw: exhaust the session's and address's decline limits.

        Only a doctored page lies about the card's fingerprint (the vault's answer is relayed as it is),
        and the reason to lie is to slip past the per-card limit: that is card testing.
        """
        window = self.limits.window_seconds
        try:
            pipe = self.redis.pipeline()
            for name, value in subject.subjects():
                if name in ("session", "ip"):
                    key = _key("declines", name, value, window, now)
                    pipe.set(key, self._limit("declines", name), ex=window * 2)
            pipe.execute()
        except redis_lib.RedisError:
            log.warning("card-testing counters unavailable; mismatch not flagged", exc_info=True)

    def remember_attempt(self, session_id: str, attempt_number: int, subject: Subject) -> None:
        """Who made attempt N, so that a decline observed later (by a poll or a sweep) is counted against them."""
        try:
            key = f"{_PREFIX}:attempt:{session_id}:{attempt_number}"
            self.redis.hset(key, mapping={"ip": subject.ip or "", "fingerprint": subject.fingerprint or ""})
            self.redis.expire(key, self.limits.window_seconds * 2)
        except redis_lib.RedisError:
            log.warning("card-testing counters unavailable; attempt not remembered", exc_info=True)

    def attempt_subject(self, session_id: str, attempt_number: int) -> Subject:
        """The subject remembered for attempt N (only the session when nothing was remembered)."""
        try:
            data = self.redis.hgetall(f"{_PREFIX}:attempt:{session_id}:{attempt_number}")
        except redis_lib.RedisError:
            data = {}
        ip = (data.get(b"ip") or b"").decode() or None
        fingerprint = (data.get(b"fingerprint") or b"").decode() or None
        return Subject(session_id, ip, fingerprint)
