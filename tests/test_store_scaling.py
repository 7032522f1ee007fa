"""Per-variable operations must not depend on the session's size, and variables must be small.

Neither is a timing: the first counts the storage operations a call makes (the storage's own
operations are O(1) each but the listing ones, and no per-variable call may list), the second
traces the bytes the store allocates."""

from __future__ import annotations

import collections
import gc
import tracemalloc
from typing import Any

import pytest

from sidecar.clock import FakeClock
from sidecar.storage.memory import MemoryStorage
from sidecar.store.config import StoreConfig
from sidecar.store.session_store import SessionStore
from sidecar.terms import Atom as A

FLOAT = A("float")
LISTING = {"variables", "variable_index", "programs", "load_session", "session_ids", "expired_session_ids"}


class CountingStorage(MemoryStorage):
    """The memory backend, counting the operations called on it."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: collections.Counter = collections.Counter()

    def __getattribute__(self, name: str) -> Any:
        attribute = super().__getattribute__(name)
        if not name.startswith("_") and callable(attribute) and name not in ("calls", "begin", "commit", "rollback"):
            super().__getattribute__("calls")[name] += 1
        return attribute


def _store_with(variables: int) -> tuple[SessionStore, CountingStorage]:
    storage = CountingStorage()
    store = SessionStore(StoreConfig(), FakeClock(), storage)
    store.call("create_session", "s", {})
    for index in range(variables):
        store.call("register_variable", "s", f"v{index}", FLOAT, 0.5, {})
    return store, storage


@pytest.mark.parametrize(
    "call",
    [
        ("get_variable", "s", "v0"),
        ("get_variable", "s", "var_v0_1"),
        ("get_variable_value", "s", "v0"),
        ("has_variable", "s", "v0"),
        ("update_variable", "s", "v0", 2.0),
        ("update_variable", "s", "v0", 2.0, {"k": 1}),
        ("get_variables", "s", ["v0", "nope"]),
        ("update_variables", "s", {"v0": 3.0}, {A("atomic"): True}),
        ("register_variable", "s", "new", FLOAT, 1.0, {}),
        ("delete_variable", "s", "v0"),
        ("start_optimization", "s", "v0", "o", None),
    ],
)
def test_per_variable_calls_make_the_same_storage_operations_in_a_big_session(call):
    method, *args = call
    counts = []
    for size in (1, 1000):
        store, storage = _store_with(size)
        storage.calls.clear()
        result, _ = store.call(method, *args)
        assert not (type(result) is tuple and result[0] is A("error")), result
        counts.append(dict(storage.calls))
    assert counts[0] == counts[1]
    assert not LISTING & set(counts[1]), counts[1]


def test_bytes_per_float_variable():
    """10,000 sessions x 10 float variables must fit well under 78 MB of sidecar RSS; the
    store's share is measured here as traced bytes per variable (session overhead included)."""
    sessions, per_session = 300, 10
    store = SessionStore(StoreConfig(), FakeClock())
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for index in range(sessions):
            sid = f"session_{index}"
            store.call("create_session", sid, {})
            for number in range(per_session):
                store.call("register_variable", sid, f"param_{number}", FLOAT, number * 0.25, {})
        gc.collect()
        used = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    per_variable = used / (sessions * per_session)
    print(f"\nbytes per float variable (incl. session share): {per_variable:.0f}")
    # 100,000 variables at this size stay far below the 78 MB budget (Python itself takes ~30 MB)
    assert per_variable < 450, per_variable
