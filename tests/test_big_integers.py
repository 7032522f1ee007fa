"""Integers past CPython's int-to-string limit (4300 digits) in the type rules and the store.

Elixir prints big integers in full; so do the contract's messages here
(`elixir_format.integer_text`). Before, `value 2**20000 is above maximum 10` answered
`{:error, {:internal_error, "ValueError: Exceeds the limit (4300 digits)..."}}`.

Hypothesis over big integers on both sides of both bounds, through `types` directly and
through the store's calls (`update_variable`, `register_variable`, `import_variables`).
"""

from __future__ import annotations

import contextlib
import sys
from typing import Any, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from inprocess_client import Client

from sidecar.store import types
from sidecar.terms import Atom

A = Atom
INTEGER = A("integer")


@contextlib.contextmanager
def unlimited_int_str() -> Iterator[None]:
    """str() of any int, for the expected text only (restored afterwards)."""
    previous = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)
    try:
        yield
    finally:
        sys.set_int_max_str_digits(previous)


def text(value: int) -> str:
    with unlimited_int_str():
        return str(value)


big_ints = st.one_of(
    st.builds(
        lambda bits, low, sign: sign * ((1 << bits) + low),
        st.integers(14_000, 60_000),
        st.integers(0, 2**70),
        st.sampled_from([1, -1]),
    ),
    st.builds(lambda digits, sign: sign * 10**digits, st.integers(4300, 9000), st.sampled_from([1, -1])),
)
any_ints = st.one_of(big_ints, st.integers(-(2**64), 2**64))


@settings(max_examples=120, deadline=None)
@given(value=any_ints, minimum=st.one_of(st.none(), any_ints), maximum=st.one_of(st.none(), any_ints))
def test_numeric_range_messages_print_integers_in_full(value: int, minimum: Any, maximum: Any) -> None:
    constraints = {A("min"): minimum, A("max"): maximum}
    if minimum is not None and value < minimum:
        expected: Any = f"value {text(value)} is below minimum {text(minimum)}"
    elif maximum is not None and value > maximum:
        expected = f"value {text(value)} is above maximum {text(maximum)}"
    else:
        expected = None
    try:
        types.check_constraints(INTEGER, value, constraints)
        message = None
    except types.ConstraintViolation as violation:
        message = violation.message
    assert message == expected


@settings(max_examples=40, deadline=None)
@given(value=big_ints, bound=st.integers(-100, 100))
def test_update_variable_with_a_huge_integer_answers_the_constraint_message(value: int, bound: int) -> None:
    client = Client()
    assert client.call("create_session", "s")[0] is A("ok")
    assert client.call("register_variable", "s", A("n"), INTEGER, 0, [(A("constraints"), {A("min"): -100, A("max"): 100})])[
        0
    ] is A("ok")
    if value > 100:
        expected = (A("error"), f"value {text(value)} is above maximum 100")
    else:
        expected = (A("error"), f"value {text(value)} is below minimum -100")
    assert client.call("update_variable", "s", A("n"), value) == expected
    assert client.call("get_variable_value", "s", A("n")) == 0
    # with a huge bound, the bound prints in full too
    assert client.call("register_variable", "s", A("m"), INTEGER, 0, [(A("constraints"), {A("max"): abs(value)})])[0] is A("ok")
    assert client.call("update_variable", "s", A("m"), abs(value) + 1) == (
        A("error"),
        f"value {text(abs(value) + 1)} is above maximum {text(abs(value))}",
    )
    assert client.call("update_variable", "s", A("m"), abs(value)) is A("ok")
    assert client.call("get_variable_value", "s", A("m")) == abs(value)


def test_the_issue_example() -> None:
    client = Client()
    client.call("create_session", "s")
    client.call("register_variable", "s", A("n"), INTEGER, 1, [(A("constraints"), {A("min"): 0, A("max"): 10})])
    status, message = client.call("update_variable", "s", A("n"), 2**20000)
    assert status is A("error")
    assert message == f"value {text(2**20000)} is above maximum 10"
    assert len(message) == len("value  is above maximum 10") + 6021


@pytest.mark.parametrize("bad_type", [2**20000, (A("t"), -(10**5000)), [2**14000]], ids=["int", "tuple", "list"])
def test_an_unknown_type_holding_a_huge_integer_is_answered_with_itself(bad_type: Any) -> None:
    with pytest.raises(types.UnknownType) as raised:
        types.resolve_type(bad_type)
    assert raised.value.type == bad_type
    assert len(str(raised.value)) < 300
    client = Client()
    client.call("create_session", "s")
    assert client.call("register_variable", "s", A("x"), bad_type, 1) == (A("error"), (A("unknown_type"), bad_type))
    status, (reason, index, message) = client.call(
        "import_variables", "s", [{A("id"): "var_x_1", A("name"): "x", A("type"): bad_type, A("value"): 1, A("created_at"): 0}]
    )
    assert (status, reason, index) == (A("error"), A("invalid_variable"), 0)
    assert message.startswith("type: unknown type ")


def test_embedding_and_float_refuse_integers_too_large_for_a_float() -> None:
    for huge in (2**20000, -(2**20000)):
        with pytest.raises(types.ValidationFailed):
            types.coerce(A("float"), huge)
        with pytest.raises(types.ValidationFailed):
            types.coerce(A("embedding"), [1, huge])
