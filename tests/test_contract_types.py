"""Contract rows for the eight types (docs/contract.md, "Types"), through
register_variable/update_variable and (with the subprocess client) over the wire: what each
accepts and stores, and each message, exactly."""

from __future__ import annotations

import pytest

from sidecar.terms import Atom as A
from sidecar.terms import term_equal

OK = A("ok")
ERROR = A("error")

# (type, given value, stored value)
ACCEPTS = [
    ("float", 1.5, 1.5),
    ("float", 2, 2.0),
    ("float", A("infinity"), A("infinity")),
    ("float", "-Infinity", A("negative_infinity")),
    ("float", "NaN", A("nan")),
    ("integer", 7, 7),
    ("integer", 3.0, 3),
    ("string", "héllo", "héllo"),
    ("string", A("atom_value"), "atom_value"),
    ("boolean", True, True),
    ("boolean", "false", False),
    ("boolean", 1, True),
    ("boolean", 0, False),
    ("choice", A("fast"), "fast"),
    ("module", A("Elixir.MyApp.Predict"), "Elixir.MyApp.Predict"),
    ("embedding", [1, 2.5, -3], [1.0, 2.5, -3.0]),
    ("tensor", {"shape": [2, 2], "data": [[1, 2], [3, 4]]}, {"shape": [2, 2], "data": [[1, 2], [3, 4]]}),
]

# (type, value, message)
REJECTS = [
    ("float", "abc", "must be a number"),
    ("float", True, "must be a number"),
    ("integer", 1.5, "must be a whole number, got 1.5"),
    ("integer", True, "must be an integer"),
    ("integer", "1", "must be an integer"),
    ("string", None, "cannot be nil"),
    ("string", 12, "must be a string"),
    ("boolean", "yes", "must be a boolean (true or false)"),
    ("boolean", 2, "must be a boolean (true or false)"),
    ("choice", 1, "must be a string"),
    ("module", 1, "must be a module name"),
    ("embedding", [1, "x"], "must be a list of numbers"),
    ("embedding", 5, "must be a numeric list"),
    ("tensor", {"shape": [2, 2], "data": [1, 2, 3]}, "data size doesn't match shape"),
    ("tensor", [1, 2], "must be a tensor with shape and data"),
]

# (type, value, constraints, message)
VIOLATIONS = [
    ("float", 0.5, {A("min"): 1.0}, "value 0.5 is below minimum 1.0"),
    ("float", 1.0e-6, {A("min"): 1.0e-5}, "value 1.0e-6 is below minimum 1.0e-5"),
    ("integer", 101, {A("max"): 100}, "value 101 is above maximum 100"),
    ("string", "ab", {A("min_length"): 3}, "must be at least 3 characters, got 2"),
    ("string", "abcd", {A("max_length"): 3}, "must be at most 3 characters, got 4"),
    ("string", "abc", {A("pattern"): "^x"}, "must match pattern: ^x"),
    ("string", "c", {A("enum"): ["a", "b"]}, "must be one of: a, b"),
    ("choice", "c", {A("choices"): ["a", "b"]}, "must be one of: a, b"),
    ("module", "C", {A("allowed_modules"): ["A", "B"]}, "must be one of the allowed modules: A, B"),
    ("embedding", [1.0], {A("dimensions"): 2}, "must have exactly 2 dimensions"),
    ("tensor", {"shape": [3], "data": [1, 2, 3]}, {A("shape"): [2, 3]}, "shape must be [2, 3]"),
]


@pytest.fixture
def session(client):
    assert client.call("create_session", "s1")[0] is OK
    return client


@pytest.mark.parametrize("type_name, given, stored", ACCEPTS)
def test_accepted_values_are_stored_coerced(session, type_name, given, stored):
    result = session.call("register_variable", "s1", "v", A(type_name), given)
    assert result[0] is OK, result
    assert term_equal(session.call("get_variable_value", "s1", "v"), stored)


@pytest.mark.parametrize("type_name, given, message", REJECTS)
def test_rejected_values_give_the_message(session, type_name, given, message):
    assert session.call("register_variable", "s1", "v", A(type_name), given) == (ERROR, message)
    assert session.call("has_variable?", "s1", "v") is False


@pytest.mark.parametrize("type_name, value, constraints, message", VIOLATIONS)
def test_constraint_violations_give_the_message(session, type_name, value, constraints, message):
    result = session.call("register_variable", "s1", "v", A(type_name), value, [(A("constraints"), constraints)])
    assert result == (ERROR, message)


def test_special_floats_skip_min_and_max(session):
    constraints = [(A("constraints"), {A("min"): 0.0, A("max"): 1.0})]
    assert session.call("register_variable", "s1", "v", A("float"), A("infinity"), constraints)[0] is OK
    assert session.call("update_variable", "s1", "v", "-Infinity") is OK
    assert session.call("get_variable_value", "s1", "v") is A("negative_infinity")


def test_unknown_type_is_returned_as_given(session):
    assert session.call("register_variable", "s1", "v", A("decimal"), 1) == (ERROR, (A("unknown_type"), A("decimal")))
    assert session.call("register_variable", "s1", "v", 42, 1) == (ERROR, (A("unknown_type"), 42))
