"""The sandbox clock: real time plus an offset that tests can move.

Created timestamps, settlement dates and dispute opening all read this clock, so a
test can jump a sandbox-day ahead instead of sleeping. Callback signatures and retry
backoff use the real wall clock instead, because the receiver checks staleness against
its own clock.
"""
import datetime as dt
import threading
import time


class Clock:
    """Real time shifted by an adjustable offset (seconds)."""

    def __init__(self, offset: int = 0):
        self._offset = offset
        self._lock = threading.Lock()

    @property
    def offset(self) -> int:
        """Seconds the sandbox clock is ahead of real time (may be negative)."""
        with self._lock:
            return self._offset

    def now(self) -> int:
        """Current sandbox time as a unix timestamp in whole seconds."""
        with self._lock:
            return int(time.time()) + self._offset

    def today(self) -> dt.date:
        """Current sandbox date (UTC)."""
        return utc_date(self.now())

    def advance(self, seconds: int) -> int:
        """Move the clock by ``seconds``; return the new sandbox time."""
        with self._lock:
            self._offset += int(seconds)
        return self.now()

    def set(self, now: int) -> int:
        """Make the sandbox time ``now`` (unix seconds) from this moment on."""
        with self._lock:
            self._offset = int(now) - int(time.time())
        return self.now()

    def reset(self) -> int:
        """Go back to real time."""
        with self._lock:
            self._offset = 0
        return self.now()


def utc_date(timestamp: int) -> dt.date:
    """The UTC calendar date of a unix timestamp."""
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).date()


def day_bounds(day: dt.date) -> tuple[int, int]:
    """Unix seconds [start, end) of a UTC calendar day."""
    start = int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp())
    return start, start + 86400
