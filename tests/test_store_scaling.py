"""Per-variable operations must not depend on the session's size, and variables must be small.

Both are measured within one run and compared with each other (never against absolute times):
the machine is shared and noisy, so the ratio bound is generous."""

from __future__ import annotations

import gc
import time
import tracemalloc

from sidecar import calls
from sidecar.clock import FakeClock
from sidecar.config import StoreConfig
from sidecar.store import SessionStore
from sidecar.terms import Atom as A

FLOAT = A("float")
OPS = 2000


def _store_with(variables: int) -> SessionStore:
    store = SessionStore(StoreConfig(), FakeClock())
    store.create_session("s", {})
    for index in range(variables):
        store.register_variable("s", f"v{index}", FLOAT, 0.5, {})
    return store


def _per_variable_ops_seconds(store: SessionStore) -> float:
    """Best of 3 runs of OPS get_variable + update_variable calls through the call table."""
    get, update = A("get_variable"), A("update_variable")
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for index in range(OPS):
            value = float(index)
            calls.dispatch(store, update, ["s", "v0", value])
            calls.dispatch(store, get, ["s", "v0"])
        best = min(best, time.perf_counter() - started)
    return best


def test_per_variable_ops_cost_the_same_in_a_big_session():
    small = _per_variable_ops_seconds(_store_with(1))
    big = _per_variable_ops_seconds(_store_with(1000))
    ratio = big / small
    print(f"\nper-variable ops: 1000-variable session / 1-variable session = {ratio:.2f}x")
    assert ratio < 3, ratio


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
            store.create_session(sid, {})
            for number in range(per_session):
                store.register_variable(sid, f"param_{number}", FLOAT, number * 0.25, {})
        gc.collect()
        used = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    per_variable = used / (sessions * per_session)
    print(f"\nbytes per float variable (incl. session share): {per_variable:.0f}")
    # 100,000 variables at this size stay far below the 78 MB budget (Python itself takes ~30 MB)
    assert per_variable < 450, per_variable
