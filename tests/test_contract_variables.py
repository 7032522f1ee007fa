"""Contract rows for variables (docs/contract.md, "Variables"): register/get/update/delete/has/list
(patterns), batch calls, export -> import round trips, bad imports, and the optimization lock."""

from __future__ import annotations

import re

from sidecar.terms import Atom as A
from sidecar.terms import term_equal

OK = A("ok")
ERROR = A("error")
NOT_FOUND = (ERROR, A("not_found"))
SESSION_NOT_FOUND = (ERROR, A("session_not_found"))
LOCKED = (ERROR, A("variable_locked_for_optimization"))
VARIABLE = A("Elixir.Snakepit.Bridge.Variables.Variable")
ISO8601 = re.compile(r"\A\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z\Z")
NOT_OPTIMIZING = {A("optimizing"): False, A("optimizer_id"): None, A("optimizer_pid"): None, A("started_at"): None}


def ok_value(result):
    assert type(result) is tuple and result[0] is OK, result
    return result[1]


def f(struct, name):
    return struct[A(name)]


def session_with(client, sid="s1"):
    return ok_value(client.call("create_session", sid))


def register(client, name, type_, value, opts=None, sid="s1"):
    args = ["register_variable", sid, name, type_, value] + ([opts] if opts is not None else [])
    return ok_value(client.call(*args))


def variable(client, ident, sid="s1"):
    return ok_value(client.call("get_variable", sid, ident))


def session_stats(client, sid="s1"):
    return ok_value(client.call("get_session", sid))[A("stats")]


# register_variable ----------------------------------------------------------------------------


def test_register_returns_a_var_id_with_a_unique_positive_integer(client):
    session_with(client)
    ids = [register(client, A("temp"), A("float"), 0.5) for _ in range(3)]
    ids.append(register(client, "other", A("integer"), 1))
    assert len(set(ids)) == 4
    for var_id, name in zip(ids, ["temp", "temp", "temp", "other"]):
        assert type(var_id) is str
        match = re.fullmatch(rf"var_{name}_(\d+)", var_id)
        assert match and int(match.group(1)) > 0, var_id


def test_registered_variable_struct(client):
    created = session_with(client)
    var_id = register(client, A("temperature"), A("float"), 1, [(A("constraints"), {A("min"): 0.0, A("max"): 2.0})])
    var = variable(client, var_id)
    assert {key.name for key in var} == {
        "__struct__", "id", "name", "type", "value", "constraints", "metadata", "version",
        "created_at", "last_updated_at", "optimization_status", "access_rules",
    }  # fmt: skip
    assert f(var, "__struct__") is VARIABLE
    assert f(var, "id") == var_id
    assert f(var, "name") is A("temperature")
    assert f(var, "type") is A("float")
    assert type(f(var, "value")) is float and f(var, "value") == 1.0
    assert term_equal(f(var, "constraints"), {A("min"): 0.0, A("max"): 2.0})
    assert term_equal(f(var, "metadata"), {"source": "elixir", "created_by": "session_store"})
    assert f(var, "version") == 0 and type(f(var, "version")) is int
    assert f(var, "created_at") == f(var, "last_updated_at")
    assert 0 <= f(var, "created_at") - f(created, "created_at") <= 2
    assert term_equal(f(var, "optimization_status"), NOT_OPTIMIZING)
    assert f(var, "access_rules") == []


def test_names_are_kept_as_registered(client):
    session_with(client)
    register(client, A("as_atom"), A("string"), "a")
    register(client, "as_binary", A("string"), "b")
    assert f(variable(client, "as_atom"), "name") is A("as_atom")
    assert type(f(variable(client, A("as_binary")), "name")) is str


def test_type_given_as_a_string_is_stored_as_the_atom(client):
    session_with(client)
    register(client, "n", "integer", 3)
    assert f(variable(client, "n"), "type") is A("integer")


def test_register_metadata_and_description(client):
    session_with(client)
    register(client, "a", A("string"), "x", [(A("description"), "the a"), (A("metadata"), {"owner": "me"})])
    assert term_equal(
        f(variable(client, "a"), "metadata"),
        {"source": "elixir", "created_by": "session_store", "description": "the a", "owner": "me"},
    )
    # opts as a map; given metadata wins over the defaults
    register(client, "b", A("string"), "y", {A("metadata"): {"source": "python"}})
    assert term_equal(f(variable(client, "b"), "metadata"), {"source": "python", "created_by": "session_store"})


def test_register_errors_change_nothing(client):
    assert client.call("register_variable", "nope", "x", A("float"), 1.0) == SESSION_NOT_FOUND
    session_with(client)
    assert client.call("register_variable", "s1", "x", A("complex"), 1.0) == (ERROR, (A("unknown_type"), A("complex")))
    assert client.call("register_variable", "s1", "x", "complex", 1.0) == (ERROR, (A("unknown_type"), "complex"))
    assert client.call("register_variable", "s1", "x", A("float"), "abc") == (ERROR, "must be a number")
    assert client.call("register_variable", "s1", "x", A("integer"), 10, [(A("constraints"), {A("max"): 5})]) == (
        ERROR,
        "value 10 is above maximum 5",
    )
    assert client.call("has_variable?", "s1", "x") is False
    stats = session_stats(client)
    assert stats[A("variable_count")] == 0 and stats[A("total_variable_updates")] == 0


def test_register_with_an_existing_name_points_the_index_at_the_new_variable(client):
    session_with(client)
    first = register(client, "x", A("integer"), 1)
    second = register(client, "x", A("integer"), 2)
    assert client.call("get_variable_value", "s1", "x") == 2
    assert client.call("get_variable_value", "s1", first) == 1
    index = ok_value(client.call("get_session", "s1"))[A("variable_index")]
    assert index == {"x": second}


# get_variable / get_variable_value / has_variable? ----------------------------------------------


def test_get_variable_by_id_then_by_name_in_either_form(client):
    session_with(client)
    var_id = register(client, A("t"), A("integer"), 7)
    for ident in (var_id, A(var_id), "t", A("t")):
        assert f(variable(client, ident), "id") == var_id


def test_get_variable_missing(client):
    assert client.call("get_variable", "nope", "t") == SESSION_NOT_FOUND
    session_with(client)
    assert client.call("get_variable", "s1", "t") == NOT_FOUND


def test_get_variable_touches_the_session(client):
    created = session_with(client)
    register(client, "t", A("integer"), 7)
    client.call("__advance_clock__", 9)
    variable(client, "t")
    touched = ok_value(client.call("fetch_session_for_update", "s1"))
    assert f(touched, "last_accessed") - f(created, "last_accessed") >= 9


def test_get_variable_value(client):
    session_with(client)
    register(client, "t", A("float"), 2)
    assert client.call("get_variable_value", "s1", "t") == 2.0
    assert type(client.call("get_variable_value", "s1", A("t"))) is float
    assert client.call("get_variable_value", "s1", "missing") is None
    assert client.call("get_variable_value", "s1", "missing", A("dflt")) is A("dflt")
    assert client.call("get_variable_value", "nope", "t", 5) == 5
    assert client.call("get_variable_value", "s1", {A("not"): "an ident"}, 6) == 6


def test_has_variable(client):
    assert client.call("has_variable?", "nope", "t") is False
    session_with(client)
    var_id = register(client, "t", A("boolean"), True)
    assert client.call("has_variable?", "s1", "t") is True
    assert client.call("has_variable?", "s1", var_id) is True
    assert client.call("has_variable?", "s1", "u") is False


# update_variable ---------------------------------------------------------------------------------


def test_update_variable_bumps_version_and_merges_metadata(client):
    session_with(client)
    register(client, "t", A("float"), 0.5, [(A("metadata"), {"keep": 1, "over": "old"})])
    before = variable(client, "t")
    client.call("__advance_clock__", 3)
    assert client.call("update_variable", "s1", "t", 1, {"over": "new", "extra": A("x")}) is OK
    after = variable(client, "t")
    assert type(f(after, "value")) is float and f(after, "value") == 1.0
    assert f(after, "version") == 1
    assert f(after, "last_updated_at") - f(before, "last_updated_at") >= 3
    assert f(after, "created_at") == f(before, "created_at")
    metadata = f(after, "metadata")
    assert ISO8601.match(metadata.pop("updated_at"))
    assert term_equal(
        metadata,
        {"source": "elixir", "created_by": "session_store", "keep": 1, "over": "new", "extra": A("x")},
    )


def test_update_variable_source_comes_from_the_given_metadata(client):
    session_with(client)
    register(client, "t", A("integer"), 1)
    client.call("update_variable", "s1", "t", 2, {"source": "python"})
    assert f(variable(client, "t"), "metadata")["source"] == "python"
    client.call("update_variable", "s1", "t", 3)
    assert f(variable(client, "t"), "metadata")["source"] == "elixir"
    assert f(variable(client, "t"), "version") == 2


def test_update_variable_errors_change_nothing(client):
    assert client.call("update_variable", "nope", "t", 1) == SESSION_NOT_FOUND
    session_with(client)
    assert client.call("update_variable", "s1", "t", 1) == NOT_FOUND
    register(client, "t", A("integer"), 1, [(A("constraints"), {A("min"): 0})])
    before = variable(client, "t")
    assert client.call("update_variable", "s1", "t", 1.5) == (ERROR, "must be a whole number, got 1.5")
    assert client.call("update_variable", "s1", "t", "1") == (ERROR, "must be an integer")
    assert client.call("update_variable", "s1", "t", -3) == (ERROR, "value -3 is below minimum 0")
    assert term_equal(variable(client, "t"), before)


def test_total_variable_updates_counts_registrations_and_updates(client):
    session_with(client)
    register(client, "a", A("integer"), 1)
    register(client, "b", A("integer"), 1)
    client.call("update_variable", "s1", "a", 2)
    client.call("update_variable", "s1", "a", "bad")
    stats = session_stats(client)
    assert stats[A("total_variable_updates")] == 3
    assert stats[A("variable_count")] == 2


# delete_variable ----------------------------------------------------------------------------------


def test_delete_variable(client):
    assert client.call("delete_variable", "nope", "t") == SESSION_NOT_FOUND
    session_with(client)
    register(client, "t", A("integer"), 1)
    register(client, "u", A("integer"), 1)
    assert client.call("delete_variable", "s1", A("t")) is OK
    assert client.call("delete_variable", "s1", "t") == NOT_FOUND
    assert client.call("has_variable?", "s1", "t") is False
    session = ok_value(client.call("get_session", "s1"))
    assert list(session[A("variable_index")]) == ["u"]
    assert session[A("stats")][A("variable_count")] == 1


def test_deleting_an_older_variable_keeps_the_name_pointing_at_the_newer(client):
    session_with(client)
    older = register(client, "x", A("integer"), 1)
    register(client, "x", A("integer"), 2)
    assert client.call("delete_variable", "s1", older) is OK
    assert client.call("get_variable_value", "s1", "x") == 2


# list_variables -------------------------------------------------------------------------------------


def test_list_variables_in_registration_order(client):
    assert client.call("list_variables", "nope") == SESSION_NOT_FOUND
    session_with(client)
    names = ["zeta", "alpha", "mid", "beta", "omega"]  # all in the same second
    for name in names:
        register(client, name, A("integer"), 1)
    listed = ok_value(client.call("list_variables", "s1"))
    assert [f(var, "name") for var in listed] == names
    assert all(f(var, "__struct__") is VARIABLE for var in listed)


def test_list_variables_with_a_pattern(client):
    session_with(client)
    for name in ("temp_cpu", "my_temp_x", "tempo", "pressure"):
        register(client, name, A("integer"), 1)
    register(client, A("temp_atom"), A("integer"), 1)
    listed = ok_value(client.call("list_variables", "s1", "temp_*"))
    assert [f(var, "name") for var in listed] == ["temp_cpu", "my_temp_x", A("temp_atom")]
    assert ok_value(client.call("list_variables", "s1", "^temp")) != []
    assert [f(var, "name") for var in ok_value(client.call("list_variables", "s1", "^pres*"))] == ["pressure"]
    assert ok_value(client.call("list_variables", "s1", "nothing*")) == []


def test_list_variables_with_an_invalid_pattern_is_a_clear_error(client):
    session_with(client)
    register(client, "a", A("integer"), 1)
    assert client.call("list_variables", "s1", "a(*") == (ERROR, (A("invalid_pattern"), "a(*"))
    assert client.call("has_variable?", "s1", "a") is True


# get_variables / update_variables ------------------------------------------------------------------


def test_get_variables(client):
    assert client.call("get_variables", "nope", ["a"]) == SESSION_NOT_FOUND
    session_with(client)
    a_id = register(client, A("a"), A("integer"), 1)
    register(client, "b", A("integer"), 2)
    result = ok_value(client.call("get_variables", "s1", [A("a"), "zz", "b", a_id, A("yy")]))
    assert set(result) == {A("found"), A("missing")}
    found = result[A("found")]
    assert set(found) == {"a", "b", a_id} and all(type(key) is str for key in found)
    assert f(found["a"], "value") == 1 and f(found[a_id], "value") == 1 and f(found["b"], "value") == 2
    assert result[A("missing")] == ["zz", "yy"]


def test_update_variables_non_atomic_applies_the_valid_ones(client):
    assert client.call("update_variables", "nope", {"a": 1}) == SESSION_NOT_FOUND
    session_with(client)
    register(client, A("a"), A("integer"), 1)
    register(client, "b", A("string"), "x", [(A("constraints"), {A("max_length"): 3})])
    result = ok_value(client.call("update_variables", "s1", {A("a"): 5, "b": "toolong", "c": 1}))
    assert term_equal(
        result,
        {"a": OK, "b": (ERROR, "must be at most 3 characters, got 7"), "c": (ERROR, A("not_found"))},
    )
    assert client.call("get_variable_value", "s1", "a") == 5
    assert client.call("get_variable_value", "s1", "b") == "x"


def test_update_variables_atomic_success(client):
    session_with(client)
    register(client, "a", A("integer"), 1)
    register(client, "b", A("float"), 1.0)
    result = ok_value(
        client.call("update_variables", "s1", {"a": 2, "b": 3}, [(A("atomic"), True), (A("metadata"), {"source": "opt"})])
    )
    assert term_equal(result, {"a": OK, "b": OK})
    b = variable(client, "b")
    assert f(b, "value") == 3.0 and type(f(b, "value")) is float and f(b, "version") == 1
    assert f(b, "metadata")["source"] == "opt"


def test_update_variables_atomic_failure_changes_nothing(client):
    session_with(client)
    register(client, "a", A("integer"), 1)
    register(client, "b", A("float"), 1.0, [(A("constraints"), {A("max"): 2.0})])
    before = ok_value(client.call("fetch_session_for_update", "s1"))
    result = client.call("update_variables", "s1", {"a": 2, "b": 5.5, "c": 1}, {A("atomic"): True})
    assert term_equal(
        result,
        (ERROR, (A("validation_failed"), {"b": "value 5.5 is above maximum 2.0", "c": A("not_found")})),
    )
    after = ok_value(client.call("fetch_session_for_update", "s1"))
    assert term_equal(after[A("variables")], before[A("variables")])
    assert term_equal(after[A("stats")], before[A("stats")])


# export / import ----------------------------------------------------------------------------------


def test_export_variables(client):
    assert client.call("export_variables", "nope") == SESSION_NOT_FOUND
    session_with(client)
    var_id = register(client, A("t"), A("float"), 0.5, [(A("constraints"), {A("min"): 0.0})])
    exported = ok_value(client.call("export_variables", "s1"))
    assert len(exported) == 1
    (entry,) = exported
    assert {key.name for key in entry} == {
        "id", "name", "type", "value", "constraints", "metadata", "version", "created_at", "last_updated_at",
    }  # fmt: skip
    assert entry[A("id")] == var_id
    assert entry[A("name")] == "t" and type(entry[A("name")]) is str
    assert entry[A("type")] is A("float") and entry[A("value")] == 0.5


def test_export_import_round_trip_into_a_fresh_session(client):
    session_with(client, "src")
    register(client, A("t"), A("float"), 0.5, sid="src")
    register(client, "n", A("integer"), 3, [(A("constraints"), {A("max"): 10})], sid="src")
    register(client, "e", A("embedding"), [1, 2.5], sid="src")
    client.call("update_variable", "src", "n", 4)
    exported = ok_value(client.call("export_variables", "src"))
    session_with(client, "dst")
    assert client.call("import_variables", "dst", exported) == (OK, 3)
    assert term_equal(ok_value(client.call("export_variables", "dst")), exported)
    assert client.call("get_variable_value", "dst", "n") == 4
    assert client.call("update_variable", "dst", "n", 11) == (ERROR, "value 11 is above maximum 10")
    assert session_stats(client, "dst")[A("variable_count")] == 3


def test_import_accepts_string_keys(client):
    session_with(client)
    maps = [{"id": "var_k_1", "name": "k", "type": "integer", "value": 1, "created_at": 0}]
    assert client.call("import_variables", "s1", maps) == (OK, 1)
    var = variable(client, "k")
    assert f(var, "type") is A("integer") and f(var, "last_updated_at") == 0 and f(var, "version") == 0


def test_import_of_a_bad_map_imports_nothing(client):
    session_with(client)
    good = {A("id"): "var_g_1", A("name"): "g", A("type"): A("integer"), A("value"): 1, A("created_at"): 0}
    bads = [
        {key: value for key, value in good.items() if key is not A("created_at")},
        {key: value for key, value in good.items() if key is not A("id")},
        {**good, A("type"): A("nope")},
        {**good, A("value"): "not an integer"},
        {**good, A("version"): "1"},
        "not a map",
    ]
    for bad in bads:
        result = client.call("import_variables", "s1", [good, bad])
        assert result[0] is ERROR, bad
        reason = result[1]
        assert reason[0] is A("invalid_variable") and reason[1] == 1 and type(reason[2]) is str, reason
    assert client.call("has_variable?", "s1", "g") is False
    assert ok_value(client.call("list_variables", "s1")) == []
    assert client.call("import_variables", "nope", [good]) == SESSION_NOT_FOUND


def test_new_ids_never_collide_with_imported_ones(client):
    session_with(client)
    big = {A("id"): "var_x_999999", A("name"): "x", A("type"): A("integer"), A("value"): 1, A("created_at"): 0}
    assert client.call("import_variables", "s1", [big]) == (OK, 1)
    new_id = register(client, "x", A("integer"), 2)
    assert new_id != "var_x_999999"
    assert int(new_id.rsplit("_", 1)[1]) > 999999
    assert client.call("get_variable_value", "s1", "var_x_999999") == 1


# optimization lock ----------------------------------------------------------------------------------


def test_optimization_lock(client):
    session_with(client)
    register(client, "t", A("float"), 0.5)
    assert client.call("start_optimization", "s1", "t", "opt-1", A("fake_pid")) is OK
    status = f(variable(client, "t"), "optimization_status")
    assert status[A("optimizing")] is True and status[A("optimizer_id")] == "opt-1"
    assert status[A("optimizer_pid")] is A("fake_pid") and type(status[A("started_at")]) is int
    assert client.call("start_optimization", "s1", "t", "opt-2", None) == (ERROR, A("already_optimizing"))
    assert client.call("update_variable", "s1", "t", 0.7) == LOCKED
    assert client.call("delete_variable", "s1", "t") == LOCKED
    assert ok_value(client.call("update_variables", "s1", {"t": 0.7}))["t"] == LOCKED
    assert client.call("get_variable_value", "s1", "t") == 0.5
    assert client.call("end_optimization", "s1", "t") is OK
    assert term_equal(f(variable(client, "t"), "optimization_status"), NOT_OPTIMIZING)
    assert client.call("update_variable", "s1", "t", 0.7) is OK


def test_a_locked_variable_still_reports_an_invalid_value_first(client):
    session_with(client)
    register(client, "t", A("float"), 0.5)
    client.call("start_optimization", "s1", "t", "opt", None)
    assert client.call("update_variable", "s1", "t", "nan?") == (ERROR, "must be a number")


def test_optimization_calls_on_missing_things(client):
    assert client.call("start_optimization", "nope", "t", "o", None) == SESSION_NOT_FOUND
    assert client.call("end_optimization", "nope", "t") == SESSION_NOT_FOUND
    session_with(client)
    assert client.call("start_optimization", "s1", "t", "o", None) == NOT_FOUND
    assert client.call("end_optimization", "s1", "t") == NOT_FOUND


def test_import_with_an_enormous_id_number_does_not_break_the_counter(client):
    session_with(client)
    huge_id = "var_h_" + "9" * 5000
    huge = {A("id"): huge_id, A("name"): "h", A("type"): A("integer"), A("value"): 1, A("created_at"): 0}
    assert client.call("import_variables", "s1", [huge]) == (OK, 1)
    new_id = register(client, "h", A("integer"), 2)
    assert new_id != huge_id and client.call("get_variable_value", "s1", huge_id) == 1
