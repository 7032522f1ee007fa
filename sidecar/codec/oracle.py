"""The reference oracle for tests: the same decode/encode on top of erlang-py plus a mapping
layer that fixes its defaults for Elixir (slow; see `sidecar.codec` for its limits)."""

from __future__ import annotations

import struct
from typing import Any

import erlang

from sidecar.codec.decode import (
    _inflate,
)
from sidecar.codec.depth import (
    _check_depth_for_decode,
    term_depth,
)
from sidecar.codec.encode import (
    _INT_ONLY,
    _encode_too_deep,
)
from sidecar.codec.etf import (
    _KEY_NEEDS_WRAP,
    _MAX_ATOM_CHARS,
    COMPRESSED,
    MAX_TERM_DEPTH,
    MAX_UNCOMPRESSED_SIZE,
    VERSION,
    DecodeError,
    EncodeError,
    _atom_term,
    _binary_term,
    _bit_binary_term,
    _describe_exception,
    _improper,
    _insert_distinct,
    _too_deep,
)
from sidecar.terms import Atom, BitString, Encoded, ImproperList, ListKey, MapKey, Opaque, StrictKey, hashable_key

# ---------------------------------------------------------------------------------------------
# erlang-py path (reference oracle): erlang-py plus a mapping layer that fixes its defaults
# ---------------------------------------------------------------------------------------------


def decode_via_erlang_py(data: bytes | bytearray | memoryview, *, max_uncompressed_size: int = MAX_UNCOMPRESSED_SIZE) -> Any:
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
        if term and len(term) <= 65535 and set(map(type, term)) == _INT_ONLY and all(0 <= item <= 255 for item in term):
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
    return {_raw_etf(erlang.term_to_binary(_to_erlang_py(key))[1:]): _to_erlang_py(value) for key, value in pairs}
