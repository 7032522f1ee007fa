"""`encode` and the frame encoders: native terms -> ETF (`sidecar.codec`: the rules), with the
reply and telemetry frames' own fast paths."""

from __future__ import annotations

import struct
from typing import Any, Callable

from sidecar.codec.decode import (
    _ATOM_CACHE_LIMIT,
)
from sidecar.codec.etf import (
    _MAX_ATOM_CHARS,
    ATOM_UTF8_EXT,
    BINARY_EXT,
    BIT_BINARY_EXT,
    INTEGER_EXT,
    LARGE_BIG_EXT,
    LARGE_TUPLE_EXT,
    LIST_EXT,
    MAP_EXT,
    MAX_TERM_DEPTH,
    NEW_FLOAT_EXT,
    NIL_EXT,
    SMALL_ATOM_UTF8_EXT,
    SMALL_BIG_EXT,
    SMALL_INTEGER_EXT,
    SMALL_TUPLE_EXT,
    STRING_EXT,
    VERSION,
    EncodeError,
    EncodeTooDeep,
    _pack_Bd,
    _pack_BH,
    _pack_BI,
    _pack_Bi,
    _pack_BIB,
    _pack_I,
)
from sidecar.terms import Atom, BitString, Encoded, ImproperList, ListKey, MapKey, Opaque, StrictKey

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
