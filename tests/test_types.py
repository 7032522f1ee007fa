"""Tests for sidecar.store.types: the Types tables of docs/contract.md, row by row and message by
message."""

from __future__ import annotations

import math
import shutil
import subprocess
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar.elixir.format import format_number
from sidecar.store import types
from sidecar.store.types import (
    ConstraintViolation,
    UnknownType,
    ValidationFailed,
    ValueRejected,
    check_constraints,
    coerce,
    compile_pattern,
    grapheme_length,
    pattern_from_term,
    resolve_type,
    validate,
)
from sidecar.terms import Atom, BitString, ImproperList, term_equal

A = Atom
FLOAT, INTEGER, STRING, BOOLEAN = A("float"), A("integer"), A("string"), A("boolean")
CHOICE, MODULE, EMBEDDING, TENSOR = A("choice"), A("module"), A("embedding"), A("tensor")


def regex_struct(source: Any, opts: Any = "") -> dict:
    return {
        A("__struct__"): A("Elixir.Regex"),
        A("source"): source,
        A("opts"): opts,
        A("re_pattern"): (A("re_pattern"), 0),
    }


def rejection(call, *args: Any) -> ValueRejected:
    with pytest.raises(ValueRejected) as caught:
        call(*args)
    return caught.value


# ---------------------------------------------------------------------------------------------
# resolve_type


@pytest.mark.parametrize("name", types.TYPE_NAMES)
def test_resolve_type_accepts_atom_and_string(name: str) -> None:
    assert resolve_type(A(name)) is A(name)
    assert resolve_type(name) is A(name)


@pytest.mark.parametrize("bad", [A("floaty"), "Float", b"float", None, True, 1, [A("float")], A("Elixir.Float")])
def test_unknown_type_carries_the_type_as_given(bad: Any) -> None:
    with pytest.raises(UnknownType) as caught:
        resolve_type(bad)
    assert term_equal(caught.value.type, bad)
    with pytest.raises(UnknownType):
        coerce(bad, 1)
    with pytest.raises(UnknownType):
        check_constraints(bad, 1, {})


def test_unknown_type_is_not_a_value_rejection() -> None:
    assert not issubclass(UnknownType, ValueRejected)
    assert issubclass(ValidationFailed, ValueRejected) and issubclass(ConstraintViolation, ValueRejected)


# ---------------------------------------------------------------------------------------------
# coercion: accepted inputs (type, input, stored)

ACCEPTED = [
    (FLOAT, 1.5, 1.5),
    (FLOAT, 2, 2.0),
    (FLOAT, -0.0, -0.0),
    (FLOAT, A("infinity"), A("infinity")),
    (FLOAT, A("negative_infinity"), A("negative_infinity")),
    (FLOAT, A("nan"), A("nan")),
    (FLOAT, "Infinity", A("infinity")),
    (FLOAT, "-Infinity", A("negative_infinity")),
    (FLOAT, "NaN", A("nan")),
    (FLOAT, math.inf, A("infinity")),
    (INTEGER, 42, 42),
    (INTEGER, 10**40, 10**40),
    (INTEGER, 3.0, 3),
    (INTEGER, -0.0, 0),
    (INTEGER, 1.0e20, 100000000000000000000),
    (STRING, "héllo", "héllo"),
    (STRING, "", ""),
    (STRING, b"\xff\xfe", b"\xff\xfe"),
    (STRING, A("temp"), "temp"),
    (STRING, True, "true"),
    (STRING, False, "false"),
    (STRING, A("Elixir.Foo"), "Elixir.Foo"),
    (BOOLEAN, True, True),
    (BOOLEAN, False, False),
    (BOOLEAN, "true", True),
    (BOOLEAN, "false", False),
    (BOOLEAN, 1, True),
    (BOOLEAN, 0, False),
    (CHOICE, "fast", "fast"),
    (CHOICE, A("fast"), "fast"),
    (CHOICE, None, ""),
    (CHOICE, b"\xff", b"\xff"),
    (MODULE, "Elixir.Foo", "Elixir.Foo"),
    (MODULE, A("Elixir.DSPex.Predict"), "Elixir.DSPex.Predict"),
    (EMBEDDING, [1, 2.5, -3], [1.0, 2.5, -3.0]),
    (EMBEDDING, [], []),
    (TENSOR, {"shape": [2, 3], "data": [[1, 2, 3], [4, 5, 6]]}, {"shape": [2, 3], "data": [[1, 2, 3], [4, 5, 6]]}),
    (TENSOR, {"shape": [], "data": [7]}, {"shape": [], "data": [7]}),
    (TENSOR, {"shape": [2, 0], "data": [[], []]}, {"shape": [2, 0], "data": [[], []]}),
    (TENSOR, {"shape": [2.0], "data": [1, 2], "dtype": "f32"}, {"shape": [2.0], "data": [1, 2], "dtype": "f32"}),
]


@pytest.mark.parametrize("type_atom, given_value, stored", ACCEPTED)
def test_accepted_values_are_stored_as_the_contract_says(type_atom: Atom, given_value: Any, stored: Any) -> None:
    result = coerce(type_atom, given_value)
    assert term_equal(result, stored), (result, stored)
    assert term_equal(coerce(type_atom.name, given_value), stored)  # the string form works too


def test_coerced_float_keeps_negative_zero_sign() -> None:
    assert math.copysign(1.0, coerce(FLOAT, -0.0)) == -1.0


# coercion: rejected inputs (type, input, message)
REJECTED = [
    (FLOAT, True, "must be a number"),
    (FLOAT, False, "must be a number"),
    (FLOAT, None, "must be a number"),
    (FLOAT, "1.5", "must be a number"),
    (FLOAT, "infinity", "must be a number"),
    (FLOAT, A("inf"), "must be a number"),
    (FLOAT, [1.0], "must be a number"),
    (FLOAT, 10**400, "must be a number"),
    (INTEGER, 1.5, "must be a whole number, got 1.5"),
    (INTEGER, -0.25, "must be a whole number, got -0.25"),
    (INTEGER, 1.0e-5, "must be a whole number, got 1.0e-5"),
    (INTEGER, 1234.5, "must be a whole number, got 1234.5"),
    (INTEGER, True, "must be an integer"),
    (INTEGER, "3", "must be an integer"),
    (INTEGER, None, "must be an integer"),
    (INTEGER, A("infinity"), "must be an integer"),
    (INTEGER, math.inf, "must be an integer"),
    (STRING, None, "cannot be nil"),
    (STRING, 1, "must be a string"),
    (STRING, 1.5, "must be a string"),
    (STRING, ["a"], "must be a string"),
    (STRING, (A("ok"), "a"), "must be a string"),
    (STRING, BitString(b"\x80", 1), "must be a string"),
    (BOOLEAN, "yes", "must be a boolean (true or false)"),
    (BOOLEAN, 2, "must be a boolean (true or false)"),
    (BOOLEAN, 1.0, "must be a boolean (true or false)"),
    (BOOLEAN, None, "must be a boolean (true or false)"),
    (BOOLEAN, A("true_ish"), "must be a boolean (true or false)"),
    (BOOLEAN, "TRUE", "must be a boolean (true or false)"),
    (CHOICE, 1, "must be a string"),
    (CHOICE, ["a"], "must be a string"),
    (MODULE, 1, "must be a module name"),
    (MODULE, {"a": 1}, "must be a module name"),
    (EMBEDDING, [1, True], "must be a list of numbers"),
    (EMBEDDING, [1, "2"], "must be a list of numbers"),
    (EMBEDDING, [1, A("nan")], "must be a list of numbers"),
    (EMBEDDING, [[1.0]], "must be a list of numbers"),
    (EMBEDDING, ImproperList([1.0], 2.0), "must be a list of numbers"),
    (EMBEDDING, [10**400], "must be a list of numbers"),
    (EMBEDDING, 1.0, "must be a numeric list"),
    (EMBEDDING, "1,2", "must be a numeric list"),
    (EMBEDDING, None, "must be a numeric list"),
    (TENSOR, {"shape": [2, 3], "data": [1, 2, 3]}, "data size doesn't match shape"),
    (TENSOR, {"shape": [2], "data": [[1, 2], [3]]}, "data size doesn't match shape"),
    (TENSOR, {"shape": [2, 3]}, "must be a tensor with shape and data"),
    (TENSOR, {A("shape"): [1], A("data"): [1]}, "must be a tensor with shape and data"),
    (TENSOR, {"shape": 2, "data": [1, 2]}, "must be a tensor with shape and data"),
    (TENSOR, {"shape": [2], "data": (1, 2)}, "must be a tensor with shape and data"),
    (TENSOR, {"shape": [A("x")], "data": [1]}, "must be a tensor with shape and data"),
    (TENSOR, {"shape": [True], "data": [1]}, "must be a tensor with shape and data"),
    (TENSOR, {"shape": [1], "data": [ImproperList([1], 2)]}, "must be a tensor with shape and data"),
    (TENSOR, [2, 3], "must be a tensor with shape and data"),
    (TENSOR, None, "must be a tensor with shape and data"),
]


@pytest.mark.parametrize("type_atom, given_value, message", REJECTED)
def test_rejected_values_give_the_contract_message(type_atom: Atom, given_value: Any, message: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        coerce(type_atom, given_value)
    assert caught.value.message == message
    assert isinstance(caught.value.message, str)


# ---------------------------------------------------------------------------------------------
# constraints (type, value, constraints, message or None for pass)

SPEC = A("__spec__")  # a key no rule reads

CONSTRAINTS = [
    # float: min, then max; special values skip both
    (FLOAT, 1.5, {A("min"): 0.0, A("max"): 2.0}, None),
    (FLOAT, 0.0, {A("min"): 0.0}, None),
    (FLOAT, 3, {A("min"): 10}, "value 3.0 is below minimum 10"),
    (FLOAT, -0.5, {A("min"): 0.0}, "value -0.5 is below minimum 0.0"),
    (FLOAT, 2.5, {A("max"): 2.0}, "value 2.5 is above maximum 2.0"),
    (FLOAT, 1000.0, {A("max"): 100}, "value 1.0e3 is above maximum 100"),
    (FLOAT, 1.0e-6, {A("min"): 1.0e-5}, "value 1.0e-6 is below minimum 1.0e-5"),
    (FLOAT, -5.0, {A("min"): 0, A("max"): -10}, "value -5.0 is below minimum 0"),
    (FLOAT, A("infinity"), {A("max"): 1.0}, None),
    (FLOAT, A("negative_infinity"), {A("min"): 1.0}, None),
    (FLOAT, "NaN", {A("min"): 0.0, A("max"): 1.0}, None),
    (FLOAT, 5.0, {A("min"): None, A("max"): False}, None),
    (FLOAT, 5.0, {"min": 10.0, "max": 1.0}, None),  # string keys are not constraints
    (FLOAT, 5.0, {A("min"): "x"}, "value 5.0 is below minimum x"),  # term order: number < binary
    (FLOAT, 5.0, {A("max"): A("infinity")}, None),
    (FLOAT, 5.0, {A("min"): A("negative_infinity")}, "value 5.0 is below minimum negative_infinity"),
    # integer: same messages, integer values
    (INTEGER, 5, {A("min"): 0, A("max"): 10}, None),
    (INTEGER, -1, {A("min"): 0}, "value -1 is below minimum 0"),
    (INTEGER, 11, {A("max"): 10}, "value 11 is above maximum 10"),
    (INTEGER, 3.0, {A("max"): 2.5}, "value 3 is above maximum 2.5"),
    (INTEGER, 10**20, {A("max"): 1.0e19}, "value 100000000000000000000 is above maximum 1.0e19"),
    (INTEGER, 0, {A("min"): True}, "value 0 is below minimum true"),
    # string: min_length, max_length (graphemes), pattern, enum
    (STRING, "abc", {A("min_length"): 3, A("max_length"): 3}, None),
    (STRING, "ab", {A("min_length"): 3}, "must be at least 3 characters, got 2"),
    (STRING, "abcd", {A("max_length"): 3}, "must be at most 3 characters, got 4"),
    (STRING, "e\u0301e\u0301e\u0301", {A("max_length"): 3}, None),  # 3 graphemes, 6 code points
    (STRING, "\U0001f468\u200d\U0001f469\u200d\U0001f467", {A("max_length"): 1}, None),
    (STRING, "🇫🇷🇩🇪", {A("max_length"): 1}, "must be at most 1 characters, got 2"),
    (STRING, b"\xff\xfe", {A("min_length"): 3}, "must be at least 3 characters, got 2"),
    (STRING, "ab", {A("min_length"): 1, A("max_length"): 0}, "must be at most 0 characters, got 2"),
    (STRING, "", {A("min_length"): 1, A("pattern"): "x"}, "must be at least 1 characters, got 0"),
    (STRING, "abc", {A("min_length"): 2.5}, None),
    (STRING, "abc", {A("max_length"): A("big")}, None),
    (STRING, "hello", {A("pattern"): "^h.l+o$"}, None),
    (STRING, "hello", {A("pattern"): "ell"}, None),  # unanchored
    (STRING, "hello", {A("pattern"): "^x"}, "must match pattern: ^x"),
    (STRING, "a(b", {A("pattern"): "("}, None),  # invalid regex: matches literally
    (STRING, "ab", {A("pattern"): "("}, "must match pattern: ("),
    (STRING, "a[b", {A("pattern"): "[b"}, None),
    (STRING, "HELLO", {A("pattern"): regex_struct("^hello$", "i")}, None),
    (STRING, "HELLO", {A("pattern"): regex_struct("^hello$", [A("caseless")])}, None),
    (STRING, "HELLO", {A("pattern"): regex_struct("^hello$")}, "must match pattern: ^hello$"),
    (STRING, "ab", {A("pattern"): "x", A("min_length"): 5}, "must be at least 5 characters, got 2"),
    (STRING, "b", {A("enum"): ["a", A("b")]}, "must be one of: a, b"),  # atom never equals the binary
    (STRING, "a", {A("enum"): ["a", A("b")]}, None),
    (STRING, "zz", {A("enum"): []}, "must be one of: "),
    (STRING, "x", {A("pattern"): "^y", A("enum"): ["x"]}, "must match pattern: ^y"),
    (STRING, A("ok"), {A("enum"): ["ok"]}, None),  # coerced first
    # boolean: no constraints
    (BOOLEAN, True, {A("min"): 5, A("enum"): [False]}, None),
    # choice
    (CHOICE, "b", {A("choices"): ["a", "b"]}, None),
    (CHOICE, "c", {A("choices"): ["a", "b"]}, "must be one of: a, b"),
    (CHOICE, A("fast"), {A("choices"): [A("fast"), A("slow")]}, "must be one of: fast, slow"),
    (CHOICE, "anything", {A("choices"): []}, None),
    (CHOICE, "anything", {A("choices"): None}, None),
    (CHOICE, "anything", {}, None),
    # module
    (MODULE, "Elixir.Foo", {A("allowed_modules"): ["Elixir.Foo"]}, None),
    (
        MODULE,
        A("Elixir.Bar"),
        {A("allowed_modules"): [A("Elixir.Foo"), "Baz"]},
        "must be one of the allowed modules: Elixir.Foo, Baz",
    ),
    (MODULE, "X", {A("allowed_modules"): []}, None),
    # embedding
    (EMBEDDING, [1, 2, 3], {A("dimensions"): 3}, None),
    (EMBEDDING, [1, 2, 3], {A("dimensions"): 3.0}, None),  # `!=` is not strict
    (EMBEDDING, [1, 2], {A("dimensions"): 3}, "must have exactly 3 dimensions"),
    (EMBEDDING, [1], {A("dimensions"): True}, "must have exactly true dimensions"),
    (EMBEDDING, [1], {A("dimensions"): None}, None),
    # tensor
    (TENSOR, {"shape": [2, 3], "data": list(range(6))}, {A("shape"): [2, 3]}, None),
    (TENSOR, {"shape": [2, 3], "data": list(range(6))}, {A("shape"): [2.0, 3.0]}, None),
    (TENSOR, {"shape": [6], "data": list(range(6))}, {A("shape"): [2, 3]}, "shape must be [2, 3]"),
    (TENSOR, {"shape": [6], "data": list(range(6))}, {A("shape"): [3, 2.0]}, "shape must be [3, 2.0]"),
    (TENSOR, {"shape": [2], "data": [1, 2]}, {A("shape"): [65, 66]}, "shape must be 'AB'"),
    (TENSOR, {"shape": [2], "data": [1, 2]}, {A("shape"): (2,)}, "shape must be {2}"),
    # keys no rule reads are ignored
    (FLOAT, 1.0, {SPEC: 1}, None),
]


@pytest.mark.parametrize("type_atom, value, constraints, message", CONSTRAINTS)
def test_constraints_in_contract_order(type_atom: Atom, value: Any, constraints: dict, message: str | None) -> None:
    if message is None:
        assert check_constraints(type_atom, value, constraints) is None
        return
    with pytest.raises(ConstraintViolation) as caught:
        check_constraints(type_atom, value, constraints)
    assert caught.value.message == message


@pytest.mark.parametrize(
    "type_atom, value, constraints, message",
    [
        (STRING, "a", {A("pattern"): 5}, "invalid constraint pattern: 5"),
        (STRING, "a", {A("pattern"): A("x")}, "invalid constraint pattern: :x"),
        (STRING, "a", {A("enum"): "a"}, 'invalid constraint enum: "a"'),
        (CHOICE, "a", {A("choices"): {"a": 1}}, 'invalid constraint choices: %{"a" => 1}'),
        (MODULE, "a", {A("allowed_modules"): A("Elixir.Foo")}, "invalid constraint allowed_modules: Foo"),
        (FLOAT, 1.0, [(A("min"), 0)], "invalid constraints: expected a map, got [min: 0]"),
        (FLOAT, 1.0, "min", 'invalid constraints: expected a map, got "min"'),
    ],
)
def test_malformed_constraints_give_a_clear_error(type_atom: Atom, value: Any, constraints: Any, message: str) -> None:
    with pytest.raises(ConstraintViolation) as caught:
        check_constraints(type_atom, value, constraints)
    assert caught.value.message == message


def test_nil_constraints_mean_none() -> None:
    assert check_constraints(FLOAT, 1.0, None) is None


def test_check_constraints_on_a_value_not_of_the_type_fails_validation() -> None:
    with pytest.raises(ValidationFailed) as caught:
        check_constraints(INTEGER, "x", {A("min"): 0})
    assert caught.value.message == "must be an integer"


def test_validate_runs_coercion_then_constraints() -> None:
    assert validate("integer", 4.0, {A("max"): 5}) == 4
    assert rejection(validate, A("integer"), 4.5, {A("max"): 1}).message == "must be a whole number, got 4.5"
    assert rejection(validate, A("integer"), 6.0, {A("max"): 5}).message == "value 6 is above maximum 5"


# ---------------------------------------------------------------------------------------------
# graphemes and patterns


GRAPHEME_TABLE = [
    ("", 0),
    ("abc", 3),
    ("e\u0301", 1),
    ("\r\n", 1),
    ("한국어", 3),
    (b"a\xffb", 3),
    ("👍🏽", 1),
    ("🇫🇷🇩🇪", 2),
]


@pytest.mark.parametrize("text, length", GRAPHEME_TABLE)
def test_grapheme_length(text: str | bytes, length: int) -> None:
    assert grapheme_length(text) == length


PATTERN_TABLE = [
    ("^.$", "", "é", False),  # without `u` PCRE sees two bytes
    ("^.$", "u", "é", True),
    ("^..$", "", "é", True),
    ("\\w", "", "é", True),  # OTP PCRE tables: bytes of é are Latin-1 letters
    ("^\\w$", "", "é", False),
    ("\\w", "u", "é", True),
    ("a\\Z", "", "a\n", True),  # PCRE \Z: end or before a final newline
    ("a\\z", "", "a\n", False),
    ("\\Qa.b\\E", "", "a.b", True),
    ("\\Qa.b\\E", "", "axb", False),
    ("^a{,3}$", "", "aa", False),  # PCRE 8: `{,3}` is literal text
    ("^a{,3}$", "", "a{,3}", True),
    ("(?<n>a)\\k<n>", "", "aa", True),
    ("\\x{41}", "", "A", True),
    ("temp_.*", "", "my_temp_x", True),
    ("^temp_.*", "", "my_temp_x", False),
    ("[]a]", "", "]", True),
    ("[^]a]", "", "b", True),
    ("a++b", "", "aab", True),
    ("(?i)TEMP", "", "temp", True),
    ("x", "", b"\xffx", True),
    ("(?i)É", "", "é", False),
    ("(?i)É", "u", "é", True),
    ("^\\s$", "", "\u00a0", False),
    ("\\d", "", "²", False),
    ("^\\w\\W$", "", "×", True),  # bytes C3 97: a Latin-1 letter, then a control
    ("^[[:alpha:]]+$", "", "abc", True),
    ("(?x) a b # comment", "", "ab", True),
    ("(?s)a.b", "", "a\nb", True),
    ("a.b", "", "a\nb", False),
    ("(?m)^b", "", "a\nb", True),
]


@pytest.mark.parametrize("source, options, subject, matched", PATTERN_TABLE)
def test_compile_pattern_is_pcre_like(source: str, options: str, subject: str | bytes, matched: bool) -> None:
    pattern = compile_pattern(source, options)
    assert pattern is not None
    assert pattern.matches(subject) is matched


INVALID_SOURCES = ["(", "a)", "[a", "*", "\\x{110000}", "(?<n>a)\\k<m>", 5, None]


@pytest.mark.parametrize("source", INVALID_SOURCES)
def test_compile_pattern_none_when_invalid(source: Any) -> None:
    assert compile_pattern(source) is None


def test_pattern_from_term() -> None:
    literal = pattern_from_term("a(")
    assert literal is not None and literal.literal and literal.matches("xa(y") and not literal.matches("a")
    struct = pattern_from_term(regex_struct("^é$", "u"))
    assert struct is not None and struct.matches("é") and not struct.matches(b"\xff")
    assert pattern_from_term(regex_struct(5)) is None
    assert pattern_from_term({A("source"): "a"}) is None
    assert pattern_from_term(7) is None


# ---------------------------------------------------------------------------------------------
# properties

CONSTRAINT_KEYS = (
    "min",
    "max",
    "min_length",
    "max_length",
    "pattern",
    "enum",
    "choices",
    "allowed_modules",
    "dimensions",
    "shape",
)

elixir_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=8),
        st.binary(max_size=4),
        st.sampled_from([A("infinity"), A("nan"), A("ok"), A("Elixir.Foo")]),
        st.sampled_from(["Infinity", "-Infinity", "NaN", "true", "false"]),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.tuples(children, children),
        st.dictionaries(st.sampled_from(["shape", "data", "x"]), children, max_size=3),
    ),
    max_leaves=8,
)


@given(st.integers())
@settings(max_examples=100)
def test_every_integer_is_itself_and_its_float(value: int) -> None:
    assert term_equal(coerce(INTEGER, value), value)
    try:
        expected = float(value)
    except OverflowError:
        return
    assert term_equal(coerce(FLOAT, value), expected)


@given(st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: not f.is_integer()))
@settings(max_examples=100)
def test_every_fractional_float_is_not_an_integer(value: float) -> None:
    with pytest.raises(ValidationFailed) as caught:
        coerce(INTEGER, value)
    assert caught.value.message == f"must be a whole number, got {format_number(value)}"


@given(st.booleans(), st.sampled_from([FLOAT, INTEGER]))
def test_booleans_never_pass_as_numbers(value: bool, type_atom: Atom) -> None:
    with pytest.raises(ValidationFailed):
        coerce(type_atom, value)
    with pytest.raises(ValidationFailed):
        coerce(EMBEDDING, [1.0, value])


@given(st.sampled_from(types.TYPE_NAMES), elixir_values)
@settings(max_examples=300)
def test_coerce_is_idempotent_and_raises_only_validation_failed(type_name: str, value: Any) -> None:
    try:
        once = coerce(A(type_name), value)
    except ValidationFailed as rejected:
        assert isinstance(rejected.message, str) and rejected.message
        return
    assert term_equal(coerce(A(type_name), once), once)


@given(
    st.sampled_from(types.TYPE_NAMES),
    elixir_values,
    st.dictionaries(
        st.sampled_from([A(k) for k in CONSTRAINT_KEYS]),
        elixir_values,
        max_size=3,
    ),
)
@settings(max_examples=300)
def test_check_constraints_raises_only_value_rejected(type_name: str, value: Any, constraints: dict) -> None:
    try:
        check_constraints(A(type_name), value, constraints)
    except ValueRejected as rejected:
        assert isinstance(rejected.message, str) and rejected.message


numbers = st.one_of(
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=False, allow_infinity=False),
)


@given(numbers, numbers)
@settings(max_examples=150)
def test_min_max_messages_print_numbers_as_elixir(value: int | float, bound: int | float) -> None:
    stored = coerce(FLOAT, value)
    if stored < bound:
        with pytest.raises(ConstraintViolation) as caught:
            check_constraints(FLOAT, value, {A("min"): bound})
        assert caught.value.message == f"value {format_number(stored)} is below minimum {format_number(bound)}"
    else:
        check_constraints(FLOAT, value, {A("min"): bound})
    if stored > bound:
        with pytest.raises(ConstraintViolation) as caught:
            check_constraints(FLOAT, value, {A("max"): bound})
        assert caught.value.message == f"value {format_number(stored)} is above maximum {format_number(bound)}"
    else:
        check_constraints(FLOAT, value, {A("max"): bound})


# ---------------------------------------------------------------------------------------------
# live comparison with the real elixir binary: PCRE behaviour and String.length

ELIXIR = shutil.which("elixir")

_REGEX_SCRIPT = r"""
IO.read(:stdio, :eof) |> String.split("\n", trim: true) |> Enum.each(fn line ->
  case String.split(line, " ") do
    ["re", source, opts, subject] ->
      case Regex.compile(Base.decode16!(source), opts) do
        {:ok, re} -> IO.puts(Regex.match?(re, Base.decode16!(subject)))
        {:error, _} -> IO.puts("invalid")
      end
    ["len", text] -> IO.puts(String.length(Base.decode16!(text)))
  end
end)
"""


def _hex(text: str | bytes) -> str:
    return (text if isinstance(text, bytes) else text.encode("utf-8")).hex().upper()


@pytest.mark.skipif(ELIXIR is None, reason="the `elixir` binary is not on PATH")
def test_patterns_and_lengths_match_live_elixir() -> None:
    invalid_rows = [(s, "", "x", None) for s in INVALID_SOURCES if isinstance(s, str)]
    pattern_rows = PATTERN_TABLE + invalid_rows
    lines = [f"re {_hex(s)} {o} {_hex(subject)}" for s, o, subject, _ in pattern_rows]
    lines += [f"len {_hex(text)}" for text, _ in GRAPHEME_TABLE]
    done = subprocess.run(
        [ELIXIR, "-e", _REGEX_SCRIPT],
        input="\n".join(lines),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    answers = done.stdout.splitlines()
    ours = []
    for source, options, subject, _ in pattern_rows:
        compiled = compile_pattern(source, options)
        ours.append("invalid" if compiled is None else str(compiled.matches(subject)).lower())
    ours += [str(grapheme_length(text)) for text, _ in GRAPHEME_TABLE]
    assert answers == ours


def test_a_pattern_that_backtracks_without_end_is_no_match_within_its_time_limit():
    import time

    from sidecar.store.pcre import MATCH_SECONDS

    started = time.monotonic()
    with pytest.raises(types.ConstraintViolation) as rejected:
        types.check_constraints(Atom("string"), "a" * 36 + "b", {Atom("pattern"): "(a|aa)+$"})
    assert rejected.value.message == "must match pattern: (a|aa)+$"
    assert time.monotonic() - started < 30 * MATCH_SECONDS  # not the 35 s it takes to the end


@pytest.mark.parametrize(
    "shape, data, accepted",
    [
        ([2**70_000] * 50, [1.0], False),  # multiplied out, this takes hours
        ([2**70_000] * 50 + [0], [], True),  # a zero still decides it
        ([2**70, 2**70, 0.5], [1.0], False),
        ([2, 3], [[1, 2, 3], [4, 5, 6]], True),
    ],
)
def test_a_shape_of_huge_integers_is_decided_without_multiplying_it_out(shape, data, accepted):
    import time

    started = time.monotonic()
    value = {"shape": shape, "data": data}
    if accepted:
        assert types.coerce(Atom("tensor"), value) is value
    else:
        with pytest.raises(types.ValidationFailed):
            types.coerce(Atom("tensor"), value)
    assert time.monotonic() - started < 5
