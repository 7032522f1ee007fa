"""The sidecar's process life through real subprocesses: how it ends, and what it says.

* When the framing itself breaks (a 3 GB length prefix, stdin closed in the middle of a frame),
  the error frame is written and one clear line goes to stderr before the process exits with
  status 0, at every `--log-level` (before, stderr stayed empty).
* Closed stdin: the sidecar answers what it was sent, then exits with status 0, promptly.
* A killed parent: a parent process that holds the sidecar's pipes is SIGKILLed; the sidecar
  sees end of input and exits, leaving no orphan. (The same with a real BEAM as the parent:
  elixir_harness/test/reliability_test.exs.)
"""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import textwrap
import time

import pytest
from client import SubprocessClient, sidecar_command, sidecar_env

from sidecar import codec
from sidecar.terms import Atom

A = Atom
EXIT_TIMEOUT = 10.0
LEVELS = ["debug", "info", "warning", "error"]
THREE_GB = 3 * 1024**3


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if " ERROR " in line]


@pytest.mark.parametrize("level", LEVELS)
def test_a_3gb_length_prefix_then_end_of_input_is_one_stderr_line(level: str) -> None:
    client = SubprocessClient("--log-level", level)
    client.send_raw(struct.pack(">I", THREE_GB) + b"\x83h\x04w\x04call")
    client.close_stdin()
    frames = client.read_until_eof()
    reason, message = frames[-1][1:3]
    assert frames[-1][0] is A("protocol_error") and reason == (A("frame_too_large"), THREE_GB, 64 * 1024 * 1024)
    assert client.wait_exit(EXIT_TIMEOUT) == 0
    lines = error_lines(client.stderr_text())
    assert len(lines) == 1, client.stderr_text()
    assert "stdin ended inside a frame, exiting: input ended inside a frame of 3221225472 bytes" in lines[0]
    client.close()


@pytest.mark.parametrize("level", LEVELS)
def test_a_3gb_frame_whose_id_was_answered_then_end_of_input_is_one_stderr_line(level: str) -> None:
    client = SubprocessClient("--log-level", level)
    body_start = codec.encode((A("call"), 77, A("store_program"), ["s", "p", "x" * 1000]))
    client.send_raw(struct.pack(">I", THREE_GB) + body_start)  # over PEEK_BYTES: answered at once
    assert client.wait_reply(77) == (A("error"), (A("frame_too_large"), THREE_GB, 64 * 1024 * 1024))
    client.close_stdin()
    (log_frame,) = client.read_until_eof()  # the same line, as a :log frame for the BEAM's Logger
    assert log_frame[:2] == (A("log"), A("error")) and "that was being skipped" in log_frame[2]
    assert client.wait_exit(EXIT_TIMEOUT) == 0
    lines = error_lines(client.stderr_text())
    assert len(lines) == 1 and "that was being skipped" in lines[0], client.stderr_text()
    client.close()


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("cut", ["header", "body"])
def test_stdin_closed_mid_frame_is_one_stderr_line(level: str, cut: str) -> None:
    client = SubprocessClient("--log-level", level)
    data = codec.encode_frame((A("call"), 5, A("ping"), []))
    client.send_raw(data[:2] if cut == "header" else data[:-3])
    client.close_stdin()
    frames = client.read_until_eof()
    assert frames[-1][0] is A("protocol_error") and frames[-1][1][0] is A("truncated_frame")
    assert client.wait_exit(EXIT_TIMEOUT) == 0
    lines = error_lines(client.stderr_text())
    assert len(lines) == 1 and "stdin ended inside a frame, exiting: input ended inside a frame" in lines[0]
    client.close()


def test_end_of_input_between_frames_is_not_an_error() -> None:
    client = SubprocessClient("--log-level", "debug")
    assert client.call("ping") is A("pong")
    client.close_stdin()
    assert client.read_until_eof() == []
    assert client.wait_exit(EXIT_TIMEOUT) == 0
    assert error_lines(client.stderr_text()) == []
    client.close()


def test_closed_stdin_answers_what_was_sent_then_exits_0() -> None:
    client = SubprocessClient()
    ids = [client.send_call("create_session", f"s{i}") for i in range(50)]
    ids.append(client.send_call("list_sessions"))
    client.close_stdin()
    frames = client.read_until_eof()
    replies = {frame[1]: frame[2] for frame in frames if frame[0] is A("reply")}
    assert set(replies) == set(ids)
    assert sorted(replies[ids[-1]]) == sorted(f"s{i}" for i in range(50))
    assert client.wait_exit(EXIT_TIMEOUT) == 0
    client.close()


PARENT = textwrap.dedent(
    """
    import subprocess, sys, time
    child = subprocess.Popen(sys.argv[1:], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    print(child.pid, flush=True)
    time.sleep(3600)
    """
)


def test_a_killed_parent_leaves_no_orphan() -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, *sidecar_command()],
        stdout=subprocess.PIPE,
        env=sidecar_env(),
        text=True,
    )
    try:
        assert parent.stdout is not None
        sidecar_pid = int(parent.stdout.readline())
        assert _alive(sidecar_pid)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(EXIT_TIMEOUT)
        assert _gone_within(sidecar_pid, EXIT_TIMEOUT), "the sidecar outlived its parent"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


def _alive(pid: int) -> bool:
    """Running (not a zombie) by its /proc status."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("State:"):
                    return "Z" not in line.split()[1]
    except FileNotFoundError:
        return False
    return False


def _gone_within(pid: int, seconds: float) -> bool:
    """Polls until the process has exited (or is a zombie waiting for init to reap it)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.02)
    return False
