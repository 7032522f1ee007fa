"""A test backend that keeps only what it is told to save: `--storage copying`.

Every record or term it hands out is a fresh copy, and every one it is given is copied before it
is kept, so nothing the store does to an object it holds reaches storage except through a write
operation. A store that changed a record and forgot to save it fails the store suite on this
backend, where the memory backend (which hands out its live records) would hide it. The copies
go through the persistent backends' own serialization (`records`: the external term format), so
the suite also proves every stored term survives it.
"""

from __future__ import annotations

from typing import Any, Optional

from sidecar.storage.base import SessionContents, SessionId, SessionRecord, VariableRecord
from sidecar.storage.memory import MemoryStorage
from sidecar.storage.records import bytes_session, bytes_term, bytes_variable, session_bytes, term_bytes, variable_bytes


def copy_variable(variable: VariableRecord) -> VariableRecord:
    return bytes_variable(variable_bytes(variable))


def copy_header(header: SessionRecord) -> SessionRecord:
    return bytes_session(session_bytes(header))


def copy_term(term: Any) -> Any:
    return bytes_term(term_bytes(term))


class CopyingStorage(MemoryStorage):
    """The memory backend behind a wall of copies."""

    name = "copying"

    # reads: copies out

    def get_session(self, session_id: SessionId) -> Optional[SessionRecord]:
        header = super().get_session(session_id)
        return None if header is None else copy_header(header)

    def load_session(self, session_id: SessionId) -> Optional[SessionContents]:
        contents = super().load_session(session_id)
        if contents is None:
            return None
        return SessionContents(
            copy_header(contents.header),
            [copy_variable(variable) for variable in contents.variables],
            copy_term(contents.index),
            [copy_term(program) for program in contents.programs],
        )

    def get_variable(self, session_id: SessionId, variable_id: Any) -> Optional[VariableRecord]:
        variable = super().get_variable(session_id, variable_id)
        return None if variable is None else copy_variable(variable)

    def find_variable(self, session_id: SessionId, key: Any) -> Optional[VariableRecord]:
        variable = super().find_variable(session_id, key)
        return None if variable is None else copy_variable(variable)

    def variables(self, session_id: SessionId) -> list[VariableRecord]:
        return [copy_variable(variable) for variable in super().variables(session_id)]

    def variable_index(self, session_id: SessionId) -> dict:
        return copy_term(super().variable_index(session_id))

    def get_program(self, session_id: SessionId, program_id: Any) -> tuple[bool, Any]:
        found, data = super().get_program(session_id, program_id)
        return found, copy_term(data) if found else None

    def programs(self, session_id: SessionId) -> list[tuple[Any, Any]]:
        return [copy_term(program) for program in super().programs(session_id)]

    def get_global_program(self, program_id: SessionId) -> Optional[tuple[Any, int]]:
        entry = super().get_global_program(program_id)
        return None if entry is None else copy_term(entry)

    # writes: copies in

    def insert_session(self, header: SessionRecord) -> tuple[SessionRecord, bool]:
        stored, inserted = super().insert_session(copy_header(header))
        return copy_header(stored), inserted

    def replace_session(self, contents: SessionContents, expected_revision: int) -> bool:
        copied = SessionContents(
            copy_header(contents.header),
            [copy_variable(variable) for variable in contents.variables],
            copy_term(contents.index),
            [copy_term(program) for program in contents.programs],
        )
        return super().replace_session(copied, expected_revision)

    def put_variable(self, session_id: SessionId, variable: VariableRecord, index_key: Any) -> bool:
        return super().put_variable(session_id, copy_variable(variable), index_key)

    def put_program(self, session_id: SessionId, program_id: Any, data_term: Any) -> bool:
        return super().put_program(session_id, copy_term(program_id), copy_term(data_term))

    def put_global_program(self, program_id: SessionId, data: Any, stored_at: int) -> None:
        super().put_global_program(program_id, copy_term(data), stored_at)
