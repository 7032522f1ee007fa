"""A client that runs the sidecar in this process: frames in, frames out, no pipes.

Same interface as tests/client.py's SubprocessClient (`call`, `take_events`, `close`), so the
contract tests run unchanged against both. Each call goes exactly the way a call from the wire
goes (`server.Sidecar.serve_call`: the call table, the store inside a unit of work, the reply
layer, the reply's encoding, then the chunk's flush), and its reply frame is decoded as the BEAM
would. The clock is a FakeClock that only moves through the test-only `__advance_clock__` call;
it starts at a negative value, as the BEAM's monotonic clock usually does, so nothing may assume
positive timestamps.

`Client(compact_variables=True)` is the store as the Elixir harness drives it: the variable-read
calls answer with compact tuples, and `call` expands them as the harness does
(tests/harness_mirror.py), so the contract suites check that form too. `Client(storage=...)`
picks the backend (tests/backends.py).
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
from pathlib import Path
from typing import Any

from backends import open_backend
from harness_mirror import harness_expand_result

from sidecar import codec
from sidecar.cli import SidecarOptions
from sidecar.clock import FakeClock
from sidecar.server import HelloOptions, Sidecar
from sidecar.terms import Atom

FAKE_CLOCK_START = -576_460_000


class Client:
    """The sidecar in-process; `call("get_session", "s1")` returns the reply term."""

    def __init__(self, storage: str = "memory", compact_variables: bool = False, enable_test_calls: bool = True) -> None:
        self.clock = FakeClock(FAKE_CLOCK_START)
        self._directory = Path(tempfile.mkdtemp(prefix="sidecar-client-")) if storage == "sqlite" else None
        self.storage = open_backend(storage, self._directory)
        options = SidecarOptions(enable_test_calls=enable_test_calls)
        self.sidecar = Sidecar(options, clock_factory=lambda *_start: self.clock, storage=self.storage)
        self.sidecar._apply_hello(HelloOptions(compact_variables=compact_variables))
        self.store = self.sidecar.store
        self._ids = itertools.count(1)
        self._events: list[tuple[Any, Any, Any]] = []
        self._compact = compact_variables

    def call(self, function: str, *args: Any) -> Any:
        # Arguments cross the codec as they do on the wire, so the store sees what it would be
        # sent; the reply is the frame the sidecar would write, decoded.
        sent = codec.decode(codec.encode(list(args)))
        call_id = next(self._ids)
        events, frame = self.sidecar.serve_call(call_id, Atom(function), sent)
        self.store.flush()
        self._events.extend(codec.decode(codec.encode(list(events))))
        _, replied_id, result = codec.decode(frame[4:])
        assert replied_id == call_id
        return harness_expand_result(function, result) if self._compact else result

    def take_events(self) -> list[tuple[Any, Any, Any]]:
        """The telemetry events since the last take, oldest first."""
        events, self._events = self._events, []
        return events

    def close(self) -> None:
        self._events = []
        self.storage.close()
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)
