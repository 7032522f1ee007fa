"""A test client that runs the sidecar as a real subprocess with real pipes.

`SubprocessClient` starts `python -m sidecar --enable-test-calls`, performs the hello handshake
and offers the same interface as the in-process client (`call`, `take_events`, `close`), plus
lower-level helpers for protocol tests (`send_raw`, `read_frame`, `send_call`, `wait_reply`).
Every read has a timeout, so a broken sidecar fails a test instead of hanging it.
"""

from __future__ import annotations

import itertools
import os
import select
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sidecar import codec
from sidecar.terms import Atom

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TIMEOUT = 10.0

A_HELLO = Atom("hello")
A_CALL = Atom("call")
A_WELCOME = Atom("welcome")
A_REPLY = Atom("reply")
A_TELEMETRY = Atom("telemetry")
A_LOG = Atom("log")
A_PROTOCOL_ERROR = Atom("protocol_error")


class SidecarTimeout(AssertionError):
    """The sidecar did not answer in time."""


class SidecarClosed(AssertionError):
    """The sidecar closed its stdout while a frame was awaited."""


def frame(term: Any) -> bytes:
    """The bytes of one frame holding `term`."""
    body = codec.encode(term)
    return struct.pack(">I", len(body)) + body


def sidecar_command(*extra_args: str, test_calls: bool = True) -> list[str]:
    """The command line that starts the sidecar from this checkout."""
    command = [sys.executable, "-m", "sidecar"]
    if test_calls:
        command.append("--enable-test-calls")
    return command + list(extra_args)


def sidecar_env() -> dict[str, str]:
    """The environment for a sidecar subprocess: this checkout first on PYTHONPATH."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


class SubprocessClient:
    """The sidecar in a subprocess, spoken to over its stdin/stdout."""

    def __init__(
        self,
        *extra_args: str,
        hello: bool = True,
        hello_options: dict | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        test_calls: bool = True,
    ) -> None:
        self.timeout = timeout
        self._stderr_file = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            sidecar_command(*extra_args, test_calls=test_calls),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr_file,
            cwd=str(REPO_ROOT),
            env=sidecar_env(),
            bufsize=0,
        )
        self._ids = itertools.count(1)
        self._buffer = bytearray()
        self.raw_stdout = bytearray()  # every byte read from stdout, to check it is all frames
        self._replies: dict[int, Any] = {}
        self._events: list[tuple[Any, Any, Any]] = []
        self.logs: list[tuple[Any, Any, Any]] = []
        self.protocol_errors: list[tuple[Any, Any]] = []
        self.welcome: Any = None
        if hello:
            self.welcome = self.hello(hello_options or {})

    # -- raw frames ------------------------------------------------------------------------

    def send_raw(self, data: bytes) -> None:
        """Write bytes to the sidecar's stdin as they are."""
        assert self.process.stdin is not None
        self.process.stdin.write(data)
        self.process.stdin.flush()

    def send_term(self, term: Any) -> None:
        """Send one term as a frame."""
        self.send_raw(frame(term))

    def _read_some(self, deadline: float) -> bytes:
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise SidecarTimeout(f"no frame from the sidecar within {self.timeout}s; stderr:\n{self.stderr_text()}")
        ready, _, _ = select.select([fd], [], [], remaining)
        if not ready:
            raise SidecarTimeout(f"no frame from the sidecar within {self.timeout}s; stderr:\n{self.stderr_text()}")
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            raise SidecarClosed(f"the sidecar closed stdout; stderr:\n{self.stderr_text()}")
        self.raw_stdout += chunk
        return chunk

    def read_frame(self, timeout: float | None = None) -> Any:
        """The next frame's term, whatever it is (no bookkeeping)."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            if len(self._buffer) >= 4:
                (size,) = struct.unpack_from(">I", self._buffer, 0)
                if len(self._buffer) >= 4 + size:
                    body = bytes(self._buffer[4 : 4 + size])
                    del self._buffer[: 4 + size]
                    return codec.decode(body)
            self._buffer += self._read_some(deadline)

    def read_until_eof(self, timeout: float | None = None) -> list[Any]:
        """Every remaining frame until the sidecar closes stdout."""
        frames = []
        while True:
            try:
                frames.append(self.read_frame(timeout))
            except SidecarClosed:
                assert not self._buffer, f"stdout ended inside a frame: {bytes(self._buffer)!r}"
                return frames

    # -- handshake and calls ---------------------------------------------------------------

    def hello(self, options: dict, version: int = 1) -> Any:
        """Send `{:hello, version, options}` and return the `:welcome` info map."""
        self.send_term((A_HELLO, version, options))
        while True:
            term = self._read_bookkept()
            if isinstance(term, tuple) and term and term[0] is A_WELCOME:
                return term[2]
            if isinstance(term, tuple) and term and term[0] is A_PROTOCOL_ERROR:
                raise AssertionError(f"hello refused: {term!r}")

    def send_call(self, function: str | Atom, *args: Any, call_id: int | None = None) -> int:
        """Send `{:call, id, function, args}` without waiting; return the id."""
        if call_id is None:
            call_id = next(self._ids)
        name = function if isinstance(function, Atom) else Atom(function)
        self.send_term((A_CALL, call_id, name, list(args)))
        return call_id

    def wait_reply(self, call_id: int, timeout: float | None = None) -> Any:
        """The result of the reply to `call_id`, keeping other frames in their lists."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while call_id not in self._replies:
            self._read_bookkept(max(0.0, deadline - time.monotonic()))
        return self._replies.pop(call_id)

    def call(self, function: str, *args: Any) -> Any:
        """Run one call and return its result."""
        return self.wait_reply(self.send_call(function, *args))

    def next_protocol_error(self, timeout: float | None = None) -> tuple[Any, Any]:
        """Wait for the next `:protocol_error` frame; return `(reason, message)`."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not self.protocol_errors:
            self._read_bookkept(max(0.0, deadline - time.monotonic()))
        return self.protocol_errors.pop(0)

    def wait_log(self, timeout: float | None = None) -> tuple[Any, Any, Any]:
        """Wait for the next `:log` frame; return `(level, message, metadata)`."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not self.logs:
            self._read_bookkept(max(0.0, deadline - time.monotonic()))
        return self.logs.pop(0)

    def wait_events(self, count: int, timeout: float | None = None) -> list[tuple[Any, Any, Any]]:
        """Wait until at least `count` telemetry events arrived; return and clear them."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while len(self._events) < count:
            self._read_bookkept(max(0.0, deadline - time.monotonic()))
        return self.take_events()

    def take_events(self) -> list[tuple[Any, Any, Any]]:
        """The telemetry events received so far, in order, as (event, measurements, metadata)."""
        events, self._events = self._events, []
        return events

    def _read_bookkept(self, timeout: float | None = None) -> Any:
        term = self.read_frame(timeout)
        tag = term[0] if isinstance(term, tuple) and term else None
        if tag is A_REPLY and len(term) == 3:
            self._replies[term[1]] = term[2]
        elif tag is A_TELEMETRY and len(term) == 4:
            self._events.append((term[1], term[2], term[3]))
        elif tag is A_LOG and len(term) == 4:
            self.logs.append((term[1], term[2], term[3]))
        elif tag is A_PROTOCOL_ERROR and len(term) == 3:
            self.protocol_errors.append((term[1], term[2]))
        return term

    # -- shutdown --------------------------------------------------------------------------

    def close_stdin(self) -> None:
        """Close the sidecar's stdin (what the BEAM going away looks like)."""
        assert self.process.stdin is not None
        if not self.process.stdin.closed:
            self.process.stdin.close()

    def wait_exit(self, timeout: float | None = None) -> int:
        """Wait for the process to exit; return its status."""
        return self.process.wait(self.timeout if timeout is None else timeout)

    def stderr_text(self) -> str:
        """Everything the sidecar wrote to stderr so far."""
        self._stderr_file.seek(0)
        return self._stderr_file.read().decode("utf-8", "replace")

    def close(self) -> int | None:
        """Close stdin and wait for the exit; kill the process if it does not go."""
        try:
            self.close_stdin()
        except BrokenPipeError:
            pass
        try:
            return self.process.wait(self.timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            return None
        finally:
            if self.process.stdout is not None:
                self.process.stdout.close()
            self._stderr_file.close()

    def __enter__(self) -> "SubprocessClient":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()
