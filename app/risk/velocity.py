"""Velocity counters over sliding windows (10 minutes, 1 hour, 24 hours) in Redis, shared by every process.

Each counter is a sorted set scored by time: recording and reading happen in one Lua script (atomic, one
round trip for all of a confirmation's counters); entries older than 24 hours are trimmed and every key
expires a day after its last write, so nothing grows without bound.

Keys, per mode (``test``/``live``: live and test never share counters):

* ``risk:v:<mode>:platform:card:<fingerprint>:...`` and ``risk:v:<mode>:platform:ip:<ip>:...``:
  **platform-wide by design** (the one documented exception to per-merchant keys): card testing crosses
  merchants. A merchant only ever sees the numbers in its own payments' signals, never whose payments they were.
* ``risk:v:<mode>:m:<merchant>:email:<sha256 of the email>:...``: per merchant and mode.

Counters: ``payments`` (members: payment ids), ``declines`` (declined or blocked), ``cards`` (members: card
fingerprints, scored by their last use: distinct cards), ``amount`` (card per currency, members
``<payment id>:<minor units>``). Redis away: ``record_and_read`` returns None and the assessment says so.
"""
from __future__ import annotations

import hashlib
import logging
import time
from typing import Any

log = logging.getLogger(__name__)

WINDOWS = (("10m", 600), ("1h", 3600), ("24h", 86400))
RETENTION_SECONDS = 86400
EXPIRE_SECONDS = RETENTION_SECONDS + 3600

# KEYS: counters; ARGV[1] now (seconds, decimal), ARGV[2] retention, ARGV[3] expiry, then per key a member
# to add ("" to only read). Returns one string of integers separated by spaces, three per key: counts in each
# window (10m, 1h, 24h); for "amount" keys the sum over 24 hours of the members' amounts, 0, 0 instead (one
# bulk reply: parsing a nested array of integers costs the client more than the script's work).
_SCRIPT = """
local now = tonumber(ARGV[1])
local retention = tonumber(ARGV[2])
local expiry = tonumber(ARGV[3])
local out = {}
for i, key in ipairs(KEYS) do
  local member = ARGV[3 + i]
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - retention)
  if member ~= '' then
    redis.call('ZADD', key, now, member)
    redis.call('EXPIRE', key, expiry)
  end
  if string.sub(key, -7) == ':amount' then
    local total = 0
    for _, m in ipairs(redis.call('ZRANGEBYSCORE', key, now - 86400, '+inf')) do
      local amount = tonumber(string.match(m, ':(%d+)$'))
      if amount then total = total + amount end
    end
    table.insert(out, string.format('%d 0 0', total))
  else
    table.insert(out, string.format('%d %d %d', redis.call('ZCOUNT', key, now - 600, '+inf'),
                                    redis.call('ZCOUNT', key, now - 3600, '+inf'),
                                    redis.call('ZCOUNT', key, now - 86400, '+inf')))
  end
end
return table.concat(out, ' ')
"""


def _mode(livemode: bool) -> str:
    return "live" if livemode else "test"


def _email_hash(email: str) -> str:
    return hashlib.sha256(email.casefold().encode()).hexdigest()[:32]


def subject_keys(*, merchant_id: str, livemode: bool, fingerprint: str | None, email: str | None,
                 ip: str | None, currency: str) -> dict[str, str]:
    """Key prefix per subject (only the subjects known for this payment)."""
    mode = _mode(livemode)
    keys = {}
    if fingerprint:
        keys["card"] = f"risk:v:{mode}:platform:card:{fingerprint}"
    if email:
        keys["email"] = f"risk:v:{mode}:m:{merchant_id}:email:{_email_hash(email)}"
    if ip:
        keys["ip"] = f"risk:v:{mode}:platform:ip:{ip}"
    return keys


class Velocity:
    """Records and reads a payment's counters; built per call with the Redis client (None: degraded)."""

    def __init__(self, redis: Any):
        self.redis = redis
        self._script = redis.register_script(_SCRIPT) if redis is not None else None

    def record_and_read(self, *, payment_id: str, merchant_id: str, livemode: bool, fingerprint: str | None,
                        email: str | None, ip: str | None, currency: str, amount: int,
                        record: bool = True, now: float | None = None) -> dict[str, int] | None:
        """Count this confirmation (``record``) and return the signals; None when Redis could not be asked."""
        if self._script is None:
            return None
        now = time.time() if now is None else now
        subjects = subject_keys(merchant_id=merchant_id, livemode=livemode, fingerprint=fingerprint, email=email,
                                ip=ip, currency=currency)
        keys, members, names = [], [], []
        for subject, prefix in subjects.items():
            keys.append(f"{prefix}:payments")
            members.append(payment_id if record else "")
            names.append((subject, "payments"))
            keys.append(f"{prefix}:declines")
            members.append("")
            names.append((subject, "declines"))
            if subject in ("email", "ip"):
                keys.append(f"{prefix}:cards")
                members.append((fingerprint or "") if record else "")
                names.append((subject, "distinct_cards"))
        if "card" in subjects:
            keys.append(f"{subjects['card']}:{currency.lower()}:amount")
            members.append(f"{payment_id}:{int(amount)}" if record else "")
            names.append(("card", "amount"))
        if not keys:
            return {}
        try:
            reply = self._script(keys=keys, args=[repr(float(now)), RETENTION_SECONDS, EXPIRE_SECONDS, *members])
            numbers = [int(number) for number in reply.split()]
        except Exception:  # noqa: BLE001 - any Redis failure: go on without counters, and say so
            log.warning("risk velocity counters unavailable (Redis)", exc_info=True)
            return None
        rows = [numbers[index:index + 3] for index in range(0, len(numbers), 3)]
        signals: dict[str, int] = {}
        for (subject, counter), row in zip(names, rows):
            if counter == "amount":
                signals["card_amount_24h_minor"] = int(row[0])
                continue
            for (window, _), value in zip(WINDOWS, row):
                signals[f"{subject}_{counter}_{window}"] = int(value)
        return signals

    def record_decline(self, *, payment_id: str, attempt_id: str, merchant_id: str, livemode: bool,
                       fingerprint: str | None, email: str | None, ip: str | None, now: float | None = None) -> bool:
        """Count a declined or blocked confirmation; False when Redis could not be asked (logged)."""
        if self.redis is None:
            return False
        now = time.time() if now is None else now
        subjects = subject_keys(merchant_id=merchant_id, livemode=livemode, fingerprint=fingerprint, email=email,
                                ip=ip, currency="")
        if not subjects:
            return True
        keys = [f"{prefix}:declines" for prefix in subjects.values()]
        try:
            self._script(keys=keys, args=[repr(float(now)), RETENTION_SECONDS, EXPIRE_SECONDS,
                                          *([f"{payment_id}:{attempt_id}"] * len(keys))])
        except Exception:  # noqa: BLE001
            log.warning("risk velocity: could not count a decline (Redis)", exc_info=True)
            return False
        return True
