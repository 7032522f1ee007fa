"""The clock: BEAM-relative whole seconds, Elixir's ISO 8601 format, the fake clock."""

from __future__ import annotations

import datetime as dt
import re

from sidecar.clock import Clock, FakeClock, format_utc_iso8601


def test_now_follows_the_beam_start_in_whole_seconds():
    ticks = iter([1000.0, 1000.9, 1001.2, 1010.99])
    clock = Clock(beam_monotonic_at_start=-576_460_751, monotonic=lambda: next(ticks))
    assert clock.now() == -576_460_751
    assert clock.now() == -576_460_750
    assert clock.now() == -576_460_741


def test_now_without_a_beam_start_is_python_monotonic():
    clock = Clock(monotonic=lambda: 42.7)
    assert clock.now() == 42
    assert type(clock.now()) is int


def test_utc_iso8601_is_elixirs_format():
    moment = dt.datetime(2026, 11, 21, 10, 52, 3, 123456, tzinfo=dt.timezone.utc)
    assert format_utc_iso8601(moment) == "2026-11-21T10:52:03.123456Z"
    on_the_second = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    assert format_utc_iso8601(on_the_second) == "2026-01-02T03:04:05.000000Z"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", Clock().utc_iso8601())


def test_fake_clock_moves_only_when_told():
    clock = FakeClock(-10)
    assert clock.now() == -10
    wall = clock.utc_iso8601()
    clock.advance(5)
    assert clock.now() == -5
    assert clock.utc_iso8601() > wall
    clock.set(100)
    assert clock.now() == 100
