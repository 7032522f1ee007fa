"""The records the store keeps, and the one narrow, transactional interface of every backend.

Records are plain values. The store never changes a record it read: it builds a new one (the
`with_*` methods) and hands it to a write operation. A backend may hand out its live records
(memory) or copies (copying, SQLite on load, Redis): the store cannot tell, and a backend that
keeps only what it is told to save (`storage.copying`) turns a forgotten save into a failing
test. Immutable default maps are shared between records: nobody may change a record's
`metadata`, `constraints`, `optimization_status` or `access_rules` in place.

Times in records are storage time (`clock.Clock.now`: whole seconds anchored on the wall
clock), never the BEAM's monotonic seconds: the boundary translates (`structs`).

A unit of work (`Storage.begin()`) carries the reads and writes of one call. `commit()` makes
them one step for every other reader; `rollback()` undoes them, so a call that answers
`{:error, reason}`, raises, or whose reply cannot be encoded leaves storage as it was.
`Storage.flush()` is the durability point: everything committed before it returns is durable in
the backend's sense (SQLite: one transaction per chunk of frames, group commit; memory: a no-op;
Redis: every commit already is). The sidecar flushes before it writes the replies of a chunk.

A backend that other stores write too (Redis) may offer `watch(callback, on_resync, on_lost)`:
`callback(Change)` for every commit of another store, from a thread of its own; it returns a
function that stops it. `watch_changes` calls it where it exists; on the other backends nobody
else writes, so it never calls back (`can_watch` tells them apart). It is how a cache above the
store (the harness's) can learn of others' writes.

A feed of changes can be down (a connection lost, the backend restarting), and what was
committed meanwhile is never reported. So a watch also reports its own state, from the same
thread: `on_resync()` each time it starts (again) to receive every change (the first time too:
changes committed before it may have been missed), `on_lost()` when it notices it no longer
does (only after an `on_resync`). Between `on_lost` and the next `on_resync`, nothing a
watcher holds can be trusted to be current; at `on_resync` it must forget what it holds.

A shared backend that keeps copies of sessions may also offer `take_refreshed()`: the ids of the
sessions it read afresh from the shared store since the last call (the first call starts the
count; `take_refreshed` calls it where it exists). What a call reads from such a copy may be
newer than what the feed has reported yet, so a cache above must forget those sessions before
it hands out anything read after (the sidecar sends their invalidation before the reply).

Every operation names its session by id, so a backend needs no session object in memory, and
each touches one session header, variable, index entry or program: a durable or shared backend
can make every per-variable operation O(1). Listing operations (`session_ids`, `variables`,
`programs`, `expired_session_ids`) are the only scans.
"""

from __future__ import annotations

import itertools
import operator
import random
from typing import Any, Callable, NamedTuple, Optional, Protocol, Union

from sidecar.terms import Atom

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

_ABSENT = object()


def is_default_status(status: Any) -> bool:
    """Exactly the default status: the same four atom keys, each value the same object (`==`
    would take `optimizing: 0` or `0.0` for `false`, and the harness would give back `false`)."""
    if type(status) is not dict or len(status) != len(NOT_OPTIMIZING):
        return False
    for key, value in NOT_OPTIMIZING.items():
        if status.get(key, _ABSENT) is not value:
            return False
    return True


EMPTY_MAP: dict = {}
"""The shared empty constraints / metadata map (never mutate)."""

EMPTY_LIST: list = []
"""The shared empty `access_rules` list (never mutate)."""

STORE_COUNTERS = (
    "sessions_created",
    "sessions_deleted",
    "sessions_expired",
    "cleanup_runs",
    "global_programs_stored",
    "global_programs_deleted",
    "global_programs_expired",
)
"""The store-wide counters of `get_stats`, kept by the backend."""


class Conflict(Exception):
    """Raised by a shared backend when what a unit of work read changed before it committed;
    the store runs the call again on fresh data. Local backends never raise it."""


class StorageError(Exception):
    """The backend cannot do what it was asked (disk full, connection lost, ...). The call
    answers `{:error, {:storage_error, message}}` and nothing it did is kept."""


class StorageOpenError(StorageError):
    """The backend could not be opened (bad path, file in use, unknown schema version ...)."""


class Change(NamedTuple):
    """What one commit of another store changed (`watch_changes`)."""

    sessions: dict
    """Session id -> the ids of the variables it put or deleted (the header may have changed
    too; a session that is gone is listed with what it last changed)."""
    global_programs: list
    """Ids of the global programs it stored or deleted."""
    origin: str
    """Which store made it (an id that sidecar chose at random when it started)."""
    touched: frozenset = frozenset()
    """Of `sessions`, those the commit only touched (`last_accessed` moved, nothing else: no
    variable, header field, program or existence changed)."""


def can_watch(storage: Any) -> bool:
    """Whether other stores may write `storage` and it reports their changes (`watch`)."""
    return callable(getattr(storage, "watch", None))


def take_refreshed(storage: Any) -> list:
    """The sessions `storage` read afresh from a shared store since the last call (module
    docstring); `[]` for backends that keep no copies of what others write."""
    take = getattr(storage, "take_refreshed", None)
    return take() if take is not None else []


def watch_changes(
    storage: Any,
    callback: Callable[[Change], None],
    on_resync: Optional[Callable[[], None]] = None,
    on_lost: Optional[Callable[[], None]] = None,
) -> Callable[[], None]:
    """Have `callback` called with each `Change` other stores make to `storage`, and `on_resync`
    / `on_lost` with the state of the feed (module docstring); returns the function that stops
    it. Backends nobody else writes (memory, SQLite) never call any of them."""
    if not can_watch(storage):
        return lambda: None
    if on_resync is None and on_lost is None:
        return storage.watch(callback)
    return storage.watch(callback, on_resync=on_resync, on_lost=on_lost)


# stamps ----------------------------------------------------------------------------------------

_stamps = itertools.count(random.SystemRandom().getrandbits(62))


def new_stamp() -> int:
    """A number no other variable record has had: every record the store builds gets one, so
    (variable id, stamp) names one immutable state of a variable, across restarts and across
    sidecars sharing a backend (a random 62-bit start per process, then counting up). The
    reply cache (`sidecar.store.replies`) is keyed by it."""
    return next(_stamps)


# records ---------------------------------------------------------------------------------------


VARIABLE_FIELDS = (
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
)
"""The variable struct's fields in their declaration order: the one list the records, the struct
and compact forms (`sidecar.store.structs`) and the persistent backends follow."""


class VariableRecord:
    """One variable's state. Build a changed copy with the `with_*` methods (never assign).
    Its slots are `VARIABLE_FIELDS` and `stamp`, in that order, the constructor's order too."""

    __slots__ = VARIABLE_FIELDS + ("stamp",)

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
        stamp: Optional[int] = None,
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
        self.stamp = new_stamp() if stamp is None else stamp

    @property
    def optimizing(self) -> bool:
        status = self.optimization_status
        if status is NOT_OPTIMIZING:
            return False
        return isinstance(status, dict) and status.get(A_OPTIMIZING) is True

    def with_value(self, value: Any, updated_at: int, metadata: dict) -> "VariableRecord":
        """A validated update: new value, version + 1, new metadata map."""
        return VariableRecord(
            self.id,
            self.name,
            self.type,
            value,
            self.constraints,
            metadata,
            self.version + 1,
            self.created_at,
            updated_at,
            self.optimization_status,
            self.access_rules,
        )

    def with_optimization_status(self, status: dict) -> "VariableRecord":
        return VariableRecord(
            self.id,
            self.name,
            self.type,
            self.value,
            self.constraints,
            self.metadata,
            self.version,
            self.created_at,
            self.last_updated_at,
            status,
            self.access_rules,
        )

    def fields(self) -> tuple:
        """Every slot, in the constructor's order (what the persistent backends serialize)."""
        return _variable_slots(self)

    def __repr__(self) -> str:
        return f"VariableRecord({self.id!r}, version={self.version}, stamp={self.stamp})"


_variable_slots = operator.attrgetter(*VariableRecord.__slots__)


class SessionRecord:
    """One session's header: everything but its variables, name index and programs, which the
    backend keeps beside it and hands out one at a time."""

    __slots__ = (
        "id",
        "created_at",
        "last_accessed",
        "last_worker_id",
        "ttl",
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
        self.metadata = metadata
        self.variable_count = variable_count
        self.program_count = program_count
        self.total_variable_updates = total_variable_updates
        self.revision = revision

    def expired(self, now: int) -> bool:
        """The contract's rule: `last_accessed + ttl < now`."""
        return self.last_accessed + self.ttl < now

    def changed(
        self,
        now: int,
        variables: int = 0,
        programs: int = 0,
        updates: int = 0,
        last_worker_id: Any = None,
        set_worker: bool = False,
    ) -> "SessionRecord":
        """The header after a change (not a mere touch): touched, revision + 1, counters moved
        by the given amounts, and the worker id when `set_worker`."""
        return SessionRecord(
            self.id,
            self.created_at,
            now,
            self.ttl,
            last_worker_id if set_worker else self.last_worker_id,
            self.metadata,
            self.variable_count + variables,
            self.program_count + programs,
            self.total_variable_updates + updates,
            self.revision + 1,
        )

    def touched(self, now: int) -> "SessionRecord":
        """The header with `last_accessed = now` (a touch does not bump the revision)."""
        return SessionRecord(
            self.id,
            self.created_at,
            now,
            self.ttl,
            self.last_worker_id,
            self.metadata,
            self.variable_count,
            self.program_count,
            self.total_variable_updates,
            self.revision,
        )

    def fields(self) -> tuple:
        """Every field, in the constructor's order (what the persistent backends serialize)."""
        return (
            self.id,
            self.created_at,
            self.last_accessed,
            self.ttl,
            self.last_worker_id,
            self.metadata,
            self.variable_count,
            self.program_count,
            self.total_variable_updates,
            self.revision,
        )

    def __repr__(self) -> str:
        return f"SessionRecord({self.id!r}, revision={self.revision})"


class SessionContents:
    """A whole session as `put_session_if` stores it: the header, its variables in order, the
    name index (name key -> variable id) and the programs (program id term -> data)."""

    __slots__ = ("header", "variables", "index", "programs")

    def __init__(self, header: SessionRecord, variables: list, index: dict, programs: list) -> None:
        self.header = header
        self.variables: list[VariableRecord] = variables
        self.index: dict = index
        self.programs: list[tuple[Any, Any]] = programs


# the interface ---------------------------------------------------------------------------------


class Unit(Protocol):
    """The reads and writes of one call. Reads see this unit's own writes."""

    # sessions
    def get_session(self, session_id: SessionId) -> Optional[SessionRecord]:
        """The session's header, or None."""

    def insert_session(self, header: SessionRecord) -> tuple[SessionRecord, bool]:
        """Insert unless the id is taken: (the stored header, whether it was inserted)."""

    def load_session(self, session_id: SessionId) -> Optional[SessionContents]:
        """The whole session (header, variables in order, name index, programs), or None."""

    def touch_session(self, session_id: SessionId, now: int) -> None:
        """`last_accessed = now` on an existing session, nothing else."""

    def session_changed(
        self, session_id: SessionId, now: int, variables: int = 0, programs: int = 0, updates: int = 0, worker: Any = ...
    ) -> None:
        """After a change of an existing session (not a mere touch): `last_accessed = now`,
        revision + 1, `variable_count`, `program_count` and `total_variable_updates` moved by the
        given amounts (as increments: a shared backend adds them, it does not overwrite), and
        `last_worker_id = worker` when given."""

    def delete_session(self, session_id: SessionId) -> bool:
        """Remove the session with its variables, index and programs; True when there was one."""

    def replace_session(self, contents: SessionContents, expected_revision: int) -> bool:
        """Store `contents` whole in place of the session, if it exists with
        `expected_revision` (compare-and-set); False, changing nothing, otherwise."""

    def session_ids(self) -> list[SessionId]:
        """Every session id, oldest creation first."""

    def session_count(self) -> int: ...

    def expired_session_ids(self, now: int, limit: int) -> list[SessionId]:
        """Up to `limit` ids of sessions with `last_accessed + ttl < now`."""

    def delete_session_if_expired(self, session_id: SessionId, now: int) -> bool:
        """Delete the session if it is (still) expired at `now`; True when it was deleted."""

    # variables
    def get_variable(self, session_id: SessionId, variable_id: Any) -> Optional[VariableRecord]:
        """The variable with this id, or None."""

    def find_variable(self, session_id: SessionId, key: Any) -> Optional[VariableRecord]:
        """The variable whose id is `key`, else the one the name index points `key` at."""

    def indexed_variable_id(self, session_id: SessionId, name_key: Any) -> Optional[str]:
        """The id the name index points `name_key` at, or None."""

    def put_variable(self, session_id: SessionId, variable: VariableRecord, index_key: Any) -> bool:
        """Insert or replace one variable by id (a replaced one keeps its place in the order),
        pointing the name index entry `index_key` at it when not None. True when the id was new."""

    def delete_variable(self, session_id: SessionId, variable_id: str, index_key: Any) -> None:
        """Remove one variable, and the name index entry `index_key` when not None."""

    def variables(self, session_id: SessionId) -> list[VariableRecord]:
        """The session's variables in registration order."""

    def variable_index(self, session_id: SessionId) -> dict:
        """The session's name index: name key -> variable id."""

    def next_variable_number(self) -> int:
        """A positive integer never handed out before by this storage (ids: "var_<name>_<n>")."""

    def reserve_variable_number(self, number: int) -> None:
        """Never hand out `number` or anything below it again."""

    # session programs
    def get_program(self, session_id: SessionId, program_id: Any) -> tuple[bool, Any]:
        """(True, data), or (False, None) when the session has no such program."""

    def put_program(self, session_id: SessionId, program_id: Any, data: Any) -> bool:
        """Store one program; True when the id was new."""

    def programs(self, session_id: SessionId) -> list[tuple[Any, Any]]:
        """The session's programs as (program id, data), in the order first stored."""

    # global programs
    def put_global_program(self, program_id: SessionId, data: Any, stored_at: int) -> None: ...

    def get_global_program(self, program_id: SessionId) -> Optional[tuple[Any, int]]:
        """(data, stored_at) or None."""

    def delete_global_program(self, program_id: SessionId) -> bool: ...

    def delete_global_programs_stored_before(self, cutoff: int) -> int:
        """Drop programs with `stored_at < cutoff`; returns how many."""

    # store-wide counters
    def count(self, counter: str, delta: int = 1) -> None:
        """Add `delta` to one of `STORE_COUNTERS`."""

    def counters(self) -> dict[str, int]:
        """Every one of `STORE_COUNTERS`."""

    # the end of the unit
    def commit(self) -> None:
        """Make the unit's writes one step (raises Conflict on a shared backend)."""

    def rollback(self) -> None:
        """Undo every write of the unit."""

    # A shared backend's unit may also have `confirm_reads()`: check that everything the unit
    # read is still what storage holds, raising Conflict if not. `SessionStore.transact` calls it
    # before a call answers {:error, reason}: a refusal decided on another store's stale data is
    # run again (memory, SQLite: nobody else writes, nothing to confirm).


class Storage(Protocol):
    """A backend: opened once per sidecar, one unit of work at a time."""

    name: str
    """"memory", "copying", "sqlite" or "redis" (in `get_stats` and the welcome)."""

    def begin(self) -> Unit:
        """Start the unit of work of one call."""

    def flush(self) -> None:
        """Make every committed unit durable (the group commit point)."""

    def settle(self) -> None:
        """Work that may wait until the chunk's replies are out (SQLite writes its log into its
        file). Never needed for durability; a failure is logged, not raised."""

    def reset(self) -> None:
        """Forget everything (the test-only `__reset__`)."""

    def close(self) -> None:
        """Flush and release the backend (files, connections, locks)."""
