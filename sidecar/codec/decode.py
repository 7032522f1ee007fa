"""`decode`: one ETF term -> its native term (`sidecar.codec`: the rules)."""

from __future__ import annotations

import zlib
from typing import Any

from sidecar.codec.etf import (
    _ATOM_TAGS,
    _INT_TAGS,
    _KEY_NEEDS_WRAP,
    _MISSING,
    _OLD_FLOAT,
    ATOM_CACHE_REF,
    ATOM_EXT,
    ATOM_UTF8_EXT,
    BINARY_EXT,
    BIT_BINARY_EXT,
    COMPRESSED,
    EXPORT_EXT,
    FLOAT_EXT,
    INTEGER_EXT,
    LARGE_BIG_EXT,
    LARGE_TUPLE_EXT,
    LIST_EXT,
    MAP_EXT,
    MAX_TERM_DEPTH,
    MAX_UNCOMPRESSED_SIZE,
    NEW_FLOAT_EXT,
    NEW_FUN_EXT,
    NEW_PID_EXT,
    NEW_PORT_EXT,
    NEW_REFERENCE_EXT,
    NEWER_REFERENCE_EXT,
    NIL_EXT,
    PID_EXT,
    PORT_EXT,
    REFERENCE_EXT,
    SMALL_ATOM_EXT,
    SMALL_ATOM_UTF8_EXT,
    SMALL_BIG_EXT,
    SMALL_INTEGER_EXT,
    SMALL_TUPLE_EXT,
    STRING_EXT,
    V4_PORT_EXT,
    VERSION,
    DecodeError,
    _atom_term,
    _bit_binary_term,
    _describe_exception,
    _improper,
    _insert_distinct,
    _too_deep,
    _unpack_d,
    _unpack_H,
    _unpack_I,
    _unpack_i,
)
from sidecar.terms import Opaque, hashable_key

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
