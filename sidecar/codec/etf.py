"""The external term format's tags and limits, the codec's errors, and the helpers both the
decoder and the encoder use (`sidecar.codec`)."""

from __future__ import annotations

import re
import struct
from typing import Any

from sidecar.terms import Atom, BitString, ImproperList, StrictKey


class DecodeError(ValueError):
    """The bytes are not one valid external term (or one this codec cannot represent)."""


class EncodeError(TypeError):
    """The Python object has no Elixir form that the BEAM can decode."""


#: The deepest nesting decode and encode accept (see the module docstring for what counts).
#: Why 128: every recursive walker of terms in the sidecar (decode, encode, inspect, term
#: equality, hashable keys, deep copies) takes one to three Python frames per level, and 128
#: levels at three frames stay far inside CPython's default recursion limit of 1000 whatever
#: the stack already holds. Real SessionStore data (metadata, program data, tensors) nests a
#: handful of levels; the ETS original had no limit, but the BEAM can always send more than a
#: Python process can walk, so there has to be one, and it is written down (docs/protocol.md).
MAX_TERM_DEPTH = 128


class DecodeTooDeep(DecodeError):
    """The term nests deeper than MAX_TERM_DEPTH levels."""


class EncodeTooDeep(EncodeError):
    """The term nests deeper than MAX_TERM_DEPTH levels."""


def _too_deep() -> DecodeTooDeep:
    return DecodeTooDeep(f"term nested deeper than {MAX_TERM_DEPTH} levels")


#: Default bound on the uncompressed size of a compressed term (zip-bomb guard).
MAX_UNCOMPRESSED_SIZE = 64 * 1024 * 1024

VERSION = 131

# ETF tags
NEW_FLOAT_EXT = 70
BIT_BINARY_EXT = 77
ATOM_CACHE_REF = 78
COMPRESSED = 80
NEW_PID_EXT = 88
NEW_PORT_EXT = 89
NEWER_REFERENCE_EXT = 90
SMALL_INTEGER_EXT = 97
INTEGER_EXT = 98
FLOAT_EXT = 99
ATOM_EXT = 100
REFERENCE_EXT = 101
PORT_EXT = 102
PID_EXT = 103
SMALL_TUPLE_EXT = 104
LARGE_TUPLE_EXT = 105
NIL_EXT = 106
STRING_EXT = 107
LIST_EXT = 108
BINARY_EXT = 109
SMALL_BIG_EXT = 110
LARGE_BIG_EXT = 111
NEW_FUN_EXT = 112
EXPORT_EXT = 113
NEW_REFERENCE_EXT = 114
SMALL_ATOM_EXT = 115
MAP_EXT = 116
FUN_EXT = 117
ATOM_UTF8_EXT = 118
SMALL_ATOM_UTF8_EXT = 119
V4_PORT_EXT = 120

_ATOM_TAGS = frozenset((ATOM_EXT, SMALL_ATOM_EXT, ATOM_UTF8_EXT, SMALL_ATOM_UTF8_EXT))
_INT_TAGS = frozenset((SMALL_INTEGER_EXT, INTEGER_EXT, SMALL_BIG_EXT, LARGE_BIG_EXT))
_MAX_ATOM_CHARS = 255
_SPECIAL_ATOMS: dict[str, Any] = {"nil": None, "true": True, "false": False}
_MISSING = object()

_unpack_I = struct.Struct(">I").unpack_from
_unpack_i = struct.Struct(">i").unpack_from
_unpack_d = struct.Struct(">d").unpack_from
_unpack_H = struct.Struct(">H").unpack_from
_pack_BI = struct.Struct(">BI").pack
_pack_I = struct.Struct(">I").pack
_pack_Bi = struct.Struct(">Bi").pack
_pack_Bd = struct.Struct(">Bd").pack
_pack_BH = struct.Struct(">BH").pack
_pack_BIB = struct.Struct(">BIB").pack

_OLD_FLOAT = re.compile(rb"[+-]?[0-9]+\.[0-9]+(?:[eE][+-]?[0-9]+)?")


# ---------------------------------------------------------------------------------------------
# Shared helpers (both paths)
# ---------------------------------------------------------------------------------------------


def _atom_term(name: str) -> Any:
    """The native term of the atom named `name`: None/True/False or an Atom."""
    special = _SPECIAL_ATOMS.get(name, _MISSING)
    if special is not _MISSING:
        return special
    if len(name) > _MAX_ATOM_CHARS:
        raise DecodeError(f"atom name longer than {_MAX_ATOM_CHARS} characters")
    return Atom(name)


def _binary_term(raw: bytes) -> str | bytes:
    """A binary: str when it is valid UTF-8, else bytes."""
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return raw


def _bit_binary_term(raw: bytes, bits: int) -> Any:
    """BIT_BINARY_EXT contents as the BEAM reads them (unused low bits zeroed)."""
    if not raw:
        if bits != 0:
            raise DecodeError("empty bitstring must have 0 bits in its last byte")
        return ""
    if not 1 <= bits <= 8:
        raise DecodeError(f"bitstring with {bits} bits in its last byte")
    if bits == 8:
        return _binary_term(raw)
    mask = (0xFF << (8 - bits)) & 0xFF
    return BitString(raw[:-1] + bytes((raw[-1] & mask,)), bits)


def _improper(items: list, tail: Any) -> Any:
    """`[items | tail]` in canonical native form (a list tail is spliced in)."""
    if not items:
        return tail
    if type(tail) is list:
        return items + tail
    if type(tail) is ImproperList:
        return ImproperList(items + tail.items, tail.tail)
    return ImproperList(items, tail)


def _float_bits(value: float) -> bytes:
    return struct.pack(">d", value)


def _strictly_equal(a: Any, b: Any) -> bool:
    """Exact equality for map keys: types must match all the way down; -0.0 != 0.0."""
    if type(a) is not type(b):
        return False
    if type(a) is float:
        return _float_bits(a) == _float_bits(b)
    if isinstance(a, tuple):  # tuple, ListKey, MapKey
        return len(a) == len(b) and all(_strictly_equal(x, y) for x, y in zip(a, b))
    if type(a) is StrictKey:
        return _strictly_equal(a.value, b.value)
    if type(a) is ImproperList:
        return len(a.items) == len(b.items) and all(_strictly_equal(x, y) for x, y in zip(a.items + [a.tail], b.items + [b.tail]))
    return a == b


def _describe(term: Any) -> str:
    """A term in an error message: its inspect output, cut short (never `repr`: CPython refuses
    to print an integer of more than 4300 digits, and the message must not raise)."""
    from sidecar.elixir.inspect import describe  # the printer sits above the codec; errors only

    return describe(term, 80)


def _describe_exception(exc: BaseException) -> str:
    from sidecar.elixir.inspect import describe_exception

    return describe_exception(exc)


def _insert_distinct(mapping: dict, key: Any, value: Any) -> None:
    """Add `key => value`, wrapping `key` in StrictKey if Python would merge it with another."""
    if key not in mapping:
        mapping[key] = value
        return
    existing = next(k for k in mapping if k == key)
    if _strictly_equal(existing, key):
        raise DecodeError(f"duplicate map key {_describe(key)}")
    strict = StrictKey(key)
    if strict in mapping:
        raise DecodeError(f"map keys that cannot be kept apart: {_describe(key)}")
    mapping[strict] = value


_KEY_NEEDS_WRAP = frozenset((list, dict, tuple))
