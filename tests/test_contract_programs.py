"""Contract rows for programs (docs/contract.md, "Programs"): global programs (with TTL expiry
through run_cleanup) and per-session programs; program data of any shape comes back exactly as
stored."""

from __future__ import annotations

import pytest

from sidecar.terms import Atom as A
from sidecar.terms import term_equal

OK = A("ok")
ERROR = A("error")
NOT_FOUND = (ERROR, A("not_found"))

PROGRAMS = [
    {A("signature"): "q -> a", A("demos"): [{"q": "1+1", "a": 2}], A("temperature"): 0.7},
    (A("chain_of_thought"), [1, 2.0, "three", A("four"), None, True], {(1, 2): A("t")}),
    [],
    "just a binary",
    b"\xff\x00not utf-8",
    42,
    1.0,
    A("atom"),
    False,
    {1: "int key", 1.5: "float key", "1": "binary key", A("1"): "atom key"},
]


def ok_value(result):
    assert type(result) is tuple and result[0] is OK, result
    return result[1]


# global programs -----------------------------------------------------------------------------


@pytest.mark.parametrize("data", PROGRAMS, ids=range(len(PROGRAMS)))
def test_global_program_round_trips_exactly(client, data):
    assert client.call("store_global_program", "g1", data) is OK
    assert term_equal(ok_value(client.call("get_global_program", "g1")), data)


def test_global_program_missing_and_delete(client):
    assert client.call("get_global_program", "g1") == NOT_FOUND
    client.call("store_global_program", "g1", {A("x"): 1})
    client.call("store_global_program", "g1", {A("x"): 2})  # overwrite
    assert term_equal(ok_value(client.call("get_global_program", "g1")), {A("x"): 2})
    assert client.call("delete_global_program", "g1") is OK
    assert client.call("delete_global_program", "g1") is OK
    assert client.call("get_global_program", "g1") == NOT_FOUND
    stats = client.call("get_stats")
    assert stats[A("global_programs_stored")] == 2
    assert stats[A("global_programs_deleted")] == 1


def test_global_programs_expire_after_their_ttl_in_run_cleanup(client):
    client.call("store_global_program", "old", 1)
    client.call("__advance_clock__", 3000)
    client.call("store_global_program", "young", 2)
    client.call("__advance_clock__", 700)  # old: 3700 s > 3600 s; young: 700 s
    assert client.call("run_cleanup") == {A("sessions"): 0, A("global_programs"): 1}
    assert client.call("get_global_program", "old") == NOT_FOUND
    assert ok_value(client.call("get_global_program", "young")) == 2
    assert client.call("get_stats")[A("global_programs_expired")] == 1


def test_cleanup_expired_sessions_leaves_global_programs(client):
    client.call("store_global_program", "old", 1)
    client.call("__advance_clock__", 4000)
    assert client.call("cleanup_expired_sessions") == 0
    assert ok_value(client.call("get_global_program", "old")) == 1


# session programs -----------------------------------------------------------------------------


@pytest.mark.parametrize("data", PROGRAMS, ids=range(len(PROGRAMS)))
def test_session_program_round_trips_exactly(client, data):
    client.call("create_session", "s1")
    assert client.call("store_program", "s1", "p1", data) is OK
    assert term_equal(ok_value(client.call("get_program", "s1", "p1")), data)
    session = ok_value(client.call("get_session", "s1"))
    assert term_equal(session[A("programs")], {"p1": data})


def test_session_program_errors(client):
    assert client.call("store_program", "nope", "p1", 1) == NOT_FOUND
    assert client.call("update_program", "nope", "p1", 1) == NOT_FOUND
    assert client.call("get_program", "nope", "p1") == NOT_FOUND
    client.call("create_session", "s1")
    assert client.call("get_program", "s1", "p1") == NOT_FOUND


def test_update_program_replaces(client):
    client.call("create_session", "s1")
    client.call("store_program", "s1", "p1", {A("v"): 1})
    assert client.call("update_program", "s1", "p1", {A("v"): 2}) is OK
    assert term_equal(ok_value(client.call("get_program", "s1", "p1")), {A("v"): 2})


def test_program_stored_as_nil_comes_back(client):
    client.call("create_session", "s1")
    client.call("store_program", "s1", "p1", None)
    assert client.call("get_program", "s1", "p1") == (OK, None)


def test_program_count_counts_new_programs_only(client):
    client.call("create_session", "s1")
    client.call("store_program", "s1", "p1", 1)
    client.call("store_program", "s1", "p2", 2)
    client.call("update_program", "s1", "p1", 3)
    stats = ok_value(client.call("get_session", "s1"))[A("stats")]
    assert stats[A("program_count")] == 2


def test_storing_a_program_touches_the_session(client):
    created = ok_value(client.call("create_session", "s1", [(A("ttl"), 5)]))
    client.call("__advance_clock__", 4)
    client.call("store_program", "s1", "p1", 1)
    client.call("__advance_clock__", 4)
    assert client.call("cleanup_expired_sessions") == 0
    assert created[A("ttl")] == 5
