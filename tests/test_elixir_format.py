"""Tests for sidecar.elixir.format: numbers and terms printed as Elixir 1.14's `to_string/1` and
interpolation print them, and floats as `inspect/1` prints them.

The tables hold outputs read off the real `elixir` binary; the live test asks it again, for a
few hundred Hypothesis-generated floats, in one invocation. It skips only when `elixir` is not
on PATH. The inspect tests of other terms are in tests/test_elixir_inspect.py.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import struct
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sidecar import codec
from sidecar.elixir.format import (
    MAX_INTEGER_TEXT_DIGITS,
    format_float,
    format_number,
    inspect_float,
    integer_text,
    join,
    to_string_term,
)
from sidecar.terms import Atom

ELIXIR = shutil.which("elixir")
needs_elixir = pytest.mark.skipif(ELIXIR is None, reason="the `elixir` binary is not on PATH")

# (float, to_string, inspect) as Elixir 1.14 / OTP 25 prints them
FLOAT_TABLE = [
    (0.0, "0.0", "0.0"),
    (-0.0, "-0.0", "-0.0"),
    (1.0, "1.0", "1.0"),
    (1.5, "1.5", "1.5"),
    (100.0, "100.0", "100.0"),
    (1000.0, "1.0e3", "1000.0"),
    (1200.0, "1.2e3", "1200.0"),
    (123456.0, "123456.0", "123456.0"),
    (1.0e15, "1.0e15", "1000000000000000.0"),
    (1.0e16, "1.0e16", "1.0e16"),
    (9007199254740991.0, "9007199254740991.0", "9007199254740991.0"),
    (9007199254740992.0, "9.007199254740992e15", "9007199254740992.0"),
    (9.5e15, "9.5e15", "9500000000000000.0"),
    (1.0e20, "1.0e20", "1.0e20"),
    (0.1, "0.1", "0.1"),
    (0.001, "0.001", "0.001"),
    (0.0001, "0.0001", "0.0001"),
    (0.00012345, "1.2345e-4", "1.2345e-4"),
    (1.0e-5, "1.0e-5", "1.0e-5"),
    (-1.5e-5, "-1.5e-5", "-1.5e-5"),
    (123.456, "123.456", "123.456"),
    (5.0e-324, "5.0e-324", "5.0e-324"),
    (1.7976931348623157e308, "1.7976931348623157e308", "1.7976931348623157e308"),
]


@pytest.mark.parametrize("value, as_string, as_inspect", FLOAT_TABLE)
def test_float_table(value: float, as_string: str, as_inspect: str) -> None:
    assert format_float(value) == as_string
    assert format_number(value) == as_string
    assert inspect_float(value) == as_inspect


@pytest.mark.parametrize("value, text", [(0, "0"), (100, "100"), (-7, "-7"), (10**30, "1" + "0" * 30)])
def test_integers_print_plainly(value: int, text: str) -> None:
    assert format_number(value) == text


@pytest.mark.parametrize("not_a_number", [True, False, None, "1", Atom("infinity")])
def test_format_number_refuses_non_numbers(not_a_number: object) -> None:
    with pytest.raises(TypeError):
        format_number(not_a_number)  # type: ignore[arg-type]


@given(st.floats(allow_nan=False, allow_infinity=False))
@settings(max_examples=200)
def test_format_float_round_trips(value: float) -> None:
    text = format_float(value)
    assert float(text) == value
    assert math.copysign(1.0, float(text)) == math.copysign(1.0, value)
    assert ("e" in text) or text.endswith(".0") or "." in text


@pytest.mark.parametrize(
    "term, as_string",
    [
        (None, ""),
        (True, "true"),
        (Atom("ok"), "ok"),
        (Atom("Elixir.Foo"), "Elixir.Foo"),
        ("héllo", "héllo"),
        (2.5, "2.5"),
        ([97, "b", [99]], "abc"),
        ((1, 2), "{1, 2}"),  # Elixir raises here; we print the inspect form
    ],
)
def test_to_string_term(term: object, as_string: str) -> None:
    assert to_string_term(term) == as_string


def test_join_is_enum_join() -> None:
    assert join([Atom("a"), "b", Atom("Elixir.Foo"), 1, 2.5]) == "a, b, Elixir.Foo, 1, 2.5"
    assert join([]) == ""


# ---------------------------------------------------------------------------------------------
# live comparison with the real elixir binary

_FLOAT_SCRIPT = r"""
IO.read(:stdio, :eof) |> String.split("\n", trim: true) |> Enum.each(fn line ->
  <<f::float>> = <<String.to_integer(line)::64>>
  IO.puts("#{f}\t#{inspect(f)}")
end)
"""

_SWITCH_POINT_FLOATS = [
    sign * mantissa * 10.0**exponent
    for sign in (1.0, -1.0)
    for mantissa in (1.0, 1.5, 9.999, 1.2345)
    for exponent in (-6, -5, -4, -3, -2, 0, 2, 3, 4, 15, 16, 17, 20, 21, 22)
] + [2.0**53 - 1, 2.0**53, 2.0**53 + 2, 2.0**52 + 1, 5.0e-324, 2.2250738585072014e-308, -0.0, 0.0]


def _elixir(script: str, stdin: str) -> list[str]:
    assert ELIXIR is not None
    done = subprocess.run([ELIXIR, "-e", script], input=stdin, capture_output=True, text=True, timeout=120, check=True)
    return done.stdout.splitlines()


@needs_elixir
@settings(
    max_examples=1,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)
@given(
    st.lists(
        st.one_of(
            st.floats(allow_nan=False, allow_infinity=False),
            st.floats(min_value=-1e6, max_value=1e6, allow_nan=False),
            st.integers(min_value=-(2**60), max_value=2**60).map(float),
            st.floats(min_value=1e-12, max_value=1e-3),
        ),
        min_size=250,
        max_size=250,
    )
)
def test_floats_match_live_elixir(generated: list[float]) -> None:
    floats = generated + _SWITCH_POINT_FLOATS
    bits = "\n".join(str(struct.unpack(">q", struct.pack(">d", f))[0]) for f in floats)
    lines = _elixir(_FLOAT_SCRIPT, bits)
    assert len(lines) == len(floats)
    mismatches = [
        (f, line, format_float(f), inspect_float(f))
        for f, line in zip(floats, lines)
        if line != f"{format_float(f)}\t{inspect_float(f)}"
    ]
    assert mismatches == []


# ---------------------------------------------------------------------------------------------
# integers of any size (CPython's str() refuses more than 4300 digits)


@contextlib.contextmanager
def unlimited_int_str():
    """str() of any int, for the reference value (restored afterwards: the sidecar never
    changes the interpreter-wide limit)."""
    previous = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)
    try:
        yield
    finally:
        sys.set_int_max_str_digits(previous)


@settings(max_examples=150, deadline=None)
@given(
    st.one_of(
        st.integers(),
        st.builds(
            lambda bits, low, sign: sign * ((1 << bits) + low),
            st.integers(4000, 200_000),
            st.integers(0, 2**64),
            st.sampled_from([1, -1]),
        ),
        st.builds(lambda digits, sign: sign * (10**digits - 1 + sign), st.integers(4290, 20_000), st.sampled_from([1, -1])),
    )
)
def test_integers_print_in_full_past_cpythons_digit_limit(value: int) -> None:
    with unlimited_int_str():
        expected = str(value)
    assert sys.get_int_max_str_digits() == sys.int_info.default_max_str_digits
    assert integer_text(value) == expected
    assert format_number(value) == expected
    assert to_string_term(value) == expected


def test_integers_past_the_print_bound_are_named_by_their_size() -> None:
    assert len(integer_text(10**MAX_INTEGER_TEXT_DIGITS - 1)) == MAX_INTEGER_TEXT_DIGITS
    assert integer_text(10**MAX_INTEGER_TEXT_DIGITS) == f"#Integer<{(10**MAX_INTEGER_TEXT_DIGITS).bit_length()} bits>"
    assert integer_text(-(2**600_000)) == "-#Integer<600001 bits>"
    assert integer_text(2 ** (8 * 64 * 1024 * 1024)) == f"#Integer<{8 * 64 * 1024 * 1024 + 1} bits>"  # a 64 MB bignum


@needs_elixir
def test_big_integers_match_live_elixir(tmp_path) -> None:
    values = [2**20000, -(3**9000), 10**4300, 10**4301 - 1, -(2**14285) + 7]
    data = tmp_path / "ints.bin"
    data.write_bytes(codec.encode(values))
    script = f'File.read!("{data}") |> :erlang.binary_to_term() |> Enum.each(&IO.puts("#{{&1}}"))'
    result = subprocess.run([ELIXIR, "-e", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[: len(values)] == [integer_text(v) for v in values]
