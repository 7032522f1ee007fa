"""Every error path is total: no frame can end the process or leave a call unanswered.

The issue's frames first (`{:nope, 2 ** 20000}` and `{:call, 51, 2 ** 20000, []}` made the
sidecar exit 1: building the bad-frame echo called repr() on the integer), then the other places
that print a client's term or an exception: the hello version, duplicate map keys, a store
defect whose exception cannot be printed, a huge call id in a log line. Each through the frame
path in-process and, for the issue's frames, through a real subprocess that must still answer
a ping afterwards.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from client import SubprocessClient

from sidecar import codec
from sidecar.cli import SidecarOptions
from sidecar.elixir.inspect import inspect
from sidecar.logframes import LogFrameHandler
from sidecar.protocol import BAD_FRAME_ECHO_BYTES, Call, CallError, Hello, ProtocolError, ProtocolMachine, describe_event
from sidecar.server import Sidecar
from sidecar.store import calls
from sidecar.terms import Atom

A = Atom
HUGE = 2**20000  # 6,021 digits: str() refuses it
ECHO_OF_HUGE = inspect((A("nope"), HUGE)).encode()[:BAD_FRAME_ECHO_BYTES].decode()


def answers(sidecar: Sidecar, term: Any) -> list[Any]:
    """The frames (decoded) that answer one frame holding `term`."""
    return [codec.decode(data[4:]) for data in sidecar.handle_input(codec.encode_frame(term))]


@pytest.fixture
def sidecar() -> Sidecar:
    made = Sidecar(SidecarOptions(spin_us=0, enable_test_calls=True))
    answers(made, (A("hello"), 1, {}))
    return made


def test_a_bad_frame_holding_a_huge_integer_is_echoed_in_full_digits(sidecar: Sidecar) -> None:
    (frame,) = answers(sidecar, (A("nope"), HUGE))
    assert frame[0] is A("protocol_error")
    assert frame[1] == (A("bad_frame"), ECHO_OF_HUGE)
    assert ECHO_OF_HUGE.startswith("{:nope, 398027684033796659235430720619120")
    assert len(ECHO_OF_HUGE) == BAD_FRAME_ECHO_BYTES
    assert answers(sidecar, (A("call"), 1, A("ping"), [])) == [(A("reply"), 1, A("pong"))]


def test_a_call_whose_function_is_a_huge_integer_is_answered_to_its_id(sidecar: Sidecar) -> None:
    (frame,) = answers(sidecar, (A("call"), 51, HUGE, []))
    expected_echo = inspect((A("call"), 51, HUGE, [])).encode()[:BAD_FRAME_ECHO_BYTES].decode()
    assert frame == (A("reply"), 51, (A("error"), (A("bad_frame"), expected_echo)))


def test_a_hello_with_a_huge_version_is_refused(sidecar: Sidecar) -> None:
    (frame,) = answers(sidecar, (A("hello"), HUGE, {}))
    assert frame[0] is A("protocol_error") and frame[1] == (A("unsupported_version"), HUGE, [1])
    assert frame[2].startswith("protocol version 39802768403379665923")


def test_duplicate_huge_map_keys_are_a_decode_error_naming_the_key(sidecar: Sidecar) -> None:
    body = codec.encode({HUGE: 1, 7: 2}).replace(codec.encode(7)[1:], codec.encode(HUGE)[1:])
    out = sidecar.handle_input(len(body).to_bytes(4, "big") + body)
    (frame,) = [codec.decode(data[4:]) for data in out]
    assert frame[1] is A("decode_error")
    assert "duplicate map key 3980276840337966592" in frame[2]


def test_a_defect_whose_exception_cannot_be_printed_is_answered(sidecar: Sidecar, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(store: Any, name: Any, args: Any) -> Any:
        raise KeyError(HUGE)  # str(KeyError(n)) is repr(n): it raises too

    monkeypatch.setattr(calls, "dispatch", broken)
    assert answers(sidecar, (A("call"), HUGE, A("ping"), [])) == [
        (A("reply"), HUGE, (A("error"), (A("internal_error"), "KeyError: <message not printable>")))
    ]


def test_a_store_defect_is_answered_with_a_printable_message(sidecar: Sidecar, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any) -> Any:
        raise KeyError(HUGE)

    monkeypatch.setattr(sidecar.store, "get_stats", broken)
    (frame,) = answers(sidecar, (A("call"), 3, A("get_stats"), []))
    assert frame == (A("reply"), 3, (A("error"), (A("internal_error"), "KeyError: <message not printable>")))


def test_log_lines_about_frames_never_raise() -> None:
    deep: Any = 1
    for _ in range(5000):
        deep = [deep]
    for event in (
        Call(HUGE, A("ping"), [HUGE, deep]),
        CallError(HUGE, (A("bad_frame"), HUGE)),
        ProtocolError((A("bad_frame"), deep), "m"),
        Hello(HUGE, {HUGE: deep}),
        object(),
    ):
        line = describe_event(event)
        assert len(line) < 600


def test_a_reply_that_cannot_be_encoded_is_an_internal_error_with_a_short_message() -> None:
    deep: Any = 1
    for _ in range(200):
        deep = [deep]
    term = codec.decode(ProtocolMachine().reply(7, (A("ok"), deep))[4:])
    assert term == (
        A("reply"),
        7,
        (A("error"), (A("internal_error"), "reply could not be encoded: term nested deeper than 128 levels")),
    )


def test_the_issues_frames_through_a_real_process() -> None:
    with SubprocessClient() as client:
        client.send_term((A("nope"), HUGE))
        reason, _message = client.next_protocol_error()
        assert reason == (A("bad_frame"), ECHO_OF_HUGE)
        call_id = client.send_call(A("ping"))
        client.send_term((A("call"), 51, HUGE, []))
        assert client.wait_reply(call_id) is A("pong")
        assert client.wait_reply(51)[1][0] is A("bad_frame")
        assert client.call("ping") is A("pong")
        assert client.process.poll() is None


def test_log_frames_of_failures_name_the_call_without_raising(monkeypatch: pytest.MonkeyPatch) -> None:
    handler = LogFrameHandler(logging.WARNING)
    logging.getLogger("sidecar").addHandler(handler)
    try:
        made = Sidecar(SidecarOptions(spin_us=0), handler)

        def broken_reply(call_id: int, result: Any) -> bytes:
            raise RuntimeError("boom")

        monkeypatch.setattr(made.protocol, "encode_reply", broken_reply)
        monkeypatch.setattr(made.protocol, "reply", broken_reply)
        out = made.handle_input(codec.encode_frame((A("call"), HUGE, A("ping"), [HUGE])))
    finally:
        logging.getLogger("sidecar").removeHandler(handler)
    first, frame = [codec.decode(data[4:]) for data in out]  # the call's failure, then its answer's
    assert first[0] is A("log") and first[2].startswith("call ping (id 3980276840337966592")
    assert frame[0] is A("log") and frame[1] is A("error")
    assert frame[2].startswith("failed to handle call :ping (id 3980276840337966592")
    assert handler.dropped == 0


def test_a_huge_cleanup_interval_does_not_end_the_cleanup_timer() -> None:
    # a hello's cleanup_interval may be any positive integer; the timer waits on an Event, whose
    # wait is a lock acquire with a timeout: an unlocked lock's acquire checks the timeout and
    # returns at once (2**64 ms raised OverflowError there, and the timer thread ended)
    import threading

    from sidecar.server import cleanup_wait_seconds

    for interval in (1, 60_000, 2**31, 2**64, HUGE):
        assert threading.Lock().acquire(True, cleanup_wait_seconds(interval)) is True
    assert cleanup_wait_seconds(60_000) == 60.0
    assert cleanup_wait_seconds(2**64) == cleanup_wait_seconds(HUGE) > 100 * 365 * 86400
