"""The in-memory storage backend: live records in plain dicts, every operation O(1) but the scans."""

from __future__ import annotations

from typing import Any, Iterator, Optional

from .base import SessionId, SessionRecord, VariableRecord


class MemoryBackend:
    """Sessions and global programs held in this process. Records handed out are the live ones."""

    def __init__(self) -> None:
        self._sessions: dict[SessionId, SessionRecord] = {}
        self._global_programs: dict[SessionId, tuple[Any, int]] = {}

    # sessions -----------------------------------------------------------------------------

    def get_session(self, session_id: SessionId) -> Optional[SessionRecord]:
        return self._sessions.get(session_id)

    def insert_session_if_absent(self, session: SessionRecord) -> tuple[SessionRecord, bool]:
        existing = self._sessions.setdefault(session.id, session)
        return existing, existing is session

    def replace_session(self, session: SessionRecord) -> None:
        self._sessions[session.id] = session

    def delete_session(self, session_id: SessionId) -> bool:
        return self._sessions.pop(session_id, None) is not None

    def session_ids(self) -> list[SessionId]:
        return list(self._sessions)

    def session_count(self) -> int:
        return len(self._sessions)

    def expired_session_ids(self, now: int) -> list[SessionId]:
        return [sid for sid, session in self._sessions.items() if session.last_accessed + session.ttl < now]

    def touch_session(self, session: SessionRecord, now: int) -> None:
        session.last_accessed = now

    def save_session_header(self, session: SessionRecord) -> None:
        pass  # the live record is the stored one

    # variables ----------------------------------------------------------------------------

    def put_variable(self, session: SessionRecord, variable: VariableRecord, index_key: Optional[str]) -> bool:
        is_new = variable.id not in session.variables
        session.variables[variable.id] = variable
        if index_key is not None:
            session.variable_index[index_key] = variable.id
        return is_new

    def get_variable(self, session: SessionRecord, variable_id: Any) -> Optional[VariableRecord]:
        return session.variables.get(variable_id)

    def find_variable(self, session: SessionRecord, key: Any) -> Optional[VariableRecord]:
        variable = session.variables.get(key)
        if variable is None:
            var_id = session.variable_index.get(key)
            if var_id is not None:
                variable = session.variables.get(var_id)
        return variable

    def indexed_variable_id(self, session: SessionRecord, name_key: Any) -> Optional[str]:
        return session.variable_index.get(name_key)

    def save_variable(self, session: SessionRecord, variable: VariableRecord) -> None:
        pass  # the live record is the stored one

    def delete_variable(self, session: SessionRecord, variable: VariableRecord, index_key: Optional[str]) -> None:
        session.variables.pop(variable.id, None)
        if index_key is not None:
            session.variable_index.pop(index_key, None)

    def iter_variables(self, session: SessionRecord) -> Iterator[VariableRecord]:
        return iter(session.variables.values())

    # session programs ---------------------------------------------------------------------

    def put_program(self, session: SessionRecord, program_key: Any, data: Any) -> bool:
        is_new = program_key not in session.programs
        session.programs[program_key] = data
        return is_new

    # global programs ----------------------------------------------------------------------

    def put_global_program(self, program_id: SessionId, data: Any, stored_at: int) -> None:
        self._global_programs[program_id] = (data, stored_at)

    def get_global_program(self, program_id: SessionId) -> Optional[tuple[Any, int]]:
        return self._global_programs.get(program_id)

    def delete_global_program(self, program_id: SessionId) -> bool:
        return self._global_programs.pop(program_id, None) is not None

    def delete_global_programs_stored_before(self, cutoff: int) -> int:
        expired = [pid for pid, (_, stored_at) in self._global_programs.items() if stored_at < cutoff]
        for pid in expired:
            del self._global_programs[pid]
        return len(expired)
