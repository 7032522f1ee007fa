"""Stores on one Redis for the tests: each `Node` is one sidecar (in this process) with its own
RedisStorage and its own clock, called the way the wire calls it.

Skips the calling test module when Redis cannot run here (no redis-server, or no client).
"""

from __future__ import annotations

import itertools
from typing import Any, Optional

import pytest
from redis_server import fresh_prefix, redis_available, shared

from sidecar import codec
from sidecar.cli import SidecarOptions
from sidecar.clock import FakeClock
from sidecar.server import Sidecar
from sidecar.terms import Atom

if not redis_available():
    pytest.skip("redis-server or the redis client is not installed", allow_module_level=True)

from sidecar.storage.redis import RedisStorage  # noqa: E402


class Node:
    """One store (a sidecar with a RedisStorage) on a shared Redis."""

    def __init__(self, url: str, prefix: str, clock: Optional[FakeClock] = None, **options: Any) -> None:
        self.clock = clock or FakeClock(1000)
        self.storage = RedisStorage(url, prefix, **options)
        self.sidecar = Sidecar(
            SidecarOptions(enable_test_calls=True), clock_factory=lambda *_start: self.clock, storage=self.storage
        )
        self.store = self.sidecar.store
        self._ids = itertools.count(1)

    def call(self, function: str, *args: Any) -> Any:
        """The reply term of one call (arguments cross the codec as on the wire)."""
        sent = codec.decode(codec.encode(list(args)))
        _events, frame = self.sidecar.serve_call(next(self._ids), Atom(function), sent)
        return codec.decode(frame[4:])[2]

    def frame(self, function: str, *args: Any) -> bytes:
        """The reply frame's body of one call, as bytes (for comparing answers exactly)."""
        sent = codec.decode(codec.encode(list(args)))
        _events, frame = self.sidecar.serve_call(0, Atom(function), sent)
        return frame[4:]

    def close(self) -> None:
        self.storage.close()


def nodes(count: int, url: Optional[str] = None, prefix: Optional[str] = None, **options: Any) -> list[Node]:
    """`count` stores on one store of the shared Redis (a fresh prefix unless given)."""
    url = url or shared().url
    prefix = prefix or fresh_prefix()
    return [Node(url, prefix, **options) for _ in range(count)]
