"""The request hot path: `peek_call_id` (a frame's call id from its first bytes) and `decode_call`
(a call frame's parts, its flat arguments read inline, read calls' arguments memoised)."""

from __future__ import annotations

from typing import Any

from sidecar.codec.decode import (
    _ATOM_TERMS,
    _dec,
    _learn_atom,
    _truncated,
)
from sidecar.codec.etf import (
    _MISSING,
    ATOM_EXT,
    ATOM_UTF8_EXT,
    BINARY_EXT,
    INTEGER_EXT,
    LIST_EXT,
    NEW_FLOAT_EXT,
    NIL_EXT,
    SMALL_ATOM_EXT,
    SMALL_ATOM_UTF8_EXT,
    SMALL_BIG_EXT,
    SMALL_INTEGER_EXT,
    SMALL_TUPLE_EXT,
    VERSION,
    DecodeError,
    _improper,
    _pack_I,
    _unpack_d,
    _unpack_I,
    _unpack_i,
)
from sidecar.terms import Atom

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
