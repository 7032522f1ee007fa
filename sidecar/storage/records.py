"""Records as bytes and back: what the persistent backends (SQLite, Redis, the copying test
backend) store.

Every term is kept in the external term format (`codec`), so a stored value is exactly the
term that was sent (atoms stay atoms, tuples tuples, pids pids) and any BEAM can read it with
`:erlang.binary_to_term/1`. A session header is the tuple of its fields (`fields()`); a
variable is `{head, data}` (`variable_bytes`), so an update re-encodes only its data.
Session ids and global program ids, always binaries, are kept as their raw bytes.
"""

from __future__ import annotations

import operator
from typing import Any

from sidecar.codec import decode, encode_body
from sidecar.storage.base import EMPTY_LIST, EMPTY_MAP, NOT_OPTIMIZING, SessionRecord, VariableRecord, is_default_status

_VERSION = b"\x83"


def term_bytes(term: Any) -> bytes:
    """`term` in the external term format, without the version byte."""
    return encode_body(term)


def bytes_term(data: bytes) -> Any:
    """The term `term_bytes` made."""
    return decode(_VERSION + data)


_HEAD = operator.attrgetter("id", "name", "type", "constraints", "created_at", "optimization_status", "access_rules")
_DATA = operator.attrgetter("value", "metadata", "version", "last_updated_at", "stamp")
_PAIR = bytes((104, 2))  # SMALL_TUPLE_EXT of arity 2: a variable is {head, data}


class HeadCache:
    """The encoded heads of the variables a backend writes, so an update (a new value, new
    metadata) encodes only what changed: a head is reused while its record shares every head
    object (`with_value` copies them by reference). Bounded: emptied at `limit` entries."""

    def __init__(self, limit: int = 65536) -> None:
        self._limit = limit
        self._heads: dict[str, tuple] = {}

    def head_bytes(self, variable: VariableRecord) -> bytes:
        head = _HEAD(variable)
        entry = self._heads.get(variable.id)
        if entry is not None and all(a is b for a, b in zip(entry[0], head)):
            return entry[1]
        data = encode_body(head)
        if len(self._heads) >= self._limit:
            self._heads.clear()
        self._heads[variable.id] = (head, data)
        return data


def variable_bytes(variable: VariableRecord, heads: HeadCache | None = None) -> bytes:
    """`{head, data}`: the fields an update leaves alone (id, name, type, constraints,
    created_at, optimization status, access rules), then those it changes (value, metadata,
    version, last_updated_at, stamp), so a `HeadCache` can reuse the first."""
    head = heads.head_bytes(variable) if heads is not None else encode_body(_HEAD(variable))
    return _PAIR + head + encode_body(_DATA(variable))


def bytes_variable(data: bytes) -> VariableRecord:
    """The record back, its empty maps, empty list and default status the shared ones (as the
    store builds them: the hot paths test for those by identity, and memory stays small)."""
    (id_, name, type_, constraints, created_at, status, access_rules), (value, metadata, version, updated, stamp) = decode(
        _VERSION + data
    )
    variable = VariableRecord(
        id_, name, type_, value, constraints, metadata, version, created_at, updated, status, access_rules, stamp
    )
    if variable.constraints == EMPTY_MAP and type(variable.constraints) is dict:
        variable.constraints = EMPTY_MAP
    if variable.metadata == EMPTY_MAP and type(variable.metadata) is dict:
        variable.metadata = EMPTY_MAP
    if variable.access_rules == EMPTY_LIST and type(variable.access_rules) is list:
        variable.access_rules = EMPTY_LIST
    if is_default_status(variable.optimization_status):
        variable.optimization_status = NOT_OPTIMIZING
    return variable


def session_bytes(header: SessionRecord) -> bytes:
    return encode_body(header.fields())


def bytes_session(data: bytes) -> SessionRecord:
    header = SessionRecord(*decode(_VERSION + data))
    if header.metadata == EMPTY_MAP and type(header.metadata) is dict:
        header.metadata = EMPTY_MAP
    return header


def id_bytes(binary: Any) -> bytes:
    """A session or global program id (str when UTF-8, bytes otherwise) as its raw bytes."""
    return binary.encode() if type(binary) is str else bytes(binary)


def bytes_id(raw: bytes) -> Any:
    """The id `id_bytes` made: str when the bytes are UTF-8 (as the codec decodes binaries)."""
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return bytes(raw)
