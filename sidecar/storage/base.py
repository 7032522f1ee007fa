"""The records the store keeps and the one narrow interface every storage backend implements.

Records are `__slots__` classes (memory: 10,000 sessions x 10 variables must stay small).
Immutable default dicts are shared between records and replaced, never mutated: nobody may
change a record's `metadata`, `constraints`, `optimization_status` or `access_rules` in place.

The store reads records from the backend, checks everything, then changes a record and tells
the backend what changed through one of the write operations below, each of which touches a
single session header, variable or program, so a durable or shared backend can make every
per-variable operation O(1) too. The in-memory backend hands out live records, so for it the
change is already made and the write operations are plain dict assignments.
"""

from __future__ import annotations

from typing import Any, Iterator, Optional, Protocol, Union

from ..terms import Atom

SessionId = Union[str, bytes]
"""A session id: an Elixir binary (str when UTF-8, bytes otherwise)."""

A_OPTIMIZING = Atom("optimizing")

NOT_OPTIMIZING: dict = {
    Atom("optimizing"): False,
    Atom("optimizer_id"): None,
    Atom("optimizer_pid"): None,
    Atom("started_at"): None,
}
"""The shared default `optimization_status` (never mutate)."""

EMPTY_MAP: dict = {}
"""The shared empty constraints / metadata map (never mutate)."""

EMPTY_LIST: list = []
"""The shared empty `access_rules` list (never mutate)."""


class VariableRecord:
    """One variable. `rendered` and `compact` cache its encoded struct and its compact tuple
    (`terms.Encoded`, see `structs`); every mutation must clear both (`forget_rendered`)."""

    __slots__ = (
        "id",
        "name",
        "type",
        "value",
        "constraints",
        "metadata",
        "version",
        "created_at",
        "last_updated_at",
        "optimization_status",
        "access_rules",
        "rendered",
        "compact",
    )

    def __init__(
        self,
        id: str,
        name: Any,
        type: Any,
        value: Any,
        constraints: dict = EMPTY_MAP,
        metadata: dict = EMPTY_MAP,
        version: int = 0,
        created_at: Any = None,
        last_updated_at: Any = None,
        optimization_status: dict = NOT_OPTIMIZING,
        access_rules: list = EMPTY_LIST,
    ) -> None:
        self.id = id
        self.name = name
        self.type = type
        self.value = value
        self.constraints = constraints
        self.metadata = metadata
        self.version = version
        self.created_at = created_at
        self.last_updated_at = last_updated_at
        self.optimization_status = optimization_status
        self.access_rules = access_rules
        self.rendered: Any = None
        self.compact: Any = None

    @property
    def optimizing(self) -> bool:
        status = self.optimization_status
        if status is NOT_OPTIMIZING:
            return False
        return isinstance(status, dict) and status.get(A_OPTIMIZING) is True

    def set_value(self, value: Any, updated_at: int, metadata: dict) -> None:
        """A validated update: new value, version + 1, new metadata map."""
        self.value = value
        self.version += 1
        self.last_updated_at = updated_at
        self.metadata = metadata
        self.rendered = self.compact = None

    def set_optimization_status(self, status: dict) -> None:
        self.optimization_status = status
        self.rendered = self.compact = None

    def forget_rendered(self) -> None:
        """Drop the cached encodings (after a change they do not see, e.g. the struct module)."""
        self.rendered = self.compact = None


class SessionRecord:
    """One session: header fields plus its variables (dict id -> record, registration order)."""

    __slots__ = (
        "id",
        "created_at",
        "last_accessed",
        "last_worker_id",
        "ttl",
        "programs",
        "variables",
        "variable_index",
        "metadata",
        "variable_count",
        "program_count",
        "total_variable_updates",
        "revision",
    )

    def __init__(
        self,
        id: SessionId,
        created_at: int,
        last_accessed: int,
        ttl: int,
        last_worker_id: Any = None,
        programs: Optional[dict] = None,
        variables: Optional[dict] = None,
        variable_index: Optional[dict] = None,
        metadata: dict = EMPTY_MAP,
        variable_count: int = 0,
        program_count: int = 0,
        total_variable_updates: int = 0,
        revision: int = 0,
    ) -> None:
        self.id = id
        self.created_at = created_at
        self.last_accessed = last_accessed
        self.last_worker_id = last_worker_id
        self.ttl = ttl
        self.programs: dict = {} if programs is None else programs
        self.variables: dict[str, VariableRecord] = {} if variables is None else variables
        self.variable_index: dict[Any, str] = {} if variable_index is None else variable_index
        self.metadata = metadata
        self.variable_count = variable_count
        self.program_count = program_count
        self.total_variable_updates = total_variable_updates
        self.revision = revision

    def expired(self, now: int) -> bool:
        """The contract's rule: `last_accessed + ttl < now`."""
        return self.last_accessed + self.ttl < now


class StorageBackend(Protocol):
    """Everything the store persists goes through these operations (and nothing else)."""

    # sessions -----------------------------------------------------------------------------

    def get_session(self, session_id: SessionId) -> Optional[SessionRecord]:
        """The session, or None."""

    def insert_session_if_absent(self, session: SessionRecord) -> tuple[SessionRecord, bool]:
        """Insert unless the id is taken; returns (the stored session, whether it was inserted)."""

    def replace_session(self, session: SessionRecord) -> None:
        """Store `session` whole under its id (put_session_if)."""

    def delete_session(self, session_id: SessionId) -> bool:
        """Remove; True when there was one."""

    def session_ids(self) -> list[SessionId]:
        """All ids, oldest insertion first."""

    def session_count(self) -> int: ...

    def expired_session_ids(self, now: int) -> list[SessionId]:
        """Ids of sessions with `last_accessed + ttl < now`."""

    def touch_session(self, session: SessionRecord, now: int) -> None:
        """Set `last_accessed` only (a touch does not bump the revision)."""

    def save_session_header(self, session: SessionRecord) -> None:
        """Persist the session's scalar fields, metadata, stats and revision (not variables)."""

    # variables ----------------------------------------------------------------------------

    def put_variable(self, session: SessionRecord, variable: VariableRecord, index_key: Optional[str]) -> bool:
        """Insert or replace one variable by id, pointing `index_key` (name string) at it when
        given. Returns True when the id was new. O(1)."""

    def get_variable(self, session: SessionRecord, variable_id: Any) -> Optional[VariableRecord]:
        """The variable with this id, or None. O(1)."""

    def find_variable(self, session: SessionRecord, key: Any) -> Optional[VariableRecord]:
        """The variable whose id is `key`, else the one the name index points `key` at, else
        None: `get_variable(session, key)`, then `get_variable(session, indexed_variable_id(
        session, key))`, in one operation (every per-variable call starts with it). O(1)."""

    def indexed_variable_id(self, session: SessionRecord, name_key: Any) -> Optional[str]:
        """The id the name index points `name_key` at, or None. O(1)."""

    def save_variable(self, session: SessionRecord, variable: VariableRecord) -> None:
        """Persist a changed variable already in the session (value, metadata, status). O(1)."""

    def delete_variable(self, session: SessionRecord, variable: VariableRecord, index_key: Optional[str]) -> None:
        """Remove one variable, and the name index entry `index_key` when given. O(1)."""

    def iter_variables(self, session: SessionRecord) -> Iterator[VariableRecord]:
        """The session's variables in registration order."""

    # session programs ---------------------------------------------------------------------

    def put_program(self, session: SessionRecord, program_key: Any, data: Any) -> bool:
        """Store one program; True when the key was new. O(1)."""

    # global programs ----------------------------------------------------------------------

    def put_global_program(self, program_id: SessionId, data: Any, stored_at: int) -> None: ...

    def get_global_program(self, program_id: SessionId) -> Optional[tuple[Any, int]]:
        """(data, stored_at) or None."""

    def delete_global_program(self, program_id: SessionId) -> bool: ...

    def delete_global_programs_stored_before(self, cutoff: int) -> int:
        """Drop programs with `stored_at < cutoff`; returns how many."""

