"""The SessionStore contract (docs/contract.md) on top of a storage backend. No I/O.

Every public call returns `(result, events)`: `result` is the contract's return term with plain
records where the Elixir function returns structs (a `VariableRecord`, a list of them, or a
`SessionContents` for a session); `sidecar.store.replies` turns those into wire terms. `events` are
the telemetry events `(event, measurements, metadata)` the call caused, in order. Arguments
arrive already type-checked by `sidecar.store.calls`; the contract's own validation errors come from
here.

Units of work: a call runs inside one (`transact`): its reads and writes go through `self.tx`
and commit together, or, when the call answers `{:error, reason}` or fails, are undone, so a
rejected call leaves storage exactly as it was. A shared backend may raise `Conflict` when what
the call read changed under it; `transact` then runs the call again on fresh data.

Consistency rule, kept anyway: every call checks everything first and writes only after all
checks passed. Records are never changed in place: a write stores a new record.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any, Callable, Iterable, Optional, Sequence, TypeVar

from sidecar.storage.base import (
    EMPTY_MAP,
    NOT_OPTIMIZING,
    Conflict,
    SessionContents,
    SessionRecord,
    Storage,
    VariableRecord,
)
from sidecar.store import types
from sidecar.store.config import StoreConfig
from sidecar.store.structs import (
    InvalidImport,
    InvalidSession,
    intern_name,
    is_binary,
    is_integer,
    name_key,
    parse_imported_variable,
    parse_session,
)
from sidecar.terms import Atom

__all__ = ["SessionStore", "StoreConfig", "process_rss_bytes"]

log = logging.getLogger(__name__)

A = Atom
OK = A("ok")
ERROR = A("error")
NOT_FOUND = (ERROR, A("not_found"))
SESSION_NOT_FOUND = (ERROR, A("session_not_found"))
LOCKED = (ERROR, A("variable_locked_for_optimization"))
CONFLICT = (ERROR, A("conflict"))

A_COUNT = A("count")
A_VERSION = A("version")
A_SESSION_ID = A("session_id")
A_TYPE = A("type")
A_CACHE_HIT = A("cache_hit")
A_ATOMIC = A("atomic")
A_TTL = A("ttl")
A_METADATA = A("metadata")
A_PROGRAMS = A("programs")
A_LAST_WORKER_ID = A("last_worker_id")
A_CONSTRAINTS = A("constraints")
A_DESCRIPTION = A("description")

_EVENT_PREFIX = (A("snakepit"), A("session_store"))


NO_EVENTS: tuple = ()
"""What the hot calls return for events when nobody receives telemetry (`SessionStore.telemetry`)."""


def _event_name(group: str, name: str) -> list:
    return [*_EVENT_PREFIX, A(group), A(name)]


EV_REGISTERED = _event_name("variable", "registered")
EV_GET = _event_name("variable", "get")
EV_UPDATED = _event_name("variable", "updated")
EV_DELETED = _event_name("variable", "deleted")
EV_BATCH_GET = _event_name("variables", "batch_get")
EV_BATCH_UPDATE = _event_name("variables", "batch_update")
EV_VALIDATION_FAILED = _event_name("variable", "validation_failed")
EV_CONSTRAINT_VIOLATION = _event_name("variable", "constraint_violation")

DEFAULT_METADATA = {"source": "elixir", "created_by": "session_store"}
"""Shared by every variable registered without description or metadata (never mutated)."""

_VARIABLE_ID_SUFFIX = re.compile(r"_([0-9]+)\Z")

MAX_CONFLICT_RETRIES = 100
"""How often `transact` runs a call again after a `Conflict` before it answers
`{:error, :conflict}` (a shared backend under a write storm on one variable)."""

Result = tuple[Any, Sequence]
T = TypeVar("T")


def process_rss_bytes() -> int:
    """This process's resident set size in bytes (Linux /proc/self/statm; else peak RSS; else 0).

    get_stats' `memory_usage_bytes`: the original reported its ETS table's size; the sidecar's
    whole footprint is what an operator can act on."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            resident_pages = int(statm.read().split()[1])
        return resident_pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        pass
    try:
        import resource

        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024
    except Exception:  # not on this platform
        return 0


def _error(reason: Any) -> tuple:
    return (ERROR, reason)


def _truthy(term: Any) -> bool:
    """Elixir truthiness: everything but nil and false."""
    return term is not None and term is not False


def is_error(result: Any) -> bool:
    """`{:error, _}`: the result of a call that must leave storage as it was."""
    return type(result) is tuple and len(result) == 2 and result[0] is ERROR


class SessionStore:
    """Sessions, programs and typed variables; the contract's semantics, one call per method."""

    def __init__(
        self,
        config: Optional[StoreConfig] = None,
        clock: Any = None,
        storage: Optional[Storage] = None,
        memory_probe: Callable[[], int] = process_rss_bytes,
    ) -> None:
        from sidecar.clock import Clock
        from sidecar.storage.memory import MemoryStorage

        self.config = config or StoreConfig()
        self.telemetry = True
        """False when nobody receives telemetry (`telemetry: false` in `:hello`): the hottest
        calls (get_variable, get_variable_value, update_variable, get_variables) then skip
        building their events. Other calls still return theirs, and the server drops them."""
        self.clock = clock or Clock()
        self.storage: Storage = storage if storage is not None else MemoryStorage()
        self.tx: Any = None
        """The open unit of work (`transact`), through which every call reads and writes."""
        self._memory_probe = memory_probe

    def reconfigure(self, config: StoreConfig, clock: Any) -> None:
        """New settings (from `:hello`); records already stored keep their values."""
        self.config = config
        self.clock = clock

    # units of work -----------------------------------------------------------------------------

    def transact(self, work: Callable[[], T], failed: Callable[[T], bool]) -> T:
        """Run `work` (a call, and whatever must succeed with it, e.g. encoding its reply) as one
        unit of work: committed unless `failed(outcome)` or it raises (then undone, and the
        exception propagates). On `Conflict` (a shared backend), run it again on fresh data."""
        storage = self.storage
        for _ in range(MAX_CONFLICT_RETRIES):
            tx = self.tx = storage.begin()
            try:
                outcome = work()
                if failed(outcome):
                    # a shared backend first makes sure the refusal was decided on current data
                    # (it raises Conflict if not: the call then runs again)
                    confirm = getattr(tx, "confirm_reads", None)
                    if confirm is not None:
                        confirm()
                    tx.rollback()
                else:
                    tx.commit()
                return outcome
            except Conflict:
                tx.rollback()
            except BaseException:
                tx.rollback()
                raise
            finally:
                self.tx = None
        raise Conflict(f"still conflicting after {MAX_CONFLICT_RETRIES} attempts")

    def call(self, method: str, *args: Any) -> Result:
        """`getattr(self, method)(*args)` as one unit of work (tests and tools; the sidecar goes
        through `sidecar.store.calls` and the reply encoder inside its own `transact`)."""
        bound = getattr(self, method)
        try:
            return self.transact(lambda: bound(*args), lambda outcome: is_error(outcome[0]))
        except Conflict:
            return CONFLICT, []

    def flush(self) -> None:
        """Make everything committed durable (the backend's group commit point)."""
        self.storage.flush()

    def settle(self) -> None:
        """The backend's deferred work, after the replies are out (`Storage.settle`)."""
        self.storage.settle()

    # helpers -----------------------------------------------------------------------------------

    def _session(self, session_id: Any) -> Optional[SessionRecord]:
        """The session's header, or None (also for a session id that is not a binary)."""
        if type(session_id) is str or is_binary(session_id):
            return self.tx.get_session(session_id)
        return None

    def _touch(self, session: SessionRecord, now: int) -> None:
        """A touch, skipped when it would change nothing (timestamps are whole seconds)."""
        if session.last_accessed != now:
            self.tx.touch_session(session.id, now)

    def _find_variable(self, session_id: Any, ident: Any) -> Optional[VariableRecord]:
        """`ident` as an id first, then as a name (both by string form)."""
        kind = type(ident)
        if kind is Atom:  # name_key's answers for the two common kinds, without the call
            key = ident.name
        elif kind is str:
            key = ident
        else:
            key = name_key(ident)
            if key is None:
                return None
        return self.tx.find_variable(session_id, key)

    def _new_variable_id(self, session_id: Any, key: str) -> str:
        """ "var_<name>_<n>", n from the backend's counter (which also jumps past imported ids'
        numbers), skipping an id the session already holds (put there by update_session)."""
        tx = self.tx
        while True:
            var_id = f"var_{key}_{tx.next_variable_number()}"
            if tx.get_variable(session_id, var_id) is None:
                return var_id

    @staticmethod
    def _imported_id_number(var_id: str) -> Optional[int]:
        """The trailing "_<n>" of an imported id, or None (none, or too long to ever be reached)."""
        match = _VARIABLE_ID_SUFFIX.search(var_id)
        if match is None or len(match.group(1)) > 100:
            return None
        return int(match.group(1))

    def _check_value(self, session_id: Any, type_atom: Atom, value: Any, constraints: dict, events: list) -> tuple[bool, Any]:
        """Coerce and constraint-check; on rejection add its telemetry event and give the message.

        An empty constraints map is not checked: no type's check can fail on one (and the
        string check would count graphemes for nothing)."""
        try:
            coerced = types.coerce(type_atom, value)
        except types.ValidationFailed as rejected:
            events.append((EV_VALIDATION_FAILED, {A_COUNT: 1}, {A_SESSION_ID: session_id, A_TYPE: type_atom}))
            return False, rejected.message
        if type(constraints) is dict and not constraints:
            return True, coerced
        try:
            types.check_constraints(type_atom, coerced, constraints)
        except types.ConstraintViolation as rejected:
            events.append((EV_CONSTRAINT_VIOLATION, {A_COUNT: 1}, {A_SESSION_ID: session_id, A_TYPE: type_atom}))
            return False, rejected.message
        return True, coerced

    def _contents(self, session_id: Any) -> SessionContents:
        """The whole session as the session calls answer with it."""
        return self.tx.load_session(session_id)

    # sessions -----------------------------------------------------------------------------

    def create_session(self, session_id: Any, options: Optional[dict] = None) -> Result:
        options = options or {}
        if not is_binary(session_id) or not session_id:
            return _error(A("invalid_id")), []
        programs = options.get(A_PROGRAMS, EMPTY_MAP)
        metadata = options.get(A_METADATA, EMPTY_MAP)
        last_worker_id = options.get(A_LAST_WORKER_ID)
        ttl = options.get(A_TTL, self.config.default_ttl)
        # validated before looking for an existing session, so a bad call always gets its error
        # (in Session.validate's order: programs, metadata, last_worker_id, ttl)
        if not isinstance(programs, dict):
            return _error(A("invalid_programs")), []
        if not isinstance(metadata, dict):
            return _error(A("invalid_metadata")), []
        if not (last_worker_id is None or is_binary(last_worker_id)):
            return _error(A("invalid_last_worker_id")), []
        if not is_integer(ttl) or ttl < 0:
            return _error(A("invalid_ttl")), []
        tx = self.tx
        now = self.clock.now()
        # beyond: programs given at creation are new programs, so they are counted
        header = SessionRecord(session_id, now, now, ttl, last_worker_id, metadata, program_count=len(programs))
        _, inserted = tx.insert_session(header)
        if inserted:
            for program_id, data in programs.items():
                tx.put_program(session_id, program_id, data)
            tx.count("sessions_created")
        return (OK, self._contents(session_id)), []

    def get_session(self, session_id: Any) -> Result:
        session = self._session(session_id)
        if session is None:
            return NOT_FOUND, []
        self._touch(session, self.clock.now())
        return (OK, self._contents(session_id)), []

    def delete_session(self, session_id: Any) -> Result:
        # beyond: only a session that was there counts as deleted (the original counted every call)
        if self.tx.delete_session(session_id):
            self.tx.count("sessions_deleted")
        return OK, []

    def session_exists(self, session_id: Any) -> Result:
        return self._session(session_id) is not None, []

    def list_sessions(self) -> Result:
        return self.tx.session_ids(), []

    def cleanup_expired_sessions(self, now: Optional[int] = None, limit: Optional[int] = None, count_run: bool = True) -> Result:
        """Remove expired sessions (all of them, or up to `limit`: the periodic cleanup works in
        steps, and counts one cleanup run for its first); answers how many were removed."""
        tx = self.tx
        now = self.clock.now() if now is None else now
        expired = tx.expired_session_ids(now, tx.session_count() if limit is None else limit)
        removed = sum(1 for session_id in expired if tx.delete_session_if_expired(session_id, now))
        if removed:
            tx.count("sessions_expired", removed)
            log.debug("cleaned up %d expired sessions", removed)
        if count_run:
            tx.count("cleanup_runs")
        return removed, []

    def run_cleanup(self, now: Optional[int] = None) -> Result:
        """The periodic cleanup as one call: expired sessions, then global programs older than
        their TTL."""
        now = self.clock.now() if now is None else now
        sessions, _ = self.cleanup_expired_sessions(now)
        programs, _ = self.cleanup_global_programs(now)
        return {A("sessions"): sessions, A("global_programs"): programs}, []

    def cleanup_global_programs(self, now: Optional[int] = None) -> Result:
        """Drop global programs older than `global_program_ttl` (same rule as sessions:
        expired when stored_at + ttl < now)."""
        now = self.clock.now() if now is None else now
        removed = self.tx.delete_global_programs_stored_before(now - self.config.global_program_ttl)
        if removed:
            self.tx.count("global_programs_expired", removed)
        return removed, []

    def get_stats(self) -> Result:
        stats = {A(name): value for name, value in self.tx.counters().items()}
        stats[A("current_sessions")] = self.tx.session_count()
        stats[A("memory_usage_bytes")] = self._memory_probe()
        return stats, []

    def store_worker_session(self, session_id: Any, worker_id: Any) -> Result:
        if not is_binary(session_id) or not session_id:
            return _error(A("invalid_id")), []
        # beyond: the original stored any worker id on an existing session, which then failed
        # every later update_session's validation; reject it up front instead
        if not (worker_id is None or is_binary(worker_id)):
            return _error(A("invalid_last_worker_id")), []
        tx = self.tx
        now = self.clock.now()
        session = self._session(session_id)
        if session is None:
            header = SessionRecord(session_id, now, now, self.config.default_ttl, worker_id)
            session, inserted = tx.insert_session(header)
            if inserted:
                tx.count("sessions_created")
                return OK, []
        if session.last_worker_id == worker_id and type(session.last_worker_id) is type(worker_id):
            self._touch(session, now)
        else:
            tx.session_changed(session_id, now, worker=worker_id)
        return OK, []

    # optimistic update_session (extension calls) ------------------------------------------

    def fetch_session_for_update(self, session_id: Any) -> Result:
        session = self._session(session_id)
        if session is None:
            return NOT_FOUND, []
        return (OK, self._contents(session_id), session.revision), []

    def put_session_if(self, session_id: Any, revision: int, term: Any) -> Result:
        session = self._session(session_id)
        if session is None:
            return NOT_FOUND, []
        # a conflict is reported before validation: the term was computed from stale data
        if revision != session.revision:
            return CONFLICT, []
        clock = self.clock
        try:
            contents = parse_session(term, self.config.session_struct, self.config.variable_struct, clock.from_beam)
        except InvalidSession as invalid:
            return _error(invalid.reason), []
        header = contents.header
        # the store key is the given id; the id field follows it (a changed id would otherwise
        # leave a session that can only be found under a name it does not carry)
        header.id = session_id
        header.revision = session.revision + 1
        header.last_accessed = clock.now()
        if not self.tx.replace_session(contents, revision):  # compare-and-set on the revision
            return CONFLICT, []
        return (OK, self._contents(session_id)), []

    # global programs ----------------------------------------------------------------------

    def store_global_program(self, program_id: Any, data: Any) -> Result:
        self.tx.put_global_program(program_id, data, self.clock.now())
        self.tx.count("global_programs_stored")
        return OK, []

    def get_global_program(self, program_id: Any) -> Result:
        entry = self.tx.get_global_program(program_id)
        if entry is None:
            return NOT_FOUND, []
        return (OK, entry[0]), []

    def delete_global_program(self, program_id: Any) -> Result:
        # counted only when there was one (as delete_session)
        if self.tx.delete_global_program(program_id):
            self.tx.count("global_programs_deleted")
        return OK, []

    # session programs ---------------------------------------------------------------------

    def store_program(self, session_id: Any, program_id: Any, data: Any) -> Result:
        session = self._session(session_id)
        if session is None:
            return NOT_FOUND, []
        tx = self.tx
        # beyond: the original forgot to count programs stored through update_session
        added = 1 if tx.put_program(session_id, program_id, data) else 0
        tx.session_changed(session_id, self.clock.now(), programs=added)
        return OK, []

    def update_program(self, session_id: Any, program_id: Any, data: Any) -> Result:
        return self.store_program(session_id, program_id, data)

    def get_program(self, session_id: Any, program_id: Any) -> Result:
        session = self._session(session_id)
        if session is None:
            return NOT_FOUND, []
        found, data = self.tx.get_program(session_id, program_id)
        # beyond: a program stored as nil comes back as {:ok, nil} (the original said :not_found)
        if not found:
            return NOT_FOUND, []
        self._touch(session, self.clock.now())
        return (OK, data), []

    # variables ----------------------------------------------------------------------------

    def register_variable(self, session_id: Any, name: Any, type_term: Any, value: Any, options: Optional[dict] = None) -> Result:
        options = options or {}
        session = self._session(session_id)
        if session is None:
            return SESSION_NOT_FOUND, []
        key = name_key(name)
        # a name must have a non-empty UTF-8 string form: it becomes part of the id and the index
        if not isinstance(key, str) or not key:
            return _error(A("invalid_name")), []
        try:
            type_atom = types.resolve_type(type_term)
        except types.UnknownType:
            return _error((A("unknown_type"), type_term)), []
        constraints = options.get(A_CONSTRAINTS)
        extra_metadata = options.get(A_METADATA)
        # nil options mean "none"; anything else that is not a map is refused before any change
        if constraints is None:
            constraints = EMPTY_MAP
        elif not isinstance(constraints, dict):
            return _error(A("invalid_constraints")), []
        if extra_metadata is not None and not isinstance(extra_metadata, dict):
            return _error(A("invalid_metadata")), []
        events: list = []
        accepted, checked = self._check_value(session_id, type_atom, value, constraints, events)
        if not accepted:
            return _error(checked), events

        description = options.get(A_DESCRIPTION)
        if _truthy(description) or extra_metadata:
            metadata: dict = dict(DEFAULT_METADATA)
            if _truthy(description):
                metadata["description"] = description
            metadata.update(extra_metadata or EMPTY_MAP)
        else:
            metadata = DEFAULT_METADATA
        tx = self.tx
        now = self.clock.now()
        key = intern_name(key)
        variable = VariableRecord(
            self._new_variable_id(session_id, key),
            intern_name(name),
            type_atom,
            checked,
            constraints if constraints else EMPTY_MAP,
            metadata,
            0,
            now,
            now,
        )
        tx.put_variable(session_id, variable, key)
        tx.session_changed(session_id, now, variables=1, updates=1)
        events.append((EV_REGISTERED, {A_COUNT: 1}, {A_SESSION_ID: session_id, A_TYPE: type_atom}))
        return (OK, variable.id), events

    def get_variable(self, session_id: Any, ident: Any) -> Result:
        session = self._session(session_id)
        if session is None:
            return SESSION_NOT_FOUND, []
        variable = self._find_variable(session_id, ident)
        if variable is None:
            return NOT_FOUND, []
        self._touch(session, self.clock.now())
        if not self.telemetry:
            return (OK, variable), NO_EVENTS
        return (OK, variable), [(EV_GET, {A_COUNT: 1}, {A_SESSION_ID: session_id, A_CACHE_HIT: False})]

    def get_variable_value(self, session_id: Any, ident: Any, default: Any = None) -> Result:
        session = self._session(session_id)
        variable = None if session is None else self._find_variable(session_id, ident)
        if session is None or variable is None:
            return default, []
        # as the original (it went through get_variable): a touch and a :get event
        self._touch(session, self.clock.now())
        if not self.telemetry:
            return variable.value, NO_EVENTS
        return variable.value, [(EV_GET, {A_COUNT: 1}, {A_SESSION_ID: session_id, A_CACHE_HIT: False})]

    def has_variable(self, session_id: Any, ident: Any) -> Result:
        # as the original (it went through get_variable): found means a touch and a :get event
        result, events = self.get_variable(session_id, ident)
        return (type(result) is tuple and result[0] is OK), events

    def _updated_metadata(self, variable: VariableRecord, given: dict) -> dict:
        if not given:  # the common update (none given): what the general steps below give
            return {**variable.metadata, "source": "elixir", "updated_at": self.clock.utc_iso8601()}
        source = given.get("source")
        if source is None or source is False:
            source = "elixir"
        elif isinstance(source, Atom):
            source = source.name  # to_string/1
        merged = {**variable.metadata, **given}
        merged["source"] = source
        merged["updated_at"] = self.clock.utc_iso8601()
        return merged

    def _apply_update(
        self, session_id: Any, variable: VariableRecord, value: Any, metadata: dict, now: int, events: list, type_atom: Atom
    ) -> None:
        updated = variable.with_value(value, now, self._updated_metadata(variable, metadata))
        self.tx.put_variable(session_id, updated, None)
        if self.telemetry:
            events.append((EV_UPDATED, {A_COUNT: 1, A_VERSION: updated.version}, {A_SESSION_ID: session_id, A_TYPE: type_atom}))

    def _validate_update(self, session_id: Any, ident: Any, value: Any, events: list) -> tuple:
        """(variable, coerced value, type atom) or (None, reason, None). Validation comes before
        the optimization lock check, as in the original."""
        variable = self._find_variable(session_id, ident)
        if variable is None:
            return None, NOT_FOUND[1], None
        type_atom = variable.type
        if type_atom not in types.TYPE_ATOMS:  # e.g. "float", put back through update_session
            try:
                type_atom = types.resolve_type(variable.type)
            except types.UnknownType:
                return None, (A("unknown_type"), variable.type), None
        accepted, checked = self._check_value(session_id, type_atom, value, variable.constraints, events)
        if not accepted:
            return None, checked, None
        if variable.optimization_status is not NOT_OPTIMIZING and variable.optimizing:
            return None, LOCKED[1], None
        return variable, checked, type_atom

    def update_variable(self, session_id: Any, ident: Any, value: Any, metadata: Optional[dict] = None) -> Result:
        session = self._session(session_id)
        if session is None:
            return SESSION_NOT_FOUND, []
        if not metadata:
            answer = self._plain_update(session_id, ident, value)
            if answer is not None:
                return answer
        events: list = []
        variable, checked, type_atom = self._validate_update(session_id, ident, value, events)
        if variable is None:
            return _error(checked), events
        now = self.clock.now()
        self._apply_update(session_id, variable, checked, metadata or EMPTY_MAP, now, events, type_atom)
        self.tx.session_changed(session_id, now, updates=1)
        return OK, events

    def _plain_update(self, session_id: Any, ident: Any, value: Any) -> Optional[Result]:
        """The common update_variable, steps inlined: a variable found by its name or id whose
        type is one of the eight atoms, with no constraints, not being optimized, no metadata
        given, and a value its type accepts. None for anything else (the general path then
        decides, its telemetry events included). Same result, events and records as
        `_validate_update` + `_apply_update` (a Hypothesis differential test in
        tests/test_hot_paths.py)."""
        kind = type(ident)
        tx = self.tx
        if kind is Atom:
            variable = tx.find_variable(session_id, ident.name)
        elif kind is str:
            variable = tx.find_variable(session_id, ident)
        else:
            return None
        if variable is None or variable.optimization_status is not NOT_OPTIMIZING:
            return None
        constraints = variable.constraints
        if constraints or type(constraints) is not dict:  # something to check: the general path
            return None
        type_atom = variable.type
        coercer = types.COERCERS_BY_ATOM.get(type_atom) if type(type_atom) is Atom else None
        if coercer is None:
            return None
        try:
            checked = coercer(value)
        except types.ValidationFailed:
            return None
        clock = self.clock
        now = clock.now()
        updated = variable.with_value(checked, now, {**variable.metadata, "source": "elixir", "updated_at": clock.utc_iso8601()})
        tx.put_variable(session_id, updated, None)
        tx.session_changed(session_id, now, updates=1)
        if not self.telemetry:
            return OK, NO_EVENTS
        return OK, [(EV_UPDATED, {A_COUNT: 1, A_VERSION: updated.version}, {A_SESSION_ID: session_id, A_TYPE: type_atom})]

    def update_variables(self, session_id: Any, updates: dict, options: Optional[dict] = None) -> Result:
        options = options or {}
        session = self._session(session_id)
        if session is None:
            return SESSION_NOT_FOUND, []
        atomic = _truthy(options.get(A_ATOMIC, False))
        metadata = options.get(A_METADATA)
        if metadata is None:
            metadata = EMPTY_MAP
        elif not isinstance(metadata, dict):
            return _error(A("invalid_metadata")), []
        events: list = []
        now = self.clock.now()
        results: dict = {}
        failures: dict = {}
        planned: list = []
        applied = 0
        for ident, value in updates.items():
            result_key = name_key(ident)
            variable, checked, type_atom = self._validate_update(session_id, ident, value, events)
            if variable is None:
                failures[result_key] = checked
                results[result_key] = _error(checked)
            elif atomic:
                planned.append((result_key, variable, checked, type_atom))
            else:
                # non-atomic: each valid update is applied at once, in the map's order
                self._apply_update(session_id, variable, checked, metadata, now, events, type_atom)
                results[result_key] = OK
                applied += 1
        if atomic:
            # validation_failed (the telemetry event) was emitted per failing entry above
            if failures:
                events.append(self._batch_update_event(session_id, updates, atomic))
                return _error((A("validation_failed"), failures)), events
            for result_key, variable, checked, type_atom in planned:
                # the same variable named twice (by id and by name): update what is stored now
                current = self.tx.get_variable(session_id, variable.id) or variable
                self._apply_update(session_id, current, checked, metadata, now, events, type_atom)
                results[result_key] = OK
                applied += 1
        if applied:
            self.tx.session_changed(session_id, now, updates=applied)
        else:
            self._touch(session, now)
        events.append(self._batch_update_event(session_id, updates, atomic))
        return (OK, results), events

    @staticmethod
    def _batch_update_event(session_id: Any, updates: dict, atomic: bool) -> tuple:
        return (EV_BATCH_UPDATE, {A_COUNT: len(updates)}, {A_SESSION_ID: session_id, A_ATOMIC: atomic})

    def delete_variable(self, session_id: Any, ident: Any) -> Result:
        session = self._session(session_id)
        if session is None:
            return SESSION_NOT_FOUND, []
        variable = self._find_variable(session_id, ident)
        if variable is None:
            return NOT_FOUND, []
        if variable.optimizing:
            return LOCKED, []
        tx = self.tx
        key = name_key(variable.name)
        # beyond: the name index entry goes only if it points at this variable (the original
        # dropped it even when the name had been re-registered to a newer variable)
        index_key = key if tx.indexed_variable_id(session_id, key) == variable.id else None
        tx.delete_variable(session_id, variable.id, index_key)
        tx.session_changed(session_id, self.clock.now(), variables=-1)
        return OK, [(EV_DELETED, {A_COUNT: 1}, {A_SESSION_ID: session_id})]

    def list_variables(self, session_id: Any, pattern: Any = None) -> Result:
        session = self._session(session_id)
        if session is None:
            return SESSION_NOT_FOUND, []
        variables: Iterable[VariableRecord] = self.tx.variables(session_id)
        if pattern is not None:
            matcher = self._name_matcher(pattern)
            if matcher is None:
                return _error((A("invalid_pattern"), pattern)), []
            variables = [var for var in variables if matcher(name_key(var.name))]
        # registration order (beyond: the original sorted by whole seconds, ties in any order)
        return (OK, variables), []

    @staticmethod
    def _name_matcher(pattern: Any) -> Optional[Callable[[Any], bool]]:
        """`*` becomes `.*`, the result an unanchored regex on the name's string form.

        An invalid regex answers {:error, {:invalid_pattern, pattern}} (the original crashed the
        store): guessing a literal match would silently list the wrong variables."""
        source = pattern.replace(b"*", b".*") if isinstance(pattern, bytes) else pattern.replace("*", ".*")
        compiled = types.compile_pattern(source)
        if compiled is None:
            return None

        def matches(key: Any) -> bool:
            return isinstance(key, (str, bytes)) and compiled.matches(key)

        return matches

    def get_variables(self, session_id: Any, idents: list) -> Result:
        session = self._session(session_id)
        if session is None:
            return SESSION_NOT_FOUND, []
        found: dict = {}
        missing: list = []
        for ident in idents:
            variable = self._find_variable(session_id, ident)
            if variable is None:
                missing.append(name_key(ident))
            else:
                found[name_key(ident)] = variable
        self._touch(session, self.clock.now())
        # batch_get's count is the number of identifiers requested (found ones: map_size(found))
        if not self.telemetry:
            return (OK, {A("found"): found, A("missing"): missing}), NO_EVENTS
        event = (EV_BATCH_GET, {A_COUNT: len(idents)}, {A_SESSION_ID: session_id})
        return (OK, {A("found"): found, A("missing"): missing}), [event]

    def export_variables(self, session_id: Any) -> Result:
        session = self._session(session_id)
        if session is None:
            return SESSION_NOT_FOUND, []
        return (OK, self.tx.variables(session_id)), []

    def import_variables(self, session_id: Any, maps: list) -> Result:
        session = self._session(session_id)
        if session is None:
            return SESSION_NOT_FOUND, []
        tx = self.tx
        records = []
        for position, term in enumerate(maps):
            try:
                record = parse_imported_variable(term, self.clock.from_beam)
            except InvalidImport as invalid:
                # nothing is imported when any map is invalid; position is 0-based
                return _error((A("invalid_variable"), position, invalid.message)), []
            existing = tx.get_variable(session_id, record.id)
            if existing is not None and existing.optimizing:
                return _error((A("variable_locked_for_optimization"), record.id)), []
            records.append(record)
        # everything was checked: from here on nothing can fail
        added = 0
        for record in records:
            number = self._imported_id_number(record.id)
            if number is not None:
                # never hand out an id equal to an imported one: generated ids end in "_<n>"
                # with n above every imported id's trailing number
                tx.reserve_variable_number(number)
            existing = tx.get_variable(session_id, record.id)
            if existing is not None:
                old_key = name_key(existing.name)
                if tx.indexed_variable_id(session_id, old_key) == existing.id:
                    tx.delete_variable(session_id, existing.id, old_key)
                    added -= 1
            if tx.put_variable(session_id, record, intern_name(name_key(record.name))):
                added += 1
        if records:
            tx.session_changed(session_id, self.clock.now(), variables=added, updates=len(records))
        log.info("imported %d variables into session %r", len(records), session_id)
        return (OK, len(records)), []

    # optimization lock (extension calls) --------------------------------------------------

    def start_optimization(self, session_id: Any, ident: Any, optimizer_id: Any, optimizer_pid: Any) -> Result:
        session = self._session(session_id)
        if session is None:
            return SESSION_NOT_FOUND, []
        variable = self._find_variable(session_id, ident)
        if variable is None:
            return NOT_FOUND, []
        if variable.optimizing:
            return _error(A("already_optimizing")), []
        now = self.clock.now()
        status = {A("optimizing"): True, A("optimizer_id"): optimizer_id, A("optimizer_pid"): optimizer_pid, A("started_at"): now}
        self.tx.put_variable(session_id, variable.with_optimization_status(status), None)
        self.tx.session_changed(session_id, now)
        return OK, []

    def end_optimization(self, session_id: Any, ident: Any) -> Result:
        session = self._session(session_id)
        if session is None:
            return SESSION_NOT_FOUND, []
        variable = self._find_variable(session_id, ident)
        if variable is None:
            return NOT_FOUND, []
        if variable.optimization_status is not NOT_OPTIMIZING:
            self.tx.put_variable(session_id, variable.with_optimization_status(NOT_OPTIMIZING), None)
            self.tx.session_changed(session_id, self.clock.now())
        return OK, []

    # the harness's read cache (extension call) ---------------------------------------------

    def touch_sessions(self, touches: list) -> Result:
        """The touches of reads the harness served from its cache (docs/harness.md, "Read
        cache"), sent in batches: each `{session_id, beam_second}` sets that session's
        `last_accessed` to the given second of the BEAM's clock, never past `now` and never
        backwards. Answers, in order, each session's expiry second on the BEAM's clock
        (`last_accessed + ttl`: the last second in which it is still alive) or nil when there is
        no such session (or the entry is not a `{binary, integer}`). Never an error; no events."""
        now = self.clock.now()
        from_beam = self.clock.from_beam
        to_beam = self.clock.to_beam
        answers: list = []
        for entry in touches:
            if not (type(entry) is tuple and len(entry) == 2 and is_integer(entry[1])):
                answers.append(None)
                continue
            session = self._session(entry[0])
            if session is None:
                answers.append(None)
                continue
            at = min(from_beam(entry[1]), now)
            last = session.last_accessed
            if at > last:
                self.tx.touch_session(session.id, at)
                last = at
            answers.append(to_beam(last + session.ttl))
        return answers, []

    # misc ---------------------------------------------------------------------------------

    def ping(self) -> Result:
        return A("pong"), []

    def reset(self) -> Result:
        """Test-only: forget every session, program and counter (one sidecar serves many tests)."""
        self.storage.reset()
        return OK, []

    def advance_clock(self, seconds: int) -> Result:
        """Test-only: move the clock forward (served only with config.enable_test_calls)."""
        self.clock.advance(seconds)
        return OK, []
