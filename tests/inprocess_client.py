"""A client that runs the store in this process, through the same call table as the wire.

Same interface as tests/client.py's SubprocessClient (`call`, `take_events`, `close`), so the
contract tests run unchanged against both. Its clock is a FakeClock that only moves through
the test-only `__advance_clock__` call; it starts at a negative value, as the BEAM's
monotonic clock usually does, so nothing may assume positive timestamps.

`Client(compact_variables=True)` is the store as the Elixir harness drives it: the variable-read
calls answer with compact tuples, and `call` expands them as the harness does
(tests/harness_mirror.py), so the contract suites check that form too.
"""

from __future__ import annotations

from typing import Any

from sidecar import calls, codec
from sidecar.clock import FakeClock
from sidecar.config import StoreConfig
from sidecar.storage.memory import MemoryBackend
from sidecar.store import SessionStore
from sidecar.terms import Atom
from harness_mirror import harness_expand_result

FAKE_CLOCK_START = -576_460_000


class Client:
    """The store in-process; `call("get_session", "s1")` returns the reply term."""

    def __init__(self, **config: Any) -> None:
        config.setdefault("enable_test_calls", True)
        self.clock = FakeClock(FAKE_CLOCK_START)
        self.store = SessionStore(StoreConfig(**config), self.clock, MemoryBackend())
        self._events: list[tuple[Any, Any, Any]] = []
        self._compact = bool(config.get("compact_variables"))

    def call(self, function: str, *args: Any) -> Any:
        # Arguments, result and events cross the codec as they do on the wire, so the store sees
        # what it would be sent, and cached encodings in results (terms.Encoded) become terms.
        sent = codec.decode(codec.encode(list(args)))
        result, events = calls.dispatch(self.store, Atom(function), sent)
        self._events.extend(codec.decode(codec.encode(list(events))))
        result = codec.decode(codec.encode(result))
        return harness_expand_result(function, result) if self._compact else result

    def take_events(self) -> list[tuple[Any, Any, Any]]:
        """The telemetry events since the last take, oldest first."""
        events, self._events = self._events, []
        return events

    def close(self) -> None:
        self._events = []
