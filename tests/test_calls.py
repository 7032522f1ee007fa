"""The call table: names and arities of docs/protocol.md, argument checks, option lists, test-only
calls, and defects turned into {:error, {:internal_error, msg}} without damage to the store."""

from __future__ import annotations

import logging

import pytest
from inprocess_client import Client

from sidecar.clock import Clock, FakeClock
from sidecar.storage.memory import MemoryStorage
from sidecar.store import calls
from sidecar.store.config import StoreConfig
from sidecar.store.session_store import SessionStore, is_error
from sidecar.terms import Atom as A
from sidecar.terms import term_equal

OK = A("ok")
ERROR = A("error")

PROTOCOL_ARITIES = {
    "create_session": [1, 2],
    "get_session": [1],
    "delete_session": [1],
    "session_exists?": [1],
    "list_sessions": [0],
    "cleanup_expired_sessions": [0],
    "get_stats": [0],
    "store_worker_session": [2],
    "store_global_program": [2],
    "get_global_program": [1],
    "delete_global_program": [1],
    "store_program": [3],
    "update_program": [3],
    "get_program": [2],
    "register_variable": [4, 5],
    "get_variable": [2],
    "get_variable_value": [2, 3],
    "update_variable": [3, 4],
    "delete_variable": [2],
    "has_variable?": [2],
    "list_variables": [1, 2],
    "get_variables": [2],
    "update_variables": [2, 3],
    "export_variables": [1],
    "import_variables": [2],
    "fetch_session_for_update": [1],
    "put_session_if": [3],
    "ping": [0],
    "start_optimization": [4],
    "end_optimization": [2],
    "run_cleanup": [0],
    "touch_sessions": [1],
}


def test_every_protocol_call_is_in_the_table_with_its_arities():
    store = SessionStore(StoreConfig(), FakeClock())
    for name, arities in PROTOCOL_ARITIES.items():
        spec = calls.lookup(store, A(name))
        assert spec is not None, name
        assert spec.arities == arities, name
        assert callable(getattr(store, spec.method)), name


def test_unknown_call():
    client = Client()
    assert client.call("no_such_call") == (ERROR, (A("unknown_call"), A("no_such_call")))
    store = client.store
    assert calls.dispatch(store, "get_stats", []) == ((ERROR, (A("unknown_call"), "get_stats")), [])


def test_bad_arity_lists_the_accepted_arities():
    client = Client()
    assert client.call("create_session") == (ERROR, (A("bad_arity"), A("create_session"), 0, [1, 2]))
    assert client.call("ping", 1) == (ERROR, (A("bad_arity"), A("ping"), 1, [0]))
    assert client.call("get_variable", "s", "x", "y") == (ERROR, (A("bad_arity"), A("get_variable"), 3, [2]))


@pytest.mark.parametrize(
    "function, args, position, expected",
    [
        ("get_session", [42], 1, "binary"),
        ("delete_session", [A("s")], 1, "binary"),
        ("session_exists?", [None], 1, "binary"),
        ("store_global_program", [1, "data"], 1, "binary"),
        ("create_session", ["s", 5], 2, "keyword list or map"),
        ("create_session", ["s", [(A("ttl"), 1), "junk"]], 2, "keyword list or map"),
        ("register_variable", ["s", 1.5, A("float"), 1.0], 2, "atom or binary"),
        ("register_variable", ["s", "x", A("float"), 1.0, "opts"], 5, "keyword list or map"),
        ("get_variable", ["s", {"a": 1}], 2, "atom or binary"),
        ("update_variable", ["s", "x", 1, [1]], 4, "map"),
        ("get_variables", ["s", "x"], 2, "list of atoms or binaries"),
        ("get_variables", ["s", ["x", 3]], 2, "list of atoms or binaries"),
        ("update_variables", ["s", [("x", 1)]], 2, "map with atom or binary keys"),
        ("update_variables", ["s", {3: 1}], 2, "map with atom or binary keys"),
        ("list_variables", ["s", 7], 2, "binary"),
        ("import_variables", ["s", {}], 2, "list"),
        ("put_session_if", ["s", "rev", {}], 2, "integer"),
        ("put_session_if", ["s", True, {}], 2, "integer"),
        ("__advance_clock__", [-1], 1, "non-negative integer"),
    ],
)
def test_bad_arguments(function, args, position, expected):
    client = Client()
    assert client.call(function, *args) == (ERROR, (A("bad_argument"), A(function), position, expected))


def test_variable_calls_take_any_session_id_as_the_original_did():
    client = Client()
    assert client.call("get_variable", 42, "x") == (ERROR, A("session_not_found"))
    assert client.call("list_variables", ["unhashable"]) == (ERROR, A("session_not_found"))
    assert client.call("get_program", {"a": 1}, "p") == (ERROR, A("not_found"))


def test_keyword_list_first_occurrence_wins_and_maps_are_accepted():
    client = Client()
    session = client.call("create_session", "s1", [(A("ttl"), 10), (A("ttl"), 20)])[1]
    assert session[A("ttl")] == 10
    session = client.call("create_session", "s2", {A("ttl"): 30})[1]
    assert session[A("ttl")] == 30


def test_create_session_id_errors_are_the_contracts():
    client = Client()
    assert client.call("create_session", "") == (ERROR, A("invalid_id"))
    assert client.call("create_session", 5) == (ERROR, A("invalid_id"))


def test_ping():
    assert Client().call("ping") is A("pong")


def test_test_calls_exist_only_when_enabled():
    client = Client(enable_test_calls=False)
    assert client.call("__advance_clock__", 5) == (ERROR, (A("unknown_call"), A("__advance_clock__")))
    assert client.call("__reset__") == (ERROR, (A("unknown_call"), A("__reset__")))
    enabled = Client()
    before = enabled.clock.now()
    assert enabled.call("__advance_clock__", 5) is OK
    assert enabled.clock.now() == before + 5


def test_reset_forgets_everything():
    client = Client()
    client.call("create_session", "s1")
    client.call("store_global_program", "g", 1)
    assert client.call("__reset__") is OK
    assert client.call("list_sessions") == []
    assert client.call("get_global_program", "g") == (ERROR, A("not_found"))
    assert client.call("get_stats")[A("sessions_created")] == 0


def test_advance_clock_on_a_real_clock_adds_an_offset():
    ticks = iter([100.0, 100.4, 100.9])
    clock = Clock(beam_monotonic_at_start=-50, monotonic=lambda: next(ticks), wall=lambda: 1_800_000_000.5)
    assert clock.to_beam(clock.now()) == -50
    clock.advance(7)
    assert clock.to_beam(clock.now()) == -43


def test_a_defect_becomes_internal_error_and_leaves_the_store_as_it_was(monkeypatch, caplog):
    client = Client()
    client.call("create_session", "s1")
    client.call("register_variable", "s1", "t", A("float"), 0.5)
    before = client.call("fetch_session_for_update", "s1")

    def broken(*_args):
        raise RuntimeError("boom")

    monkeypatch.setattr(MemoryStorage, "find_variable", broken)
    with caplog.at_level(logging.ERROR, logger="sidecar.store.calls"):
        result = client.call("update_variable", "s1", "t", 0.7)
    assert result[0] is ERROR and result[1][0] is A("internal_error")
    assert type(result[1][1]) is str and "boom" in result[1][1]
    assert any("update_variable" in record.getMessage() for record in caplog.records)
    assert term_equal(client.call("fetch_session_for_update", "s1"), before)
    monkeypatch.undo()
    assert client.call("update_variable", "s1", "t", 0.7) is OK


def test_dispatch_never_raises_nor_hits_a_defect_on_odd_input():
    store = SessionStore(StoreConfig(enable_test_calls=True), FakeClock())
    store.call("create_session", "s", {})
    store.call("register_variable", "s", "v", A("integer"), 1, {})
    odd_args = [None, "x", 1, (1,), {A("a"): 1}]
    arg_lists = (
        [], [None], ["s"], ["s", None], ["s", "v"], ["s", None, None], ["s", "v", None],
        ["s", [], {}, None, []], odd_args, ["s", "v", "x", [1]], ["s", {"v": [1]}, [(A("atomic"), 1)]],
        ["s", [{A("id"): 1}]], ["s", "v", A("integer"), 2, {A("constraints"): 5}],
    )  # fmt: skip
    for name in list(calls.CALLS) + [A("nope"), None, 3]:
        for args in arg_lists:
            result, events = store.transact(lambda: calls.dispatch(store, name, list(args)), lambda o: is_error(o[0]))
            assert isinstance(events, list)
            if isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], tuple):
                assert result[1][:1] != (A("internal_error"),), (name, args, result)
