"""The Redis backend's per-sidecar copy of the sessions it works on, and how a session is read.

A `CachedSession` is one whole session as the scripts last saw it (`from_load`): its header, its
variables in registration order, its name index and its programs in first-stored order, with the
change tokens of its header (`hv`, `ver`) and of its contents (`cv`). Units of work read from it
and record what they read (`redis_unit`), so a call on a session this sidecar already holds needs
no Redis round trip before its commit, and the commit script checks that what was read is still
what Redis holds. The copy is only ever a guess: nothing is decided on it that a commit does not
check.

`SessionCache` keeps those copies, least recently used first out, within a byte budget.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Iterator, Optional

from sidecar.storage.base import EMPTY_MAP, SessionId, SessionRecord, VariableRecord
from sidecar.storage.records import bytes_id, bytes_term, bytes_variable

ENTRY_OVERHEAD = 512
"""Bytes counted for a session besides its stored values (records, dicts)."""


def pairs(flat: list) -> dict:
    """A flat [k1, v1, k2, v2, ...] Redis reply as a dict."""
    it = iter(flat)
    return dict(zip(it, it))


def header_from_hash(fields: dict) -> SessionRecord:
    """The session header a `:h` hash holds."""
    last_worker_id, metadata = bytes_term(fields[b"rest"])
    if metadata == EMPTY_MAP and type(metadata) is dict:
        metadata = EMPTY_MAP
    return SessionRecord(
        bytes_id(fields[b"id"]),
        int(fields[b"ca"]),
        int(fields[b"la"]),
        int(fields[b"ttl"]),
        last_worker_id,
        metadata,
        int(fields[b"vc"]),
        int(fields[b"pc"]),
        int(fields[b"tu"]),
        int(fields[b"rev"]),
    )


class CachedSession:
    """One session as last read from Redis (plus what the open unit of work wrote to it)."""

    __slots__ = ("header", "hv", "ver", "cv", "variables", "index", "programs", "program_stamps", "size", "loaded_seq")

    def __init__(self, header: SessionRecord, hv: bytes, ver: bytes, cv: Optional[bytes], loaded_seq: int) -> None:
        self.header = header
        self.hv = hv
        self.ver = ver
        self.cv = cv
        """None once this copy may miss a change made by another sidecar (listings reload it)."""
        self.variables: dict[str, VariableRecord] = {}
        self.index: dict[Any, Any] = {}
        self.programs: dict[bytes, tuple[Any, Any]] = {}
        self.program_stamps: dict[bytes, bytes] = {}
        self.size = ENTRY_OVERHEAD
        self.loaded_seq = loaded_seq
        """The number of the script that read this copy (`RedisStorage.script_seq`)."""

    @classmethod
    def from_load(cls, reply: list, loaded_seq: int) -> Optional["CachedSession"]:
        """The session an `L` read answered, or None when there is none."""
        header_flat, variables_flat, index_flat, programs_flat, stamps_flat, order = reply
        if not header_flat:
            return None
        fields = pairs(header_flat)
        entry = cls(header_from_hash(fields), fields[b"hv"], fields[b"ver"], fields[b"cv"], loaded_seq)
        stored_variables = pairs(variables_flat)
        stored_programs = pairs(programs_flat)
        stamps = pairs(stamps_flat)
        size = ENTRY_OVERHEAD
        for member in order:
            kind, field = member[:2], member[2:]
            if kind == b"v:":
                data = stored_variables.pop(field, None)
                if data is not None:
                    variable = bytes_variable(data)
                    entry.variables[variable.id] = variable
                    size += len(data)
            elif kind == b"p:":
                data = stored_programs.pop(field, None)
                if data is not None:
                    entry.programs[field] = bytes_term(data)
                    entry.program_stamps[field] = stamps.get(b"p:" + field, b"")
                    size += len(data)
        for data in stored_variables.values():  # not in the order (never written so): at the end
            variable = bytes_variable(data)
            entry.variables[variable.id] = variable
            size += len(data)
        for field, data in stored_programs.items():
            entry.programs[field] = bytes_term(data)
            entry.program_stamps[field] = stamps.get(b"p:" + field, b"")
            size += len(data)
        for key, variable_id in pairs(index_flat).items():
            entry.index[bytes_term(key)] = bytes_term(variable_id)
        entry.size = size + 64 * len(entry.index)
        return entry


class SessionCache:
    """Session copies by id, least recently used first, trimmed to `budget_bytes`."""

    def __init__(self, budget_bytes: int) -> None:
        self.budget_bytes = budget_bytes
        self._entries: "OrderedDict[SessionId, CachedSession]" = OrderedDict()
        self.total_bytes = 0

    def get(self, session_id: SessionId) -> Optional[CachedSession]:
        entry = self._entries.get(session_id)
        if entry is not None:
            self._entries.move_to_end(session_id)
        return entry

    def put(self, session_id: SessionId, entry: CachedSession) -> None:
        old = self._entries.pop(session_id, None)
        if old is not None:
            self.total_bytes -= old.size
        self._entries[session_id] = entry
        self.total_bytes += entry.size

    def drop(self, session_id: SessionId) -> None:
        old = self._entries.pop(session_id, None)
        if old is not None:
            self.total_bytes -= old.size

    def resized(self, session_id: SessionId, delta: int) -> None:
        """`delta` bytes more (or less) held for a cached session."""
        entry = self._entries.get(session_id)
        if entry is not None:
            entry.size += delta
            self.total_bytes += delta

    def trim(self) -> None:
        """Drop the least recently used copies until the cache is within its budget."""
        entries = self._entries
        while self.total_bytes > self.budget_bytes and entries:
            _, entry = entries.popitem(last=False)
            self.total_bytes -= entry.size

    def clear(self) -> None:
        self._entries.clear()
        self.total_bytes = 0

    def __contains__(self, session_id: SessionId) -> bool:
        return session_id in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[SessionId]:
        return iter(list(self._entries))
