"""The sidecar as a real subprocess (and its loop in-process): errors, pipelining, lifecycle."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import time

import pytest
from client import REPO_ROOT, SubprocessClient, sidecar_env

from sidecar import codec, server
from sidecar.cli import SidecarOptions
from sidecar.logframes import LogFrameHandler
from sidecar.protocol import frame
from sidecar.terms import Atom

pytestmark = pytest.mark.subprocess

OK = Atom("ok")
ERROR = Atom("error")
CALL = Atom("call")
PONG = Atom("pong")
EXIT_TIMEOUT = 3.0  # generous: a hang fails, a slow shared machine does not


@pytest.fixture(scope="module")
def sidecar():
    """One sidecar shared by the tests that leave it in a usable state."""
    client = SubprocessClient("--max-frame-bytes", "20000")
    yield client
    assert client.close() == 0


def assert_alive(client: SubprocessClient) -> None:
    assert client.call("ping") is PONG


def raw_frame(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


def decode_frames(output: bytes) -> list:
    """The terms of the `{:packet, 4}` frames `output` holds, in order."""
    terms, offset = [], 0
    while offset < len(output):
        (size,) = struct.unpack_from(">I", output, offset)
        terms.append(codec.decode(output[offset + 4 : offset + 4 + size]))
        offset += 4 + size
    return terms


# ---------------------------------------------------------------------------------------------
# handshake


def test_welcome_describes_the_sidecar(sidecar):
    info = sidecar.welcome
    assert info[Atom("implementation")] == "snakepit_sidecar"
    assert info[Atom("protocol_versions")] == [1]
    assert info[Atom("os_pid")] == sidecar.process.pid
    assert info[Atom("max_frame_bytes")] == 20000
    assert isinstance(info[Atom("version")], str)


def test_unsupported_version_then_supported_hello():
    client = SubprocessClient(hello=False)
    try:
        client.send_term((Atom("hello"), 99, {}))
        reason, message = client.next_protocol_error()
        assert reason == (Atom("unsupported_version"), 99, [1])
        assert isinstance(message, str)
        assert_alive(client)  # calls before a hello are served with the defaults
        assert client.hello({})[Atom("protocol_versions")] == [1]
    finally:
        assert client.close() == 0


# ---------------------------------------------------------------------------------------------
# malformed input: each gets its error and the sidecar goes on


def test_garbage_bytes_give_a_decode_error(sidecar):
    sidecar.send_raw(raw_frame(b"\x00\x01garbage"))
    reason, _ = sidecar.next_protocol_error()
    assert reason is Atom("decode_error")
    assert_alive(sidecar)


def test_valid_term_that_is_not_a_frame(sidecar):
    sidecar.send_term({Atom("what"): 1})
    reason, _ = sidecar.next_protocol_error()
    assert reason == (Atom("bad_frame"), {Atom("what"): 1})
    assert_alive(sidecar)


def test_call_with_non_list_args(sidecar):
    sidecar.send_term((CALL, 501, Atom("ping"), Atom("none")))
    result = sidecar.wait_reply(501)
    assert result == (ERROR, (Atom("bad_frame"), (CALL, 501, Atom("ping"), Atom("none"))))
    assert_alive(sidecar)


def test_unknown_call(sidecar):
    assert sidecar.call("no_such_call", 1) == (ERROR, (Atom("unknown_call"), Atom("no_such_call")))
    assert_alive(sidecar)


def test_wrong_arity(sidecar):
    error, reason = sidecar.call("get_session")
    assert error is ERROR
    assert reason[:3] == (Atom("bad_arity"), Atom("get_session"), 0)
    assert 1 in reason[3]
    assert_alive(sidecar)


def test_bad_argument_type(sidecar):
    error, reason = sidecar.call("get_session", 42)
    assert error is ERROR
    assert reason[:3] == (Atom("bad_argument"), Atom("get_session"), 1)
    assert isinstance(reason[3], str)
    assert_alive(sidecar)


def test_oversized_frame_with_a_readable_id(sidecar):
    call_id = sidecar.send_call("store_global_program", "p", "x" * 100_000)
    result = sidecar.wait_reply(call_id)
    assert result[0] is ERROR
    assert result[1][0] is Atom("frame_too_large") and result[1][2] == 20000
    assert result[1][1] > 100_000
    assert sidecar.call("get_global_program", "p") == (ERROR, Atom("not_found"))
    assert_alive(sidecar)


def test_oversized_frame_without_an_id(sidecar):
    data = frame(["no id here", "y" * 50_000])
    sidecar.send_raw(data)
    reason, _ = sidecar.next_protocol_error()
    assert reason == (Atom("frame_too_large"), len(data) - 4, 20000)
    assert_alive(sidecar)


def test_length_header_promising_more_than_arrives_then_eof():
    client = SubprocessClient()
    client.send_raw(struct.pack(">I", 1000) + b"\x83h\x04")
    client.close_stdin()
    frames = client.read_until_eof()
    assert (Atom("protocol_error"), (Atom("truncated_frame"), 1000, 3)) == frames[-1][:2]
    assert client.wait_exit(EXIT_TIMEOUT) == 0
    client.close()


def test_internal_error_is_answered_and_the_loop_goes_on(monkeypatch):
    def broken_dispatch(store, name, args):
        if name is Atom("explode"):
            raise RuntimeError("kaboom")
        return PONG, []

    monkeypatch.setattr(server.calls, "dispatch", broken_dispatch)
    sidecar = server.Sidecar(SidecarOptions())
    out = sidecar.handle_input(frame((CALL, 1, Atom("explode"), [])) + frame((CALL, 2, Atom("ping"), [])))
    replies = [codec.decode(f[4:]) for f in out if codec.decode(f[4:])[0] is Atom("reply")]
    assert replies[0][:2] == (Atom("reply"), 1)
    assert replies[0][2][0] is ERROR and replies[0][2][1][0] is Atom("internal_error")
    assert "kaboom" in replies[0][2][1][1]
    assert replies[1] == (Atom("reply"), 2, PONG)


# ---------------------------------------------------------------------------------------------
# throughput shape, telemetry order, logs


def test_200_pipelined_calls_are_all_answered_with_their_ids(sidecar):
    ids = list(range(10_000, 10_200))
    payload = b"".join(frame((CALL, i, Atom("session_exists?"), [f"nobody-{i}"])) for i in ids)
    payload += b"".join(frame((CALL, i, Atom("ping"), [])) for i in range(20_000, 20_200))
    sidecar.send_raw(payload)
    for i in ids:
        assert sidecar.wait_reply(i) is False
    for i in range(20_000, 20_200):
        assert sidecar.wait_reply(i) is PONG


def test_telemetry_frames_come_before_the_reply(sidecar):
    assert sidecar.call("create_session", "tele")[0] is OK
    sidecar.take_events()
    result = sidecar.call("register_variable", "tele", Atom("temp"), Atom("float"), 1.5)
    assert result[0] is OK
    events = sidecar.take_events()  # already here: they were sent before the reply
    assert [e[0] for e in events] == [[Atom("snakepit"), Atom("session_store"), Atom("variable"), Atom("registered")]]
    assert events[0][2][Atom("session_id")] == "tele"


def test_hello_can_turn_telemetry_off():
    client = SubprocessClient(hello_options={Atom("telemetry"): False})
    try:
        client.call("create_session", "quiet")
        assert client.call("register_variable", "quiet", "x", Atom("integer"), 1)[0] is OK
        assert client.call("ping") is PONG
        assert client.take_events() == []
    finally:
        client.close()


def test_hello_options_override_the_command_line():
    hello = {
        Atom("default_ttl"): 77,
        Atom("monotonic_time"): -576_460_000,
        Atom("session_struct"): Atom("Elixir.My.Session"),
        Atom("unknown_key"): "ignored",
    }
    client = SubprocessClient("--default-ttl", "50", hello_options=hello)
    try:
        ok, session = client.call("create_session", "s")
        assert ok is OK
        assert session[Atom("ttl")] == 77
        assert session[Atom("__struct__")] is Atom("Elixir.My.Session")
        assert -576_460_000 <= session[Atom("created_at")] <= -576_460_000 + 60
    finally:
        client.close()


def test_hello_monotonic_time_ms_puts_timestamps_on_that_clock():
    hello = {Atom("monotonic_time"): -576_461, Atom("monotonic_time_ms"): -576_460_250}
    client = SubprocessClient(hello_options=hello)
    try:
        ok, session = client.call("create_session", "s")
        assert ok is OK
        assert -576_461 <= session[Atom("created_at")] <= -576_461 + 60  # the milliseconds win
    finally:
        client.close()


def test_a_hello_that_fails_is_answered_with_a_protocol_error(monkeypatch):
    sidecar = server.Sidecar(SidecarOptions())

    def broken(options):
        raise RuntimeError("boom")

    monkeypatch.setattr(sidecar, "_apply_hello", broken)
    answers = [codec.decode(f[4:]) for f in sidecar.handle_input(frame((Atom("hello"), 1, {})))]
    assert [answer[0] for answer in answers] == [Atom("protocol_error")]
    assert answers[0][1] == (Atom("internal_error"), "RuntimeError: boom")


def test_bad_hello_option_is_refused_with_a_log_frame():
    client = SubprocessClient(hello=False)
    try:
        client.send_term((Atom("hello"), 1, {Atom("default_ttl"): "long"}))
        reason, message = client.next_protocol_error()
        assert reason == (Atom("invalid_option"), Atom("default_ttl"), "long")
        assert "default_ttl" in message
        level, log_message, metadata = client.wait_log()
        assert level is Atom("warning")
        assert "default_ttl" in log_message
        assert metadata[Atom("logger")] == "sidecar.server"
        assert client.hello({})[Atom("implementation")] == "snakepit_sidecar"
    finally:
        client.close()


# ---------------------------------------------------------------------------------------------
# stdout hygiene and lifecycle


def test_stdout_holds_frames_only():
    client = SubprocessClient("--log-level", "debug", "--log-frame-level", "debug")
    client.call("create_session", "a")
    client.send_raw(raw_frame(b"junk"))
    client.call("get_stats")
    client.close_stdin()
    client.read_until_eof()
    assert client.wait_exit(EXIT_TIMEOUT) == 0
    stream = bytes(client.raw_stdout)
    offset = 0
    count = 0
    while offset < len(stream):
        (size,) = struct.unpack_from(">I", stream, offset)
        assert offset + 4 + size <= len(stream)
        term = codec.decode(stream[offset + 4 : offset + 4 + size])
        assert isinstance(term, tuple) and term[0] in {
            Atom("welcome"),
            Atom("reply"),
            Atom("telemetry"),
            Atom("log"),
            Atom("protocol_error"),
        }
        offset += 4 + size
        count += 1
    assert count >= 4
    client.close()


def test_stray_writes_to_stdout_go_to_stderr():
    script = (
        "import os\n"
        "from sidecar.server import take_over_stdout\n"
        "fd = take_over_stdout()\n"
        "print('stray print')\n"
        "os.write(1, b'stray write\\n')\n"
        "os.write(fd, b'FRAMES')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=str(REPO_ROOT), env=sidecar_env(), capture_output=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"FRAMES"
    assert b"stray print" in result.stderr and b"stray write" in result.stderr


def test_closing_stdin_exits_with_status_0_promptly():
    client = SubprocessClient()
    assert_alive(client)
    client.close_stdin()
    assert client.wait_exit(EXIT_TIMEOUT) == 0
    client.close()


def test_periodic_cleanup_expires_sessions():
    client = SubprocessClient("--cleanup-interval", "60000", hello_options={Atom("cleanup_interval"): 50})
    try:
        assert client.call("create_session", "short", [(Atom("ttl"), 1)])[0] is OK
        assert client.call("create_session", "long", [(Atom("ttl"), 100_000)])[0] is OK
        assert client.call("__advance_clock__", 10) is OK
        deadline = time.monotonic() + 10
        while client.call("session_exists?", "short") and time.monotonic() < deadline:
            time.sleep(0.02)
        assert client.call("session_exists?", "short") is False
        assert client.call("session_exists?", "long") is True
        stats = client.call("get_stats")
        assert stats[Atom("sessions_expired")] == 1
        assert stats[Atom("cleanup_runs")] >= 1
    finally:
        client.close()


# ---------------------------------------------------------------------------------------------
# the loop in-process


def decode_all(frames: list[bytes]) -> list:
    return [codec.decode(f[4:]) for f in frames]


@pytest.mark.parametrize(
    "options, key",
    [
        ({Atom("default_ttl"): True}, "default_ttl"),
        ({Atom("cleanup_interval"): 0}, "cleanup_interval"),
        ({Atom("telemetry"): "no"}, "telemetry"),
        ({Atom("session_struct"): "My.Session"}, "session_struct"),
        ({"monotonic_time": 1.5}, "monotonic_time"),
        ({Atom("monotonic_time_ms"): "now"}, "monotonic_time_ms"),
    ],
)
def test_bad_hello_option_values_are_refused_without_welcome(options, key):
    sidecar = server.Sidecar(SidecarOptions())
    terms = decode_all(sidecar.handle_input(frame((Atom("hello"), 1, options))))
    assert [t[0] for t in terms] == [Atom("protocol_error")]
    assert terms[0][1][:2] == (Atom("invalid_option"), Atom(key))
    assert not sidecar.protocol.welcomed


def test_only_records_at_the_frame_level_become_log_frames():
    import logging

    handler = LogFrameHandler(logging.WARNING)
    logger = logging.getLogger("sidecar.test_logframes")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        logger.info("not sent")
        logger.error("sent %d", 1)
    finally:
        logger.removeHandler(handler)
    sidecar = server.Sidecar(SidecarOptions(), handler)
    terms = decode_all(sidecar.handle_input(frame((CALL, 1, Atom("ping"), []))))
    assert terms[0][:3] == (Atom("log"), Atom("error"), "sent 1")
    assert terms[0][3][Atom("logger")] == "sidecar.test_logframes"
    assert terms[1] == (Atom("reply"), 1, PONG)
    assert len(terms) == 2


def test_serve_writes_the_frames_of_one_chunk_with_one_write(monkeypatch):
    in_read, in_write = os.pipe()
    out_read, out_write = os.pipe()
    chunk = b"".join(frame((CALL, i, Atom("ping"), [])) for i in range(5))
    os.write(in_write, chunk)
    os.close(in_write)
    writes = []
    real_write = os.write

    def counting_write(fd, data):
        if fd == out_write:
            writes.append(bytes(data))
        return real_write(fd, data)

    monkeypatch.setattr(server.os, "write", counting_write)
    handler = LogFrameHandler()
    server.serve(server.Sidecar(SidecarOptions(), handler), in_read, server.FrameWriter(out_write))
    os.close(out_write)
    output = os.read(out_read, 1 << 16)
    os.close(in_read)
    os.close(out_read)
    assert len(writes) == 1 and writes[0] == output
    assert decode_frames(output) == [(Atom("reply"), i, PONG) for i in range(5)]


def test_serve_leaves_no_timer_thread_behind():
    import threading

    in_read, in_write = os.pipe()
    out_read, out_write = os.pipe()
    os.write(in_write, frame((CALL, 1, Atom("ping"), [])))
    os.close(in_write)
    server.serve(server.Sidecar(SidecarOptions()), in_read, server.FrameWriter(out_write))
    deadline = time.monotonic() + 2
    while any(t.name == "cleanup-timer" for t in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.01)
    for fd in (in_read, out_read, out_write):
        os.close(fd)
    assert not any(t.name == "cleanup-timer" for t in threading.enumerate())


# ---------------------------------------------------------------------------------------------
# the reader


def test_chunk_reader_returns_independent_bytes_of_what_was_read():
    read_fd, write_fd = os.pipe()
    reader = server.ChunkReader(read_fd, size=8)
    try:
        os.write(write_fd, b"abc")
        first = reader.read()
        os.write(write_fd, b"0123456789")  # more than the buffer holds: two reads
        second, third = reader.read(), reader.read()
        os.close(write_fd)
        end = reader.read()
    finally:
        os.close(read_fd)
    assert type(first) is bytes and first == b"abc"  # a copy: the next reads did not change it
    assert (second, third) == (b"01234567", b"89")
    assert end == b""


def _spinning_reader(monkeypatch, fd: int, spin_us: int = 50, size: int = 8):
    monkeypatch.setattr(server, "usable_cpus", lambda: 2)  # spinning needs a second CPU
    return server.ChunkReader(fd, size=size, spin_us=spin_us)


def test_a_spinning_reader_reads_what_comes_before_during_and_after_its_spin(monkeypatch):
    import threading

    read_fd, write_fd = os.pipe()
    reader = _spinning_reader(monkeypatch, read_fd)
    try:
        assert reader.spin_seconds == 50e-6 and os.get_blocking(read_fd) is False
        os.write(write_fd, b"abc")
        assert reader.read() == b"abc"  # already there
        later = threading.Timer(0.2, os.write, (write_fd, b"late"))  # long after the spin: it blocked
        later.start()
        cpu_before = time.process_time()
        assert reader.read() == b"late"
        cpu_spent = time.process_time() - cpu_before
        later.join()
        os.write(write_fd, b"0123456789")
        assert (reader.read(), reader.read()) == (b"01234567", b"89")
        assert os.get_blocking(read_fd) is False  # back to polling after the blocking read
        later = threading.Timer(0.05, os.write, (write_fd, b"no spin"))
        later.start()
        assert reader.read(spin=False) == b"no spin"  # one try, then it blocked
        later.join()
        assert os.get_blocking(read_fd) is False
        os.close(write_fd)
        assert reader.read() == b""
    finally:
        reader.close()
        blocking_after_close = os.get_blocking(read_fd)
        os.close(read_fd)
    # waiting 0.2 s cost well under 0.2 s of CPU: after the 50 µs spin it slept (a reader that
    # never stopped polling would burn about all of it)
    assert cpu_spent < 0.1
    assert blocking_after_close is True


def test_a_reader_does_not_spin_with_one_cpu_or_when_told_not_to(monkeypatch):
    read_fd, write_fd = os.pipe()
    try:
        monkeypatch.setattr(server, "usable_cpus", lambda: 1)
        assert server.ChunkReader(read_fd, spin_us=50).spin_seconds == 0
        monkeypatch.setattr(server, "usable_cpus", lambda: 4)
        assert server.ChunkReader(read_fd, spin_us=0).spin_seconds == 0
        assert os.get_blocking(read_fd) is True
    finally:
        os.close(read_fd)
        os.close(write_fd)
    assert server.usable_cpus() >= 1


@pytest.mark.parametrize("frames, spins", [(1, [True, True]), (3, [True, False])])
def test_serve_spins_only_after_a_chunk_of_at_most_one_frame(monkeypatch, frames, spins):
    """A lone call is a caller waiting for its reply; after a batch the BEAM is busy anyway."""
    monkeypatch.setattr(server, "usable_cpus", lambda: 2)
    asked = []
    real_read = server.ChunkReader.read
    monkeypatch.setattr(server.ChunkReader, "read", lambda self, spin=True: asked.append(spin) or real_read(self, spin))
    in_read, in_write = os.pipe()
    out_read, out_write = os.pipe()
    os.write(in_write, b"".join(frame((CALL, i, Atom("ping"), [])) for i in range(frames)))  # one read takes all
    os.close(in_write)
    server.serve(server.Sidecar(SidecarOptions()), in_read, server.FrameWriter(out_write), 50)
    for fd in (in_read, out_read, out_write):
        os.close(fd)
    assert asked == spins  # the first read, then the one after the chunk (it finds the end)


def test_handle_input_counts_the_frames_each_chunk_completed():
    sidecar = server.Sidecar(SidecarOptions())
    ping = frame((CALL, 1, Atom("ping"), []))
    hello = frame((Atom("hello"), 1, {}))
    for chunk, count in ((ping, 1), (ping * 3, 3), (ping[:5], 0), (ping[5:] + hello + ping, 3), (b"", 0)):
        sidecar.handle_input(chunk)
        assert sidecar.last_chunk_frames == count


@pytest.mark.parametrize("spin_us", [0, 50])
def test_serve_handles_frames_split_across_reads(monkeypatch, spin_us):
    monkeypatch.setattr(server, "usable_cpus", lambda: 2)
    in_read, in_write = os.pipe()
    out_read, out_write = os.pipe()
    data = b"".join(frame((CALL, i, Atom("ping"), [])) for i in range(3))
    for byte in range(len(data)):  # one byte at a time: every frame arrives in pieces
        os.write(in_write, data[byte : byte + 1])
    os.close(in_write)
    server.serve(server.Sidecar(SidecarOptions()), in_read, server.FrameWriter(out_write), spin_us)
    assert os.get_blocking(in_read) is True  # given back as found
    os.close(out_write)
    output = os.read(out_read, 1 << 16)
    os.close(in_read)
    os.close(out_read)
    assert decode_frames(output) == [(Atom("reply"), i, PONG) for i in range(3)]
