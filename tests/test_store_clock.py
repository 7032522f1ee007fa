"""The clock: storage seconds anchored on the wall clock, the BEAM's monotonic seconds at the
boundary, Elixir's ISO 8601 format, the fake clock."""

from __future__ import annotations

import datetime as dt
import re

from sidecar.clock import Clock, FakeClock, format_utc_iso8601


def test_presented_time_follows_the_beam_start_in_whole_seconds():
    ticks = iter([1000.0, 1000.9, 1001.2, 1010.99])
    clock = Clock(beam_monotonic_at_start=-576_460_751, monotonic=lambda: next(ticks), wall=lambda: 1_796_000_000.8)
    assert clock.to_beam(clock.now()) == -576_460_751
    assert clock.to_beam(clock.now()) == -576_460_750
    assert clock.to_beam(clock.now()) == -576_460_741


def test_storage_time_is_the_wall_clock_at_start_counted_on_monotonically():
    ticks = iter([5.0, 5.5, 65.2])
    wall = iter([1_796_000_000.3, 0.0])  # read once: a later jump of the wall clock is not seen
    clock = Clock(beam_monotonic_ms=-10_000, monotonic=lambda: next(ticks), wall=lambda: next(wall))
    assert clock.beam_offset == 1_796_000_010  # the clocks' difference, rounded
    assert clock.now() == 1_796_000_000
    assert clock.now() == 1_796_000_060
    assert clock.from_beam(clock.to_beam(1_796_000_060)) == 1_796_000_060


def test_a_restarted_sidecar_under_the_same_beam_presents_records_as_before():
    """The BEAM's and the wall clock's seconds tick at different moments; whole-second storage
    time must still give back the BEAM second a record was written in, whatever the phase."""
    difference = 1_796_000_000.7  # wall clock minus the BEAM's monotonic clock, in this VM
    for beam_ms in (-5_000_999, -5_000_500, -5_000_001, -4_999_999, 12_345):
        for later_ms in (0, 1, 499, 500, 999, 1_000, 86_400_123):
            first = Clock(beam_monotonic_ms=beam_ms, monotonic=lambda: 0.0, wall=lambda: beam_ms / 1000 + difference)
            stored = first.now()
            then = beam_ms + later_ms  # a new sidecar's hello, later in the same BEAM
            second = Clock(beam_monotonic_ms=then, monotonic=lambda: 0.0, wall=lambda: then / 1000 + difference + 0.0004)
            assert second.to_beam(stored) == beam_ms // 1000, (beam_ms, later_ms)
            assert second.to_beam(second.now()) == then // 1000


def test_times_of_another_run_translate_to_this_beams_clock():
    # a record written by a sidecar whose BEAM said -100 at storage time 1_000_000 ...
    first = Clock(beam_monotonic_at_start=-100, monotonic=lambda: 0.0, wall=lambda: 1_000_000.0)
    stored = first.now()
    # ... is read a day later by a new sidecar under a new BEAM whose clock started elsewhere
    second = Clock(beam_monotonic_at_start=-576_460_000, monotonic=lambda: 0.0, wall=lambda: 1_086_400.0)
    assert second.to_beam(stored) == -576_460_000 - 86_400  # a day before this BEAM's now
    assert second.to_beam(None) is None and second.to_beam("x") == "x"


def test_now_without_a_beam_start_is_storage_time():
    clock = Clock(monotonic=lambda: 42.7, wall=lambda: 1_796_000_000.2)
    assert clock.now() == 1_796_000_000
    assert type(clock.now()) is int
    assert clock.to_beam(clock.now()) == clock.now()


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


def test_the_beams_own_time_offset_makes_every_sidecar_of_it_agree():
    """Two sidecars of one BEAM, started at different moments with wall clocks read a little
    apart, round the BEAM's `System.time_offset/1`, not their own readings: the same offset."""
    offset_ms = 1_796_000_000_500  # on the half second: the worst case for rounding readings
    clocks = [
        Clock(beam_monotonic_ms=mono, beam_time_offset_ms=offset_ms, monotonic=lambda: 0.0, wall=lambda: wall)
        for mono, wall in ((-5_000, 1_796_000_000.5 - 5 - 0.001), (70_000, 1_796_000_000.5 + 70 + 0.001))
    ]
    assert clocks[0].beam_offset == clocks[1].beam_offset == round(offset_ms / 1000)
    # and each presents the BEAM's second at its own start, from the wall clock (-5.001 s, 70.001 s)
    assert clocks[0].to_beam(clocks[0].now()) == -6 and clocks[1].to_beam(clocks[1].now()) == 70


def test_with_the_beams_offset_the_clock_does_not_lag_by_the_sidecars_start_up():
    # the hello's monotonic_time_ms was read 0.4 s before the sidecar read its wall clock
    offset_ms = 1_796_000_000_000
    hello_mono_ms = 10_000
    wall_at_start = (hello_mono_ms + offset_ms + 400) / 1000
    clock = Clock(
        beam_monotonic_ms=hello_mono_ms, beam_time_offset_ms=offset_ms, monotonic=lambda: 0.0, wall=lambda: wall_at_start
    )
    assert clock.to_beam(clock.now()) == 10  # the BEAM's second now (10.4 s), not the hello's (10.0)
    late = Clock(
        beam_monotonic_ms=hello_mono_ms, beam_time_offset_ms=offset_ms, monotonic=lambda: 0.0, wall=lambda: wall_at_start + 0.7
    )
    assert late.to_beam(late.now()) == 11
