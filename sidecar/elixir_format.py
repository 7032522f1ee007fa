"""Numbers and terms printed exactly as Elixir 1.14 (on OTP 24/25) prints them, for messages.

Three printers, each matching one Elixir function:

* `format_number(x)`  -- `to_string/1` and `"#{x}"` of an integer or float. Floats go through
  `:erlang.float_to_binary(f, [:short])`: the shortest digits that round-trip, written in the
  shorter of fixed (`0.001`, `123.0`) and scientific (`1.0e3`, `1.5e-5`) notation, fixed on a
  tie; at or above 2**53 always scientific.
* `to_string_term(term)` -- `to_string/1` (`String.Chars`) as string interpolation uses it:
  numbers as above, atoms by name, nil as "", binaries as themselves, char lists as text.
  Elixir raises for tuples, maps and the like; we print their `inspect` form instead.
* `inspect_term(term)` -- `inspect/1` with default options for the terms messages can hold:
  numbers, atoms, binaries, lists (char lists as `'abc'`, keyword lists as `[a: 1]`), tuples
  and maps. Inspect prints integral floats 1.0 <= |f| < 1.0e16 as `1000.0` where to_string
  prints `1.0e3`.

The float rules were determined empirically against the real `elixir` binary, and
tests/test_elixir_format.py re-checks them live against it.
"""

from __future__ import annotations

import decimal
import math
import re
from typing import Any, Iterable

from sidecar.terms import Atom, BitString, ImproperList, ListKey, MapKey, Opaque, StrictKey

__all__ = [
    "format_number",
    "format_float",
    "inspect_float",
    "inspect_atom",
    "inspect_list",
    "inspect_term",
    "join",
    "to_string_term",
]

_TWO_POW_53 = 2.0**53


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
        return str(value)
    return format_float(value)


# ---------------------------------------------------------------------------------------------
# to_string (String.Chars)


def _chardata_to_string(items: list) -> str | None:
    """`List.to_string/1` of chardata (code points, binaries, nested lists), or None if invalid."""
    parts: list[str] = []
    stack: list[Iterable[Any]] = [iter(items)]
    while stack:
        try:
            item = next(stack[-1])
        except StopIteration:
            stack.pop()
            continue
        if isinstance(item, bool):
            return None
        if isinstance(item, int):
            if not (0 <= item <= 0x10FFFF) or 0xD800 <= item <= 0xDFFF:
                return None
            parts.append(chr(item))
        elif isinstance(item, str):
            parts.append(item)
        elif isinstance(item, list):
            stack.append(iter(item))
        else:
            return None
    return "".join(parts)


def to_string_term(term: Any) -> str:
    """What `"#{term}"` prints. Tuples, maps, pids... (an error in Elixir) print as inspect."""
    if term is None:
        return ""
    if term is True:
        return "true"
    if term is False:
        return "false"
    if _is_number(term):
        return format_number(term)
    if isinstance(term, Atom):
        return term.name
    if isinstance(term, str):
        return term
    if isinstance(term, bytes):
        # a non-UTF-8 binary interpolates its raw bytes; a Python str cannot hold them
        return term.decode("utf-8", "replace")
    if isinstance(term, list):
        text = _chardata_to_string(term)
        if text is not None:
            return text
    return inspect_term(term)


def join(items: Iterable[Any], separator: str = ", ") -> str:
    """`Enum.join(items, separator)`: each item through `to_string/1`."""
    return separator.join(to_string_term(item) for item in items)


# ---------------------------------------------------------------------------------------------
# inspect

_IDENTIFIER_ATOM = re.compile(r"[^\W\d][\w@]*[?!]?\Z", re.UNICODE)
_ALIAS_SEGMENT = re.compile(r"[A-Z][A-Za-z0-9_]*\Z")
_OPERATOR_ATOMS = frozenset(
    """+ - * / ** == != === !== < > <= >= =~ && &&& || ||| <> ++ -- +++ --- .. ... ..// <- -> \\\\
    |> <<< >>> <<~ ~>> <~ ~> <~> ! ^ @ & . = | %{} {} <<>> %""".split()
)
_BINARY_ESCAPES = {
    "\\": "\\\\",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
    "\b": "\\b",
    "\f": "\\f",
    "\x1b": "\\e",
    "\x07": "\\a",
    "\x7f": "\\d",
}
_CHARLIST_PRINTABLE = frozenset([7, 8, 9, 10, 11, 12, 13, 27, *range(32, 127)])


def _is_printable_char(char: str) -> bool:
    code = ord(char)
    if char in _BINARY_ESCAPES or char == '"':
        return True
    return (
        0x20 <= code <= 0x7E
        or 0xA0 <= code <= 0xD7FF
        or 0xE000 <= code <= 0xFFFD
        or 0x10000 <= code <= 0x10FFFF
    )


def _quote(text: str, quote: str) -> str:
    out = []
    for index, char in enumerate(text):
        if char == quote:
            out.append("\\" + quote)
        elif char == "#" and text[index + 1 : index + 2] == "{":
            out.append("\\#")
        else:
            out.append(_BINARY_ESCAPES.get(char, char))
    return quote + "".join(out) + quote


def _inspect_raw_bytes(data: bytes) -> str:
    return "<<" + ", ".join(str(b) for b in data) + ">>"


def _inspect_bitstring(term: BitString) -> str:
    if not term.data:
        return "<<>>"
    whole = [str(b) for b in term.data[:-1]]
    tail = term.data[-1] >> (8 - term.bits)
    return "<<" + ", ".join([*whole, f"{tail}::size({term.bits})"]) + ">>"


def _inspect_binary(term: str | bytes) -> str:
    if isinstance(term, bytes):
        return _inspect_raw_bytes(term)
    if all(_is_printable_char(c) for c in term):
        return _quote(term, '"')
    return _inspect_raw_bytes(term.encode("utf-8", "surrogateescape"))


def inspect_atom(atom: Any) -> str:
    """`inspect/1` of an atom (nil, true, false included)."""
    if atom is None:
        return "nil"
    if atom is True:
        return "true"
    if atom is False:
        return "false"
    name = atom.name
    if name == "Elixir":
        return "Elixir"
    if name.startswith("Elixir."):
        segments = name[len("Elixir.") :].split(".")
        if all(_ALIAS_SEGMENT.match(s) for s in segments):
            return ".".join(segments)
        return ":" + _quote(name, '"')
    if name in _OPERATOR_ATOMS or _IDENTIFIER_ATOM.match(name):
        return ":" + name
    return ":" + _quote(name, '"')


def _is_keyword_key(key: Any) -> bool:
    return isinstance(key, Atom) and not key.name.startswith("Elixir.")


def _keyword_key(key: Atom) -> str:
    name = key.name
    if _IDENTIFIER_ATOM.match(name):
        return name + ": "
    return _quote(name, '"') + ": "


def _is_keyword_list(items: list) -> bool:
    return bool(items) and all(
        isinstance(item, tuple) and len(item) == 2 and _is_keyword_key(item[0]) for item in items
    )


def _term_order_key(term: Any) -> tuple:
    """A sort key approximating Erlang's map-key order (integers before floats)."""
    if isinstance(term, StrictKey):
        term = term.value
    if isinstance(term, bool) or term is None:
        return (2, {None: "nil", True: "true", False: "false"}[term])
    if isinstance(term, int):
        return (0, term)
    if isinstance(term, float):
        return (1, term)
    if isinstance(term, Atom):
        return (2, term.name)
    if isinstance(term, Opaque):
        return (3, term.etf)
    if isinstance(term, tuple) and not isinstance(term, (ListKey, MapKey)):
        return (4, len(term), tuple(_term_order_key(t) for t in term))
    if isinstance(term, (dict, MapKey)):
        return (5, len(term), repr(term))
    if isinstance(term, (list, ListKey, ImproperList)):
        return (6, repr(term))
    if isinstance(term, str):
        return (7, term.encode("utf-8", "surrogateescape"))
    if isinstance(term, bytes):
        return (7, term)
    return (8, repr(term))


def _unwrap_key(key: Any) -> Any:
    if isinstance(key, StrictKey):
        return key.value
    if isinstance(key, ListKey):
        return [_unwrap_key(k) for k in key]
    if isinstance(key, MapKey):
        return {k: v for k, v in key}
    return key


def _inspect_map(term: dict) -> str:
    keys = sorted(term.keys(), key=_term_order_key)
    if not keys:
        return "%{}"
    if all(_is_keyword_key(k) for k in keys):
        body = ", ".join(_keyword_key(k) + inspect_term(term[k]) for k in keys)
    else:
        body = ", ".join(
            inspect_term(_unwrap_key(k)) + " => " + inspect_term(term[k]) for k in keys
        )
    return "%{" + body + "}"


def _inspect_list(items: list) -> str:
    if items and all(type(i) is int and i in _CHARLIST_PRINTABLE for i in items):
        return _quote("".join(chr(i) for i in items), "'")
    if _is_keyword_list(items):
        return "[" + ", ".join(_keyword_key(k) + inspect_term(v) for k, v in items) + "]"
    return "[" + ", ".join(inspect_term(i) for i in items) + "]"


def inspect_list(items: list) -> str:
    """`inspect/1` of a proper list, e.g. `[2, 3]` (printable code points come out as `'ab'`)."""
    return _inspect_list(list(items))


def inspect_term(term: Any) -> str:
    """`inspect/1` with default options of a native term."""
    if term is None or isinstance(term, (bool, Atom)):
        return inspect_atom(term)
    if isinstance(term, int):
        return str(term)
    if isinstance(term, float):
        return inspect_float(term)
    if isinstance(term, (str, bytes)):
        return _inspect_binary(term)
    if isinstance(term, (ListKey, MapKey, StrictKey)):
        return inspect_term(_unwrap_key(term))
    if isinstance(term, list):
        return _inspect_list(term)
    if isinstance(term, ImproperList):
        head = ", ".join(inspect_term(i) for i in term.items)
        return "[" + head + " | " + inspect_term(term.tail) + "]"
    if isinstance(term, tuple):
        return "{" + ", ".join(inspect_term(i) for i in term) + "}"
    if isinstance(term, dict):
        return _inspect_map(term)
    if isinstance(term, BitString):
        return _inspect_bitstring(term)
    if isinstance(term, Opaque):
        return f"#{term.kind}<...>"
    return repr(term)
