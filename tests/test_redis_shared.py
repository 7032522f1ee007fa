"""N stores on one Redis behave as one store (issue 13's table), in this process: each store is a
sidecar with its own RedisStorage (its own copies of sessions, its own connection) and its own
clock; concurrent tests run each store in a thread of its own, as separate nodes would.

What the table asks, one test each: no update lost, one session per create_session race (every
caller gets it), atomic batches all-or-nothing from everywhere, update_session's compare-and-set
across stores, unique variable ids in one order everywhere, the optimization lock, shared global
programs and worker affinity, global stats, cleanup that spares a session another store touched,
and times on each store's own BEAM clock. Then a differential property: calls spread over two
stores answer exactly as one memory store does.
"""

from __future__ import annotations

import threading
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis_nodes import Node, nodes
from redis_server import fresh_prefix, shared

from sidecar import codec
from sidecar.cli import SidecarOptions
from sidecar.clock import Clock, FakeClock
from sidecar.server import Sidecar
from sidecar.terms import Atom as A

OK = A("ok")
ERROR = A("error")


def _in_threads(*work: Any) -> list:
    """Run each function in a thread of its own, all released at once; their results."""
    barrier = threading.Barrier(len(work))
    results: list = [None] * len(work)
    errors: list = []

    def run(index: int, function: Any) -> None:
        barrier.wait()
        try:
            results[index] = function()
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=run, args=(i, function)) for i, function in enumerate(work)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors
    return results


def test_acknowledged_updates_from_any_mix_of_stores_are_all_counted() -> None:
    stores = nodes(3)
    first = stores[0]
    assert first.call("create_session", "s")[0] is OK
    assert first.call("register_variable", "s", A("n"), A("integer"), 0) == (OK, "var_n_1")
    for store in stores:  # every store holds a copy of the session before the storm
        assert store.call("get_variable", "s", A("n"))[0] is OK

    def updates(store: Node) -> Any:
        return lambda: sum(1 for n in range(60) if store.call("update_variable", "s", A("n"), n) is OK)

    acknowledged = sum(_in_threads(*(updates(store) for store in stores)))
    assert acknowledged == 180  # nobody gave up after MAX_CONFLICT_RETRIES
    for store in stores:
        variable = store.call("get_variable", "s", A("n"))[1]
        assert variable[A("version")] == acknowledged
        session = store.call("get_session", "s")[1]
        assert session[A("stats")][A("total_variable_updates")] == acknowledged + 1
    assert sum(store.storage.conflicts for store in stores) > 0  # they did run into each other
    for store in stores:
        store.close()


def test_a_create_session_race_creates_one_session_and_every_caller_gets_it() -> None:
    clocks = [FakeClock(1000 * (i + 1)) for i in range(4)]
    prefix = fresh_prefix()
    stores = [Node(shared().url, prefix, clock) for clock in clocks]
    for round_number in range(8):
        session_id = f"race-{round_number}"
        replies = _in_threads(*(lambda store=store: store.call("create_session", session_id, {A("ttl"): 77}) for store in stores))
        assert all(reply[0] is OK for reply in replies)
        created = {reply[1][A("created_at")] for reply in replies}
        assert len(created) == 1 and created <= {1000, 2000, 3000, 4000}
        assert {reply[1][A("ttl")] for reply in replies} == {77}
    stats = stores[0].call("get_stats")
    assert stats[A("sessions_created")] == 8 and stats[A("current_sessions")] == 8
    for store in stores:
        store.close()


def test_an_atomic_batch_is_all_or_nothing_as_seen_from_every_store() -> None:
    writer, reader = nodes(2)
    writer.call("create_session", "s")
    for name in ("a", "b", "c"):
        writer.call("register_variable", "s", A(name), A("integer"), 0)

    def write() -> int:
        for i in range(1, 80):
            assert writer.call("update_variables", "s", {A("a"): i, A("b"): i, A("c"): i}, [(A("atomic"), True)])[0] is OK
            # a batch with one invalid value changes nothing, anywhere
            failed = writer.call("update_variables", "s", {A("a"): -i, A("b"): "nope", A("c"): -i}, [(A("atomic"), True)])
            assert failed[0] is ERROR
        return 79

    def read() -> list:
        seen = []
        for _ in range(200):
            found = reader.call("get_variables", "s", [A("a"), A("b"), A("c")])[1][A("found")]
            seen.append(tuple(found[name][A("value")] for name in ("a", "b", "c")))
        return seen

    _, seen = _in_threads(write, read)
    assert all(a == b == c and a >= 0 for a, b, c in seen), [s for s in seen if len(set(s)) > 1][:3]
    assert reader.call("get_variable_value", "s", A("c")) == 79
    writer.close()
    reader.close()


def test_update_session_is_a_compare_and_set_across_stores() -> None:
    one, other = nodes(2)
    one.call("create_session", "s")
    one.call("register_variable", "s", A("t"), A("float"), 0.5)
    _, session, revision = one.call("fetch_session_for_update", "s")
    assert other.call("update_variable", "s", A("t"), 0.75) is OK  # another store changes it
    changed = {**session, A("metadata"): {"by": "one"}}
    assert one.call("put_session_if", "s", revision, changed) == (ERROR, A("conflict"))
    assert other.call("get_session", "s")[1][A("metadata")] == {}
    _, session, revision = one.call("fetch_session_for_update", "s")  # run the closure again
    assert session[A("variables")]["var_t_1"][A("value")] == 0.75
    assert one.call("put_session_if", "s", revision, {**session, A("metadata"): {"by": "one"}})[0] is OK
    assert other.call("get_session", "s")[1][A("metadata")] == {"by": "one"}
    assert other.call("get_variable_value", "s", A("t")) == 0.75
    one.close()
    other.close()


def test_variable_ids_are_unique_and_every_store_lists_them_in_one_order() -> None:
    one, other = nodes(2)
    one.call("create_session", "s")

    def register(store: Node, tag: str) -> Any:
        return lambda: [store.call("register_variable", "s", f"{tag}{i}", A("integer"), i)[1] for i in range(40)]

    ids_one, ids_other = _in_threads(register(one, "x"), register(other, "y"))
    assert len(set(ids_one) | set(ids_other)) == 80
    listed = [[variable[A("id")] for variable in store.call("list_variables", "s")[1]] for store in (one, other)]
    late = Node(shared().url, one.storage.layout.prefix)  # a store that starts now sees the same
    listed.append([variable[A("id")] for variable in late.call("list_variables", "s")[1]])
    assert listed[0] == listed[1] == listed[2] and sorted(listed[0]) == sorted(ids_one + ids_other)
    for store in (one, other, late):
        store.close()


def test_the_optimization_lock_holds_across_stores() -> None:
    one, other = nodes(2)
    one.call("create_session", "s")
    one.call("register_variable", "s", A("t"), A("float"), 0.5)
    other.call("get_variable", "s", A("t"))  # the other store holds a copy from before the lock
    assert one.call("start_optimization", "s", A("t"), "opt-1", None) is OK
    assert other.call("update_variable", "s", A("t"), 0.9) == (ERROR, A("variable_locked_for_optimization"))
    assert other.call("start_optimization", "s", A("t"), "opt-2", None) == (ERROR, A("already_optimizing"))
    assert other.call("end_optimization", "s", A("t")) is OK
    assert one.call("update_variable", "s", A("t"), 0.9) is OK
    one.close()
    other.close()


def test_global_programs_and_worker_affinity_are_shared() -> None:
    one, other = nodes(2)
    assert one.call("store_global_program", "g", {A("model"): "m"}) is OK
    assert other.call("get_global_program", "g") == (OK, {A("model"): "m"})
    assert other.call("delete_global_program", "g") is OK
    assert one.call("get_global_program", "g") == (ERROR, A("not_found"))
    one.call("create_session", "s")
    other.call("get_session", "s")
    assert one.call("store_worker_session", "s", "worker-1") is OK
    assert other.call("get_session", "s")[1][A("last_worker_id")] == "worker-1"
    assert other.call("store_worker_session", "s", "worker-2") is OK
    assert one.call("get_session", "s")[1][A("last_worker_id")] == "worker-2"
    one.close()
    other.close()


def test_store_counters_and_the_session_count_are_global() -> None:
    one, other = nodes(2)
    one.call("create_session", "a")
    one.call("create_session", "b")
    other.call("create_session", "c")
    other.call("delete_session", "a")
    one.call("store_global_program", "g", 1)
    for store in (one, other):
        stats = store.call("get_stats")
        assert stats[A("sessions_created")] == 3 and stats[A("sessions_deleted")] == 1
        assert stats[A("current_sessions")] == 2 and stats[A("global_programs_stored")] == 1
        assert stats[A("memory_usage_bytes")] > 0  # this sidecar's own
    one.close()
    other.close()


def test_a_cleanup_never_deletes_a_session_another_store_touched_within_its_ttl() -> None:
    prefix = fresh_prefix()
    cleaner = Node(shared().url, prefix, FakeClock(1000))
    toucher = Node(shared().url, prefix, FakeClock(1000))
    cleaner.call("create_session", "s", {A("ttl"): 10})
    toucher.clock.set(1008)
    assert toucher.call("get_session", "s")[0] is OK  # touched on the other store at 1008
    cleaner.clock.set(1015)  # expired by the cleaner's own last look (1000 + 10 < 1015)
    assert cleaner.call("cleanup_expired_sessions") == 0
    cleaner.clock.set(1019)
    assert cleaner.call("cleanup_expired_sessions") == 1
    assert toucher.call("session_exists?", "s") is False
    cleaner.close()
    toucher.close()


def test_a_touch_between_a_cleanups_read_and_its_commit_keeps_the_session(monkeypatch: Any) -> None:
    prefix = fresh_prefix()
    cleaner = Node(shared().url, prefix, FakeClock(1000))
    toucher = Node(shared().url, prefix, FakeClock(1000))
    cleaner.call("create_session", "s", {A("ttl"): 10})
    cleaner.clock.set(1020)
    toucher.clock.set(1020)
    original = cleaner.storage.run_read
    touched = []

    def read_then_touch(keys: list, argv: list) -> Any:
        answer = original(keys, argv)
        if "e" in argv and not touched:  # the expired-sessions read: the other store touches now
            touched.append(toucher.call("get_session", "s")[0])
        return answer

    monkeypatch.setattr(cleaner.storage, "run_read", read_then_touch)
    assert cleaner.call("cleanup_expired_sessions") == 0
    assert touched == [OK] and cleaner.storage.conflicts >= 1
    assert toucher.call("session_exists?", "s") is True
    assert toucher.call("get_stats")[A("sessions_expired")] == 0
    cleaner.close()
    toucher.close()


def test_each_store_presents_stored_times_on_its_own_beams_monotonic_clock() -> None:
    prefix = fresh_prefix()
    clocks = [Clock(beam_monotonic_ms=-576_460_752_303), Clock(beam_monotonic_ms=123_456)]
    stores = []
    for clock in clocks:
        sidecar_storage = Node(shared().url, prefix)
        sidecar_storage.clock = clock
        sidecar_storage.store.reconfigure(sidecar_storage.sidecar.config, clock)
        sidecar_storage.sidecar.replies.configure(sidecar_storage.sidecar.config, clock)
        stores.append(sidecar_storage)
    stores[0].call("create_session", "s")
    seen = [store.call("get_session", "s")[1][A("created_at")] for store in stores]
    stored = {created_at + clock.beam_offset for created_at, clock in zip(seen, clocks)}
    assert len(stored) == 1  # one stored time, two presentations
    assert seen[0] != seen[1]
    for store in stores:
        store.close()


def test_a_store_whose_clock_is_behind_never_moves_last_accessed_back() -> None:
    prefix = fresh_prefix()
    ahead = Node(shared().url, prefix, FakeClock(1000))
    behind = Node(shared().url, prefix, FakeClock(999))  # whole seconds: a node may be one behind
    ahead.call("create_session", "s", {A("ttl"): 10})
    behind.call("register_variable", "s", A("t"), A("float"), 0.5)  # a change at 999
    behind.clock.set(999)
    behind.call("get_session", "s")
    session = ahead.call("get_session", "s")[1]
    assert session[A("last_accessed")] == 1000 >= session[A("created_at")]
    # so update_session's validation (last_accessed >= created_at) holds on every store
    _, fetched, revision = behind.call("fetch_session_for_update", "s")
    assert behind.call("put_session_if", "s", revision, {**fetched, A("metadata"): {"k": 1}})[0] is OK
    ahead.close()
    behind.close()


# calls spread over two stores answer exactly as one memory store -----------------------------

from test_fuzz_calls import a_call  # noqa: E402


class _Twins:
    """A memory store and two Redis stores sharing one clock and one variable-number allocator
    (so ids match the memory store's)."""

    def __init__(self) -> None:
        self.clock = FakeClock(-1000)
        self.memory = Sidecar(SidecarOptions(), clock_factory=lambda *_: self.clock)
        prefix = fresh_prefix()
        self.redis = [Node(shared().url, prefix, self.clock) for _ in range(2)]
        self.redis[1].storage.numbers = self.redis[0].storage.numbers
        for node in self.redis:
            node.sidecar = Sidecar(SidecarOptions(), clock_factory=lambda *_: self.clock, storage=node.storage)

    def answers(self, sidecar: Sidecar, name: Any, args: list) -> tuple[bytes, bytes]:
        """The reply frame and the telemetry events of one call, as bytes."""
        events, frame = sidecar.serve_call(1, name, codec.decode(codec.encode(list(args))))
        return frame, codec.encode(list(events))

    def close(self) -> None:
        for node in self.redis:
            node.close()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sequence=st.lists(st.tuples(a_call(), st.integers(0, 1)), min_size=1, max_size=15))
def test_calls_spread_over_two_stores_answer_as_one_memory_store(sequence: list) -> None:
    twins = _Twins()
    try:
        for sidecar in (twins.memory, twins.redis[0].sidecar):
            twins.answers(sidecar, A("create_session"), ["s1", {}])
            twins.answers(
                sidecar, A("register_variable"), ["s1", A("temp"), A("float"), 0.5, {A("constraints"): {A("max"): 1.0}}]
            )
        for (name, args), which in sequence:
            if not isinstance(name, A) or name is A("get_stats"):  # memory_usage_bytes is per process
                continue
            expected = twins.answers(twins.memory, name, args)
            got = twins.answers(twins.redis[which].sidecar, name, args)
            assert got == expected, (name, args, codec.decode(got[0][4:]), codec.decode(expected[0][4:]))
    finally:
        twins.close()
