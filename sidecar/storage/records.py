"""Records as bytes and back: what the persistent backends (SQLite, Redis, the copying test
backend) store.

Every term is kept in the external term format (`codec`), so a stored value is exactly the
term that was sent (atoms stay atoms, tuples tuples, pids pids) and any BEAM can read it with
`:erlang.binary_to_term/1`. A record is the tuple of its fields (`fields()`), encoded whole.
Session ids and global program ids, always binaries, are kept as their raw bytes.
"""

from __future__ import annotations

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


def variable_bytes(variable: VariableRecord) -> bytes:
    return encode_body(variable.fields())


def bytes_variable(data: bytes) -> VariableRecord:
    """The record back, its empty maps, empty list and default status the shared ones (as the
    store builds them: the hot paths test for those by identity, and memory stays small)."""
    variable = VariableRecord(*decode(_VERSION + data))
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
