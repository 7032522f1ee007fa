"""The Erlang external term format (ETF) <-> the native terms of `sidecar.terms`.

Public entry points:

    decode(data) -> term           one ETF term (first byte 131) -> native term
    encode(term) -> bytes          native term -> ETF, with the 131 version byte
    encode_frame(term) -> bytes    4-byte big-endian length + encode(term) ({:packet, 4})
    peek_call_id(prefix) -> int | None
                                   the id of a `{:call, id, _, _}` frame from its first bytes
    encode_tagged_frame(head, *items) -> bytes
                                   encode_frame((tag, *items)) for a prebuilt `tagged_head`
                                   (the hot path for replies and telemetry frames)
    encode_reply_frame(head, id, result) -> bytes
                                   encode_tagged_frame(head, id, result), quicker for the
                                   commonest replies
    decode_call(body) -> (id, function, args) | None
                                   the hot path for a request frame's body: the parts of a
                                   well-formed `{:call, id, atom, list}`, else None
    decode_via_erlang_py / encode_via_erlang_py
                                   the same on top of erlang-py plus a mapping layer; slow,
                                   kept as the reference oracle for tests

`decode`/`encode` are a direct codec (bytes indexing, `struct.unpack_from`, no intermediate
wrapper objects) because erlang-py is pure Python and too slow for the port's hot path.

Malformed input of any kind raises `DecodeError` (a ValueError); a Python object with no
Elixir form (or a NaN/infinite float, an atom over 255 characters) raises `EncodeError` (a
TypeError). Nothing else escapes for bad bytes.

Nesting depth: one limit, `MAX_TERM_DEPTH`, for both directions. A term's depth is the number
of containers on its deepest path: every tuple, map, non-empty list (a STRING_EXT too) and
improper list is one level, and so is a fun with free variables; scalars, binaries, pids and
`[]` are 0 (`term_depth`). `decode` refuses a term deeper than the limit with `DecodeTooDeep`
(before the Python stack is at risk: the decoder counts levels as it goes), `encode` refuses one
with `EncodeTooDeep`, so whatever decodes also encodes, and the other way round. A
`terms.Encoded` is written verbatim and not counted: whoever builds one from a stored term must
make sure the whole reply stays within the limit (`sidecar.calls` refuses writes that could
not, docs/protocol.md).

Decoding follows what `:erlang.binary_to_term/1` accepts: non-finite floats, duplicate map
keys, atoms over 255 characters and atom cache references are rejected; a LIST_EXT whose tail
is a list is flattened into one proper list; the unused low bits of a bitstring are zeroed.
Map keys that Python would merge (1, 1.0, true; 0.0 and -0.0) are kept apart by wrapping the
later one in `StrictKey`; list/map keys become `ListKey`/`MapKey` (see `terms.hashable_key`).

Limits of the erlang-py path (the reason the fast path does not use it): it merges map keys
1, 1.0 and true (erlang-py builds a plain dict first), turns lists inside map-valued map keys
into tuples (its `frozendict`) and fails on tuple keys holding a map; and its pid/port/ref
bytes are its own re-encoding (an OTP 24 ATOM_EXT node name comes back as SMALL_ATOM_EXT).
"""

from __future__ import annotations

import re
import struct
import zlib
from typing import Any, Callable

import erlang

from .terms import Atom, BitString, Encoded, ImproperList, ListKey, MapKey, Opaque, StrictKey, hashable_key

__all__ = [
    "DecodeError",
    "EncodeError",
    "DecodeTooDeep",
    "EncodeTooDeep",
    "MAX_TERM_DEPTH",
    "MAX_UNCOMPRESSED_SIZE",
    "SCALAR_TYPES",
    "term_depth",
    "decode",
    "encode",
    "encode_frame",
    "peek_call_id",
    "decode_call",
    "tagged_head",
    "encode_tagged_frame",
    "encode_reply_frame",
    "decode_via_erlang_py",
    "encode_via_erlang_py",
]


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
        return len(a.items) == len(b.items) and all(
            _strictly_equal(x, y) for x, y in zip(a.items + [a.tail], b.items + [b.tail])
        )
    return a == b


def _describe(term: Any) -> str:
    """A term in an error message: its inspect output, cut short (never `repr`: CPython refuses
    to print an integer of more than 4300 digits, and the message must not raise)."""
    from .elixir_inspect import describe  # the printer sits above the codec; errors only

    return describe(term, 80)


def _describe_exception(exc: BaseException) -> str:
    from .elixir_inspect import describe_exception

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


# ---------------------------------------------------------------------------------------------
# Fast decoder
# ---------------------------------------------------------------------------------------------

# full atom encoding (tag + length + name bytes) -> native term. Bounded: when it holds
# _ATOM_CACHE_LIMIT entries it is emptied, so a flood of distinct atom names (a peer can send
# millions in one frame) costs memory only until the next reset, and the atoms a peer keeps
# using are learnt again at their next use. The encoder's `_ATOM_ENCODINGS` works the same way.
# With `terms.Atom`'s weak interning, an atom nothing refers to any more is then freed.
_ATOM_TERMS: dict[bytes, Any] = {}
_ATOM_CACHE_LIMIT = 65536


def decode(data: bytes | bytearray | memoryview, *, max_uncompressed_size: int = MAX_UNCOMPRESSED_SIZE) -> Any:
    """Decode one external term (first byte 131) into its native form. Raises DecodeError."""
    if type(data) is not bytes:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"decode needs bytes, got {type(data).__name__}")
        data = bytes(data)
    try:
        if len(data) < 2 or data[0] != VERSION:
            raise DecodeError("not an external term (no version byte 131)")
        if data[1] == COMPRESSED:
            return _decode_compressed(data, max_uncompressed_size)
        term, end = _dec(data, 1, 0)
        if end != len(data):
            raise DecodeError(f"{len(data) - end} trailing bytes after the term")
        return term
    except DecodeError:
        raise
    except RecursionError as exc:  # only when called on an already deep stack
        raise _too_deep() from exc
    except Exception as exc:  # IndexError, struct.error, UnicodeDecodeError, MemoryError, ...
        raise DecodeError(f"malformed external term ({_describe_exception(exc)})") from exc


def _inflate(data: bytes, limit: int) -> bytes:
    """The uncompressed body of a COMPRESSED term, never inflating more than `limit` bytes."""
    if len(data) < 6:
        raise _truncated()
    size = _unpack_I(data, 2)[0]
    if size == 0:
        raise DecodeError("compressed term with uncompressed size 0")
    if size > limit:
        raise DecodeError(f"compressed term would expand to {size} bytes (limit {limit})")
    inflater = zlib.decompressobj()
    try:
        inner = inflater.decompress(data[6:], size + 1)
    except zlib.error as exc:
        raise DecodeError(f"bad compressed data: {exc}") from exc
    if len(inner) != size or not inflater.eof or inflater.unconsumed_tail or inflater.unused_data:
        raise DecodeError("compressed data does not match its declared size")
    return inner


def _decode_compressed(data: bytes, limit: int) -> Any:
    inner = _inflate(data, limit)
    term, end = _dec(inner, 0, 0)
    if end != len(inner):
        raise DecodeError("trailing bytes inside compressed term")
    return term


def _truncated() -> DecodeError:
    return DecodeError("truncated external term")


def _dec(data: bytes, i: int, level: int = 0) -> tuple[Any, int]:
    """Decode the term whose tag is at `data[i]`; return it and the index after it.

    `level` is how many containers enclose the term: a container met at MAX_TERM_DEPTH raises
    DecodeTooDeep (its contents are decoded at `level + 1`)."""
    tag = data[i]
    if tag == BINARY_EXT:
        start = i + 5
        end = start + _unpack_I(data, i + 1)[0]
        if end > len(data):
            raise _truncated()
        raw = data[start:end]
        try:
            return raw.decode(), end
        except UnicodeDecodeError:
            return raw, end
    if tag == ATOM_EXT:
        end = i + 3 + ((data[i + 1] << 8) | data[i + 2])
        term = _ATOM_TERMS.get(data[i:end], _MISSING)
        if term is _MISSING:
            term = _learn_atom(data, i, end)
        return term, end
    if tag == SMALL_ATOM_UTF8_EXT:
        end = i + 2 + data[i + 1]
        term = _ATOM_TERMS.get(data[i:end], _MISSING)
        if term is _MISSING:
            term = _learn_atom(data, i, end)
        return term, end
    if tag == SMALL_INTEGER_EXT:
        return data[i + 1], i + 2
    if tag == MAP_EXT:
        if level >= MAX_TERM_DEPTH:
            raise _too_deep()
        level += 1
        count = _unpack_I(data, i + 1)[0]
        start = i = i + 5
        if count > (len(data) - i) >> 1:
            raise _truncated()
        mapping: dict = {}
        for _ in range(count):
            key_tag = data[i]  # atom keys decoded inline: most keys are atoms
            if key_tag == SMALL_ATOM_UTF8_EXT or key_tag == ATOM_EXT:
                if key_tag == SMALL_ATOM_UTF8_EXT:
                    end = i + 2 + data[i + 1]
                else:
                    end = i + 3 + ((data[i + 1] << 8) | data[i + 2])
                key = _ATOM_TERMS.get(data[i:end], _MISSING)
                if key is _MISSING:
                    key = _learn_atom(data, i, end)
                i = end
            else:
                key, i = _dec(data, i, level)
                if type(key) in _KEY_NEEDS_WRAP:
                    key = hashable_key(key)
            mapping[key], i = _dec(data, i, level)
        if len(mapping) != count:
            return _dec_map_distinct(data, start, count, level)
        return mapping, i
    if tag == SMALL_TUPLE_EXT:
        if level >= MAX_TERM_DEPTH:
            raise _too_deep()
        level += 1
        arity = data[i + 1]
        i += 2
        if arity == 2:
            first, i = _dec(data, i, level)
            second, i = _dec(data, i, level)
            return (first, second), i
        items = [None] * arity
        for n in range(arity):
            items[n], i = _dec(data, i, level)
        return tuple(items), i
    if tag == NIL_EXT:
        return [], i + 1
    if tag == LIST_EXT:
        if level >= MAX_TERM_DEPTH:
            raise _too_deep()
        level += 1
        length = _unpack_I(data, i + 1)[0]
        i += 5
        if length > len(data) - i:
            raise _truncated()
        items = [None] * length
        for n in range(length):
            items[n], i = _dec(data, i, level)
        if data[i] == NIL_EXT:
            return items, i + 1
        tail, i = _dec(data, i, level)
        return _improper(items, tail), i
    if tag == INTEGER_EXT:
        return _unpack_i(data, i + 1)[0], i + 5
    if tag == NEW_FLOAT_EXT:
        value = _unpack_d(data, i + 1)[0]
        if value - value != 0.0:
            raise DecodeError("non-finite float")
        return value, i + 9
    if tag == STRING_EXT:
        end = i + 3 + ((data[i + 1] << 8) | data[i + 2])
        if end > len(data):
            raise _truncated()
        if level >= MAX_TERM_DEPTH and end > i + 3:  # a non-empty list: one level
            raise _too_deep()
        return list(data[i + 3 : end]), end
    if tag == SMALL_BIG_EXT:
        end = i + 3 + data[i + 1]
        if end > len(data):
            raise _truncated()
        value = int.from_bytes(data[i + 3 : end], "little")
        return (-value if data[i + 2] else value), end
    if tag == SMALL_ATOM_EXT or tag == ATOM_UTF8_EXT:
        end = i + (2 + data[i + 1] if tag == SMALL_ATOM_EXT else 3 + ((data[i + 1] << 8) | data[i + 2]))
        term = _ATOM_TERMS.get(data[i:end], _MISSING)
        if term is _MISSING:
            term = _learn_atom(data, i, end)
        return term, end
    return _dec_rare(data, i, tag, level)


def _learn_atom(data: bytes, start: int, end: int) -> Any:
    """Decode an atom not yet in the cache (tag at `start`), validate it and cache it."""
    if end > len(data):
        raise _truncated()
    tag = data[start]
    header = 3 if tag in (ATOM_EXT, ATOM_UTF8_EXT) else 2
    raw = data[start + header : end]
    if tag in (ATOM_UTF8_EXT, SMALL_ATOM_UTF8_EXT):
        try:
            name = raw.decode()
        except UnicodeDecodeError as exc:
            raise DecodeError("atom name is not valid UTF-8") from exc
    else:
        name = raw.decode("latin-1")
    term = _atom_term(name)
    if len(_ATOM_TERMS) >= _ATOM_CACHE_LIMIT:
        _ATOM_TERMS.clear()
    _ATOM_TERMS[data[start:end]] = term
    return term


def _dec_map_distinct(data: bytes, i: int, count: int, level: int) -> tuple[dict, int]:
    """Slow path for a map whose keys collide in a Python dict: keep them apart or reject.
    `level` is the level of the map's keys and values."""
    mapping: dict = {}
    for _ in range(count):
        key, i = _dec(data, i, level)
        value, i = _dec(data, i, level)
        if type(key) in _KEY_NEEDS_WRAP:
            key = hashable_key(key)
        _insert_distinct(mapping, key, value)
    return mapping, i


def _dec_atom_at(data: bytes, i: int) -> tuple[Any, int]:
    if data[i] not in _ATOM_TAGS:
        raise DecodeError("expected an atom")
    return _dec(data, i)


def _dec_int_at(data: bytes, i: int) -> tuple[int, int]:
    if data[i] not in _INT_TAGS:
        raise DecodeError("expected an integer")
    return _dec(data, i)


def _opaque(kind: str, data: bytes, start: int, end: int) -> tuple[Opaque, int]:
    if end > len(data):
        raise _truncated()
    return Opaque(kind, data[start:end]), end


def _dec_rare(data: bytes, i: int, tag: int, level: int) -> tuple[Any, int]:
    """Tags that rarely or never occur in SessionStore traffic."""
    if tag == LARGE_TUPLE_EXT:
        if level >= MAX_TERM_DEPTH:
            raise _too_deep()
        arity = _unpack_I(data, i + 1)[0]
        i += 5
        if arity > len(data) - i:
            raise _truncated()
        items = [None] * arity
        for n in range(arity):
            items[n], i = _dec(data, i, level + 1)
        return tuple(items), i
    if tag == LARGE_BIG_EXT:
        end = i + 6 + _unpack_I(data, i + 1)[0]
        if end > len(data):
            raise _truncated()
        value = int.from_bytes(data[i + 6 : end], "little")
        return (-value if data[i + 5] else value), end
    if tag == BIT_BINARY_EXT:
        start = i + 6
        end = start + _unpack_I(data, i + 1)[0]
        if end > len(data):
            raise _truncated()
        return _bit_binary_term(data[start:end], data[i + 5]), end
    if tag == FLOAT_EXT:
        end = i + 32
        if end > len(data):
            raise _truncated()
        text = data[i + 1 : end].split(b"\x00", 1)[0]
        if not _OLD_FLOAT.fullmatch(text):
            raise DecodeError("bad FLOAT_EXT text")
        old_float = float(text)
        if old_float - old_float != 0.0:
            raise DecodeError("non-finite float")
        return old_float, end
    if tag == NEW_PID_EXT or tag == PID_EXT:
        _, j = _dec_atom_at(data, i + 1)
        return _opaque("pid", data, i, j + (12 if tag == NEW_PID_EXT else 9))
    if tag == NEW_PORT_EXT or tag == PORT_EXT or tag == V4_PORT_EXT:
        _, j = _dec_atom_at(data, i + 1)
        return _opaque("port", data, i, j + {NEW_PORT_EXT: 8, PORT_EXT: 5, V4_PORT_EXT: 12}[tag])
    if tag == NEWER_REFERENCE_EXT or tag == NEW_REFERENCE_EXT:
        words = _unpack_H(data, i + 1)[0]
        if not 1 <= words <= 5:
            raise DecodeError(f"reference with {words} id words")
        _, j = _dec_atom_at(data, i + 3)
        return _opaque("ref", data, i, j + (4 if tag == NEWER_REFERENCE_EXT else 1) + 4 * words)
    if tag == REFERENCE_EXT:
        _, j = _dec_atom_at(data, i + 1)
        return _opaque("ref", data, i, j + 5)
    if tag == EXPORT_EXT:
        _, j = _dec_atom_at(data, i + 1)
        _, j = _dec_atom_at(data, j)
        if data[j] != SMALL_INTEGER_EXT:
            raise DecodeError("export arity must be a small integer")
        return _opaque("fun", data, i, j + 2)
    if tag == NEW_FUN_EXT:
        return _dec_new_fun(data, i, level)[:2]
    if tag == COMPRESSED:
        raise DecodeError("a compressed term may only appear at the top level")
    if tag == ATOM_CACHE_REF:
        raise DecodeError("atom cache references only exist in the distribution protocol")
    raise DecodeError(f"unknown or unsupported tag {tag}")


def _dec_new_fun(data: bytes, i: int, level: int) -> tuple[Opaque, int, list]:
    """NEW_FUN_EXT: Size Arity Uniq(16) Index NumFree Module OldIndex OldUniq Pid FreeVars.
    Returns the fun, the index after it and its free variables (a fun with free variables is
    one level: they are decoded at `level + 1`)."""
    size = _unpack_I(data, i + 1)[0]
    end = i + 1 + size
    if size < 29 or end > len(data):
        raise _truncated()
    free_count = _unpack_I(data, i + 26)[0]
    if free_count and level >= MAX_TERM_DEPTH:
        raise _too_deep()
    _, j = _dec_atom_at(data, i + 30)
    _, j = _dec_int_at(data, j)
    _, j = _dec_int_at(data, j)
    if data[j] not in (NEW_PID_EXT, PID_EXT):
        raise DecodeError("fun without a pid")
    _, j = _dec(data, j)
    if free_count > end - j:
        raise _truncated()
    free = [None] * free_count
    for n in range(free_count):
        free[n], j = _dec(data, j, level + 1)
    if j != end:
        raise DecodeError("NEW_FUN_EXT size does not match its contents")
    return Opaque("fun", data[i:end]), end, free


# ---------------------------------------------------------------------------------------------
# Fast encoder
# ---------------------------------------------------------------------------------------------

_SMALL_INTS = [bytes((SMALL_INTEGER_EXT, n)) for n in range(256)]
_NIL_ATOM = bytes((SMALL_ATOM_UTF8_EXT, 3)) + b"nil"
_TRUE_ATOM = bytes((SMALL_ATOM_UTF8_EXT, 4)) + b"true"
_FALSE_ATOM = bytes((SMALL_ATOM_UTF8_EXT, 5)) + b"false"
_NIL_EXT = bytes((NIL_EXT,))
_INT_ONLY = {int}

# Atom -> its encoding
_ATOM_ENCODINGS: dict[Atom, bytes] = {}


# What the encoder can hit on a term with no external form (the try costs nothing in 3.11)
_ENCODER_FAILURES = (RecursionError, UnicodeEncodeError, OverflowError, struct.error)


def _encode_error(exc: Exception) -> EncodeError:
    if isinstance(exc, RecursionError):  # only when called on an already deep stack
        return _encode_too_deep()
    if isinstance(exc, UnicodeEncodeError):
        return EncodeError(f"string is not encodable as UTF-8: {exc}")
    return EncodeError(f"term too large for the external term format: {exc}")


def encode(term: Any) -> bytes:
    """Encode a native term as ETF (with the 131 version byte). Raises EncodeError."""
    chunks: list[bytes] = [b"\x83"]
    try:
        _enc(term, chunks.append, 0)
    except _ENCODER_FAILURES as exc:
        raise _encode_error(exc) from exc
    return b"".join(chunks)


def encode_body(term: Any) -> bytes:
    """`encode(term)` without the version byte: what `terms.Encoded` holds."""
    return encode(term)[1:]


def encode_frame(term: Any) -> bytes:
    """A {:packet, 4} frame: 4-byte big-endian length, then encode(term)."""
    payload = encode(term)
    if len(payload) > 0xFFFFFFFF:
        raise EncodeError("term too large for a {:packet, 4} frame")
    return len(payload).to_bytes(4, "big") + payload


def tagged_head(tag: Atom, arity: int) -> bytes:
    """The first bytes of `encode((tag, ...))` for a tuple of `arity` (<= 255) elements."""
    if not 1 <= arity <= 255:
        raise ValueError("a tagged head needs a small tuple")
    return bytes((VERSION, SMALL_TUPLE_EXT, arity)) + (_ATOM_ENCODINGS.get(tag) or _atom_encoding(tag))


def encode_reply_frame(head: bytes, call_id: Any, result: Any) -> bytes:
    """`encode_tagged_frame(head, call_id, result)`, byte for byte: the reply's own fast path
    for a 32-bit non-negative id and a result that is an atom or `{atom, atom | Encoded}`
    (`:ok`, `{:ok, variable}`, `{:error, :not_found}`); anything else goes the general way."""
    if type(call_id) is int and 0 <= call_id <= 0x7FFFFFFF:
        kind = type(result)
        if kind is Atom:
            body = b"".join(
                (
                    head,
                    _SMALL_INTS[call_id] if call_id <= 255 else _pack_Bi(INTEGER_EXT, call_id),
                    _ATOM_ENCODINGS.get(result) or _atom_encoding(result),
                )
            )
            return _pack_I(len(body)) + body
        if kind is tuple and len(result) == 2:
            first, second = result
            if type(first) is Atom:
                kind = type(second)
                if kind is Encoded:
                    tail = second.etf
                elif kind is Atom:
                    tail = _ATOM_ENCODINGS.get(second) or _atom_encoding(second)
                else:
                    tail = None
                if tail is not None and len(tail) < 0xFFFF0000:
                    body = b"".join(
                        (
                            head,
                            _SMALL_INTS[call_id] if call_id <= 255 else _pack_Bi(INTEGER_EXT, call_id),
                            _TUPLE2,
                            _ATOM_ENCODINGS.get(first) or _atom_encoding(first),
                            tail,
                        )
                    )
                    return _pack_I(len(body)) + body
    return encode_tagged_frame(head, call_id, result)


def encode_tagged_frame(head: bytes, *items: Any) -> bytes:
    """`encode_frame((tag, *items))`, byte for byte, where `head` is `tagged_head(tag, 1 + len(items))`.

    The outer tuple and tag are prebuilt; the shapes most replies take (an atom, a small integer,
    `{atom, atom | Encoded | binary}`) are written without the general encoder."""
    chunks = [head]
    put = chunks.append
    try:
        for item in items:
            kind = type(item)
            if kind is Atom:
                put(_ATOM_ENCODINGS.get(item) or _atom_encoding(item))
            elif kind is int and 0 <= item <= 255:
                put(_SMALL_INTS[item])
            elif kind is dict:  # flat maps with atom keys: telemetry measurements and metadata
                put(_pack_BI(MAP_EXT, len(item)))
                for key, value in item.items():
                    if type(key) is Atom:
                        put(_ATOM_ENCODINGS.get(key) or _atom_encoding(key))
                    else:
                        _enc(key, put, 2)
                    value_kind = type(value)
                    if value_kind is int and 0 <= value <= 255:
                        put(_SMALL_INTS[value])
                    elif value_kind is Atom:
                        put(_ATOM_ENCODINGS.get(value) or _atom_encoding(value))
                    elif value_kind is str:
                        raw = value.encode()
                        put(_pack_BI(BINARY_EXT, len(raw)))
                        put(raw)
                    elif value_kind is bool:
                        put(_TRUE_ATOM if value else _FALSE_ATOM)
                    else:
                        _enc(value, put, 2)
            elif kind is tuple and len(item) == 2 and type(item[0]) is Atom:
                first, second = item
                put(_TUPLE2)
                put(_ATOM_ENCODINGS.get(first) or _atom_encoding(first))
                if type(second) is Encoded:
                    put(second.etf)
                elif type(second) is Atom:
                    put(_ATOM_ENCODINGS.get(second) or _atom_encoding(second))
                else:
                    _enc(second, put, 2)
            else:
                _enc(item, put, 1)
    except _ENCODER_FAILURES as exc:
        raise _encode_error(exc) from exc
    payload = b"".join(chunks)
    if len(payload) > 0xFFFFFFFF:
        raise EncodeError("term too large for a {:packet, 4} frame")
    return _pack_I(len(payload)) + payload


_TUPLE2 = bytes((SMALL_TUPLE_EXT, 2))


def _atom_encoding(atom: Atom) -> bytes:
    name = atom.name
    if len(name) > _MAX_ATOM_CHARS:
        raise EncodeError(f"atom name longer than {_MAX_ATOM_CHARS} characters: {name[:40]!r}...")
    raw = name.encode()
    if len(raw) <= 255:
        encoded = bytes((SMALL_ATOM_UTF8_EXT, len(raw))) + raw
    else:
        encoded = _pack_BH(ATOM_UTF8_EXT, len(raw)) + raw
    if len(_ATOM_ENCODINGS) >= _ATOM_CACHE_LIMIT:
        _ATOM_ENCODINGS.clear()
    _ATOM_ENCODINGS[atom] = encoded
    return encoded


def _big_encoding(value: int) -> bytes:
    sign = 1 if value < 0 else 0
    magnitude = -value if sign else value
    size = (magnitude.bit_length() + 7) // 8
    digits = magnitude.to_bytes(size, "little")
    if size <= 255:
        return bytes((SMALL_BIG_EXT, size, sign)) + digits
    return _pack_BIB(LARGE_BIG_EXT, size, sign) + digits


def _encode_too_deep() -> EncodeTooDeep:
    return EncodeTooDeep(f"term nested deeper than {MAX_TERM_DEPTH} levels")


def _enc(term: Any, put: Callable[[bytes], None], level: int) -> None:
    """Write `term`, enclosed by `level` containers (a container at MAX_TERM_DEPTH raises)."""
    kind = type(term)
    if kind is str:
        raw = term.encode()
        put(_pack_BI(BINARY_EXT, len(raw)))
        put(raw)
    elif kind is Atom:
        put(_ATOM_ENCODINGS.get(term) or _atom_encoding(term))
    elif kind is dict:
        if level >= MAX_TERM_DEPTH:
            raise _encode_too_deep()
        level += 1
        put(_pack_BI(MAP_EXT, len(term)))
        for key, value in term.items():
            if type(key) is Atom:  # inline: most keys are atoms
                put(_ATOM_ENCODINGS.get(key) or _atom_encoding(key))
            else:
                _enc(key, put, level)
            if type(value) is Encoded:  # inline: cached variable structs (get_variables)
                put(value.etf)
            else:
                _enc(value, put, level)
    elif kind is int:
        if 0 <= term <= 255:
            put(_SMALL_INTS[term])
        elif -2147483648 <= term <= 2147483647:
            put(_pack_Bi(INTEGER_EXT, term))
        else:
            put(_big_encoding(term))
    elif term is None:
        put(_NIL_ATOM)
    elif kind is tuple:
        _enc_tuple(term, put, level)
    elif kind is list:
        _enc_list(term, put, level)
    elif kind is float:
        if term - term != 0.0:
            raise EncodeError(f"the BEAM has no float {term!r}")
        put(_pack_Bd(NEW_FLOAT_EXT, term))
    elif kind is bool:
        put(_TRUE_ATOM if term else _FALSE_ATOM)
    elif kind is bytes:
        put(_pack_BI(BINARY_EXT, len(term)))
        put(term)
    else:
        _enc_other(term, put, level)


def _enc_tuple(term: tuple, put: Callable[[bytes], None], level: int) -> None:
    if level >= MAX_TERM_DEPTH:
        raise _encode_too_deep()
    arity = len(term)
    put(bytes((SMALL_TUPLE_EXT, arity)) if arity <= 255 else _pack_BI(LARGE_TUPLE_EXT, arity))
    for item in term:
        _enc(item, put, level + 1)


def _enc_list(term: list | tuple, put: Callable[[bytes], None], level: int) -> None:
    length = len(term)
    if length == 0:
        put(_NIL_EXT)
        return
    if level >= MAX_TERM_DEPTH:
        raise _encode_too_deep()
    if length <= 65535 and type(term[0]) is int and set(map(type, term)) == _INT_ONLY:
        try:
            raw = bytes(term)
        except ValueError:
            pass  # some int outside 0..255: a LIST_EXT
        else:
            put(_pack_BH(STRING_EXT, length))
            put(raw)
            return
    put(_pack_BI(LIST_EXT, length))
    level += 1
    for item in term:
        _enc(item, put, level)
    put(_NIL_EXT)


def _enc_other(term: Any, put: Callable[[bytes], None], level: int) -> None:
    """Wrappers and subclasses: everything not matched by exact type in `_enc`."""
    if type(term) is Encoded:
        put(term.etf)
    elif isinstance(term, ListKey):
        _enc_list(term, put, level)
    elif isinstance(term, MapKey):
        if level >= MAX_TERM_DEPTH:
            raise _encode_too_deep()
        put(_pack_BI(MAP_EXT, len(term)))
        for key, value in term:
            _enc(key, put, level + 1)
            _enc(value, put, level + 1)
    elif isinstance(term, StrictKey):
        _enc(term.value, put, level)
    elif isinstance(term, ImproperList):
        if not term.items:
            _enc(term.tail, put, level)
            return
        if level >= MAX_TERM_DEPTH:
            raise _encode_too_deep()
        put(_pack_BI(LIST_EXT, len(term.items)))
        for item in term.items:
            _enc(item, put, level + 1)
        _enc(term.tail, put, level + 1)
    elif isinstance(term, BitString):
        if not term.data or not 1 <= term.bits <= 8:
            raise EncodeError(f"invalid bitstring {term!r}")
        put(_pack_BIB(BIT_BINARY_EXT, len(term.data), term.bits))
        put(term.data)
    elif isinstance(term, Opaque):
        if not term.etf:
            raise EncodeError("empty Opaque")
        put(term.etf)
    elif isinstance(term, bool):
        put(_TRUE_ATOM if term else _FALSE_ATOM)
    elif isinstance(term, int):
        _enc(int(term), put, level)
    elif isinstance(term, float):
        _enc(float(term), put, level)
    elif isinstance(term, str):
        _enc(str(term), put, level)
    elif isinstance(term, (bytes, bytearray, memoryview)):
        _enc(bytes(term), put, level)
    elif isinstance(term, dict):
        _enc(dict(term), put, level)
    elif isinstance(term, list):
        _enc_list(term, put, level)
    elif isinstance(term, tuple):
        _enc_tuple(term, put, level)
    else:
        raise EncodeError(f"no Elixir form for a Python {type(term).__name__}: {term!r:.80}")


# ---------------------------------------------------------------------------------------------
# term_depth
# ---------------------------------------------------------------------------------------------

SCALAR_TYPES = frozenset((str, bytes, int, float, bool, type(None), Atom, BitString, Encoded))
"""Types whose values have depth 0 (`term_depth`) without looking inside: a type test is all a
caller needs for the commonest arguments."""


def _children(term: Any) -> tuple[bool, Any]:
    """`(is_level, parts)`: whether `term` is one level of nesting, and the terms inside it
    (None for a leaf). `[]` is a leaf; a StrictKey and an improper list without items are not
    levels of their own (their one part is at their level)."""
    kind = type(term)
    if kind is list or kind is ListKey:
        return (True, term) if term else (False, None)
    if kind is dict:
        return True, [part for pair in term.items() for part in pair]
    if kind is tuple:
        return True, term
    if kind is MapKey:
        return True, [part for pair in term for part in pair]
    if kind is StrictKey:
        return False, (term.value,)
    if kind is ImproperList:
        if not term.items:
            return False, (term.tail,)
        return True, [*term.items, term.tail]
    if kind is Opaque:
        free = _fun_free_variables(term)
        return (True, free) if free else (False, None)
    if isinstance(term, (list, tuple, dict)):  # subclasses: as the encoder writes them
        return _children(list(term) if isinstance(term, list) else tuple(term) if isinstance(term, tuple) else dict(term))
    return False, None


def _fun_free_variables(term: Opaque) -> list:
    """The free variables of a NEW_FUN_EXT fun (an empty list for any other opaque term)."""
    etf = term.etf
    if term.kind != "fun" or not etf or etf[0] != NEW_FUN_EXT:
        return []
    try:
        return _dec_new_fun(etf, 0, 0)[2]
    except Exception:  # not a fun this codec can read: it has no parts it can see
        return []


def term_depth(term: Any, cap: int | None = None) -> int:
    """The nesting depth of a native term, as decode and encode count it (module docstring).

    With `cap`, stops as soon as the depth is known to be over it and returns `cap + 1`, so
    `term_depth(t, n) > n` asks "deeper than n?" (the dispatch layer's check): a walk that
    recurses at most `cap + 1` levels, for speed (scalars are skipped by a type test, only
    containers cost a call). Without `cap`, an iterative walk that measures any depth. A
    `terms.Encoded` counts as 0 (its bytes are not read)."""
    if type(term) in SCALAR_TYPES:
        return 0
    if cap is not None:
        try:
            return _capped_depth(term, cap)
        except _DeeperThanCap:
            return cap + 1
    deepest = 0
    stack: list[tuple[Any, int]] = [(term, 0)]
    pop, push = stack.pop, stack.append
    scalars = SCALAR_TYPES
    while stack:
        item, level = pop()
        is_level, parts = _children(item)
        if is_level:
            level += 1
            if level > deepest:
                deepest = level
        if parts:
            for part in parts:
                if type(part) not in scalars:
                    push((part, level))
    return deepest


class _DeeperThanCap(Exception):
    """Raised out of `_capped_depth` as soon as a container is met with no levels left."""


def _capped_depth(term: Any, budget: int) -> int:
    """The depth of `term` (not a scalar), or _DeeperThanCap when it is over `budget`."""
    kind = type(term)
    scalars = SCALAR_TYPES
    deepest = 0
    if kind is dict:
        if budget <= 0:
            raise _DeeperThanCap
        for key, value in term.items():
            if type(key) not in scalars:
                depth = _capped_depth(key, budget - 1)
                if depth > deepest:
                    deepest = depth
            if type(value) not in scalars:
                depth = _capped_depth(value, budget - 1)
                if depth > deepest:
                    deepest = depth
        return deepest + 1
    if kind is list or kind is tuple:
        if not term and kind is list:
            return 0
        if budget <= 0:
            raise _DeeperThanCap
        for part in term:
            if type(part) not in scalars:
                depth = _capped_depth(part, budget - 1)
                if depth > deepest:
                    deepest = depth
        return deepest + 1
    is_level, parts = _children(term)  # wrappers, improper lists, funs, subclasses
    inner = budget - 1 if is_level else budget
    if is_level and budget <= 0:
        raise _DeeperThanCap
    for part in parts or ():
        if type(part) not in scalars:
            depth = _capped_depth(part, inner)
            if depth > deepest:
                deepest = depth
    return deepest + 1 if is_level else deepest


def _check_depth_for_decode(term: Any) -> Any:
    if term_depth(term, MAX_TERM_DEPTH) > MAX_TERM_DEPTH:
        raise _too_deep()
    return term


# ---------------------------------------------------------------------------------------------
# peek_call_id
# ---------------------------------------------------------------------------------------------

_CALL_ATOMS = (
    bytes((SMALL_ATOM_UTF8_EXT, 4)) + b"call",
    bytes((SMALL_ATOM_EXT, 4)) + b"call",
    bytes((ATOM_EXT, 0, 4)) + b"call",
    bytes((ATOM_UTF8_EXT, 0, 4)) + b"call",
)


def peek_call_id(prefix: bytes | bytearray | memoryview) -> int | None:
    """The id of a `{:call, id, _, _}` frame from its first bytes, or None if unreadable."""
    head = bytes(prefix[:64])
    if len(head) < 3 or head[0] != VERSION or head[1] != SMALL_TUPLE_EXT or head[2] != 4:
        return None
    for atom in _CALL_ATOMS:
        if head.startswith(atom, 3):
            i = 3 + len(atom)
            break
    else:
        return None
    if len(head) <= i:
        return None
    tag = head[i]
    if tag == SMALL_INTEGER_EXT and len(head) >= i + 2:
        return head[i + 1]
    if tag == INTEGER_EXT and len(head) >= i + 5:
        return _unpack_i(head, i + 1)[0]
    if tag == SMALL_BIG_EXT and len(head) >= i + 3:
        end = i + 3 + head[i + 1]
        if len(head) >= end:
            value = int.from_bytes(head[i + 3 : end], "little")
            return -value if head[i + 2] else value
    return None


# ---------------------------------------------------------------------------------------------
# erlang-py path (reference oracle): erlang-py plus a mapping layer that fixes its defaults
# ---------------------------------------------------------------------------------------------


def decode_via_erlang_py(
    data: bytes | bytearray | memoryview, *, max_uncompressed_size: int = MAX_UNCOMPRESSED_SIZE
) -> Any:
    """decode() done by erlang.binary_to_term plus the mapping layer. Slow; for tests."""
    data = bytes(data)
    if len(data) >= 2 and data[0] == VERSION and data[1] == COMPRESSED:
        _inflate(data, max_uncompressed_size)  # erlang-py itself inflates without any bound
    try:
        raw = erlang.binary_to_term(data)
        return _check_depth_for_decode(_from_erlang_py(raw))
    except DecodeError:
        raise
    except RecursionError as exc:
        raise _too_deep() from exc
    except Exception as exc:  # erlang.ParseException, zlib.error, UnicodeDecodeError, ...
        raise DecodeError(f"malformed external term ({_describe_exception(exc)})") from exc


def encode_via_erlang_py(term: Any) -> bytes:
    """encode() done by the mapping layer plus erlang.term_to_binary. Slow; for tests."""
    try:
        if term_depth(term, MAX_TERM_DEPTH) > MAX_TERM_DEPTH:
            raise _encode_too_deep()
        return erlang.term_to_binary(_to_erlang_py(term))
    except EncodeError:
        raise
    except RecursionError as exc:
        raise _encode_too_deep() from exc
    except (erlang.OutputException, UnicodeEncodeError, struct.error) as exc:
        raise EncodeError(str(exc)) from exc


def _undefined_term() -> Any:
    """What erlang-py's None stands for: the atom set by erlang.set_undefined (global state)."""
    return _atom_term(erlang._UNDEFINED.decode("latin-1"))  # noqa: SLF001 - erlang-py global


def _from_erlang_py(value: Any) -> Any:
    """erlang-py's decoded objects -> native terms."""
    if value is None:
        return _undefined_term()
    if value is True or value is False:
        return value
    kind = type(value)
    if kind is int:
        return value
    if kind is float:
        if value - value != 0.0:
            raise DecodeError("non-finite float")
        return value
    if kind is bytes:  # STRING_EXT
        return list(value)
    if kind is list:
        return [_from_erlang_py(item) for item in value]
    if kind is tuple:
        return tuple(_from_erlang_py(item) for item in value)
    if isinstance(value, dict):  # dict or erlang.frozendict (a map used as a key)
        mapping: dict = {}
        for key, item in value.items():
            native_key = _from_erlang_py(key)
            if type(native_key) in _KEY_NEEDS_WRAP:
                native_key = hashable_key(native_key)
            _insert_distinct(mapping, native_key, _from_erlang_py(item))
        return mapping
    if kind is erlang.OtpErlangBinary:
        if value.bits == 8:
            return _binary_term(value.value)
        return _bit_binary_term(value.value, value.bits)
    if kind is erlang.OtpErlangAtom:
        name = value.value
        if isinstance(name, int):
            raise DecodeError("atom cache references only exist in the distribution protocol")
        return _atom_term(name if isinstance(name, str) else name.decode("latin-1"))
    if kind is erlang.OtpErlangList:
        items = [_from_erlang_py(item) for item in value.value]
        if value.improper:
            return _improper(items[:-1], items[-1])
        return items
    if kind is erlang.OtpErlangPid:
        return Opaque("pid", value.binary())
    if kind is erlang.OtpErlangPort:
        return Opaque("port", value.binary())
    if kind is erlang.OtpErlangReference:
        return Opaque("ref", value.binary())
    if kind is erlang.OtpErlangFunction:
        return Opaque("fun", value.binary())
    raise DecodeError(f"erlang-py returned an unexpected {kind.__name__}")


def _raw_etf(encoded: bytes) -> erlang.OtpErlangFunction:
    """An erlang-py object that writes `encoded` (ETF without version byte) verbatim."""
    return erlang.OtpErlangFunction(encoded[0], encoded[1:])


def _to_erlang_py(term: Any) -> Any:
    """Native terms -> objects that erlang.term_to_binary writes as Elixir expects."""
    if term is None:
        return erlang.OtpErlangAtom("nil")
    if term is True or term is False:
        return term
    if isinstance(term, Atom):
        if len(term.name) > _MAX_ATOM_CHARS:
            raise EncodeError(f"atom name longer than {_MAX_ATOM_CHARS} characters")
        return erlang.OtpErlangAtom(term.name)
    if isinstance(term, str):
        return erlang.OtpErlangBinary(term.encode())
    if isinstance(term, (bytes, bytearray, memoryview)):
        return erlang.OtpErlangBinary(bytes(term))
    if isinstance(term, int):
        return int(term)
    if isinstance(term, float):
        if term - term != 0.0:
            raise EncodeError(f"the BEAM has no float {term!r}")
        return float(term)
    if isinstance(term, StrictKey):
        return _to_erlang_py(term.value)
    if isinstance(term, (list, ListKey)):
        if (
            term
            and len(term) <= 65535
            and set(map(type, term)) == _INT_ONLY
            and all(0 <= item <= 255 for item in term)
        ):
            return bytes(term)  # erlang-py writes bytes as STRING_EXT, as the BEAM does
        return [_to_erlang_py(item) for item in term]
    if isinstance(term, MapKey):
        return _to_erlang_py_map(term)
    if isinstance(term, tuple):
        return tuple(_to_erlang_py(item) for item in term)
    if isinstance(term, dict):
        return _to_erlang_py_map(term.items())
    if isinstance(term, ImproperList):
        if not term.items:
            return _to_erlang_py(term.tail)
        items = [_to_erlang_py(item) for item in term.items]
        return erlang.OtpErlangList(items + [_to_erlang_py(term.tail)], improper=True)
    if isinstance(term, BitString):
        if not term.data or not 1 <= term.bits <= 8:
            raise EncodeError(f"invalid bitstring {term!r}")
        return erlang.OtpErlangBinary(term.data, term.bits)
    if isinstance(term, Opaque):
        if not term.etf:
            raise EncodeError("empty Opaque")
        return _raw_etf(term.etf)
    if isinstance(term, Encoded):
        return _raw_etf(term.etf)
    raise EncodeError(f"no Elixir form for a Python {type(term).__name__}: {term!r:.80}")


def _to_erlang_py_map(pairs: Any) -> dict:
    # Keys are written pre-encoded so that keys Python merges (1, 1.0, true) stay apart.
    return {
        _raw_etf(erlang.term_to_binary(_to_erlang_py(key))[1:]): _to_erlang_py(value)
        for key, value in pairs
    }


# ---------------------------------------------------------------------------------------------
# decode_call: the request hot path
# ---------------------------------------------------------------------------------------------

# `131, {4-tuple, :call` in each atom encoding a peer may use -> the offset after it
_CALL_HEADERS = {bytes((VERSION, SMALL_TUPLE_EXT, 4)) + atom: 3 + len(atom) for atom in _CALL_ATOMS}
_CALL_HEADER_SHORT = bytes((VERSION, SMALL_TUPLE_EXT, 4)) + _CALL_ATOMS[0]  # OTP 26+
_CALL_HEADER_LONG = bytes((VERSION, SMALL_TUPLE_EXT, 4)) + _CALL_ATOMS[2]  # OTP 25 and older


# The read calls' arguments are not decoded again when the same bytes arrived before: a client
# reading a variable in a loop sends the same `get_variable` arguments every time. Only the
# calls of _MEMO_FUNCTIONS (reads by identifier; writes carry values that seldom repeat), only
# argument lists of binaries and atoms (immutable), only up to _MEMO_KEY_BYTES of them, and the
# table is emptied when it holds _MEMO_ENTRIES, so it stays under about a megabyte whatever
# clients send. A hit returns a fresh list of the same immutable objects: what a decode gives.
_MEMO_FUNCTIONS = frozenset(
    Atom(name)
    for name in (
        "get_variable",
        "get_variable_value",
        "has_variable?",
        "get_session",
        "session_exists?",
        "get_program",
        "get_global_program",
    )
)
_MEMO_ENTRIES = 2048
_MEMO_KEY_BYTES = 256
_MEMO_ARG_TYPES = frozenset((str, bytes, Atom))
_decoded_args: dict[bytes, tuple] = {}


# A write's arguments differ from one call to the next in the value only: `update_variable`'s
# session id and name are memoised the same way, keyed by the bytes before a last argument that
# is a float or an integer of one of the two short encodings (the value, read from its fixed
# offset at the end of the frame). ETF is self-delimiting, so bytes that once decoded as a list
# header and exactly all but one of its elements do so every time: what follows them is the
# last element and the list's end, and the value read there is what `_dec_args` would read.
_PREFIX_MEMO_FUNCTIONS = frozenset((Atom("update_variable"),))
_decoded_prefixes: dict[bytes, tuple] = {}


def _scalar_tail(body: bytes) -> tuple[Any, int]:
    """`(value, size)` when `body` ends in a float or short integer element and a NIL_EXT
    (`size` bytes in all), as `_dec_args` would read them; `(None, 0)` otherwise."""
    size = len(body)
    if size > 10 and body[-1] == NIL_EXT:
        if body[-10] == NEW_FLOAT_EXT:
            value = _unpack_d(body, size - 9)[0]
            if value - value == 0.0:  # finite, as `_dec_args` requires
                return value, 10
        elif body[-3] == SMALL_INTEGER_EXT:
            return body[-2], 3
        elif body[-6] == INTEGER_EXT:
            return _unpack_i(body, size - 5)[0], 6
    return None, 0


def _memo_prefix(body: bytes, start: int, args: list) -> None:
    """Keep the decoded leading arguments of `body[start:]` (a LIST_EXT whose decode gave
    `args`) when its last element and end are a `_scalar_tail` and the bytes before it decode
    as exactly the leading arguments (checked by decoding them as a list of their own)."""
    value, size = _scalar_tail(body)
    if not size or len(args) < 2 or type(args[-1]) is not type(value):
        return
    prefix = body[start:-size]
    leading = args[:-1]
    if len(prefix) > _MEMO_KEY_BYTES or any(type(arg) not in _MEMO_ARG_TYPES for arg in leading):
        return
    try:
        alone, end = _dec_args(bytes((LIST_EXT,)) + _pack_I(len(leading)) + prefix[5:] + bytes((NIL_EXT,)), 0)
    except Exception:
        return
    if end != len(prefix) + 1 or alone != leading or _unpack_I(prefix, 1)[0] != len(args):
        return
    if len(_decoded_prefixes) >= _MEMO_ENTRIES:
        _decoded_prefixes.clear()
    _decoded_prefixes[prefix] = tuple(leading)


def _memo_args(key: bytes, args: list) -> None:
    if len(key) > _MEMO_KEY_BYTES:
        return
    for arg in args:
        if type(arg) not in _MEMO_ARG_TYPES:
            return
    if len(_decoded_args) >= _MEMO_ENTRIES:
        _decoded_args.clear()
    _decoded_args[key] = tuple(args)


def decode_call(body: bytes) -> tuple[int, Atom, list] | None:
    """`(id, function, args)` when `body` (one frame's ETF, bytes) is exactly a `{:call, id,
    function, args}` with a non-negative id, an Atom function (not nil/true/false) and a list
    of args; None for anything else (the caller then takes the general path, `decode`, which
    also gives the error of a malformed frame). Where it answers, `decode(body)` is exactly
    `(Atom("call"), id, function, args)`: the function atom is read as `_dec` reads it, and the
    args by `_dec_args` (a LIST_EXT of scalars inline, anything else by `_dec`)."""
    if body.startswith(_CALL_HEADER_SHORT):
        i = 9
    elif body.startswith(_CALL_HEADER_LONG):
        i = 10
    else:
        i = _CALL_HEADERS.get(body[:9], 0) or _CALL_HEADERS.get(body[:10], 0)
        if not i:
            return None
    try:
        tag = body[i]
        if tag == SMALL_INTEGER_EXT:
            call_id = body[i + 1]
            i += 2
        elif tag == INTEGER_EXT:
            call_id = _unpack_i(body, i + 1)[0]
            if call_id < 0:
                return None
            i += 5
        else:
            return None
        tag = body[i]
        if tag == SMALL_ATOM_UTF8_EXT:
            end = i + 2 + body[i + 1]
        elif tag == ATOM_EXT:
            end = i + 3 + ((body[i + 1] << 8) | body[i + 2])
        elif tag == SMALL_ATOM_EXT:
            end = i + 2 + body[i + 1]
        elif tag == ATOM_UTF8_EXT:
            end = i + 3 + ((body[i + 1] << 8) | body[i + 2])
        else:
            return None
        function = _ATOM_TERMS.get(body[i:end], _MISSING)
        if function is _MISSING:
            function = _learn_atom(body, i, end)
        if type(function) is not Atom:
            return None
        key = None
        if function in _MEMO_FUNCTIONS:
            key = body[end:]
            memo = _decoded_args.get(key)
            if memo is not None:
                return call_id, function, list(memo)
        elif function in _PREFIX_MEMO_FUNCTIONS:
            value, size = _scalar_tail(body)
            if size:
                memo = _decoded_prefixes.get(body[end:-size])
                if memo is not None:
                    return call_id, function, [*memo, value]
        if body[end] == LIST_EXT:
            args, i = _dec_args(body, end)
        else:
            args, i = _dec(body, end, 1)
    except Exception:  # malformed: the general path reports it
        return None
    if type(args) is not list or i != len(body):
        return None
    if key is not None:
        _memo_args(key, args)
    elif function in _PREFIX_MEMO_FUNCTIONS:
        _memo_prefix(body, end, args)
    return call_id, function, args


def _dec_args(data: bytes, i: int) -> tuple[Any, int]:
    """`_dec(data, i, 1)` for the LIST_EXT at `i` (a call's argument list, inside the call
    tuple), with the scalar elements a call's arguments are made of (binaries, atoms, small and
    32-bit integers, new floats) decoded inline; any other element goes through `_dec` at level
    2. Same results and same failures as `_dec`."""
    length = _unpack_I(data, i + 1)[0]
    i += 5
    size = len(data)
    if length > size - i:
        raise _truncated()
    items: list = []
    put = items.append
    for _ in range(length):
        tag = data[i]
        if tag == BINARY_EXT:
            start = i + 5
            i = start + _unpack_I(data, i + 1)[0]
            if i > size:
                raise _truncated()
            raw = data[start:i]
            try:
                put(raw.decode())
            except UnicodeDecodeError:
                put(raw)
        elif tag == SMALL_ATOM_UTF8_EXT or tag == ATOM_EXT:
            start = i
            i += 2 + data[i + 1] if tag == SMALL_ATOM_UTF8_EXT else 3 + ((data[i + 1] << 8) | data[i + 2])
            term = _ATOM_TERMS.get(data[start:i], _MISSING)
            put(_learn_atom(data, start, i) if term is _MISSING else term)
        elif tag == SMALL_INTEGER_EXT:
            put(data[i + 1])
            i += 2
        elif tag == NEW_FLOAT_EXT:
            value = _unpack_d(data, i + 1)[0]
            if value - value != 0.0:
                raise DecodeError("non-finite float")
            put(value)
            i += 9
        elif tag == INTEGER_EXT:
            put(_unpack_i(data, i + 1)[0])
            i += 5
        else:
            term, i = _dec(data, i, 2)
            put(term)
    if data[i] == NIL_EXT:
        return items, i + 1
    tail, i = _dec(data, i, 2)
    return _improper(items, tail), i
