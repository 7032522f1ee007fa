"""Numbers printed exactly as Elixir 1.14 (on OTP 24/25) prints them.

* `integer_text(n)` -- an integer in decimal, as Elixir prints it, whatever its size: CPython's
  `str(int)` refuses integers over 4300 digits (`sys.int_info.default_max_str_digits`) and is
  quadratic; this is not (a divide-and-conquer conversion through `decimal`, as CPython 3.12's
  `_pylong` does), and it does not touch the interpreter-wide limit. Bounded: an integer over
  `MAX_INTEGER_TEXT_DIGITS` (100,000) digits (about 332,000 bits, a 41 KB bignum) prints as
  `#Integer<N bits>` (`-#Integer<N bits>` when negative) instead. Why a bound: the sidecar
  serves one call at a time, and printing the largest integer a 64 MB frame can hold (~150
  million digits) would take over a minute; at the bound it takes about 10 ms here (a million
  digits: 0.5 s). No message of the contract has a use for more digits than that.
* `format_number(x)`  -- `to_string/1` and `"#{x}"` of an integer or float. Floats go through
  `format_float(f)`, `:erlang.float_to_binary(f, [:short])`: the shortest digits that
  round-trip, written in the shorter of fixed (`0.001`, `123.0`) and scientific (`1.0e3`,
  `1.5e-5`) notation, fixed on a tie; at or above 2**53 always scientific.
* `inspect_float(f)` -- a float as `inspect/1` prints it: integral floats 1.0 <= |f| < 1.0e16 as
  `1000.0` where to_string prints `1.0e3`, otherwise as `format_float`.

Used by `sidecar.elixir.format` (to_string) and `sidecar.elixir.inspect` (inspect). The float
rules were determined empirically against the real `elixir` binary, and
tests/test_elixir_format.py re-checks them live against it.
"""

from __future__ import annotations

import decimal
import math
from typing import Any

__all__ = [
    "MAX_INTEGER_TEXT_DIGITS",
    "integer_text",
    "format_number",
    "format_float",
    "inspect_float",
]

_TWO_POW_53 = 2.0**53

MAX_INTEGER_TEXT_DIGITS = 100_000
"""Integers with more decimal digits than this print as `#Integer<N bits>` (see above)."""
# bit_length above which an integer certainly has more than MAX_INTEGER_TEXT_DIGITS digits
_MAX_TEXT_BITS = int(MAX_INTEGER_TEXT_DIGITS / math.log10(2)) + 1
# below this many bits `str` is quick and within CPython's digit limit (4300 digits ~ 14284 bits)
_STR_BITS = 4096
_DC_LEAF_BITS = 128


def integer_text(value: int) -> str:
    """`Integer.to_string/1` of any integer (up to MAX_INTEGER_TEXT_DIGITS digits; see above)."""
    magnitude = -value if value < 0 else value
    bits = magnitude.bit_length()
    if bits <= _STR_BITS:
        return str(value)
    sign = "-" if value < 0 else ""
    if bits > _MAX_TEXT_BITS:
        return f"{sign}#Integer<{bits} bits>"
    digits = _decimal_digits(magnitude, bits)
    if len(digits) > MAX_INTEGER_TEXT_DIGITS:  # the bit bound is a hair generous
        return f"{sign}#Integer<{bits} bits>"
    return sign + digits


def _decimal_digits(magnitude: int, bits: int) -> str:
    """The decimal digits of a non-negative integer: split it in binary halves, convert each
    half with `decimal` (exact, with libmpdec's fast multiplication), and join them as
    `high * 2**half + low`. O(n log^2 n)-ish instead of `str`'s O(n^2)."""
    powers: dict[int, decimal.Decimal] = {}
    two = decimal.Decimal(2)

    def power_of_two(width: int) -> decimal.Decimal:
        result = powers.get(width)
        if result is None:
            if width <= _DC_LEAF_BITS:
                result = two**width
            else:
                half = width >> 1
                result = power_of_two(half) * power_of_two(width - half)
            powers[width] = result
        return result

    def convert(number: int, width: int) -> decimal.Decimal:
        if width <= _DC_LEAF_BITS:
            return decimal.Decimal(number)
        half = width >> 1
        high = number >> half
        low = number - (high << half)
        return convert(low, half) + convert(high, width - half) * power_of_two(half)

    with decimal.localcontext() as context:
        context.prec = decimal.MAX_PREC
        context.Emax = decimal.MAX_EMAX
        context.Emin = decimal.MIN_EMIN
        context.traps[decimal.Inexact] = True
        return str(convert(magnitude, bits))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _shortest_digits(magnitude: float) -> tuple[str, int]:
    """Shortest round-trip digits of a positive finite float and the point's place.

    The value is 0.DIGITS * 10**place. Python's repr gives the shortest correctly rounded
    digits, as OTP's Ryu-based printer does.
    """
    parsed = decimal.Decimal(repr(magnitude)).normalize()
    sign, digit_tuple, exponent = parsed.as_tuple()
    digits = "".join(str(d) for d in digit_tuple)
    return digits, len(digits) + int(exponent)


def _fixed_notation(digits: str, place: int) -> str:
    if place <= 0:
        return "0." + "0" * (-place) + digits
    if place < len(digits):
        return digits[:place] + "." + digits[place:]
    return digits + "0" * (place - len(digits)) + ".0"


def _scientific_notation(digits: str, place: int) -> str:
    return digits[0] + "." + (digits[1:] or "0") + "e" + str(place - 1)


def format_float(value: float) -> str:
    """`Float.to_string/1` (= `:erlang.float_to_binary(f, [:short])`) of a finite float."""
    if not math.isfinite(value):
        # the BEAM has no such floats; name them the way the store's special atoms are named
        return "nan" if math.isnan(value) else ("infinity" if value > 0 else "negative_infinity")
    if value == 0.0:
        return "-0.0" if math.copysign(1.0, value) < 0 else "0.0"
    sign = "-" if value < 0 else ""
    magnitude = abs(value)
    digits, place = _shortest_digits(magnitude)
    fixed = _fixed_notation(digits, place)
    scientific = _scientific_notation(digits, place)
    if magnitude < _TWO_POW_53 and len(fixed) <= len(scientific):
        return sign + fixed
    return sign + scientific


def inspect_float(value: float) -> str:
    """`inspect/1` of a float: integral values 1.0 <= |f| < 1.0e16 print as `N.0`."""
    if math.isfinite(value) and 1.0 <= abs(value) < 1.0e16 and value == math.floor(value):
        return str(int(value)) + ".0"
    return format_float(value)


def format_number(value: int | float) -> str:
    """`to_string/1` of an Elixir integer or float, e.g. `100`, `1.5`, `1.0e-5`, `1.0e3`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"not a number: {value!r}")
    if isinstance(value, int):
        return integer_text(value)
    return format_float(value)


# ---------------------------------------------------------------------------------------------
# to_string (String.Chars)
