"""The Erlang external term format (ETF) <-> the native terms of `sidecar.terms`.

The package's modules: `etf` (tags, limits, errors, shared helpers), `decode`, `encode` (with
the frame encoders), `depth` (`term_depth`), `hot` (the request hot path: `peek_call_id`,
`decode_call`), `oracle` (the erlang-py reference path). This module is the public face.

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
make sure the whole reply stays within the limit (`sidecar.store.calls` refuses writes that could
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

import zlib  # noqa: F401  (tests count its inflations through sidecar.codec.zlib)

from sidecar.codec.decode import _ATOM_CACHE_LIMIT, _ATOM_TERMS, _dec, decode
from sidecar.codec.depth import SCALAR_TYPES, term_depth
from sidecar.codec.encode import (
    _ATOM_ENCODINGS,
    encode,
    encode_body,
    encode_frame,
    encode_reply_frame,
    encode_tagged_frame,
    tagged_head,
)
from sidecar.codec.etf import (
    MAX_TERM_DEPTH,
    MAX_UNCOMPRESSED_SIZE,
    VERSION,
    DecodeError,
    DecodeTooDeep,
    EncodeError,
    EncodeTooDeep,
)
from sidecar.codec.hot import (
    _MEMO_ENTRIES,
    _MEMO_FUNCTIONS,
    _PREFIX_MEMO_FUNCTIONS,
    _dec_args,
    _decoded_args,
    _decoded_prefixes,
    decode_call,
    peek_call_id,
)
from sidecar.codec.oracle import decode_via_erlang_py, encode_via_erlang_py

__all__ = [
    "DecodeError",
    "EncodeError",
    "DecodeTooDeep",
    "EncodeTooDeep",
    "MAX_TERM_DEPTH",
    "MAX_UNCOMPRESSED_SIZE",
    "SCALAR_TYPES",
    "VERSION",
    "term_depth",
    "decode",
    "encode",
    "encode_body",
    "encode_frame",
    "peek_call_id",
    "decode_call",
    "tagged_head",
    "encode_tagged_frame",
    "encode_reply_frame",
    "decode_via_erlang_py",
    "encode_via_erlang_py",
    # read by the tests of the caches and the hot path
    "_ATOM_CACHE_LIMIT",
    "_ATOM_ENCODINGS",
    "_ATOM_TERMS",
    "_MEMO_ENTRIES",
    "_MEMO_FUNCTIONS",
    "_PREFIX_MEMO_FUNCTIONS",
    "_dec",
    "_dec_args",
    "_decoded_args",
    "_decoded_prefixes",
]
