"""Unit tests of the replay's pure parts: the recording file reader/writer, the matching
rules, and the term-by-term matcher with its id bindings and mismatch paths."""

from __future__ import annotations

import pytest

from sidecar.replay.matcher import Matcher
from sidecar.replay.recording import HEADER, RecordingError, encode_recording, parse_recording
from sidecar.replay.rules import ClockWindow, IdBindings, generated_id_parts
from sidecar.terms import Atom, ImproperList

A = Atom
OK = A("ok")
REPLY = A("reply")
SESSION = A("Elixir.Snakepit.Bridge.Session")


def reply(request_id: int, result):
    return (REPLY, request_id, result)


# ---------------------------------------------------------------------------------------------
# recording files


def test_recording_round_trip_keeps_order_direction_and_bytes():
    frames = [(">", b"\x83a\x01"), ("<", b""), ("<", b"\x83j" * 100)]
    data = encode_recording(frames)
    assert data.startswith(b"snakepit-sidecar-recording 1\n")
    parsed = parse_recording(data)
    assert [(f.direction, f.body) for f in parsed] == frames
    assert [f.index for f in parsed] == [0, 1, 2]
    assert parsed[1].offset == len(HEADER) + 5 + 3


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "not a recording"),
        (b"snakepit-sidecar-recording x\n", "bad header"),
        (b"snakepit-sidecar-recording 2\n", "version 2"),
        (HEADER + b"?\x00\x00\x00\x00", "unknown direction"),
        (HEADER + b">\x00\x00", "length is cut off"),
        (HEADER + b"<\x00\x00\x00\x05abc", "frame of 5 bytes, 3 present"),
    ],
)
def test_malformed_recordings_are_rejected_with_a_reason(data, message):
    with pytest.raises(RecordingError, match=message):
        parse_recording(data)


# ---------------------------------------------------------------------------------------------
# exact matching


@pytest.mark.parametrize(
    "expected, actual",
    [(1, 1.0), (True, 1), ("a", A("a")), (None, A("nil")), ("a", b"a"), ([1], (1,)), ({A("a"): 1}, [(A("a"), 1)]),
     (ImproperList([1], 2), [1, 2]), (0.7, 0.75), ("var", "var ")],
)  # fmt: skip
def test_different_terms_do_not_match(expected, actual):
    mismatch = Matcher().match(reply(1, expected), reply(1, actual))
    assert mismatch is not None
    assert mismatch.location() == "{:reply, 1, <here>}"


def test_equal_terms_match():
    term = reply(1, (OK, {A("a"): [1, 2.5, "x", None, True, ImproperList([1], 2)], "b": {1: b"\xff"}}))
    assert Matcher().match(term, term) is None


def test_mismatch_path_names_the_differing_sub_term():
    expected = reply(7, (OK, {A("__struct__"): SESSION, A("id"): "s", A("metadata"): {"k": [1, 2, 3]}}))
    actual = reply(7, (OK, {A("__struct__"): SESSION, A("id"): "s", A("metadata"): {"k": [1, 2, 4]}}))
    mismatch = Matcher().match(expected, actual)
    assert mismatch.location() == '{:reply, 7, {:ok, %Snakepit.Bridge.Session{... metadata: %{"k" => [..., <here>]}}}}'
    assert mismatch.reason == "expected 3, got 4"


def test_missing_and_extra_keys_and_list_ends_are_named():
    matcher = Matcher()
    missing = matcher.match(reply(1, {A("a"): 1, A("b"): 2}), reply(1, {A("a"): 1}))
    assert "expected the key :b with 2, got no such key" in missing.reason
    extra = matcher.match(reply(1, {A("a"): 1}), reply(1, {A("a"): 1, "z": 0}))
    assert 'expected no key "z"' in extra.reason
    shorter = matcher.match(reply(1, [1, 2]), reply(1, [1]))
    assert "the list ended after 1 elements" in shorter.reason
    longer = matcher.match(reply(1, [1]), reply(1, [1, 2]))
    assert "expected the list to end after 1 elements" in longer.reason


# ---------------------------------------------------------------------------------------------
# generated ids


def test_generated_id_shape():
    assert generated_id_parts("var_temp_cpu_12") == ("temp_cpu", 12)
    assert generated_id_parts("var_x_0") is None
    assert generated_id_parts("var_x") is None
    assert generated_id_parts(A("var_x_1")) is None


def test_generated_ids_bind_and_later_frames_must_use_the_bound_id():
    matcher = Matcher()
    assert matcher.match(reply(1, (OK, "var_temp_3")), reply(1, (OK, "var_temp_9"))) is None
    assert matcher.bindings.actual_of == {"var_temp_3": "var_temp_9"}
    # the bound id is what a later frame must hold, also as a map key
    later = reply(2, {"var_temp_3": {A("id"): "var_temp_3"}})
    assert matcher.match(later, reply(2, {"var_temp_9": {A("id"): "var_temp_9"}})) is None
    wrong = matcher.match(reply(3, {A("id"): "var_temp_3"}), reply(3, {A("id"): "var_temp_3"}))
    assert 'which an earlier frame bound to "var_temp_9"' in wrong.reason
    assert wrong.location() == "{:reply, 3, %{id: <here>}}"


def test_a_generated_id_must_keep_its_name_part():
    mismatch = Matcher().match(reply(1, (OK, "var_temp_3")), reply(1, (OK, "var_tmp_3")))
    assert 'shape "var_temp_<N>"' in mismatch.reason


def test_two_recorded_ids_cannot_bind_to_one_actual_id():
    matcher = Matcher()
    assert matcher.match(reply(1, "var_a_1"), reply(1, "var_a_5")) is None
    mismatch = matcher.match(reply(2, "var_a_2"), reply(2, "var_a_5"))
    assert 'already stands for the recorded id "var_a_1"' in mismatch.reason


def test_unbound_id_keys_pair_by_ascending_number():
    matcher = Matcher()
    expected = reply(1, {"var_a_1": 1, "var_a_2": 2})
    assert matcher.match(expected, reply(1, {"var_a_10": 1, "var_a_11": 2})) is None
    assert matcher.bindings.actual_of == {"var_a_1": "var_a_10", "var_a_2": "var_a_11"}


def test_requests_are_rewritten_with_bound_ids_and_literals_stand_for_themselves():
    bindings = IdBindings()
    assert bindings.bind("var_a_1", "var_a_7") is None
    request = (A("call"), 3, A("get_variables"), ["s", ["var_a_1", "var_b_4"], {"var_a_1": 1}])
    bindings.note_literals(request)
    assert bindings.actual_of["var_b_4"] == "var_b_4"
    rewritten = bindings.rewrite(request)
    assert rewritten == (A("call"), 3, A("get_variables"), ["s", ["var_a_7", "var_b_4"], {"var_a_7": 1}])
    untouched = (A("call"), 4, A("ping"), [])
    assert bindings.rewrite(untouched) is untouched


# ---------------------------------------------------------------------------------------------
# values that differ from run to run


def test_monotonic_times_match_within_the_replayed_clock_window():
    matcher = Matcher(clock=ClockWindow(start=1000, elapsed=lambda: 2.2))
    variable = lambda t: reply(1, {A("created_at"): t, A("last_updated_at"): t})  # noqa: E731
    assert matcher.match(variable(1000), variable(1003)) is None
    too_late = matcher.match(variable(1000), variable(1004))
    assert "1000..1003" in too_late.reason
    assert matcher.match(variable(1000), variable(999)) is not None
    assert matcher.match(variable(1000), variable(1000.0)) is not None
    # started_at is nil when not optimizing: then it is compared exactly
    status = lambda t: reply(1, {A("started_at"): t})  # noqa: E731
    assert matcher.match(status(None), status(1001)) is not None
    # the same key outside the rule's keys is exact
    assert matcher.match(reply(1, {A("created"): 1000}), reply(1, {A("created"): 1001})) is not None


def test_monotonic_times_without_a_clock_start_match_any_integer():
    matcher = Matcher()
    assert matcher.match(reply(1, {A("last_accessed"): 5}), reply(1, {A("last_accessed"): -77})) is None
    assert matcher.match(reply(1, {A("last_accessed"): 5}), reply(1, {A("last_accessed"): "5"})) is not None


def test_updated_at_stamps_match_by_shape():
    stamp = lambda s: reply(1, {A("metadata"): {"updated_at": s}})  # noqa: E731
    recorded = "2026-11-21T10:52:03.123456Z"
    matcher = Matcher()
    assert matcher.match(stamp(recorded), stamp("2027-01-02T00:00:59.000001Z")) is None
    assert matcher.match(stamp(recorded), stamp("2027-01-02T00:00:59Z")) is not None
    assert matcher.match(stamp(recorded), stamp("2027-13-02T00:00:59.000001Z")) is not None
    assert matcher.match(stamp(recorded), stamp(A("now"))) is not None
    # an atom key :updated_at is not the metadata stamp
    assert (
        matcher.match(reply(1, {A("updated_at"): recorded}), reply(1, {A("updated_at"): "2027-01-02T00:00:59.000001Z"}))
        is not None
    )


def test_memory_figures_and_welcome_details_match_by_rule():
    matcher = Matcher()
    stats = lambda n: reply(1, {A("memory_usage_bytes"): n, A("current_sessions"): 1})  # noqa: E731
    assert matcher.match(stats(1000), stats(0)) is None
    assert matcher.match(stats(1000), stats(-1)) is not None
    welcome = lambda pid, version: (A("welcome"), 1, {A("os_pid"): pid, A("version"): version})  # noqa: E731
    assert matcher.match(welcome(100, "0.1.0"), welcome(200, "0.2.0")) is None
    assert matcher.match(welcome(100, "0.1.0"), welcome(0, "0.1.0")) is not None
    assert matcher.match(welcome(100, "0.1.0"), welcome(100, A("v"))) is not None
    # os_pid in a reply is just data: exact
    assert matcher.match(reply(1, {A("os_pid"): 100}), reply(1, {A("os_pid"): 200})) is not None
