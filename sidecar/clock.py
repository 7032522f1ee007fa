"""Time for the store: storage seconds that survive restarts, the BEAM's monotonic seconds at
the boundary, and ISO 8601 UTC stamps.

Records hold storage time (`Clock.now`), anchored on the wall clock. What Elixir sees
(`created_at`, `last_accessed`, `last_updated_at`, `started_at`) is on the BEAM's monotonic
clock: `sidecar.store.replies` and `sidecar.store.structs` translate with `to_beam` / `from_beam`, so
Elixir code comparing them with `System.monotonic_time(:second)` sees consistent values in the
VM that is running now. `FakeClock` is a settable clock for tests.
"""

from __future__ import annotations

import datetime as _dt
import time
from typing import Any, Callable, Optional


def format_utc_iso8601(moment: _dt.datetime) -> str:
    """`DateTime.to_iso8601/1` of a microsecond-precision UTC DateTime: "...T10:52:03.123456Z"."""
    return moment.astimezone(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Clock:
    """The real clock. `now()` is storage time; `to_beam`/`from_beam` translate at the boundary.

    Storage time is whole seconds on the wall clock, as read once when the clock is made and
    counted on from there on Python's monotonic clock: records survive a restart of the sidecar
    or of the BEAM (whose monotonic seconds start anywhere), and sidecars on several nodes agree
    to within their clocks' sync. A wall-clock jump while the sidecar runs changes nothing;
    one between two runs shifts the older records by the jump (docs/storage.md, "Time").

    Storage time is the BEAM's monotonic seconds plus `beam_offset`, a whole number of seconds:
    the difference between the wall clock and the BEAM's monotonic clock, rounded. With the
    BEAM's own `System.time_offset/1` (`:hello`'s `time_offset_ms`) that difference is the
    BEAM's, the same number for every sidecar the BEAM starts, so a record keeps its BEAM time
    exactly across restarts of the sidecar and two sidecars of one BEAM (two stores on one Redis)
    agree to the second; without it, the wall clock read here stands in (the same to within the
    handshake's latency). Under a new BEAM, or on another node, records are right to within a
    second (two offsets, each rounded). The BEAM's clock comes from `:hello`:
    `monotonic_time_ms` (exact to the millisecond) or `monotonic_time` (whole seconds). Without
    either, there is no BEAM time: presented and storage time are both the wall clock's.
    `advance(seconds)` moves both (test-only `__advance_clock__`).
    """

    def __init__(
        self,
        beam_monotonic_at_start: Optional[int] = None,
        beam_monotonic_ms: Optional[int] = None,
        beam_time_offset_ms: Optional[int] = None,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._monotonic = monotonic
        self._started_at = monotonic()
        wall_now = wall()
        if beam_time_offset_ms is not None and (beam_monotonic_ms is not None or beam_monotonic_at_start is not None):
            # the BEAM's monotonic clock now, from the shared wall clock and the BEAM's own
            # offset: `monotonic_time_ms` was read before the sidecar started (Python's start-up,
            # a few hundred ms, would make every time here lag the BEAM's by that much)
            beam_ms = int(wall_now * 1000) - beam_time_offset_ms
        elif beam_monotonic_ms is not None:
            beam_ms = beam_monotonic_ms
        elif beam_monotonic_at_start is not None:
            beam_ms = beam_monotonic_at_start * 1000  # somewhere in that second: as before
        else:
            beam_ms = int(wall_now * 1000)
        self._beam_start_ms = beam_ms
        if beam_time_offset_ms is not None and (beam_monotonic_ms is not None or beam_monotonic_at_start is not None):
            self.beam_offset = round(beam_time_offset_ms / 1000)
        else:
            self.beam_offset = round(wall_now - beam_ms / 1000)
        self._offset = 0
        self._last_now = 0
        self._stamp_second: Optional[int] = None
        self._stamp_prefix = ""

    def now(self) -> int:
        """Whole seconds of storage time."""
        elapsed_ms = int((self._monotonic() - self._started_at) * 1000)
        now = (self._beam_start_ms + elapsed_ms) // 1000 + self.beam_offset + self._offset
        # hand out one int object per second: records stamped in the same second share it
        if now == self._last_now:
            return self._last_now
        self._last_now = now
        return now

    def to_beam(self, stored: Any) -> Any:
        """A stored time as the BEAM's monotonic seconds (anything but an integer unchanged)."""
        if type(stored) is int:
            return stored - self.beam_offset
        return stored

    def from_beam(self, given: Any) -> Any:
        """The BEAM's monotonic seconds as storage time (anything but an integer unchanged)."""
        if type(given) is int:
            return given + self.beam_offset
        return given

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
    """A clock that only moves when told to. Wall time moves along with it. Storage time and
    the BEAM's differ by `beam_offset` (0 unless a test sets it)."""

    def __init__(self, now: int = 0, wall: Optional[_dt.datetime] = None, beam_offset: int = 0) -> None:
        self._now = int(now)
        self._wall = wall or _dt.datetime(2026, 1, 1, tzinfo=_dt.timezone.utc)
        self.beam_offset = beam_offset

    to_beam = Clock.to_beam
    from_beam = Clock.from_beam

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
