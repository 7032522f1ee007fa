"""The in-memory backend (the default): plain dicts, every per-variable operation O(1).

It is also the working state of the SQLite backend, which adds a durable copy underneath.

Records handed out are the stored ones (the store never changes a record: it stores a new one).
A unit of work is this object itself with an undo journal: each write appends how to undo it,
`rollback` runs those in reverse, `commit` forgets them. Calls are served one at a time, so at
most one unit is open.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from sidecar.codec import encode_body
from sidecar.storage.base import STORE_COUNTERS, SessionContents, SessionId, SessionRecord, VariableRecord

_KEEP = object()


class SessionData:
    """One session as kept in memory: its header, its variables (id -> record, registration
    order), its name index (name key -> variable id) and its programs (key bytes -> (program
    id, data), in the order first stored)."""

    __slots__ = ("header", "variables", "index", "programs", "seq")

    def __init__(self, header: SessionRecord, seq: int) -> None:
        self.header = header
        self.seq = seq
        """Creation order among the storage's sessions (puts a session back in its place)."""
        self.variables: dict[str, VariableRecord] = {}
        self.index: dict[Any, str] = {}
        self.programs: dict[bytes, tuple[Any, Any]] = {}


def program_key(program_id: Any) -> bytes:
    """A program's identity: its id's external term format, so `1` and `1.0` (or `"a"` and
    `:a`) are two programs, as they are two keys of an Elixir map."""
    return encode_body(program_id)


def _restore_at(mapping: dict, position: int, key: Any, value: Any) -> None:
    """Put `key` back at `position` in `mapping`'s order (undo of a removal)."""
    items = list(mapping.items())
    items.insert(position, (key, value))
    mapping.clear()
    mapping.update(items)


class MemoryStorage:
    """Sessions, global programs and counters held in this process."""

    name = "memory"

    def __init__(self) -> None:
        self.sessions: dict[SessionId, SessionData] = {}
        self.global_programs: dict[SessionId, tuple[Any, int]] = {}
        self.counter_values: dict[str, int] = dict.fromkeys(STORE_COUNTERS, 0)
        self.variable_number = 0
        self._journal: list[tuple[Callable[..., None], tuple]] = []
        self._session_seq = 0

    # lifecycle -------------------------------------------------------------------------------

    def begin(self) -> "MemoryStorage":
        return self

    def commit(self) -> None:
        if self._journal:
            self._journal.clear()

    def rollback(self) -> None:
        journal = self._journal
        while journal:
            undo, args = journal.pop()
            undo(*args)

    def flush(self) -> None:
        pass

    def settle(self) -> None:
        pass

    def reset(self) -> None:
        self.sessions.clear()
        self.global_programs.clear()
        self.counter_values = dict.fromkeys(STORE_COUNTERS, 0)
        self.variable_number = 0
        self._journal.clear()

    def close(self) -> None:
        pass

    # sessions --------------------------------------------------------------------------------

    def get_session(self, session_id: SessionId) -> Optional[SessionRecord]:
        data = self.sessions.get(session_id)
        return None if data is None else data.header

    def insert_session(self, header: SessionRecord) -> tuple[SessionRecord, bool]:
        data = self.sessions.get(header.id)
        if data is not None:
            return data.header, False
        self._session_seq += 1
        self.sessions[header.id] = SessionData(header, self._session_seq)
        self._journal.append((self._undo_insert, (header.id,)))
        return header, True

    def _undo_insert(self, session_id: SessionId) -> None:
        del self.sessions[session_id]

    def _set_header(self, data: SessionData, header: SessionRecord) -> None:
        self._journal.append((setattr, (data, "header", data.header)))
        data.header = header

    def touch_session(self, session_id: SessionId, now: int) -> None:
        data = self.sessions[session_id]
        self._set_header(data, data.header.touched(now))

    def session_changed(
        self,
        session_id: SessionId,
        now: int,
        variables: int = 0,
        programs: int = 0,
        updates: int = 0,
        worker: Any = _KEEP,
    ) -> None:
        """After a change (not a mere touch): `last_accessed = now`, revision + 1, the counters
        moved by the given amounts, and `last_worker_id = worker` when given."""
        data = self.sessions[session_id]
        if worker is _KEEP:
            header = data.header.changed(now, variables, programs, updates)
        else:
            header = data.header.changed(now, variables, programs, updates, worker, True)
        self._set_header(data, header)

    def delete_session(self, session_id: SessionId) -> bool:
        sessions = self.sessions
        data = sessions.get(session_id)
        if data is None:
            return False
        del sessions[session_id]
        self._journal.append((self._restore_session, (data,)))
        return True

    def _restore_session(self, data: SessionData) -> None:
        """Undo of a deletion: the session back in its place in creation order."""
        sessions = self.sessions
        last = next(reversed(sessions.values()), None)
        sessions[data.header.id] = data
        if last is not None and last.seq > data.seq:  # it was not the newest: re-sort (rare)
            ordered = sorted(sessions.values(), key=lambda entry: entry.seq)
            sessions.clear()
            sessions.update((entry.header.id, entry) for entry in ordered)

    def replace_session(self, contents: SessionContents, expected_revision: int) -> bool:
        header = contents.header
        data = self.sessions.get(header.id)
        if data is None or data.header.revision != expected_revision:
            return False
        fresh = SessionData(header, data.seq)
        for variable in contents.variables:
            fresh.variables[variable.id] = variable
        fresh.index.update(contents.index)
        for program_id, program in contents.programs:
            fresh.programs[program_key(program_id)] = (program_id, program)
        self.sessions[header.id] = fresh
        self._journal.append((self.sessions.__setitem__, (header.id, data)))
        return True

    def load_session(self, session_id: SessionId) -> Optional[SessionContents]:
        data = self.sessions.get(session_id)
        if data is None:
            return None
        return SessionContents(data.header, list(data.variables.values()), dict(data.index), list(data.programs.values()))

    def session_ids(self) -> list[SessionId]:
        return list(self.sessions)

    def session_count(self) -> int:
        return len(self.sessions)

    def expired_session_ids(self, now: int, limit: int) -> list[SessionId]:
        expired = []
        for session_id, data in self.sessions.items():
            header = data.header
            if header.last_accessed + header.ttl < now:
                expired.append(session_id)
                if len(expired) >= limit:
                    break
        return expired

    def delete_session_if_expired(self, session_id: SessionId, now: int) -> bool:
        data = self.sessions.get(session_id)
        if data is None or not data.header.expired(now):
            return False
        return self.delete_session(session_id)

    # variables -------------------------------------------------------------------------------

    def get_variable(self, session_id: SessionId, variable_id: Any) -> Optional[VariableRecord]:
        data = self.sessions.get(session_id)
        return None if data is None else data.variables.get(variable_id)

    def find_variable(self, session_id: SessionId, key: Any) -> Optional[VariableRecord]:
        data = self.sessions.get(session_id)
        if data is None:
            return None
        variables = data.variables
        variable = variables.get(key)
        if variable is None:
            variable_id = data.index.get(key)
            if variable_id is not None:
                variable = variables.get(variable_id)
        return variable

    def indexed_variable_id(self, session_id: SessionId, name_key: Any) -> Optional[str]:
        data = self.sessions.get(session_id)
        return None if data is None else data.index.get(name_key)

    def put_variable(self, session_id: SessionId, variable: VariableRecord, index_key: Any) -> bool:
        data = self.sessions[session_id]
        variables = data.variables
        old = variables.get(variable.id)
        variables[variable.id] = variable
        journal = self._journal
        if old is None:
            journal.append((variables.__delitem__, (variable.id,)))
        else:
            journal.append((variables.__setitem__, (variable.id, old)))
        if index_key is not None:
            index = data.index
            previous = index.get(index_key)
            index[index_key] = variable.id
            if previous is None:
                journal.append((index.__delitem__, (index_key,)))
            else:
                journal.append((index.__setitem__, (index_key, previous)))
        return old is None

    def delete_variable(self, session_id: SessionId, variable_id: str, index_key: Any) -> None:
        data = self.sessions[session_id]
        variables = data.variables
        if variable_id in variables:
            position = list(variables).index(variable_id)
            old = variables.pop(variable_id)
            self._journal.append((_restore_at, (variables, position, variable_id, old)))
        if index_key is not None and index_key in data.index:
            index = data.index
            position = list(index).index(index_key)
            previous = index.pop(index_key)
            self._journal.append((_restore_at, (index, position, index_key, previous)))

    def variables(self, session_id: SessionId) -> list[VariableRecord]:
        data = self.sessions.get(session_id)
        return [] if data is None else list(data.variables.values())

    def variable_index(self, session_id: SessionId) -> dict:
        data = self.sessions.get(session_id)
        return {} if data is None else dict(data.index)

    def next_variable_number(self) -> int:
        self._journal.append((setattr, (self, "variable_number", self.variable_number)))
        self.variable_number += 1
        return self.variable_number

    def reserve_variable_number(self, number: int) -> None:
        if number > self.variable_number:
            self._journal.append((setattr, (self, "variable_number", self.variable_number)))
            self.variable_number = number

    # session programs ------------------------------------------------------------------------

    def get_program(self, session_id: SessionId, program_id: Any) -> tuple[bool, Any]:
        data = self.sessions.get(session_id)
        entry = None if data is None else data.programs.get(program_key(program_id))
        return (False, None) if entry is None else (True, entry[1])

    def put_program(self, session_id: SessionId, program_id: Any, data_term: Any) -> bool:
        programs = self.sessions[session_id].programs
        key = program_key(program_id)
        old = programs.get(key)
        programs[key] = (program_id, data_term)
        if old is None:
            self._journal.append((programs.__delitem__, (key,)))
        else:
            self._journal.append((programs.__setitem__, (key, old)))
        return old is None

    def programs(self, session_id: SessionId) -> list[tuple[Any, Any]]:
        data = self.sessions.get(session_id)
        return [] if data is None else list(data.programs.values())

    # global programs -------------------------------------------------------------------------

    def put_global_program(self, program_id: SessionId, data: Any, stored_at: int) -> None:
        programs = self.global_programs
        old = programs.get(program_id)
        programs[program_id] = (data, stored_at)
        if old is None:
            self._journal.append((programs.__delitem__, (program_id,)))
        else:
            self._journal.append((programs.__setitem__, (program_id, old)))

    def get_global_program(self, program_id: SessionId) -> Optional[tuple[Any, int]]:
        return self.global_programs.get(program_id)

    def delete_global_program(self, program_id: SessionId) -> bool:
        old = self.global_programs.pop(program_id, None)
        if old is None:
            return False
        self._journal.append((self.global_programs.__setitem__, (program_id, old)))
        return True

    def delete_global_programs_stored_before(self, cutoff: int) -> int:
        expired = [pid for pid, (_, stored_at) in self.global_programs.items() if stored_at < cutoff]
        for program_id in expired:
            self.delete_global_program(program_id)
        return len(expired)

    # store-wide counters ---------------------------------------------------------------------

    def count(self, counter: str, delta: int = 1) -> None:
        values = self.counter_values
        self._journal.append((values.__setitem__, (counter, values[counter])))
        values[counter] += delta

    def counters(self) -> dict[str, int]:
        return dict(self.counter_values)
