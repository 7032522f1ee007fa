"""Keeping the cyclic garbage collector's pauses short while the store grows.

The store's records form no reference cycles: refcounting frees them. But CPython's collector
still walks every tracked object in a full (oldest-generation) collection, and it runs one each
time the long-lived objects grew by a quarter: with 100,000 sessions that is 150-200 ms during
which no call is answered (measured, `tools/cleanup_figures.py`). `GcSettler.tick`, called by
the I/O loop after each chunk, at most ten times a second collects the young generations (so young
cyclic garbage, an exception's traceback say, is freed first) and then `gc.freeze()`s what is
left: long-lived objects leave the collector's view, and a full collection only walks what was
allocated since the last tick. Frozen objects are still freed by refcounting when they die; only
a reference cycle that survived two young collections and then became garbage would stay.
"""

from __future__ import annotations

import gc
import time
from typing import Callable

SETTLE_SECONDS = 0.1


class GcSettler:
    """Freezes the long-lived objects at most once every `interval` seconds."""

    def __init__(self, interval: float = SETTLE_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self._clock = clock
        self._last = clock()

    def tick(self) -> bool:
        """Collect the young generations and freeze the rest, if `interval` has passed since
        the last time; whether it did."""
        now = self._clock()
        if now - self._last < self.interval:
            return False
        self._last = now
        gc.collect(1)
        gc.freeze()
        return True
