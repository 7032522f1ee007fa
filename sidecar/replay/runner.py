"""Drive a fresh sidecar subprocess through a recording and compare what it sends back.

The walk follows the recording in order, so requests are pipelined exactly as recorded: a
recorded request is sent (its bound ids rewritten) as soon as the walk reaches it; a recorded
reply waits for the replayed reply with the same request id (replies may come in any order);
any other recorded sidecar frame (welcome, telemetry, log, protocol error) waits for the next
replayed frame of that stream, compared in order. A stream frame that never comes is reported
at once when the sidecar is idle (every request sent has its reply: telemetry precedes its
reply), not after a timeout. When the recording ends, stdin is closed and anything more the
sidecar sends is an unexpected frame.
"""

from __future__ import annotations

import io
import os
import queue
import struct
import subprocess
import sys
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import sidecar
from sidecar import codec
from sidecar.replay.matcher import ABSENT, Matcher, Mismatch
from sidecar.replay.recording import RecordedFrame, RecordingError, read_recording
from sidecar.replay.rules import ClockWindow, is_integer
from sidecar.terms import Atom

A_HELLO = Atom("hello")
A_CALL = Atom("call")
A_REPLY = Atom("reply")
A_WELCOME = Atom("welcome")
A_PROTOCOL_ERROR = Atom("protocol_error")
A_MONOTONIC_TIME = Atom("monotonic_time")
DEFAULT_TIMEOUT = 10.0
_EOF = object()
_STDERR_KEEP = 8192


def default_sidecar_command() -> list[str]:
    """`python -m sidecar` with this interpreter."""
    return [sys.executable, "-m", "sidecar"]


def sidecar_environment() -> dict[str, str]:
    """The environment for the sidecar: the checkout holding this `sidecar` package first on
    PYTHONPATH, so the replayed sidecar is the same code as this tool."""
    package_root = str(Path(sidecar.__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    return env


# ---------------------------------------------------------------------------------------------
# the recording, decoded


@dataclass
class Entry:
    """A recorded frame with its term (None for a request frame that is not a valid term)."""

    frame: RecordedFrame
    term: Any

    @property
    def kind(self) -> Any:
        term = self.term
        return term[0] if isinstance(term, tuple) and term and isinstance(term[0], Atom) else None

    @property
    def request_id(self) -> Optional[int]:
        """The id of a `{:call, id, ...}` or `{:reply, id, ...}` frame."""
        if self.kind in (A_CALL, A_REPLY) and len(self.term) >= 2 and is_integer(self.term[1]):
            return self.term[1]
        return None


def load_entries(path: str | Path) -> list[Entry]:
    """Read a recording and decode its frames; RecordingError when a sidecar frame is not a
    term (requests that are not terms are kept as bytes: they are sent as recorded)."""
    entries = []
    for frame in read_recording(path):
        try:
            term = codec.decode(frame.body)
        except codec.DecodeError as error:
            if not frame.to_sidecar:
                raise RecordingError(
                    f"byte {frame.offset}: recorded sidecar frame {frame.index} is not a valid term ({error})"
                ) from None
            term = None
        entries.append(Entry(frame, term))
    return entries


# ---------------------------------------------------------------------------------------------
# the subprocess


class SidecarProcess:
    """A sidecar subprocess: frames written to stdin, frames read from stdout by a thread."""

    def __init__(self, command: Sequence[str], env: Optional[dict[str, str]] = None) -> None:
        self.process = subprocess.Popen(
            list(command),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env if env is not None else sidecar_environment(),
        )
        self.frames: "queue.Queue[Any]" = queue.Queue()
        self._stderr = bytearray()
        self._threads = [
            threading.Thread(target=self._read_frames, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _read_frames(self) -> None:
        stream = self.process.stdout
        assert stream is not None  # opened with a pipe
        try:
            while True:
                header = stream.read(4)
                if len(header) < 4:
                    break
                (length,) = struct.unpack(">I", header)
                body = stream.read(length)
                if len(body) < length:
                    break
                self.frames.put(body)
        except (OSError, ValueError):
            pass
        self.frames.put(_EOF)

    def _read_stderr(self) -> None:
        try:
            stderr = self.process.stderr
            assert isinstance(stderr, io.BufferedReader)  # opened with a pipe, buffered
            for chunk in iter(lambda: stderr.read1(4096), b""):
                self._stderr += chunk
                del self._stderr[:-_STDERR_KEEP]
        except (OSError, ValueError):
            pass

    def send(self, body: bytes) -> bool:
        """Write one frame; False when the sidecar no longer reads."""
        stdin = self.process.stdin
        assert stdin is not None  # opened with a pipe
        try:
            stdin.write(struct.pack(">I", len(body)) + body)
            stdin.flush()
            return True
        except (BrokenPipeError, OSError, ValueError):
            return False

    def next_frame(self, timeout: float) -> Any:
        """The next frame's bytes, `_EOF` at end of output; queue.Empty after `timeout`."""
        return self.frames.get(timeout=timeout)

    def close_input(self) -> None:
        try:
            if self.process.stdin is not None:
                self.process.stdin.close()
        except OSError:
            pass

    def finish(self, timeout: float) -> Optional[int]:
        """Wait for the exit status (killing the process after `timeout`)."""
        self.close_input()
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            return None
        finally:
            for thread in self._threads:
                thread.join(timeout=1.0)

    def stderr_text(self) -> str:
        return self._stderr.decode("utf-8", "replace")


# ---------------------------------------------------------------------------------------------
# results


@dataclass
class ReplayFailure:
    """The first frame that did not match, with what is needed to print it."""

    what: str
    frame_index: Optional[int] = None
    request: Any = ABSENT
    expected: Any = ABSENT
    actual: Any = ABSENT
    mismatch: Optional[Mismatch] = None
    note: Optional[str] = None
    stderr: str = ""


@dataclass
class ReplayResult:
    """The outcome of replaying one recording."""

    path: str
    frames: int
    failure: Optional[ReplayFailure] = None

    @property
    def ok(self) -> bool:
        return self.failure is None


class _Mismatched(Exception):
    def __init__(self, failure: ReplayFailure) -> None:
        super().__init__(failure.what)
        self.failure = failure


# ---------------------------------------------------------------------------------------------
# the walk


@dataclass
class _Replay:
    """The state of one replay."""

    process: SidecarProcess
    timeout: float
    matcher: Matcher
    clock: ClockWindow
    sent: dict[int, Any] = field(default_factory=dict)  # request id -> request as sent
    recorded_in_flight: "OrderedDict[int, Any]" = field(default_factory=OrderedDict)
    awaiting_actual: set[int] = field(default_factory=set)
    unanswered_hellos: int = 0
    replies: dict[int, Any] = field(default_factory=dict)
    stream: deque = field(default_factory=deque)
    last_sent: Any = ABSENT
    ended: bool = False

    # -- input to the sidecar ----------------------------------------------------------------

    def send(self, entry: Entry) -> None:
        term = entry.term
        body = entry.frame.body
        if term is not None:
            self.matcher.bindings.note_literals(term)
            rewritten = self.matcher.bindings.rewrite(term)
            if rewritten is not term:
                term, body = rewritten, codec.encode(rewritten)
        if entry.kind is A_HELLO:
            self._start_clock(term)
            self.unanswered_hellos += 1
        elif entry.kind is A_CALL and entry.request_id is not None:
            self.sent[entry.request_id] = term
            self.recorded_in_flight[entry.request_id] = term
            self.awaiting_actual.add(entry.request_id)
        else:
            self.unanswered_hellos += 1  # not a call: its answer, if any, is a protocol error
        self.last_sent = term if term is not None else body
        if not self.process.send(body):
            raise _Mismatched(
                ReplayFailure(
                    f"request frame {entry.frame.index}", entry.frame.index, request=self.last_sent, note=self._exit_note()
                )
            )

    def _start_clock(self, hello: Any) -> None:
        options = hello[2] if len(hello) > 2 and isinstance(hello[2], dict) else {}
        start = options.get(A_MONOTONIC_TIME)
        if is_integer(start):
            sent_at = time.monotonic()
            self.clock.start = start
            self.clock.elapsed = lambda: time.monotonic() - sent_at

    # -- output of the sidecar ---------------------------------------------------------------

    def _receive_one(self, deadline: float) -> bool:
        """Read one frame into the buffers; False at end of output (or timeout)."""
        if self.ended:
            return False
        try:
            body = self.process.next_frame(max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            return False
        if body is _EOF:
            self.ended = True
            return False
        try:
            term = codec.decode(body)
        except codec.DecodeError as error:
            raise _Mismatched(
                ReplayFailure("frame from the sidecar", actual=body, note=f"the sidecar sent bytes that are not a term ({error})")
            ) from None
        kind = term[0] if isinstance(term, tuple) and term else None
        if kind is A_REPLY and len(term) >= 2 and is_integer(term[1]) and term[1] not in self.replies:
            self.replies[term[1]] = term
            self.awaiting_actual.discard(term[1])
        else:
            if kind in (A_WELCOME, A_PROTOCOL_ERROR) and self.unanswered_hellos:
                self.unanswered_hellos -= 1
            self.stream.append(term)
        return True

    def _idle(self) -> bool:
        return not self.awaiting_actual and not self.unanswered_hellos

    def expect(self, entry: Entry) -> None:
        request_id = entry.request_id
        if entry.kind is A_REPLY and request_id is not None:
            request = self.sent.get(request_id, ABSENT)
            what = f"reply to request {request_id}"
            if request_id not in self.replies and request_id not in self.awaiting_actual:
                self._fail(
                    entry,
                    what,
                    request,
                    note=f"the recording has a reply to request {request_id}, which was not sent or was answered already",
                )
            deadline = time.monotonic() + self.timeout
            while request_id not in self.replies and self._receive_one(deadline):
                pass
            actual = self.replies.pop(request_id, ABSENT)
            self.recorded_in_flight.pop(request_id, None)
        else:
            request = next(iter(self.recorded_in_flight.values()), self.last_sent)
            what = f"{_kind_name(entry.kind)} frame"
            deadline = time.monotonic() + self.timeout
            while not self.stream and not (self._idle() and self.process.frames.empty()) and self._receive_one(deadline):
                pass
            actual = self.stream.popleft() if self.stream else ABSENT
        if actual is ABSENT:
            self._fail(entry, what, request, note=self._missing_note())
        mismatch = self.matcher.match(entry.term, actual)
        if mismatch is not None:
            self._fail(entry, what, request, actual=actual, mismatch=mismatch)

    def _fail(self, entry: Entry, what: str, request: Any, actual: Any = ABSENT, mismatch=None, note=None) -> None:
        raise _Mismatched(ReplayFailure(what, entry.frame.index, request, entry.term, actual, mismatch, note))

    def _missing_note(self) -> str:
        if self.ended:
            return "the sidecar sent nothing more: " + self._exit_note()
        if self._idle():
            return "the sidecar sent no such frame (it has answered every request)"
        return f"no frame within {self.timeout:g} s"

    def _exit_note(self) -> str:
        status = self.process.process.poll()
        return "the sidecar has exited" + ("" if status is None else f" with status {status}")

    def finish(self) -> None:
        """Close the sidecar's input; whatever else it sends is unexpected."""
        self.process.close_input()
        deadline = time.monotonic() + self.timeout
        while self._receive_one(deadline):
            pass
        extras = [*self.stream, *self.replies.values()]
        if extras and not self.recorded_in_flight:
            raise _Mismatched(
                ReplayFailure(
                    "frame after the end of the recording",
                    actual=extras[0],
                    note="the sidecar sent a frame the recording does not have",
                )
            )
        status = self.process.finish(self.timeout)
        if status != 0:
            note = (
                "the sidecar did not exit after its input closed"
                if status is None
                else f"the sidecar exited with status {status} when its input closed"
            )
            raise _Mismatched(ReplayFailure("end of the replay", note=note))


def _kind_name(kind: Any) -> str:
    return f":{kind.name}" if isinstance(kind, Atom) else "unknown"


def replay_entries(
    entries: Sequence[Entry],
    *,
    path: str = "<recording>",
    command: Optional[Sequence[str]] = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> ReplayResult:
    """Replay decoded `entries` against a fresh sidecar started with `command`."""
    clock = ClockWindow()
    process = SidecarProcess(command or default_sidecar_command())
    replay = _Replay(process, timeout, Matcher(clock=clock), clock)
    checked = 0
    try:
        for entry in entries:
            if entry.frame.to_sidecar:
                replay.send(entry)
            else:
                replay.expect(entry)
            checked += 1
        replay.finish()
    except _Mismatched as mismatched:
        process.finish(timeout=2.0)
        failure = mismatched.failure
        failure.stderr = process.stderr_text()
        return ReplayResult(path, checked, failure)
    return ReplayResult(path, checked)


def replay_file(path: str | Path, **options: Any) -> ReplayResult:
    """Replay the recording at `path` (RecordingError / OSError when it cannot be read)."""
    return replay_entries(load_entries(path), path=str(path), **options)
