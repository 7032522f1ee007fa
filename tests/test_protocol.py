"""The pure protocol state machine: framing, size limit, error events, handshake, output frames."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar import codec
from sidecar.protocol import (
    PEEK_BYTES,
    Call,
    CallError,
    Hello,
    ProtocolError,
    ProtocolMachine,
    frame,
)
from sidecar.terms import Atom

CALL = Atom("call")
HELLO = Atom("hello")
LIMIT = 400


def call_frame(call_id: int, function: str = "ping", args: list | None = None) -> bytes:
    return frame((CALL, call_id, Atom(function), [] if args is None else args))


def raw_frame(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


def feed_in_chunks(machine: ProtocolMachine, data: bytes, cuts: list[int]) -> list:
    events = []
    previous = 0
    for cut in sorted(set(cuts)) + [len(data)]:
        if cut > previous:
            events.extend(machine.receive_data(data[previous:cut]))
            previous = cut
    return events


def decode_frames(data: bytes) -> list:
    terms = []
    offset = 0
    while offset < len(data):
        (size,) = struct.unpack_from(">I", data, offset)
        terms.append(codec.decode(data[offset + 4 : offset + 4 + size]))
        offset += 4 + size
    return terms


# ---------------------------------------------------------------------------------------------
# a stream of frames with the events each must give

args_strategy = st.lists(
    st.one_of(
        st.integers(-(2**70), 2**70),
        st.text(max_size=20),
        st.booleans(),
        st.none(),
        st.floats(allow_nan=False, allow_infinity=False),
    ),
    max_size=4,
)


@st.composite
def frame_with_event(draw):
    kind = draw(st.sampled_from(["call", "call", "call", "bad_args", "garbage", "not_a_frame", "too_large_id", "too_large_anon"]))
    call_id = draw(st.integers(0, 2**40))
    if kind == "call":
        args = draw(args_strategy)
        return call_frame(call_id, "ping", args), Call(call_id, Atom("ping"), args)
    if kind == "bad_args":
        term = (CALL, call_id, Atom("ping"), Atom("not_a_list"))
        return frame(term), CallError(call_id, (Atom("bad_frame"), term))
    if kind == "garbage":
        body = draw(st.binary(min_size=1, max_size=30).filter(lambda b: b[:1] != b"\x83"))
        return raw_frame(body), Atom("decode_error")
    if kind == "not_a_frame":
        term = (Atom("nope"), draw(st.integers(0, 100)))
        return frame(term), ProtocolError((Atom("bad_frame"), term), "")
    padding = "x" * draw(st.integers(LIMIT, 3 * LIMIT))
    if kind == "too_large_id":
        data = call_frame(call_id, "store_program", [padding])
        return data, CallError(call_id, (Atom("frame_too_large"), len(data) - 4, LIMIT))
    data = frame(padding)
    return data, ProtocolError((Atom("frame_too_large"), len(data) - 4, LIMIT), "")


def matches(event, expected) -> bool:
    if expected is Atom("decode_error"):
        return isinstance(event, ProtocolError) and event.reason is Atom("decode_error")
    if isinstance(expected, ProtocolError):  # messages are for humans: compare reasons
        return isinstance(event, ProtocolError) and event.reason == expected.reason
    return event == expected


@settings(max_examples=60, deadline=None)
@given(st.lists(frame_with_event(), min_size=1, max_size=8), st.data())
def test_any_split_of_a_stream_gives_the_same_events(frames, data):
    stream = b"".join(f for f, _ in frames)
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=12))
    whole = ProtocolMachine(LIMIT).receive_data(stream)
    split = feed_in_chunks(ProtocolMachine(LIMIT), stream, cuts)
    assert split == whole
    assert len(whole) == len(frames)
    for event, (_, expected) in zip(whole, frames):
        assert matches(event, expected), (event, expected)


def test_byte_by_byte_feeding_gives_every_frame():
    stream = b"".join(call_frame(i, "get_session", [f"s{i}"]) for i in range(20))
    machine = ProtocolMachine()
    events = []
    for i in range(len(stream)):
        events.extend(machine.receive_data(stream[i : i + 1]))
    assert events == [Call(i, Atom("get_session"), [f"s{i}"]) for i in range(20)]
    assert machine.buffered_bytes == 0


def test_partial_frame_is_kept_and_buffer_compacted():
    machine = ProtocolMachine()
    second = call_frame(2)
    assert machine.receive_data(call_frame(1) + second[:5]) == [Call(1, Atom("ping"), [])]
    assert machine.buffered_bytes == 5
    assert machine.receive_data(second[5:] + call_frame(3)) == [Call(2, Atom("ping"), []), Call(3, Atom("ping"), [])]
    assert machine.buffered_bytes == 0


# ---------------------------------------------------------------------------------------------
# size limit


def test_oversized_frame_is_skipped_without_buffering_and_answered_with_its_id():
    machine = ProtocolMachine(max_frame_bytes=1000)
    big = call_frame(77, "store_program", ["s", "p", "z" * 200_000])
    events = []
    for offset in range(0, len(big), 4096):
        events.extend(machine.receive_data(big[offset : offset + 4096]))
        assert machine.buffered_bytes <= PEEK_BYTES
    events.extend(machine.receive_data(call_frame(78)))
    assert events == [
        CallError(77, (Atom("frame_too_large"), len(big) - 4, 1000)),
        Call(78, Atom("ping"), []),
    ]


def test_oversized_frame_id_is_read_even_when_its_prefix_arrives_byte_by_byte():
    machine = ProtocolMachine(max_frame_bytes=100)
    big = call_frame(2**33, "ping", ["y" * 500])
    events = machine.receive_data(big[:4])
    for i in range(4, len(big)):
        events.extend(machine.receive_data(big[i : i + 1]))
    assert events == [CallError(2**33, (Atom("frame_too_large"), len(big) - 4, 100))]


def test_oversized_frame_without_an_id_gives_a_protocol_error():
    machine = ProtocolMachine(max_frame_bytes=100)
    big = frame(("not", "a call", "x" * 1000))
    events = machine.receive_data(big) + machine.receive_data(call_frame(5))
    assert isinstance(events[0], ProtocolError)
    assert events[0].reason == (Atom("frame_too_large"), len(big) - 4, 100)
    assert events[1] == Call(5, Atom("ping"), [])


def test_oversized_frame_cut_by_end_of_input_before_its_id_still_gets_an_answer():
    machine = ProtocolMachine(max_frame_bytes=100)
    assert machine.receive_data(struct.pack(">I", 10_000) + b"\x83h") == []
    (event,) = machine.receive_data(b"")
    assert isinstance(event, ProtocolError)
    assert event.reason == (Atom("frame_too_large"), 10_000, 100)


def test_frame_exactly_at_the_limit_is_accepted():
    data = call_frame(1, "ping", ["abc"])
    machine = ProtocolMachine(max_frame_bytes=len(data) - 4)
    assert machine.receive_data(data) == [Call(1, Atom("ping"), ["abc"])]


# ---------------------------------------------------------------------------------------------
# bad frames


def test_garbage_gives_decode_error_and_the_machine_keeps_working():
    machine = ProtocolMachine()
    events = machine.receive_data(raw_frame(b"\x00garbage") + raw_frame(b"") + call_frame(9))
    assert [type(e) for e in events] == [ProtocolError, ProtocolError, Call]
    assert events[0].reason is Atom("decode_error") and events[1].reason is Atom("decode_error")
    assert "not a valid external term" in events[0].message


def test_truncated_term_with_a_readable_id_is_answered_to_that_id():
    body = codec.encode((CALL, 12, Atom("ping"), ["abcdef"]))
    events = ProtocolMachine().receive_data(raw_frame(body[:-3]))
    assert events == [CallError(12, Atom("decode_error"))]


def test_valid_term_that_is_not_a_frame_is_echoed():
    events = ProtocolMachine().receive_data(frame({"a": 1}) + frame((CALL, -1, Atom("ping"), [])))
    assert events[0].reason == (Atom("bad_frame"), {"a": 1})
    assert events[1].reason == (Atom("bad_frame"), (CALL, -1, Atom("ping"), []))


def test_large_bad_frame_echo_is_cut_to_200_bytes_of_inspect_output():
    (event,) = ProtocolMachine().receive_data(frame(["x" * 1000]))
    tag, echo = event.reason
    assert tag is Atom("bad_frame")
    assert isinstance(echo, str) and echo.startswith('["xxx') and len(echo.encode()) == 200


@pytest.mark.parametrize(
    "term, reason",
    [
        ((CALL, 4, Atom("ping"), {"not": "a list"}), (Atom("bad_frame"), (CALL, 4, Atom("ping"), {"not": "a list"}))),
        ((CALL, 4, "ping", []), (Atom("bad_frame"), (CALL, 4, "ping", []))),
        ((CALL, 4, None, []), (Atom("unknown_call"), None)),
    ],
)
def test_call_with_a_readable_id_but_bad_shape_is_a_call_error(term, reason):
    assert ProtocolMachine().receive_data(frame(term)) == [CallError(4, reason)]


def test_true_is_not_a_call_id():
    (event,) = ProtocolMachine().receive_data(frame((CALL, True, Atom("ping"), [])))
    assert isinstance(event, ProtocolError)


def test_end_of_input_inside_a_frame_reports_a_truncated_frame():
    machine = ProtocolMachine()
    data = call_frame(3)
    assert machine.receive_data(struct.pack(">I", 100) + data[4:]) == []
    (event,) = machine.receive_data(b"")
    assert event.reason == (Atom("truncated_frame"), 100, len(data) - 4)
    assert ProtocolMachine().receive_data(b"") == []


# ---------------------------------------------------------------------------------------------
# handshake


def test_hello_with_a_supported_version():
    options = {Atom("default_ttl"): 10}
    assert ProtocolMachine().receive_data(frame((HELLO, 1, options))) == [Hello(1, options)]


def test_unsupported_version_is_refused_and_a_later_supported_hello_accepted():
    machine = ProtocolMachine()
    events = machine.receive_data(frame((HELLO, 2, {})) + call_frame(1) + frame((HELLO, 1, {})))
    assert events[0].reason == (Atom("unsupported_version"), 2, [1])
    assert events[1:] == [Call(1, Atom("ping"), []), Hello(1, {})]


def test_hello_after_welcome_is_refused():
    machine = ProtocolMachine()
    machine.receive_data(frame((HELLO, 1, {})))
    machine.welcome(1, {})
    (event,) = machine.receive_data(frame((HELLO, 1, {})))
    assert event.reason is Atom("already_welcomed")


def test_hello_with_bad_options_is_a_bad_frame():
    (event,) = ProtocolMachine().receive_data(frame((HELLO, 1, [])))
    assert event.reason == (Atom("bad_frame"), (HELLO, 1, []))


# ---------------------------------------------------------------------------------------------
# output


def test_output_frames_hold_the_protocol_terms():
    machine = ProtocolMachine()
    data = b"".join(
        [
            machine.welcome(1, {Atom("protocol_versions"): [1]}),
            machine.telemetry([Atom("snakepit"), Atom("x")], {Atom("count"): 1}, {Atom("session_id"): "s"}),
            machine.reply(5, (Atom("ok"), 42.0)),
            machine.error_reply(6, Atom("not_found")),
            machine.log(Atom("warning"), "careful", {}),
            machine.protocol_error(Atom("decode_error"), "bad"),
        ]
    )
    assert decode_frames(data) == [
        (Atom("welcome"), 1, {Atom("protocol_versions"): [1]}),
        (Atom("telemetry"), [Atom("snakepit"), Atom("x")], {Atom("count"): 1}, {Atom("session_id"): "s"}),
        (Atom("reply"), 5, (Atom("ok"), 42.0)),
        (Atom("reply"), 6, (Atom("error"), Atom("not_found"))),
        (Atom("log"), Atom("warning"), "careful", {}),
        (Atom("protocol_error"), Atom("decode_error"), "bad"),
    ]
    assert machine.welcomed


def test_unencodable_reply_becomes_an_internal_error_reply():
    (term,) = decode_frames(ProtocolMachine().reply(8, object()))
    assert term[:2] == (Atom("reply"), 8)
    assert term[2][0] is Atom("error") and term[2][1][0] is Atom("internal_error")
