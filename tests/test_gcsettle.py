"""The collector settler: young garbage collected, the rest frozen, at most once an interval."""

from __future__ import annotations

import gc
import weakref

from sidecar.gcsettle import GcSettler


class Node:
    def __init__(self) -> None:
        self.other: object = None


def test_it_freezes_at_most_once_an_interval_and_collects_young_cycles_first() -> None:
    now = [100.0]
    settler = GcSettler(interval=1.0, clock=lambda: now[0])
    frozen = gc.get_freeze_count()
    try:
        a, b = Node(), Node()
        a.other, b.other = b, a  # a cycle: only the collector can free it
        gone = weakref.ref(a)
        del a, b
        now[0] += 0.5
        assert settler.tick() is False and gc.get_freeze_count() == frozen
        kept = [Node() for _ in range(100)]
        now[0] += 0.6
        assert settler.tick() is True
        assert gone() is None  # collected, not frozen
        assert gc.get_freeze_count() >= frozen + 100
        assert settler.tick() is False  # not again within the interval
        dead = weakref.ref(kept[0])
        del kept
        assert dead() is None  # frozen objects still die by refcounting
    finally:
        gc.unfreeze()
