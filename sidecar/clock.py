"""Time for the store: whole seconds on the BEAM's monotonic clock, and ISO 8601 UTC stamps.

`Clock` follows the BEAM: constructed with the `System.monotonic_time(:second)` value the
harness sent in `:hello`, its `now()` is that value plus the whole seconds elapsed since on
Python's own monotonic clock, so `created_at`, `last_accessed` and friends compare with
timestamps taken in Elixir. `FakeClock` is a settable clock for tests.
"""

from __future__ import annotations

import datetime as _dt
import time
from typing import Callable, Optional


def format_utc_iso8601(moment: _dt.datetime) -> str:
    """`DateTime.to_iso8601/1` of a microsecond-precision UTC DateTime: "...T10:52:03.123456Z"."""
    return moment.astimezone(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Clock:
    """The real clock. `advance(seconds)` adds an offset (test-only `__advance_clock__`)."""

    def __init__(
        self,
        beam_monotonic_at_start: Optional[int] = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._monotonic = monotonic
        self._started_at = monotonic()
        self._beam_start = beam_monotonic_at_start
        self._offset = 0
        self._last_now = 0
        self._stamp_second: Optional[int] = None
        self._stamp_prefix = ""

    def now(self) -> int:
        """Whole seconds on the BEAM's monotonic clock (or Python's, without a BEAM start)."""
        if self._beam_start is None:
            now = int(self._monotonic()) + self._offset
        else:
            now = self._beam_start + int(self._monotonic() - self._started_at) + self._offset
        # hand out one int object per second: records stamped in the same second share it
        if now == self._last_now:
            return self._last_now
        self._last_now = now
        return now

    def utc_iso8601(self) -> str:
        """Wall-clock UTC now, formatted as Elixir's `DateTime.utc_now() |> DateTime.to_iso8601()`.

        What `format_utc_iso8601(datetime.now(timezone.utc))` gives (microseconds truncated from
        the system clock's nanoseconds, as `datetime.now` does), with the formatted seconds
        kept for the rest of the second: `strftime` costs more than the rest of an update."""
        seconds, nanos = divmod(time.time_ns(), 1_000_000_000)
        if seconds != self._stamp_second:
            self._stamp_prefix = _dt.datetime.fromtimestamp(seconds, _dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.")
            self._stamp_second = seconds
        return f"{self._stamp_prefix}{nanos // 1000:06d}Z"

    def advance(self, seconds: int) -> None:
        """Move `now()` forward by `seconds` (used by tests to expire TTLs without sleeping)."""
        self._offset += int(seconds)


class FakeClock:
    """A clock that only moves when told to. Wall time moves along with it."""

    def __init__(self, now: int = 0, wall: Optional[_dt.datetime] = None) -> None:
        self._now = int(now)
        self._wall = wall or _dt.datetime(2026, 1, 1, tzinfo=_dt.timezone.utc)

    def now(self) -> int:
        return self._now

    def set(self, now: int) -> None:
        """Jump to `now` (may go backwards: tests only)."""
        self._wall += _dt.timedelta(seconds=now - self._now)
        self._now = int(now)

    def advance(self, seconds: int) -> None:
        self.set(self._now + int(seconds))

    def utc_iso8601(self) -> str:
        return format_utc_iso8601(self._wall)
