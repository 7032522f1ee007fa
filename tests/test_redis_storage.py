"""The Redis backend itself: where it keeps things, how many round trips a call costs, what
happens when Redis goes away or loses its data, the change feed, and its options.

The store suites (tests/test_contract_*.py, replays, fuzzing, units of work) run on Redis too,
and tests/test_redis_shared.py holds what several stores on one Redis guarantee.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from typing import Any

import pytest
import redis
from client import SubprocessClient, sidecar_env
from redis.crc import key_slot
from redis_nodes import Node, nodes
from redis_server import RedisServer, fresh_prefix

from sidecar.cli import SidecarOptions
from sidecar.clock import FakeClock
from sidecar.storage.base import Change, StorageError, StorageOpenError, watch_changes
from sidecar.storage.memory import MemoryStorage
from sidecar.storage.redis import RedisStorage, VariableNumbers
from sidecar.storage.redis_layout import Layout, escape_id
from sidecar.terms import Atom as A

OK = A("ok")
ERROR = A("error")


# key layout ------------------------------------------------------------------------------------


def _script_calls(storage: RedisStorage, monkeypatch: pytest.MonkeyPatch) -> list:
    """Record the KEYS of every script the storage runs."""
    seen: list = []
    original = storage.client.evalsha

    def spy(sha: str, numkeys: int, *keys_and_args: Any) -> Any:
        seen.append(list(keys_and_args[:numkeys]))
        return original(sha, numkeys, *keys_and_args)

    monkeypatch.setattr(storage.client, "evalsha", spy)
    return seen


@pytest.mark.parametrize("session_id", ["plain", "with {braces} inside", "}{", "%7B", b"\xff\xfe{x}", "{", "}"])
def test_every_key_of_a_session_is_in_one_cluster_slot_whatever_its_id(session_id: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    (node,) = nodes(1)
    calls = _script_calls(node.storage, monkeypatch)
    assert node.call("create_session", session_id)[0] is OK
    node.call("register_variable", session_id, A("t"), A("float"), 0.5)
    node.call("store_program", session_id, "p", 1)
    node.call("store_global_program", "g", 1)
    assert node.call("get_session", session_id)[0] is OK
    layout = node.storage.layout
    store_slots = {key_slot(key) for key in layout.store_keys} | {key_slot(node.storage.node_key)}
    assert len(store_slots) == 1  # the store-wide keys share {g}
    session_keys = layout.session_keys(session_id if isinstance(session_id, bytes) else session_id.encode())
    assert len({key_slot(key) for key in session_keys}) == 1
    for keys in calls:
        if len(keys) == 1:  # a block of variable numbers: the meta hash alone
            assert keys == layout.store_keys[:1]
            continue
        assert keys[:6] == [*layout.store_keys, node.storage.node_key]
        assert keys[6:] in ([], session_keys)
    raw_keys = set(node.storage.client.keys(layout.prefix.encode() + b"*"))
    assert set(session_keys) - {session_keys[5]} <= raw_keys  # h v i p st (and ord) exist
    node.close()


def test_ids_are_escaped_so_no_id_can_move_the_hash_tag() -> None:
    assert escape_id(b"a{b}c%") == b"a%7Bb%7Dc%25"
    assert escape_id(b"%7B") == b"%257B"  # escaping is one-to-one
    assert escape_id(b"{") != escape_id(b"%7B")
    keys = Layout("p:").session_keys(b"x}{y")
    assert all(key.startswith(b"p:{s:x%7D%7By}:") for key in keys)


def test_two_prefixes_on_one_redis_are_two_independent_stores() -> None:
    (one,) = nodes(1)
    (two,) = nodes(1)
    one.call("create_session", "s")
    assert two.call("session_exists?", "s") is False
    assert two.call("create_session", "s")[0] is OK
    assert one.call("get_stats")[A("sessions_created")] == 1 == two.call("get_stats")[A("sessions_created")]
    two.call("__reset__")
    assert one.call("session_exists?", "s") is True and two.call("list_sessions") == []
    one.close()
    two.close()


# round trips -----------------------------------------------------------------------------------

# Redis round trips of each call on a session this store already holds (one commit: it checks
# the call's reads and applies its writes), and the calls that need a second one, with why.
WARM_ROUND_TRIPS = {
    "get_variable": 1,
    "get_variable_value": 1,
    "has_variable?": 1,
    "update_variable": 1,
    "update_variables": 1,
    "get_variables": 1,
    "register_variable": 1,
    "delete_variable": 1,
    "list_variables": 1,
    "export_variables": 1,
    "import_variables": 1,
    "start_optimization": 1,
    "end_optimization": 1,
    "get_session": 1,
    "session_exists?": 1,
    "store_program": 1,
    "get_program": 1,
    "store_worker_session": 1,
    "fetch_session_for_update": 1,
    "put_session_if": 1,  # here answered {:error, :conflict}: the refusal's reads are confirmed
    "create_session": 1,  # a new id: assumed absent, checked by the commit
    "delete_session": 1,
    "list_sessions": 1,  # one read script, nothing to commit
    "get_stats": 1,
    "store_global_program": 1,
    "get_global_program": 1,
    "delete_global_program": 2,  # read (is there one? it decides the counter), then commit
    # the session count (how many to look at), the expired ones, then the commit (cleanup_runs + 1);
    # the periodic cleanup looks at a fixed number per step: two
    "cleanup_expired_sessions": 3,
}


def _warm_node() -> Node:
    (node,) = nodes(1)
    node.call("create_session", "s")
    node.call("register_variable", "s", A("t"), A("float"), 0.5)
    node.call("register_variable", "s", A("u"), A("integer"), 1)
    node.call("store_program", "s", "p", 1)
    node.call("store_global_program", "g", 1)
    node.call("get_session", "s")
    return node


def _round_trips(node: Node, function: str, *args: Any) -> tuple[int, Any]:
    before = node.storage.round_trips
    reply = node.call(function, *args)
    return node.storage.round_trips - before, reply


def test_round_trips_per_call_on_a_session_the_store_holds() -> None:
    node = _warm_node()
    fetched = node.call("fetch_session_for_update", "s")
    exported = node.call("export_variables", "s")[1]
    calls = {
        "get_variable": ("s", A("t")),
        "get_variable_value": ("s", A("t")),
        "has_variable?": ("s", A("t")),
        "update_variable": ("s", A("t"), 0.75),
        "update_variables": ("s", {A("t"): 0.25, A("u"): 2}),
        "get_variables": ("s", [A("t"), A("u")]),
        "register_variable": ("s", A("w"), A("string"), "x"),
        "delete_variable": ("s", A("w")),
        "list_variables": ("s",),
        "export_variables": ("s",),
        "import_variables": ("s", exported[:1]),
        "start_optimization": ("s", A("u"), "o", None),
        "end_optimization": ("s", A("u")),
        "get_session": ("s",),
        "session_exists?": ("s",),
        "store_program": ("s", "p", 2),
        "get_program": ("s", "p"),
        "store_worker_session": ("s", "w1"),
        "fetch_session_for_update": ("s",),
        "put_session_if": ("s", fetched[2] + 5, fetched[1]),
        "create_session": ("new",),
        "delete_session": ("new",),
        "list_sessions": (),
        "get_stats": (),
        "store_global_program": ("g2", 2),
        "get_global_program": ("g2",),
        "delete_global_program": ("g2",),
        "cleanup_expired_sessions": (),
    }
    assert set(calls) == set(WARM_ROUND_TRIPS)
    measured = {}
    for function, args in calls.items():
        node.clock.advance(1)  # every read call also touches its session (a write)
        trips, reply = _round_trips(node, function, *args)
        assert not (type(reply) is tuple and reply[:1] == (ERROR,) and function != "put_session_if"), (function, reply)
        measured[function] = trips
    assert measured == WARM_ROUND_TRIPS
    node.close()


def test_the_round_trip_count_is_what_redis_itself_counts() -> None:
    own = RedisServer()  # other stores may be working on the shared Redis: count on our own
    client = redis.Redis.from_url(own.url)
    try:
        node = Node(own.url, fresh_prefix())
        node.call("create_session", "s")
        node.call("register_variable", "s", A("t"), A("float"), 0.5)

        client.config_resetstat()
        counted = node.storage.round_trips
        for value in range(50):
            node.clock.advance(1)
            node.call("update_variable", "s", A("t"), value / 100)
            node.call("get_variable", "s", A("t"))
        stats = client.info("commandstats")
        # every command this sidecar sent is a script call (commands run inside scripts are
        # counted by Redis too, under their own names)
        assert stats["cmdstat_evalsha"]["calls"] == node.storage.round_trips - counted == 100
        node.close()
    finally:
        client.close()
        own.close()


def test_a_session_not_held_costs_one_more_round_trip_to_load() -> None:
    one, other = nodes(2)
    one.call("create_session", "s")
    one.call("register_variable", "s", A("t"), A("float"), 0.5)
    trips, reply = _round_trips(other, "get_variable", "s", A("t"))
    assert reply[0] is OK and trips == 1  # load; its reads are fresh from that script: no commit
    other.clock.advance(1)
    trips, reply = _round_trips(other, "update_variable", "s", A("t"), 0.75)
    assert reply is OK and trips == 1
    one.close()
    other.close()


# faults ----------------------------------------------------------------------------------------


def test_redis_stopped_gives_clear_errors_and_the_sidecar_reconnects_when_it_is_back() -> None:
    server = RedisServer(None, "--save", "", "--appendonly", "yes", "--appendfsync", "always")
    try:
        sidecar = SubprocessClient("--storage", server.url, "--redis-prefix", "fault:", "--redis-timeout-ms", "500", timeout=30)
        assert sidecar.call("create_session", "s")[0] is OK
        assert sidecar.call("register_variable", "s", A("t"), A("float"), 0.5) == (OK, "var_t_1")
        server.stop()
        for call in (
            ("update_variable", "s", A("t"), 0.75),
            ("get_variable", "s", A("t")),
            ("list_sessions",),
            ("create_session", "x"),
        ):
            reply = sidecar.call(*call)
            assert reply[0] is ERROR and reply[1][0] is A("storage_error"), (call, reply)
            assert "unreachable" in reply[1][1] or "did not answer" in reply[1][1], reply
        assert sidecar.process.poll() is None  # still serving
        server.start()
        assert sidecar.call("update_variable", "s", A("t"), 0.75) is OK  # reconnected by itself
        assert sidecar.call("get_variable", "s", A("t"))[1][A("version")] == 1
        assert sidecar.call("session_exists?", "x") is False  # the failed create changed nothing
        assert sidecar.close() == 0
    finally:
        server.close()


def test_a_commit_whose_answer_is_lost_is_resolved_through_the_node_key(monkeypatch: pytest.MonkeyPatch) -> None:
    (node,) = nodes(1)
    node.call("create_session", "s")
    node.call("register_variable", "s", A("t"), A("integer"), 0)
    storage = node.storage
    original = storage.client.evalsha
    mode = {"lose": None}

    def flaky(sha: str, numkeys: int, *rest: Any) -> Any:
        if sha == storage._commit_sha and mode["lose"] == "after":
            mode["lose"] = None
            original(sha, numkeys, *rest)  # applied, then the connection drops
            raise redis.exceptions.ConnectionError("connection reset (test)")
        if sha == storage._commit_sha and mode["lose"] == "before":
            mode["lose"] = None
            raise redis.exceptions.ConnectionError("connection reset before sending (test)")
        if sha == storage._commit_sha and mode["lose"] == "timeout":
            mode["lose"] = None
            raise redis.exceptions.TimeoutError("read timeout (test)")
        return original(sha, numkeys, *rest)

    monkeypatch.setattr(storage.client, "evalsha", flaky)
    mode["lose"] = "after"
    assert node.call("update_variable", "s", A("t"), 1) is OK  # applied once, answered :ok
    mode["lose"] = "before"
    assert node.call("update_variable", "s", A("t"), 2) is OK  # not applied: sent once more
    mode["lose"] = "timeout"
    reply = node.call("update_variable", "s", A("t"), 3)  # not applied (yet?): honest error
    assert reply[0] is ERROR and reply[1][0] is A("storage_error") and "may still be applied" in reply[1][1]
    variable = node.call("get_variable", "s", A("t"))[1]
    assert variable[A("version")] == 2 and variable[A("value")] == 2
    node.close()


def test_a_storage_that_cannot_reach_redis_refuses_the_start_with_the_reason() -> None:
    server = RedisServer()
    url = server.url.replace("redis://", "redis://:secret@")
    server.close()  # nobody listens there now
    sidecar = SubprocessClient("--storage", url, hello=False)
    sidecar.send_term((A("hello"), 1, {}))
    reason, message = sidecar.next_protocol_error()
    assert reason[0] is A("storage_unavailable") and "cannot reach Redis" in reason[1]
    assert "secret" not in reason[1] and ":***@" in reason[1]
    assert sidecar.close() == 0


def test_the_password_in_the_url_is_used_and_a_wrong_one_is_a_clear_start_error() -> None:
    server = RedisServer(None, "--save", "", "--appendonly", "no", "--requirepass", "right")
    try:
        with pytest.raises(StorageOpenError, match="cannot reach Redis") as refused:
            RedisStorage(server.url.replace("redis://", "redis://:wrong@"), fresh_prefix())
        assert "wrong" not in str(refused.value)
        node = Node(server.url.replace("redis://", "redis://:right@"), fresh_prefix())
        assert node.call("create_session", "s")[0] is OK
        node.close()
    finally:
        server.close()


def test_a_redis_that_lost_its_data_is_seen_as_it_is_not_as_this_sidecar_remembers_it() -> None:
    server = RedisServer()  # no persistence at all
    try:
        node = Node(server.url, fresh_prefix())
        node.call("create_session", "s")
        node.call("register_variable", "s", A("t"), A("float"), 0.5)
        assert node.call("get_variable_value", "s", A("t")) == 0.5
        server.stop(kill=True)
        server.start()  # empty
        assert node.call("get_variable", "s", A("t")) == (ERROR, A("session_not_found"))
        assert node.call("list_sessions") == []
        assert node.call("create_session", "s")[0] is OK
        node.close()
    finally:
        server.close()


@pytest.mark.parametrize("fsync", ["always", "everysec"])
def test_with_appendonly_every_acknowledged_write_survives_a_redis_kill_9(fsync: str, tmp_path: Any) -> None:
    server = RedisServer(None, "--save", "", "--appendonly", "yes", "--appendfsync", fsync, directory=tmp_path)
    try:
        node = Node(server.url, fresh_prefix())
        node.call("create_session", "s")
        node.call("register_variable", "s", A("t"), A("integer"), 0)
        acknowledged = sum(1 for n in range(1, 101) if node.call("update_variable", "s", A("t"), n) is OK)
        if fsync == "everysec":
            time.sleep(1.5)  # what everysec may lose is the last second: let it pass (docs/storage.md)
        server.stop(kill=True)
        server.start()
        fresh = Node(server.url, node.storage.layout.prefix)
        variable = fresh.call("get_variable", "s", A("t"))[1]
        assert variable[A("version")] == acknowledged == 100 and variable[A("value")] == 100
        node.close()
        fresh.close()
    finally:
        server.close()


# the change feed ------------------------------------------------------------------------------


def test_the_change_feed_reports_other_stores_commits_and_not_its_own() -> None:
    one, other = nodes(2)
    seen: list = []
    arrived = threading.Event()

    def record(change: Change) -> None:
        seen.append(change)
        arrived.set()

    stop = watch_changes(one.storage, record)
    time.sleep(0.3)  # the subscription is made
    one.call("create_session", "s")  # its own: not reported
    _, variable_id = other.call("register_variable", "s", A("t"), A("float"), 0.5)
    assert arrived.wait(10)
    change = seen[0]
    assert change.sessions == {"s": [variable_id]} and change.global_programs == []
    assert change.origin == other.storage.node_id != one.storage.node_id
    arrived.clear()
    other.call("store_global_program", "g", 1)
    assert arrived.wait(10) and seen[-1].global_programs == ["g"] and seen[-1].sessions == {}
    stop()
    assert len([c for c in seen if c.origin == one.storage.node_id]) == 0
    one.close()
    other.close()


def test_backends_nobody_else_writes_never_call_back() -> None:
    stop = watch_changes(MemoryStorage(), lambda change: pytest.fail("called"))
    stop()


def test_a_change_from_another_store_drops_the_copy_before_it_causes_a_conflict() -> None:
    one, other = nodes(2)
    one.call("create_session", "s")
    one.call("register_variable", "s", A("t"), A("float"), 0.5)
    time.sleep(0.3)
    other.call("update_variable", "s", A("t"), 0.75)
    deadline = time.monotonic() + 10
    while not one.storage._changed_elsewhere and time.monotonic() < deadline:
        time.sleep(0.01)
    assert one.call("update_variable", "s", A("t"), 0.25) is OK
    assert one.storage.conflicts == 0
    assert other.call("get_variable", "s", A("t"))[1][A("version")] == 2
    one.close()
    other.close()


# options and odds and ends --------------------------------------------------------------------


def test_no_cache_at_all_still_answers_everything() -> None:
    (node,) = nodes(1, cache_mb=0)
    node.call("create_session", "s")
    node.call("register_variable", "s", A("t"), A("float"), 0.5)
    assert node.call("update_variable", "s", A("t"), 0.75) is OK
    assert node.call("get_variable_value", "s", A("t")) == 0.75
    assert len(node.storage.cache) == 0
    node.close()


def test_the_cache_keeps_to_its_budget() -> None:
    (node,) = nodes(1, cache_mb=1)
    for i in range(20):
        node.call("create_session", f"s{i}")
        node.call("register_variable", f"s{i}", A("blob"), A("string"), "x" * 200_000)
    assert node.storage.cache.total_bytes <= 1024 * 1024
    assert 0 < len(node.storage.cache) < 20
    assert node.call("get_variable_value", "s0", A("blob")) == "x" * 200_000  # loaded again
    node.close()


def test_variable_numbers_come_in_blocks_and_skip_reserved_ones() -> None:
    blocks = []

    def reserve(floor: int) -> tuple[int, int]:
        start = max(floor, blocks[-1][1] if blocks else 0) + 1
        blocks.append((start, start + 9))
        return blocks[-1]

    numbers = VariableNumbers(reserve)
    assert [numbers.next() for _ in range(3)] == [1, 2, 3]
    state = numbers.state()
    assert numbers.next() == 4
    numbers.restore(state)  # a unit that rolled back gives its numbers back
    assert numbers.next() == 4
    assert numbers.reserve(7) is False and numbers.next() == 8  # within the block
    assert numbers.reserve(2**70) is True  # beyond it: Redis must learn it
    assert numbers.next() == 2**70 + 1
    state = numbers.state()
    numbers.reserve(2**80)
    numbers.restore(state)
    assert numbers.next() == 2**70 + 2


def test_imported_ids_numbers_beyond_redis_integers_are_kept_exactly() -> None:
    one, other = nodes(2)
    one.call("create_session", "s")
    imported = {A("id"): f"var_x_{2**70}", A("name"): "x", A("type"): A("float"), A("value"): 1.0, A("created_at"): 5}
    assert one.call("import_variables", "s", [imported]) == (OK, 1)
    assert other.call("register_variable", "s", A("y"), A("float"), 1.0) == (OK, f"var_y_{2**70 + 1}")
    one.close()
    other.close()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--redis-prefix", "a{b"], "may not contain"),
        (["--redis-prefix", ""], "at least 1 character"),
        (["--redis-timeout-ms", "0"], "greater than or equal to 10"),
        (["--redis-cache-mb", "-1"], "greater than or equal to 0"),
    ],
)
def test_bad_redis_options_are_usage_errors(args: list, message: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "sidecar", "--storage", "redis://127.0.0.1:1/0", *args],
        env=sidecar_env(),
        capture_output=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 2 and message in done.stderr.decode() and done.stdout == b""


def test_the_options_reach_the_storage() -> None:
    spec = SidecarOptions(storage="redis://:pw@h:1/2", redis_prefix="app:", redis_timeout_ms=250, redis_cache_mb=8).storage_spec()
    assert spec.kind == "redis" and spec.options == {"prefix": "app:", "timeout_ms": 250, "cache_mb": 8}
    assert spec.describe() == "redis://:***@h:1/2"


def test_a_redis_down_mid_run_surfaces_as_storage_error_in_process() -> None:
    server = RedisServer()
    try:
        node = Node(server.url, fresh_prefix(), FakeClock(0), timeout_ms=300)
        node.call("create_session", "s")
        server.stop()
        with pytest.raises(StorageError):
            node.storage.begin().session_ids()
        reply = node.call("get_session", "s")
        assert reply[0] is ERROR and reply[1][0] is A("storage_error") and "unreachable" in reply[1][1]
        assert "applied" not in reply[1][1]  # a read-only call has no write to be unsure of
        server.start()  # without persistence: empty, and seen so
        assert node.call("get_session", "s") == (ERROR, A("not_found"))
        assert node.call("create_session", "s")[0] is OK
        node.close()
    finally:
        server.close()
