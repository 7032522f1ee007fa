"""Contract rows for sessions (docs/contract.md, "Sessions"): create/get/delete/exists/list, TTL
expiry and cleanup, stats, worker affinity, and the optimistic update_session pair
(fetch_session_for_update/put_session_if).

Timestamps are checked relative to each other, with a little slack where a real clock runs
(the subprocess client), never against absolute values.
"""

from __future__ import annotations

from sidecar.terms import Atom as A
from sidecar.terms import term_equal

OK = A("ok")
ERROR = A("error")
SESSION = A("Elixir.Snakepit.Bridge.Session")
SESSION_FIELDS = {
    "__struct__",
    "id",
    "created_at",
    "last_accessed",
    "last_worker_id",
    "ttl",
    "programs",
    "variables",
    "variable_index",
    "metadata",
    "stats",
}


def ok_value(result):
    assert type(result) is tuple and result[0] is OK, result
    return result[1]


def f(struct, name):
    return struct[A(name)]


def is_int(term) -> bool:
    return type(term) is int


# create_session ---------------------------------------------------------------------------


def test_create_session_returns_the_session_struct_with_every_field(client):
    session = ok_value(client.call("create_session", "s1"))
    assert {key.name for key in session} == SESSION_FIELDS
    assert f(session, "__struct__") is SESSION
    assert f(session, "id") == "s1" and type(f(session, "id")) is str
    assert is_int(f(session, "created_at")) and f(session, "last_accessed") == f(session, "created_at")
    assert f(session, "last_worker_id") is None
    assert f(session, "ttl") == 3600
    assert f(session, "programs") == {} and f(session, "variables") == {} and f(session, "variable_index") == {}
    assert f(session, "metadata") == {}
    assert term_equal(f(session, "stats"), {A("variable_count"): 0, A("program_count"): 0, A("total_variable_updates"): 0})


def test_create_session_options_are_kept(client):
    program = {A("kind"): A("predict"), "sig": (1, 2.0)}
    session = ok_value(
        client.call(
            "create_session",
            "s1",
            [(A("ttl"), 60), (A("metadata"), {"user": "u1"}), (A("programs"), {"p1": program}), (A("last_worker_id"), "w7")],
        )
    )
    assert f(session, "ttl") == 60
    assert term_equal(f(session, "metadata"), {"user": "u1"})
    assert term_equal(f(session, "programs"), {"p1": program})
    assert f(session, "last_worker_id") == "w7"
    assert term_equal(ok_value(client.call("get_program", "s1", "p1")), program)


def test_create_session_on_an_existing_id_returns_it_untouched(client):
    first = ok_value(client.call("create_session", "s1", [(A("metadata"), {"v": 1})]))
    client.call("__advance_clock__", 5)
    again = ok_value(client.call("create_session", "s1", [(A("metadata"), {"v": 2}), (A("ttl"), 9)]))
    assert term_equal(again, first)
    stats = client.call("get_stats")
    assert stats[A("sessions_created")] == 1


def test_create_session_validation_errors(client):
    assert client.call("create_session", "") == (ERROR, A("invalid_id"))
    assert client.call("create_session", "s1", [(A("ttl"), -1)]) == (ERROR, A("invalid_ttl"))
    assert client.call("create_session", "s1", [(A("ttl"), 1.5)]) == (ERROR, A("invalid_ttl"))
    assert client.call("create_session", "s1", [(A("ttl"), True)]) == (ERROR, A("invalid_ttl"))
    assert client.call("create_session", "s1", [(A("metadata"), [1])]) == (ERROR, A("invalid_metadata"))
    assert client.call("create_session", "s1", [(A("programs"), "x")]) == (ERROR, A("invalid_programs"))
    assert client.call("session_exists?", "s1") is False
    assert client.call("get_stats")[A("sessions_created")] == 0


def test_create_session_accepts_a_zero_ttl(client):
    # the contract refuses negative ttls only
    assert f(ok_value(client.call("create_session", "s1", [(A("ttl"), 0)])), "ttl") == 0


# get / delete / exists / list ---------------------------------------------------------------


def test_get_session_touches(client):
    created = ok_value(client.call("create_session", "s1"))
    client.call("__advance_clock__", 10)
    got = ok_value(client.call("get_session", "s1"))
    assert f(got, "created_at") == f(created, "created_at")
    assert 10 <= f(got, "last_accessed") - f(created, "last_accessed") <= 12


def test_get_session_missing(client):
    assert client.call("get_session", "nope") == (ERROR, A("not_found"))


def test_delete_session_is_always_ok(client):
    client.call("create_session", "s1")
    assert client.call("delete_session", "s1") is OK
    assert client.call("delete_session", "s1") is OK
    assert client.call("delete_session", "never") is OK
    assert client.call("get_session", "s1") == (ERROR, A("not_found"))
    # only a session that was there counts as deleted
    assert client.call("get_stats")[A("sessions_deleted")] == 1


def test_session_exists_does_not_touch(client):
    created = ok_value(client.call("create_session", "s1", [(A("ttl"), 5)]))
    assert client.call("session_exists?", "s1") is True
    assert client.call("session_exists?", "s2") is False
    client.call("__advance_clock__", 4)
    assert client.call("session_exists?", "s1") is True
    client.call("__advance_clock__", 3)  # 7 s after the last touch: expired unless exists? touched
    assert client.call("cleanup_expired_sessions") == 1
    assert f(created, "ttl") == 5


def test_list_sessions(client):
    assert client.call("list_sessions") == []
    for sid in ("a", "b", "c"):
        client.call("create_session", sid)
    client.call("delete_session", "b")
    assert sorted(client.call("list_sessions")) == ["a", "c"]


# TTL and cleanup -----------------------------------------------------------------------------


def test_cleanup_expires_sessions_past_their_ttl(client):
    client.call("create_session", "short", [(A("ttl"), 5)])
    client.call("create_session", "long", [(A("ttl"), 100)])
    assert client.call("cleanup_expired_sessions") == 0
    client.call("__advance_clock__", 7)
    assert client.call("cleanup_expired_sessions") == 1
    assert client.call("list_sessions") == ["long"]
    stats = client.call("get_stats")
    assert stats[A("sessions_expired")] == 1 and stats[A("cleanup_runs")] == 2


def test_a_touch_keeps_a_session_alive(client):
    client.call("create_session", "s1", [(A("ttl"), 5)])
    client.call("__advance_clock__", 3)
    ok_value(client.call("get_session", "s1"))
    client.call("__advance_clock__", 3)
    assert client.call("cleanup_expired_sessions") == 0
    client.call("__advance_clock__", 5)
    assert client.call("cleanup_expired_sessions") == 1


def test_run_cleanup_expires_sessions_and_counts(client):
    client.call("create_session", "s1", [(A("ttl"), 1)])
    client.call("__advance_clock__", 3)
    assert client.call("run_cleanup") == {A("sessions"): 1, A("global_programs"): 0}
    assert client.call("get_stats")[A("cleanup_runs")] == 1


# stats --------------------------------------------------------------------------------------


def test_get_stats_has_the_contract_keys_with_integer_values(client):
    stats = client.call("get_stats")
    expected = {
        "sessions_created",
        "sessions_deleted",
        "sessions_expired",
        "cleanup_runs",
        "global_programs_stored",
        "global_programs_deleted",
        "global_programs_expired",
        "current_sessions",
        "memory_usage_bytes",
    }
    assert {key.name for key in stats} == expected
    assert all(is_int(value) for value in stats.values())
    assert stats[A("memory_usage_bytes")] > 0


def test_get_stats_counts(client):
    for sid in ("a", "b", "c"):
        client.call("create_session", sid)
    client.call("delete_session", "a")
    client.call("store_worker_session", "d", "w1")
    stats = client.call("get_stats")
    assert stats[A("sessions_created")] == 4
    assert stats[A("sessions_deleted")] == 1
    assert stats[A("current_sessions")] == 3


# worker affinity ------------------------------------------------------------------------------


def test_store_worker_session_sets_the_worker_on_an_existing_session(client):
    client.call("create_session", "s1", [(A("metadata"), {"k": "v"})])
    assert client.call("store_worker_session", "s1", "worker_3") is OK
    session = ok_value(client.call("get_session", "s1"))
    assert f(session, "last_worker_id") == "worker_3"
    assert term_equal(f(session, "metadata"), {"k": "v"})


def test_store_worker_session_creates_a_missing_session(client):
    assert client.call("store_worker_session", "s9", "worker_1") is OK
    session = ok_value(client.call("get_session", "s9"))
    assert f(session, "last_worker_id") == "worker_1"
    assert f(session, "ttl") == 3600
    assert client.call("get_stats")[A("sessions_created")] == 1


def test_store_worker_session_refuses_what_would_break_the_session(client):
    assert client.call("store_worker_session", "", "w") == (ERROR, A("invalid_id"))
    assert client.call("store_worker_session", "s1", 42) == (ERROR, A("invalid_last_worker_id"))
    assert client.call("session_exists?", "s1") is False


# update_session: fetch_session_for_update / put_session_if ------------------------------------


def test_fetch_session_for_update_does_not_touch(client):
    created = ok_value(client.call("create_session", "s1"))
    client.call("__advance_clock__", 5)
    result = client.call("fetch_session_for_update", "s1")
    assert result[0] is OK and len(result) == 3 and is_int(result[2])
    assert f(result[1], "last_accessed") == f(created, "last_accessed")
    assert client.call("fetch_session_for_update", "nope") == (ERROR, A("not_found"))


def test_put_session_if_stores_the_changed_session_touched(client):
    ok_value(client.call("create_session", "s1"))
    _, session, revision = client.call("fetch_session_for_update", "s1")
    client.call("__advance_clock__", 4)
    changed = dict(session)
    changed[A("metadata")] = {"step": 2}
    changed[A("programs")] = {"p": {A("a"): 1}}
    stored = ok_value(client.call("put_session_if", "s1", revision, changed))
    assert term_equal(f(stored, "metadata"), {"step": 2})
    assert f(stored, "last_accessed") - f(session, "last_accessed") >= 4
    again = ok_value(client.call("get_session", "s1"))
    assert term_equal(f(again, "programs"), {"p": {A("a"): 1}})


def test_put_session_if_detects_a_conflict(client):
    client.call("create_session", "s1")
    _, session, revision = client.call("fetch_session_for_update", "s1")
    client.call("store_program", "s1", "p", 1)  # someone else changes it meanwhile
    assert client.call("put_session_if", "s1", revision, session) == (ERROR, A("conflict"))
    assert term_equal(ok_value(client.call("get_program", "s1", "p")), 1)


def test_touches_do_not_change_the_revision(client):
    client.call("create_session", "s1")
    client.call("register_variable", "s1", "x", A("integer"), 1)
    _, session, revision = client.call("fetch_session_for_update", "s1")
    client.call("get_session", "s1")
    client.call("get_variable", "s1", "x")
    ok_value(client.call("put_session_if", "s1", revision, session))


def test_each_put_session_if_takes_a_new_revision(client):
    client.call("create_session", "s1")
    _, session, revision = client.call("fetch_session_for_update", "s1")
    ok_value(client.call("put_session_if", "s1", revision, session))
    assert client.call("put_session_if", "s1", revision, session) == (ERROR, A("conflict"))


def test_put_session_if_validates_like_session_validate(client):
    client.call("create_session", "s1")
    _, session, revision = client.call("fetch_session_for_update", "s1")
    cases = {
        "id": ("", "invalid_id"),
        "programs": ([], "invalid_programs"),
        "metadata": (None, "invalid_metadata"),
        "created_at": ("x", "invalid_created_at"),
        "last_accessed": (1.0, "invalid_last_accessed"),
        "last_worker_id": (A("w"), "invalid_last_worker_id"),
        "ttl": (-5, "invalid_ttl"),
    }
    for field, (value, reason) in cases.items():
        bad = dict(session)
        bad[A(field)] = value
        assert client.call("put_session_if", "s1", revision, bad) == (ERROR, A(reason)), field
    bad = dict(session)
    bad[A("last_accessed")] = f(session, "created_at") - 1
    assert client.call("put_session_if", "s1", revision, bad) == (ERROR, A("invalid_timestamps"))
    assert client.call("put_session_if", "s1", revision, {A("id"): "s1"}) == (ERROR, A("not_a_session"))
    assert client.call("put_session_if", "s1", revision, "junk") == (ERROR, A("not_a_session"))
    # nothing was stored: the revision still matches
    ok_value(client.call("put_session_if", "s1", revision, session))


def test_put_session_if_on_a_missing_session(client):
    client.call("create_session", "s1")
    _, session, revision = client.call("fetch_session_for_update", "s1")
    client.call("delete_session", "s1")
    assert client.call("put_session_if", "s1", revision, session) == (ERROR, A("not_found"))


def test_put_session_if_keeps_variables_usable(client):
    client.call("create_session", "s1")
    ok_value(client.call("register_variable", "s1", A("t"), A("float"), 0.5))
    _, session, revision = client.call("fetch_session_for_update", "s1")
    ok_value(client.call("put_session_if", "s1", revision, dict(session)))
    assert client.call("update_variable", "s1", A("t"), 0.75) is OK
    assert client.call("get_variable_value", "s1", "t") == 0.75
    variable = ok_value(client.call("get_variable", "s1", "t"))
    assert f(variable, "name") is A("t") and f(variable, "version") == 1


def test_put_session_if_keys_the_session_by_the_given_id(client):
    client.call("create_session", "s1")
    _, session, revision = client.call("fetch_session_for_update", "s1")
    renamed = dict(session)
    renamed[A("id")] = "other"
    stored = ok_value(client.call("put_session_if", "s1", revision, renamed))
    assert f(stored, "id") == "s1"
    assert client.call("session_exists?", "other") is False
