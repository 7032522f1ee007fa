"""Contract rows that docs/contract.md states and no other suite pinned yet: the validation
reasons beyond the contract's own table, the decisions where the contract is silent ("Beyond the
original"), and which calls touch a session ("Which calls touch")."""

from __future__ import annotations

import pytest

from sidecar.terms import Atom as A
from sidecar.terms import term_equal

OK = A("ok")
ERROR = A("error")
LOCKED = A("variable_locked_for_optimization")


def ok_value(result):
    assert type(result) is tuple and result[0] is OK, result
    return result[1]


def snapshot(client, sid="s1"):
    """The stored session with its revision, read without a touch."""
    result = client.call("fetch_session_for_update", sid)
    assert result[0] is OK, result
    return result


# create_session ---------------------------------------------------------------------------------


def test_create_session_refuses_a_worker_id_that_is_not_a_binary(client):
    assert client.call("create_session", "s1", [(A("last_worker_id"), 42)]) == (ERROR, A("invalid_last_worker_id"))
    assert client.call("create_session", "s1", [(A("last_worker_id"), A("w1"))]) == (ERROR, A("invalid_last_worker_id"))
    assert client.call("session_exists?", "s1") is False
    # checked in Session.validate's order: id, programs, metadata, last_worker_id, ttl
    assert client.call("create_session", "", [(A("programs"), 1)]) == (ERROR, A("invalid_id"))
    assert client.call("create_session", "s1", [(A("metadata"), 1), (A("programs"), 1)]) == (ERROR, A("invalid_programs"))
    assert client.call("create_session", "s1", [(A("last_worker_id"), 1), (A("metadata"), 1)]) == (ERROR, A("invalid_metadata"))
    assert client.call("create_session", "s1", [(A("ttl"), -1), (A("last_worker_id"), 1)]) == (ERROR, A("invalid_last_worker_id"))
    # nil is no worker
    assert ok_value(client.call("create_session", "s1", [(A("last_worker_id"), None)]))[A("last_worker_id")] is None


def test_create_session_validates_even_when_the_id_exists(client):
    ok_value(client.call("create_session", "s1"))
    assert client.call("create_session", "s1", [(A("ttl"), -1)]) == (ERROR, A("invalid_ttl"))
    assert client.call("create_session", "s1", [(A("ttl"), None)]) == (ERROR, A("invalid_ttl"))


def test_programs_given_at_creation_are_counted(client):
    session = ok_value(client.call("create_session", "s1", [(A("programs"), {"a": 1, "b": 2})]))
    assert session[A("stats")][A("program_count")] == 2
    client.call("store_program", "s1", "a", 3)  # replacing a program is not a new one
    client.call("store_program", "s1", "c", 3)
    assert ok_value(client.call("get_session", "s1"))[A("stats")][A("program_count")] == 3


def test_program_ids_are_exact_terms(client):
    client.call("create_session", "s1")
    client.call("store_program", "s1", A("p"), 1)
    client.call("store_program", "s1", "p", 2)
    assert client.call("get_program", "s1", A("p")) == (OK, 1)
    assert client.call("get_program", "s1", "p") == (OK, 2)
    assert ok_value(client.call("get_session", "s1"))[A("stats")][A("program_count")] == 2


# register_variable / update_variable(s) --------------------------------------------------------


def test_register_variable_refuses_what_cannot_become_a_variable(client):
    client.call("create_session", "s1")
    client.take_events()
    before = snapshot(client)

    def register(name, type_, value, opts=None):
        return client.call("register_variable", "s1", name, type_, value, *([opts] if opts is not None else []))

    for name in ("", None, b"\xff\xfe"):
        assert register(name, A("integer"), 1) == (ERROR, A("invalid_name")), name
    assert register("x", A("integer"), 1, [(A("constraints"), 5)]) == (ERROR, A("invalid_constraints"))
    assert register("x", A("integer"), 1, [(A("constraints"), [(A("min"), 0)])]) == (ERROR, A("invalid_constraints"))
    assert register("x", A("integer"), 1, [(A("metadata"), "m")]) == (ERROR, A("invalid_metadata"))
    # in order: name, type, constraints, metadata, value
    assert register("", A("nope"), 1) == (ERROR, A("invalid_name"))
    assert register("x", A("nope"), "bad", [(A("constraints"), 5)]) == (ERROR, (A("unknown_type"), A("nope")))
    assert register("x", A("integer"), "bad", [(A("constraints"), 5), (A("metadata"), 5)]) == (ERROR, A("invalid_constraints"))
    assert register("x", A("integer"), "bad", [(A("metadata"), 5)]) == (ERROR, A("invalid_metadata"))
    assert term_equal(snapshot(client), before)
    assert client.take_events() == []


def test_register_variable_takes_nil_options_as_none(client):
    client.call("create_session", "s1")
    options = [(A("constraints"), None), (A("metadata"), None), (A("description"), None)]
    ok_value(client.call("register_variable", "s1", "x", A("integer"), 1, options))
    variable = ok_value(client.call("get_variable", "s1", "x"))
    assert variable[A("constraints")] == {}
    assert term_equal(variable[A("metadata")], {"source": "elixir", "created_by": "session_store"})


def test_update_variable_source_is_a_string_or_elixir(client):
    client.call("create_session", "s1")
    client.call("register_variable", "s1", "x", A("integer"), 1)
    for given, stored in ((A("python"), "python"), (None, "elixir"), (False, "elixir"), ("optimizer", "optimizer")):
        assert client.call("update_variable", "s1", "x", 2, {"source": given}) is OK
        source = ok_value(client.call("get_variable", "s1", "x"))[A("metadata")]["source"]
        assert type(source) is str and source == stored, given


def test_update_variables_refuses_metadata_that_is_not_a_map(client):
    client.call("create_session", "s1")
    client.call("register_variable", "s1", "x", A("integer"), 1)
    client.take_events()
    before = snapshot(client)
    assert client.call("update_variables", "s1", {"x": 2}, [(A("metadata"), "m")]) == (ERROR, A("invalid_metadata"))
    assert term_equal(snapshot(client), before)
    assert client.take_events() == []
    # nil means none
    assert term_equal(ok_value(client.call("update_variables", "s1", {"x": 3}, [(A("metadata"), None)])), {"x": OK})


def test_an_atomic_batch_fails_on_a_variable_being_optimized(client):
    client.call("create_session", "s1")
    client.call("register_variable", "s1", "a", A("integer"), 1)
    client.call("register_variable", "s1", "b", A("integer"), 1)
    assert client.call("start_optimization", "s1", "b", "opt", None) is OK
    before = snapshot(client)
    result = client.call("update_variables", "s1", {"a": 2, "b": 3}, [(A("atomic"), True)])
    assert term_equal(result, (ERROR, (A("validation_failed"), {"b": LOCKED})))
    assert term_equal(snapshot(client), before)


# import_variables --------------------------------------------------------------------------------


def test_import_over_a_variable_being_optimized_is_refused(client):
    client.call("create_session", "s1")
    client.call("register_variable", "s1", "x", A("integer"), 1)
    (exported,) = ok_value(client.call("export_variables", "s1"))
    assert client.call("start_optimization", "s1", "x", "opt", None) is OK
    new = {A("id"): "var_n_1", A("name"): "n", A("type"): A("integer"), A("value"): 5, A("created_at"): 0}
    before = snapshot(client)
    assert client.call("import_variables", "s1", [new, exported]) == (ERROR, (LOCKED, exported[A("id")]))
    assert client.call("has_variable?", "s1", "n") is False
    assert term_equal(snapshot(client), before)


# which calls touch a session ---------------------------------------------------------------------

IMPORTED = {A("id"): "var_imp_1", A("name"): "imp", A("type"): A("integer"), A("value"): 1, A("created_at"): 0}

TOUCHES = [
    ("get_session", ["s1"], True),
    ("get_program", ["s1", "p"], True),
    ("get_program", ["s1", "missing"], False),  # beyond: an error answer changes nothing
    ("get_variable", ["s1", "x"], True),
    ("get_variable", ["s1", "missing"], False),
    ("get_variable_value", ["s1", "x"], True),
    ("get_variable_value", ["s1", "missing"], False),
    ("has_variable?", ["s1", "x"], True),
    ("has_variable?", ["s1", "missing"], False),
    ("get_variables", ["s1", ["missing"]], True),
    ("update_variables", ["s1", {"x": "bad"}], True),
    ("update_variables", ["s1", {"x": "bad"}, [(A("atomic"), True)]], False),
    ("store_program", ["s1", "q", 1], True),
    ("update_program", ["s1", "p", 2], True),
    ("register_variable", ["s1", "y", A("integer"), 1], True),
    ("update_variable", ["s1", "x", 2], True),
    ("update_variable", ["s1", "x", "bad"], False),
    ("delete_variable", ["s1", "x"], True),
    ("import_variables", ["s1", [IMPORTED]], True),
    ("import_variables", ["s1", []], False),
    ("store_worker_session", ["s1", "w1"], True),
    ("start_optimization", ["s1", "x", "opt", None], True),
    ("end_optimization", ["s1", "x"], False),  # no optimizer held it: nothing changes
    ("create_session", ["s1"], False),
    ("session_exists?", ["s1"], False),
    ("list_variables", ["s1"], False),
    ("export_variables", ["s1"], False),
    ("fetch_session_for_update", ["s1"], False),
]


@pytest.mark.parametrize("function, args, touches", TOUCHES, ids=[f"{f}-{i}" for i, (f, _, _) in enumerate(TOUCHES)])
def test_which_calls_touch_the_session(client, function, args, touches):
    client.call("create_session", "s1")
    client.call("register_variable", "s1", "x", A("integer"), 1)
    client.call("store_program", "s1", "p", 1)
    before = snapshot(client)[1][A("last_accessed")]
    client.call("__advance_clock__", 100)
    client.call(function, *args)
    after = snapshot(client)[1][A("last_accessed")]
    if touches:
        assert after - before >= 100
    else:
        assert after == before
